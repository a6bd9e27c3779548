"""Two reconciler replicas behind one Service: one leader; a signal that reaches the standby is
forwarded to the leader and acted on (no lost evidence); killing the leader fails over."""

from __future__ import annotations

import pytest
from kubernetes import client

from netwarden.model import names
from netwarden.tools.stack import ManagedProcess, Stack, free_port
from netwarden.tools.traffic import PodEnd, WorldEnd

from .conftest import learn
from .harness import (SIGNAL_TO_POLICY_BOUND_SECONDS, App, Cluster, PolicyRecorder, edge_flows, falco_body, flows_body,
                      is_step, leader_metric, post, quarantines, record_latency, send, sigkill, wait_until)

APPS = tuple(App("pair", f"p{i}", 1, (8080,), {names.ANNOTATION_PURPOSE: f"svc{i}",
                                               names.ANNOTATION_ALLOW_TO: "cidr=0.0.0.0/0:443"}) for i in (1, 2))
UPSTREAM = WorldEnd("198.51.100.40")
UNKNOWN_HOST = WorldEnd("203.0.113.88")


@pytest.fixture(scope="module")
def standby(stack: Stack) -> tuple[ManagedProcess, str]:
    port = free_port()
    proc = stack.add_reconciler("reconciler-b", "netwarden-demo-1", port)
    return proc, f"https://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def pair(stack: Stack, cluster: Cluster, recorder: PolicyRecorder) -> dict[str, PodEnd]:
    cluster.namespace("pair")
    return {name: pods[0] for name, pods in cluster.deploy_ready(APPS).items()}


def lease(cluster: Cluster) -> dict:
    return cluster.plain(client.CoordinationV1Api(cluster.api).read_namespaced_lease("netwarden-reconciler", "netwarden"))


def test_two_replicas_elect_exactly_one_leader_which_publishes_its_address(stack: Stack, cluster: Cluster,
                                                                           standby: tuple[ManagedProcess, str]) -> None:
    _proc, standby_url = standby
    held = lease(cluster)
    assert held["spec"]["holderIdentity"] == "netwarden-demo-0"
    assert held["metadata"]["annotations"][names.ANNOTATION_LEADER_ADDRESS] == stack.signals_url
    assert (leader_metric(stack.signals_url, stack.ca_file), leader_metric(standby_url, stack.ca_file)) == (1.0, 0.0)


def test_signals_sent_to_the_standby_are_acted_on_by_the_leader(stack: Stack, cluster: Cluster, recorder: PolicyRecorder,
                                                                standby: tuple[ManagedProcess, str],
                                                                pair: dict[str, PodEnd]) -> None:
    _proc, standby_url = standby
    p1 = pair["p1"]
    learn(stack, [(p1, UPSTREAM, 443, 2)], url=standby_url)  # every flow goes through the standby
    mark = recorder.mark()
    sent = send(stack, "/signals/flows", flows_body(edge_flows(p1, UNKNOWN_HOST, 443, 3)), url=standby_url)
    assert sent.answer["accepted"] == 3, "the leader's answer comes back through the standby"
    change = recorder.wait_for(mark, is_step(APPS[0], names.STEP_TIGHTENED))
    assert record_latency("via the standby -> tighten", sent, change) <= SIGNAL_TO_POLICY_BOUND_SECONDS
    forwarded = post(standby_url, "/signals/flows", "[]", "wrong-token", stack.ca_file)
    assert forwarded.status_code == 401, "the standby checks the token before passing anything on"


def test_killing_the_leader_fails_over_to_the_standby_which_acts_on_the_next_signal(
        stack: Stack, cluster: Cluster, recorder: PolicyRecorder, standby: tuple[ManagedProcess, str],
        pair: dict[str, PodEnd]) -> None:
    _proc, standby_url = standby
    sigkill(stack.process("reconciler"))
    # Until the Lease runs out, the standby knows a leader it cannot reach: the sender is told to retry.
    refused = post(standby_url, "/signals/flows", flows_body(edge_flows(pair["p2"], UPSTREAM, 443, 1)),
                   stack.signal_token, stack.ca_file)
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    wait_until(lambda: leader_metric(standby_url, stack.ca_file) == 1.0, timeout=40, interval=0.2,
               what="the standby leads")
    held = lease(cluster)
    assert held["spec"]["holderIdentity"] == "netwarden-demo-1"
    assert held["metadata"]["annotations"][names.ANNOTATION_LEADER_ADDRESS] == standby_url
    # The next signal: a Falco alert on p2's pod, posted to the new leader, quarantines that pod.
    p2 = pair["p2"]
    mark = recorder.mark()
    sent = send(stack, "/signals/falco", falco_body("pair", p2.name), url=standby_url)
    change = recorder.wait_for(mark, quarantines(p2.labels[names.LABEL_INSTANCE]))
    assert record_latency("new leader after failover -> quarantine", sent, change) <= SIGNAL_TO_POLICY_BOUND_SECONDS
