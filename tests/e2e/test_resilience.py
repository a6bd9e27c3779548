"""Issue 4, "Done when": injected API faults (500, 409, 410 on watch, dropped watch) are survived,
and a reconciler killed with SIGKILL and started again resumes without duplicate writes."""

from __future__ import annotations

import time

import pytest

from netwarden.model import names
from netwarden.tools.stack import Stack
from netwarden.tools.traffic import PodEnd, WorldEnd

from .conftest import learn
from .harness import (DNS, DNS_POD, SIGNAL_TO_POLICY_BOUND_SECONDS, App, Cluster, PolicyRecorder, connectivity,
                      edge_flows, flows_body, is_step, record_latency, send, sigkill, wait_until)

APPS = tuple(App("ops", f"r{i}", 1, (8080,), {names.ANNOTATION_PURPOSE: f"job{i}",
                                              names.ANNOTATION_ALLOW_TO: "cidr=0.0.0.0/0:443"}) for i in range(1, 4))
UNKNOWN_HOST = WorldEnd("203.0.113.77")


def upstream(i: int) -> WorldEnd:
    return WorldEnd(f"198.51.100.{20 + i}")


@pytest.fixture(scope="module")
def ops(stack: Stack, cluster: Cluster, recorder: PolicyRecorder) -> dict[str, PodEnd]:
    cluster.namespace("ops")
    ends = {name: pods[0] for name, pods in cluster.deploy_ready(APPS).items()}
    learn(stack, [(ends[app.name], upstream(i), 443, 2) for i, app in enumerate(APPS, 1)])
    return ends


def tighten_and_check(stack: Stack, cluster: Cluster, recorder: PolicyRecorder, app: App, pod: PodEnd,
                      case: str) -> None:
    """World egress -> the workload's policy tightened to exactly its learned upstream (+ DNS), by nca."""
    mark = recorder.mark()
    sent = send(stack, "/signals/flows", flows_body(edge_flows(pod, UNKNOWN_HOST, 443, 3)))
    change = recorder.wait_for(mark, is_step(app, names.STEP_TIGHTENED))
    assert record_latency(case, sent, change) <= SIGNAL_TO_POLICY_BOUND_SECONDS
    index = APPS.index(app) + 1
    seen = connectivity(cluster).touching({f"ops/{pod.name}"})
    assert seen == {(f"ops/{pod.name}", f"{DNS_POD.namespace}/{DNS_POD.name}"): set(DNS),
                    (f"ops/{pod.name}", f"{upstream(index).ip}/32"): {("TCP", 443, 443)}}, seen


def test_a_500_and_a_409_on_the_policy_write_are_survived(stack: Stack, cluster: Cluster, recorder: PolicyRecorder,
                                                          ops: dict[str, PodEnd]) -> None:
    for app, status in ((APPS[0], 500), (APPS[1], 409)):
        cluster.fault(method="PUT", path_regex=f"networkpolicies/netwarden-deploy-{app.name}(\\?|$)", status=status, times=1)
        tighten_and_check(stack, cluster, recorder, app, ops[app.name], f"after an injected {status} -> tighten")
        assert cluster.faults() == [], f"the injected {status} was hit (not left unused)"


def snapshot(cluster: Cluster) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    versions = {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in cluster.managed()}
    return versions, cluster.netwarden_events()


def test_sigkill_and_restart_resume_without_duplicate_writes_through_watch_faults(
        stack: Stack, cluster: Cluster, recorder: PolicyRecorder, ops: dict[str, PodEnd]) -> None:
    wait_until(lambda: all((cluster.workload_policy(a) or {}).get("metadata", {}).get("annotations", {})
                           .get(names.ANNOTATION_STEP) == names.STEP_TIGHTENED for a in APPS[:2]),
               what="r1 and r2 tightened (previous test)")
    before = snapshot(cluster)
    mark = recorder.mark()
    process = stack.process("reconciler")
    sigkill(process)
    # The restarted process meets a flaky API: its first pod watch fails with a 500, the next one
    # is cut at its first event, and its policy watch is told 410 Gone. (Its watches are the ones
    # with timeoutSeconds=300; the test's own and the fake kubelet's differ.)
    cluster.fault(method="GET", path_regex=r"/api/v1/pods\?.*timeoutSeconds=300.*watch=(1|true)|"
                  r"/api/v1/pods\?.*watch=(1|true).*timeoutSeconds=300", status=500, times=1)
    cluster.fault(method="GET", path_regex=r"/api/v1/pods\?.*timeoutSeconds=300.*watch=(1|true)|"
                  r"/api/v1/pods\?.*watch=(1|true).*timeoutSeconds=300", drop_watch_after=0, times=1)
    cluster.fault(method="GET", path_regex=r"networkpolicies\?.*timeoutSeconds=300", status=410, times=1)
    port = int(stack.signals_url.rsplit(":", 1)[1])
    stack.add_reconciler("reconciler-restarted", "netwarden-demo-0", port)
    # Pod events (a container restart), so the cut watch has something to be cut on.
    wait_until(lambda: cluster.faults() == [] or stack.kubelet.restart("ops", ops["r3"].name) is None,
               interval=0.5, what="every injected fault hit")
    time.sleep(2.0)  # a negative claim: give a duplicate write the time to happen
    after = snapshot(cluster)
    assert after[0] == before[0], "no managed policy was written again after the restart"
    assert after[1] == before[1], "no Event was recorded again after the restart"
    assert recorder.since(mark) == []
    # It resumed: the in-memory baselines died with the process, so r3 is learned again, then acts.
    learn(stack, [(ops["r3"], upstream(3), 443, 2)])
    tighten_and_check(stack, cluster, recorder, APPS[2], ops["r3"], "after SIGKILL + restart -> tighten")
    assert process.popen.returncode == -9
