"""Admin-tier quarantines on the real kube-apiserver with the network-policy-api CRDs installed.

ClusterNetworkPolicy from v0.3.0 (v1beta1 storage, v1alpha2 served) and AdminNetworkPolicy v1alpha1
from v0.1.7 (tests/data/crds): every object netwarden renders is accepted as written (the real schema
and its CEL rules), the reconciler finds the backend through discovery, its object selects exactly the
pod's instance, holds against a user's allow policy (by the evaluator), goes with its pod, and a
restarted reconciler collects the orphan of a pod deleted while it was down.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from kubernetes import client

from localkube.controlplane_build import ControlPlaneBinaries
from localkube.kube_engine import KubeControlPlane
from netwarden.model import names
from netwarden.model.admin_policy import ANP_V1ALPHA1, CNP_V1ALPHA2, CNP_V1BETA1, AdminApi, admin_quarantine_name, \
    render_admin_quarantine
from netwarden.platform.kube import KubeClient, RetryPolicy
from netwarden.model.netpol_eval import NamespaceInfo, PodInfo, PolicySet
from netwarden.model.policy import DnsTarget, Peer, PolicyMeta, PortSpec, Rule, quarantine_intent, workload_quarantine_intent
from netwarden.reconciler.controller import ControllerSettings
from netwarden.reconciler.core.config import CoreConfig
from netwarden.reconciler.runtime import ReconcilerRuntime, RuntimeSettings
from netwarden.reconciler.watch import Backoff
from tests.reconciler.test_admin_backend import quarantine_by_alert
from tests.support.waiting import wait_for

CRDS = Path(__file__).resolve().parents[1] / "data" / "crds"
GROUP = "policy.networking.k8s.io"


@pytest.fixture(scope="module")
def crd_cluster(kube_binaries: ControlPlaneBinaries) -> Iterator[KubeControlPlane]:
    """A control plane of its own: the shared one must not start serving an admin-tier API mid-session."""
    with KubeControlPlane(kube_binaries) as cluster:
        cluster.install_crds([yaml.safe_load((CRDS / f).read_text()) for f in (
            "clusternetworkpolicies-v0.3.0-standard.yaml", "adminnetworkpolicies-v0.1.7-standard.yaml")])
        yield cluster


def objects(custom: client.CustomObjectsApi, api: AdminApi) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in custom.list_cluster_custom_object(GROUP, api.version, api.plural)["items"]}


@pytest.mark.parametrize("api", [CNP_V1BETA1, CNP_V1ALPHA2, ANP_V1ALPHA1], ids=lambda a: f"{a.kind}-{a.version}")
def test_every_rendered_quarantine_is_accepted_as_written_by_the_real_api_server(
        crd_cluster: KubeControlPlane, api: AdminApi) -> None:
    custom = client.CustomObjectsApi(crd_cluster.api_client())
    exceptions = (Rule((Peer("purpose", "monitoring", "*"),), (PortSpec("TCP", 9090),)),
                  Rule((Peer("namespace", "ops"),), (PortSpec("UDP", 7000, 7010),)))
    cases = [(quarantine_intent("shop", "shop.deploy.api", "i-0", exceptions), DnsTarget.from_selector(
                 "kube-system", {"k8s-app": "kube-dns"})),
             (workload_quarantine_intent("shop", "shop.deploy.api"), DnsTarget())]
    for intent, dns in cases:
        name = f"{admin_quarantine_name('shop', intent.instance, intent.identity)}-{api.version}"
        manifest = render_admin_quarantine(intent, PolicyMeta(name, names.REASON_QUARANTINE), dns, api)
        created = custom.create_cluster_custom_object(GROUP, api.version, api.plural, manifest)
        assert created["spec"] == manifest["spec"]  # nothing pruned, defaulted or refused
        custom.delete_cluster_custom_object(GROUP, api.version, api.plural, name)


@pytest.mark.timeout(600)  # two reconciler start-ups on a second control plane; the shared machine is slow
def test_the_reconciler_quarantines_with_a_cluster_network_policy_and_cleans_up_with_the_pod_and_after_restart(
        crd_cluster: KubeControlPlane) -> None:
    api_client = crd_cluster.api_client()
    core, net, custom = client.CoreV1Api(api_client), client.NetworkingV1Api(api_client), client.CustomObjectsApi(api_client)
    ns = f"shop-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns, "labels": {names.LABEL_INJECT: names.INJECT_ENABLED},
                                        "annotations": {names.ANNOTATION_MODE: names.MODE_ENFORCE}}})
    wait_for(lambda: core.list_namespaced_service_account(ns).items, f"default ServiceAccount in {ns}")
    for name, labels in (("web", {"app": "web"}), ("api", {"app": "api"}), ("db", {"app": "db"})):
        core.create_namespaced_pod(ns, {"metadata": {"name": name, "labels": labels},
                                        "spec": {"containers": [{"name": "app", "image": "nginx",
                                                                 "ports": [{"containerPort": 8080}]}]}})
    net.create_namespaced_network_policy(ns, {"metadata": {"name": "allow-web"}, "spec": {
        "podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 8080}]}]}})

    def start() -> ReconcilerRuntime:
        settings = RuntimeSettings(ControllerSettings(cleanup_grace_seconds=3600, default_mode=names.MODE_ENFORCE,
                                                      write_rate_per_second=100, write_burst=100),
                                   tick_seconds=0.2, sync_timeout_seconds=30, watch_timeout_seconds=10)
        kube = KubeClient(api_client, RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.5, request_timeout=10.0))
        core_config = CoreConfig(default_mode=names.MODE_ENFORCE, blast_max_pod_fraction=1.0)  # 3 pods, 2 quarantines
        return ReconcilerRuntime(kube, settings, core_config, backoff=Backoff(0.05, 0.5)).start()

    def instance(pod: str) -> str:
        return wait_for(lambda: (core.read_namespaced_pod(pod, ns).metadata.labels or {}).get(names.LABEL_INSTANCE),
                        f"{pod} labelled")

    runtime = start()
    try:
        assert runtime.controller.admin is not None and runtime.controller.admin.api == CNP_V1BETA1
        api_name = admin_quarantine_name(ns, instance("api"), f"{ns}.pod.api")
        wait_for(lambda: runtime.index.policy(ns, "netwarden-pod-api"), "api's baseline")
        quarantine_by_alert(runtime, "api", namespace=ns)
        held = objects(custom, CNP_V1BETA1)[api_name]
        assert held["spec"]["tier"] == "Admin"
        assert held["spec"]["subject"] == {"pods": {
            "namespaceSelector": {"matchLabels": {names.LABEL_NAMESPACE_NAME: ns}},
            "podSelector": {"matchLabels": {names.LABEL_INSTANCE: instance("api")}}}}
        assert api_name in objects(custom, CNP_V1ALPHA2)  # the same object, served in v1alpha2 too
        pods = {p.metadata.name: PodInfo(ns, p.metadata.name, p.metadata.labels or {}, f"10.0.0.{i + 1}")
                for i, p in enumerate(core.list_namespaced_pod(ns).items)}
        to_dict = api_client.sanitize_for_serialization
        verdict = PolicySet([to_dict(p) for p in net.list_namespaced_network_policy(ns).items] + [held],
                            [NamespaceInfo(ns)]).explain(pods["web"], pods["api"], 8080)
        assert not verdict.allowed and "Admin tier" in verdict.ingress.note
        core.delete_namespaced_pod("api", ns, grace_period_seconds=0)
        wait_for(lambda: api_name not in objects(custom, CNP_V1BETA1), "api's quarantine removed with its pod")
        quarantine_by_alert(runtime, "db", namespace=ns)
        db_name = admin_quarantine_name(ns, instance("db"), f"{ns}.pod.db")
        assert db_name in objects(custom, CNP_V1BETA1)
    finally:
        runtime.stop()
    core.delete_namespaced_pod("db", ns, grace_period_seconds=0)  # while no reconciler runs
    runtime = start()  # a new leader collects the orphan
    try:
        wait_for(lambda: db_name not in objects(custom, CNP_V1BETA1), "orphaned quarantine collected at start-up")
    finally:
        runtime.stop()
        core.delete_namespace(ns)
