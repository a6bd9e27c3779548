"""A real Falco alert, posted to the receiver, quarantines the pod it names (runtime + engine + LocalKube)."""

from __future__ import annotations

import json
import time

import requests
from kubernetes import client
from prometheus_client import CollectorRegistry

from netwarden.model import names
from netwarden.platform.kube import KubeClient
from netwarden.reconciler.receivers import ReceiverServer, create_receiver_app

from .conftest import make_namespace, make_pod, wait_until
from .test_controller import policy, start_runtime
from tests.support.data import PAYLOADS

DATA = PAYLOADS


def test_critical_falco_alert_quarantines_exactly_the_named_pod(kube: KubeClient, core: client.CoreV1Api,
                                                                net: client.NetworkingV1Api) -> None:
    make_namespace(core, "shop", mode=names.MODE_ENFORCE)
    for i in range(12):  # enough pods that one quarantine stays inside the blast-radius guard rail
        make_pod(core, "shop", f"filler-{i}")
    make_pod(core, "shop", "web")
    runtime = start_runtime(kube, grace=3600)
    server = ReceiverServer(create_receiver_app(runtime, token=None, registry=CollectorRegistry()), "127.0.0.1", 0)
    server.start()
    try:
        wait_until(lambda: policy(net, "shop", "netwarden-pod-web"))
        instance = wait_until(lambda: (core.read_namespaced_pod("web", "shop").metadata.labels or {})
                              .get(names.LABEL_INSTANCE))
        wait_until(lambda: runtime.engine.index.by_pod.get(("shop", "web")))
        alert = json.loads((DATA / "falco/falcosidekick_webhook-post-body_terminal-shell_2024.json").read_text())
        alert["priority"] = "Critical"
        alert["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # fresh: an old alert is not acted on
        alert["output_fields"]["k8s.ns.name"] = "shop"
        alert["output_fields"]["k8s.pod.name"] = "web"
        answer = requests.post(f"http://127.0.0.1:{server.port}/signals/falco", json=alert).json()
        assert answer["accepted"] == 1
        quarantine = policy(net, "shop", f"netwarden-quarantine-{instance}")
        assert quarantine is not None, "the quarantine is written before the alert's POST is answered"
        assert quarantine["spec"]["podSelector"] == {"matchLabels": {names.LABEL_INSTANCE: instance}}
        assert quarantine["metadata"]["ownerReferences"][0]["name"] == "web"
        workload = policy(net, "shop", "netwarden-pod-web")
        assert workload["spec"]["podSelector"]["matchExpressions"] == [
            {"key": names.LABEL_INSTANCE, "operator": "NotIn", "values": [instance]}]
        pod_events = [e for e in core.list_namespaced_event("shop").items
                      if e.reason == names.EVENT_POD_QUARANTINED and e.involved_object.kind == "Pod"]
        assert pod_events and pod_events[0].involved_object.name == "web"
    finally:
        server.stop()
        runtime.stop()
