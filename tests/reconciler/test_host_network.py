"""Issue 12 item 4: pods NetworkPolicy cannot reach (hostNetwork) get no baseline and no quarantine;
an Event on the pod says why and `netwarden explain` shows it."""

from __future__ import annotations

import json
import time

from kubernetes import client

from netwarden.model import names
from netwarden.cli import main
from netwarden.platform.kube import KubeClient
from netwarden.model.reach import HOST_NETWORK_REASON, outside_policy_reach
from netwarden.reconciler.core.types import SecurityAlert

from .conftest import make_namespace, set_pod_status, wait_until
from .test_controller import events, policy
from .test_quarantine_writes import start_runtime

NS = "edge"


def host_network_pod(core: client.CoreV1Api, name: str) -> None:
    core.create_namespaced_pod(NS, {
        "metadata": {"name": name, "labels": {names.LABEL_IDENTITY: f"{NS}.pod.{name}",
                                              names.LABEL_INSTANCE: f"inst-{name}"}},
        "spec": {"hostNetwork": True, "containers": [{"name": "agent", "image": "example/agent:1",
                                                       "ports": [{"containerPort": 9100, "protocol": "TCP"}]}]}})
    set_pod_status(core, NS, name, ip="192.0.2.10", ready=True)


def test_the_predicate_is_about_host_network_only() -> None:
    assert outside_policy_reach({"spec": {"hostNetwork": True}}) == HOST_NETWORK_REASON
    assert outside_policy_reach({"spec": {"hostNetwork": False}}) is None
    assert outside_policy_reach({"spec": {}}) is None and outside_policy_reach({}) is None


def test_a_host_network_pod_gets_no_baseline_no_quarantine_an_event_and_explain_says_why(
        cluster, kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api, capsys) -> None:
    make_namespace(core, NS, mode=names.MODE_ENFORCE)
    host_network_pod(core, "agent")
    runtime = start_runtime(kube)
    try:
        wait_until(lambda: events(core, NS, names.EVENT_POD_UNENFORCEABLE), what="the Event saying why")
        (event,) = events(core, NS, names.EVENT_POD_UNENFORCEABLE)
        assert event.involved_object.name == "agent" and "hostNetwork" in event.message and event.type == "Warning"
        wait_until(lambda: runtime.engine.index.by_pod.get((NS, "agent")))
        runtime.accept_alert(SecurityAlert(time.time(), NS, "agent", "Terminal shell in container", "critical"))
        assert kube.list_policies(NS) == [], "no baseline and no quarantine were written"
        assert "192.0.2.10" not in runtime.engine.index.by_ip, "a node's IP never stands for the pod"
        decision = runtime.engine.explain(f"{NS}.pod.agent", time.time())["last_decision"]
        assert decision["action"] == "alert-only" and "hostNetwork" in decision["reason"]
        assert policy(net, NS, "netwarden-quarantine-inst-agent") is None
    finally:
        runtime.stop()
    assert main(["explain", f"{NS}.pod.agent", "--kubeconfig", cluster.write_kubeconfig()]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["pods_outside_policy_reach"] == [{"pod": f"{NS}/agent", "why": HOST_NETWORK_REASON}]
