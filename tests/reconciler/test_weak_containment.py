"""Saying when containment is weak (NetworkPolicy backend): Events on the pod and the user's policy, a metric.

The issue's case: a user's policy (podSelector app=api, ingress from app=web on 8080) and a Critical
alert for api: the quarantine is written, and netwarden says that web -> api :8080 is still open and
which policy opens it. An allow-all policy in an opted-in namespace is reported when a baseline is written.
The user's policies are never changed.
"""

from __future__ import annotations

from kubernetes import client

from netwarden.model import names
from netwarden.platform.kube import KubeClient
from netwarden.reconciler import metrics

from .conftest import make_namespace, make_pod, wait_until
from .test_admin_backend import quarantine_by_alert
from .test_controller import start_runtime


def warnings_on(core: client.CoreV1Api, namespace: str, reason: str, kind: str, name: str) -> list[client.CoreV1Event]:
    return [e for e in core.list_namespaced_event(namespace).items
            if e.reason == reason and e.involved_object.kind == kind and e.involved_object.name == name
            and e.type == "Warning"]


def test_a_user_policy_that_reopens_a_network_policy_quarantine_is_reported_on_the_pod_and_the_policy(
        kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    make_namespace(core, "shop", mode=names.MODE_ENFORCE)
    for i in range(12):  # enough pods that the quarantine stays inside the blast-radius guard rail
        make_pod(core, "shop", f"filler-{i}")
    make_pod(core, "shop", "web", labels={"app": "web"})
    make_pod(core, "shop", "api", labels={"app": "api"})
    user = {"metadata": {"name": "allow-web"},
            "spec": {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 8080}]}]}}
    written = net.create_namespaced_network_policy("shop", user)
    runtime = start_runtime(kube, grace=3600)
    try:
        assert runtime.controller.admin is None  # no admin-tier API served: NetworkPolicy holds the quarantine
        wait_until(lambda: runtime.index.policy("shop", "netwarden-pod-api"))
        quarantine_by_alert(runtime, "api")
        on_pod = wait_until(lambda: warnings_on(core, "shop", names.EVENT_CONTAINMENT_WEAK, "Pod", "api"))
        on_policy = wait_until(lambda: warnings_on(core, "shop", names.EVENT_CONTAINMENT_WEAK, "NetworkPolicy",
                                                   "allow-web"))
        assert "shop/web -> shop/api :8080/TCP" in on_pod[0].message and "shop/allow-web" in on_policy[0].message
        assert metrics.REGISTRY.get_sample_value(names.METRIC_WEAK_CONTAINMENT, {"kind": "widens-quarantine"}) >= 1
        after = net.read_namespaced_network_policy("allow-web", "shop")
        assert after.metadata.resource_version == written.metadata.resource_version  # never changed
        assert len(warnings_on(core, "shop", names.EVENT_CONTAINMENT_WEAK, "Pod", "api")) == 1
        runtime.controller.recheck_containment()  # the same finding is not said twice
        assert len(warnings_on(core, "shop", names.EVENT_CONTAINMENT_WEAK, "Pod", "api")) == 1
    finally:
        runtime.stop()


def test_an_allow_all_policy_is_reported_when_a_baseline_is_written_in_its_namespace(
        kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    make_namespace(core, "shop")
    net.create_namespaced_network_policy("shop", {"metadata": {"name": "open"},
                                                  "spec": {"podSelector": {}, "ingress": [{}]}})
    runtime = start_runtime(kube)
    try:
        make_pod(core, "shop", "web")  # admitted without the webhook: the reconciler writes its baseline
        wait_until(lambda: runtime.index.policy("shop", "netwarden-pod-web"))
        on_baseline = wait_until(lambda: warnings_on(core, "shop", names.EVENT_ALLOW_ALL_POLICY, "NetworkPolicy",
                                                     "netwarden-pod-web"))
        assert "shop/open" in on_baseline[0].message and "all ingress for every pod" in on_baseline[0].message
        assert wait_until(lambda: warnings_on(core, "shop", names.EVENT_ALLOW_ALL_POLICY, "NetworkPolicy", "open"))
    finally:
        runtime.stop()
