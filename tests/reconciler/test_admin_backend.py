"""The admin-tier quarantine backend against LocalKube with the real network-policy-api CRDs installed.

A Falco alert quarantines a pod with a cluster-scoped Deny (ClusterNetworkPolicy or AdminNetworkPolicy,
whichever discovery finds); deleting the pod removes it; a restarted reconciler (a new leader) collects
orphans and renews what is still quarantined. The reconciler runs with its own token, so the calls it
makes on the admin-tier resource are observed and compared with the RBAC the chart grants for it.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import yaml
from kubernetes import client
from prometheus_client import CollectorRegistry

from localkube import LocalKube
from netwarden.model import names
from netwarden.model.admin_policy import ANP_V1ALPHA1, CNP_V1BETA1, AdminApi, admin_quarantine_name
from netwarden.platform.kube import KubeClient, admin_policy_api_calls
from netwarden.model.netpol_eval import NamespaceInfo, PodInfo, PolicySet
from netwarden.model.policy import DnsTarget, PolicyMeta, quarantine_intent, quarantine_policy_name, render_network_policy
from netwarden.reconciler.controller import ControllerSettings
from netwarden.reconciler.core.config import CoreConfig
from netwarden.reconciler.policy_ops import Pending, PolicyWriter, store_pending
from netwarden.reconciler.receivers import ReceiverServer, create_receiver_app
from netwarden.reconciler.runtime import ReconcilerRuntime, RuntimeSettings
from netwarden.reconciler.watch import Backoff
from tests.chart.expected_rbac import RECONCILER_ADMIN_POLICIES
from tests.support.data import PAYLOADS

from .conftest import FAST_RETRY, make_namespace, make_pod, wait_until

CRDS = Path(__file__).resolve().parents[1] / "data" / "crds"
GROUP = "policy.networking.k8s.io"
RECONCILER_USER = "system:serviceaccount:netwarden:netwarden-reconciler"
CRD_FILES = {CNP_V1BETA1.plural: "clusternetworkpolicies-v0.3.0-standard.yaml",
             ANP_V1ALPHA1.plural: "adminnetworkpolicies-v0.1.7-standard.yaml"}


@pytest.fixture(params=[CNP_V1BETA1, ANP_V1ALPHA1], ids=lambda api: api.kind)
def setup(request: pytest.FixtureRequest) -> Iterator[tuple[LocalKube, AdminApi]]:
    with LocalKube(bookmark_interval=0.5, tokens={"admin": "system:admin", "rec": RECONCILER_USER}) as server:
        ext = client.ApiextensionsV1Api(server.api_client("admin"))
        ext.create_custom_resource_definition(yaml.safe_load((CRDS / CRD_FILES[request.param.plural]).read_text()))
        yield server, request.param


def start(server: LocalKube, backend: str = "auto") -> ReconcilerRuntime:
    settings = RuntimeSettings(ControllerSettings(cleanup_grace_seconds=3600, default_mode=names.MODE_ENFORCE,
                                                  write_rate_per_second=100, write_burst=100,
                                                  quarantine_backend=backend),
                               tick_seconds=0.2, sync_timeout_seconds=10)
    kube = KubeClient(server.api_client("rec"), FAST_RETRY)
    core = CoreConfig(default_mode=names.MODE_ENFORCE, blast_max_pod_fraction=0.5)
    return ReconcilerRuntime(kube, settings, core, backoff=Backoff(0.01, 0.1)).start()


def admin_objects(custom: client.CustomObjectsApi, api: AdminApi) -> dict[str, dict[str, Any]]:
    items = custom.list_cluster_custom_object(GROUP, api.version, api.plural)["items"]
    return {item["metadata"]["name"]: item for item in items}


def alert_for(pod: str, namespace: str = "shop") -> dict[str, Any]:
    alert = json.loads((PAYLOADS / "falco/falcosidekick_webhook-post-body_terminal-shell_2024.json").read_text())
    alert["priority"] = "Critical"
    alert["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # fresh: an old alert is not acted on
    alert["uuid"] = str(uuid.uuid4())  # a new alert each time (alerts are de-duplicated by id)
    alert["output_fields"]["k8s.ns.name"] = namespace
    alert["output_fields"]["k8s.pod.name"] = pod
    return alert


def quarantine_by_alert(runtime: ReconcilerRuntime, pod: str, namespace: str = "shop") -> None:
    server = ReceiverServer(create_receiver_app(runtime, token=None, registry=CollectorRegistry()), "127.0.0.1", 0)
    server.start()
    try:
        wait_until(lambda: runtime.engine.index.by_pod.get((namespace, pod)))
        answer = requests.post(f"http://127.0.0.1:{server.port}/signals/falco", json=alert_for(pod, namespace),
                               timeout=10).json()
        assert answer["accepted"] == 1
    finally:
        server.stop()


def test_admin_tier_quarantine_is_written_first_removed_with_its_pod_and_collected_after_restart(
        setup: tuple[LocalKube, AdminApi]) -> None:
    server, api = setup
    admin = server.api_client("admin")
    core, net, custom = client.CoreV1Api(admin), client.NetworkingV1Api(admin), client.CustomObjectsApi(admin)
    make_namespace(core, "shop", mode=names.MODE_ENFORCE)
    make_pod(core, "shop", "filler-0")
    for name in ("web", "api", "db"):
        make_pod(core, "shop", name)
    user_allow = {"metadata": {"name": "user-allow-all"},
                  "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{}], "egress": [{}]}}
    net.create_namespaced_network_policy("shop", user_allow)
    runtime = start(server)
    try:
        assert runtime.controller.admin is not None and runtime.controller.admin.api == api
        instances = {name: wait_until(lambda name=name: (core.read_namespaced_pod(name, "shop").metadata.labels or {})
                                      .get(names.LABEL_INSTANCE)) for name in ("web", "api", "db")}
        wait_until(lambda: all(runtime.index.policy("shop", f"netwarden-pod-{n}") for n in ("web", "api", "db")))
        for name in ("web", "api"):
            quarantine_by_alert(runtime, name)
        objects = admin_objects(custom, api)
        web_name = admin_quarantine_name("shop", instances["web"], "shop.pod.web")
        assert set(objects) == {web_name, admin_quarantine_name("shop", instances["api"], "shop.pod.api")}
        web = objects[web_name]
        assert web["spec"]["subject"]["pods"]["podSelector"] == {"matchLabels": {names.LABEL_INSTANCE: instances["web"]}}
        assert web["spec"]["subject"]["pods"]["namespaceSelector"] == {
            "matchLabels": {names.LABEL_NAMESPACE_NAME: "shop"}}
        assert web["metadata"]["annotations"][names.ANNOTATION_TARGET_NAMESPACE] == "shop"
        # No NetworkPolicy quarantine and no carve-out: the Admin-tier Deny holds by itself.
        assert not [p for p in net.list_namespaced_network_policy("shop").items if "quarantine" in p.metadata.name]
        baseline = net.read_namespaced_network_policy("netwarden-pod-web", "shop")
        assert not baseline.spec.pod_selector.match_expressions
        # What the API now holds, through the one evaluator: the user's allow-all does not reopen it.
        pods = {p.metadata.name: PodInfo("shop", p.metadata.name, p.metadata.labels or {}, f"10.0.0.{i + 1}")
                for i, p in enumerate(core.list_namespaced_pod("shop").items)}
        held = PolicySet([client.ApiClient().sanitize_for_serialization(p) for p in
                          net.list_namespaced_network_policy("shop").items] + list(objects.values()),
                         [NamespaceInfo("shop")])
        assert held.is_allowed(pods["filler-0"], pods["db"], 8080)  # the user's policy opens everything else
        assert not held.is_allowed(pods["db"], pods["web"], 8080) and not held.is_allowed(pods["web"], pods["db"], 8080)
        assert [e for e in core.list_namespaced_event("shop").items
                if e.reason == names.EVENT_POD_QUARANTINED and e.involved_object.name == "web"]

        core.delete_namespaced_pod("web", "shop")
        wait_until(lambda: web_name not in admin_objects(custom, api))
    finally:
        runtime.stop()

    # While no reconciler runs: api's pod goes (its object is now an orphan); db gets an object by hand
    # as netwarden would have written it (a quarantine the new leader must keep and renew).
    api_name = admin_quarantine_name("shop", instances["api"], "shop.pod.api")
    core.delete_namespaced_pod("api", "shop")
    runtime = start(server)
    try:
        wait_until(lambda: api_name not in admin_objects(custom, api))
        assert admin_objects(custom, api) == {}
        quarantine_by_alert(runtime, "db")
        db_name = admin_quarantine_name("shop", instances["db"], "shop.pod.db")
        assert db_name in admin_objects(custom, api)
    finally:
        runtime.stop()
    runtime = start(server)  # a new leader finds db's quarantine and, alerted again, renews it (update)
    try:
        quarantine_by_alert(runtime, "db")
        renewed = admin_objects(custom, api)[db_name]
        assert renewed["metadata"]["annotations"][names.ANNOTATION_REVISION] == "2"
    finally:
        runtime.stop()

    # RBAC is what the code calls: the reconciler used exactly the verbs the chart grants for this backend.
    called = {(r.api_group, r.resource, r.verb) for r in server.audit
              if r.user == RECONCILER_USER and r.api_group == GROUP}
    assert called == set(admin_policy_api_calls(api.plural)) == set(RECONCILER_ADMIN_POLICIES[api.plural])


def test_a_backend_asked_for_but_not_served_falls_back_to_network_policy() -> None:
    with LocalKube(bookmark_interval=0.5) as server:
        runtime = start(server, backend="clusternetworkpolicy")
        try:
            assert runtime.controller.admin is None
            assert "falls back to NetworkPolicy" in runtime.controller.backend_reason
        finally:
            runtime.stop()


def test_a_served_backend_that_rbac_does_not_grant_falls_back_to_network_policy(
        setup: tuple[LocalKube, AdminApi]) -> None:
    """CRDs installed after the chart (auto granted nothing): quarantines must not wait on a 403 forever."""
    server, api = setup
    server.faults.add(method="GET", path_regex=api.plural, status=403, times=None)  # every list: not granted
    runtime = start(server)
    try:
        assert runtime.controller.admin is None
        assert "forbidden" in runtime.controller.backend_reason and "NetworkPolicy" in runtime.controller.backend_reason
    finally:
        runtime.stop()


def test_an_approved_quarantine_is_carried_out_on_the_admin_tier_as_an_automatic_one_is(
        setup: tuple[LocalKube, AdminApi]) -> None:
    """Approve mode: the proposal is approved with kubectl annotate; what is written then is the decision's
    own plan (the Admin-tier Deny), not a replay of the NetworkPolicies it was described with, which a
    user's allow-all would reopen (NetworkPolicies are additive)."""
    server, api = setup
    admin = server.api_client("admin")
    core, net, custom = client.CoreV1Api(admin), client.NetworkingV1Api(admin), client.CustomObjectsApi(admin)
    make_namespace(core, "shop", mode=names.MODE_APPROVE)
    for name in ("filler-0", "web", "db"):
        make_pod(core, "shop", name)
    net.create_namespaced_network_policy("shop", {
        "metadata": {"name": "user-allow-all"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{}], "egress": [{}]}})
    runtime = start(server)
    try:
        instance = wait_until(lambda: (core.read_namespaced_pod("web", "shop").metadata.labels or {})
                              .get(names.LABEL_INSTANCE))
        wait_until(lambda: runtime.index.policy("shop", "netwarden-pod-web"))
        quarantine_by_alert(runtime, "web")
        held = wait_until(lambda: (net.read_namespaced_network_policy("netwarden-pod-web", "shop").metadata.annotations
                                   or {}).get(names.ANNOTATION_PENDING), what="the proposal")
        assert admin_objects(custom, api) == {}, "approve mode wrote before the approval"
        assert Pending.from_annotation(held).tier == api.kind  # the CLI will not replay it without a reconciler
        net.patch_namespaced_network_policy("netwarden-pod-web", "shop",
                                            {"metadata": {"annotations": {names.ANNOTATION_APPROVE: "true"}}})
        web_name = admin_quarantine_name("shop", instance, "shop.pod.web")
        wait_until(lambda: web_name in admin_objects(custom, api), what="the Admin-tier Deny, after the approval")
        wait_until(lambda: names.ANNOTATION_PENDING not in (
            net.read_namespaced_network_policy("netwarden-pod-web", "shop").metadata.annotations or {}),
                   what="the proposal taken off the policy")
        assert not [p for p in net.list_namespaced_network_policy("shop").items if "quarantine" in p.metadata.name]
        pods = {p.metadata.name: PodInfo("shop", p.metadata.name, p.metadata.labels or {}, f"10.0.0.{i + 1}")
                for i, p in enumerate(core.list_namespaced_pod("shop").items)}
        held_now = PolicySet([client.ApiClient().sanitize_for_serialization(p) for p in
                              net.list_namespaced_network_policy("shop").items] + list(admin_objects(custom, api).values()),
                             [NamespaceInfo("shop")])
        assert not held_now.is_allowed(pods["db"], pods["web"], 8080) and not held_now.is_allowed(pods["web"], pods["db"], 8080)
        assert runtime.engine.state_of("shop.pod.web").pending == ()
    finally:
        runtime.stop()


def test_an_approved_quarantine_the_engine_no_longer_holds_is_dropped_not_replayed_as_network_policies(
        setup: tuple[LocalKube, AdminApi]) -> None:
    """A proposal from before a restart (the engine does not keep proposals; it proposes again): its stored
    NetworkPolicies would quarantine on a tier a user's allow-all reopens, so it is dropped with a Warning."""
    server, api = setup
    admin = server.api_client("admin")
    core, net = client.CoreV1Api(admin), client.NetworkingV1Api(admin)
    make_namespace(core, "shop", mode=names.MODE_APPROVE)
    make_pod(core, "shop", "web")
    runtime = start(server)
    try:
        holder = wait_until(lambda: runtime.index.policy("shop", "netwarden-pod-web"))
        assert runtime.controller.admin is not None
        instance = (core.read_namespaced_pod("web", "shop").metadata.labels or {})[names.LABEL_INSTANCE]
        stale = quarantine_intent("shop", "shop.pod.web", instance)
        manifest = render_network_policy(stale, PolicyMeta(quarantine_policy_name(instance), "alert",
                                                           role=names.ROLE_QUARANTINE), DnsTarget())
        store_pending(PolicyWriter(KubeClient(admin)), holder, Pending((manifest,), (), "alert", "quarantine-pod", 30.0, 0.0))
        net.patch_namespaced_network_policy("netwarden-pod-web", "shop",
                                            {"metadata": {"annotations": {names.ANNOTATION_APPROVE: "true"}}})
        wait_until(lambda: names.ANNOTATION_PENDING not in (
            net.read_namespaced_network_policy("netwarden-pod-web", "shop").metadata.annotations or {}),
                   what="the stale proposal taken off the policy")
        assert not [p for p in net.list_namespaced_network_policy("shop").items if "quarantine" in p.metadata.name]
        assert wait_until(lambda: [e for e in core.list_namespaced_event("shop").items
                                   if e.type == "Warning" and "proposal dropped" in (e.message or "")])
    finally:
        runtime.stop()
