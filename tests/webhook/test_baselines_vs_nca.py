"""Independent check: the baselines the webhook writes allow exactly what pods declared, per
IBM's network-config-analyzer (nca), a tool we did not write.

Pods go through the real admission core (decide_admission + the JSONPatch it returns), so the
labels the policies select on are the labels the pods actually get.
"""

from __future__ import annotations

from typing import Any

import pytest

from netwarden.model import names, patches
from netwarden.model.identity import OwnerRef
from netwarden.model.labels import NamespaceFacts
from netwarden.model.policy import DnsTarget
from tests.support.nca import nca_available, nca_connectivity
from netwarden.model.admission import AdmissionSettings
from netwarden.webhook.admission import decide_admission

pytestmark = pytest.mark.skipif(not nca_available(), reason="nca (network-config-analyzer) is not installed")

SETTINGS = AdmissionSettings(dns=DnsTarget.from_selector("kube-system", {"k8s-app": "kube-dns"}))
OPTED_IN = {names.LABEL_INJECT: names.INJECT_ENABLED}


def admit(namespace: str, pod_name: str, owner: tuple[str, str], annotations: dict[str, str],
          ports: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the admitted pod, its workload's baseline) from one pod CREATE through the core."""
    kind, workload = owner
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": pod_name, "namespace": namespace, "annotations": annotations,
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": kind, "name": workload,
                                             "uid": f"{workload}-uid", "controller": True}]},
           "spec": {"containers": [{"name": "main", "image": "example", "ports": ports}]}}
    request = {"uid": pod_name, "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": namespace,
               "operation": "CREATE", "object": pod,
               "userInfo": {"username": "system:serviceaccount:kube-system:statefulset-controller"}}
    parents: dict[tuple[str, str], list[OwnerRef]] = {(kind, workload): []}
    decision = decide_admission(request, NamespaceFacts(namespace, OPTED_IN), parents, f"{pod_name}-i", SETTINGS)
    assert decision.policy_manifest is not None and not decision.warnings
    return patches.apply(pod, decision.patch), decision.policy_manifest


def plain_pod(namespace: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": "example", "ports": [{"containerPort": 80}]}]}}


@pytest.fixture(scope="module")
def connectivity() -> Any:
    web, web_policy = admit("shop", "web-1", ("StatefulSet", "web"),
                            {names.ANNOTATION_PURPOSE: "frontend", names.ANNOTATION_ALLOW_TO: "purpose=backend:9000"},
                            [{"containerPort": 8080}])
    api, api_policy = admit("shop", "api-1", ("StatefulSet", "api"),
                            {names.ANNOTATION_PURPOSE: "backend", names.ANNOTATION_ALLOW_FROM: "purpose=frontend",
                             names.ANNOTATION_ALLOW_TO: "purpose=database@data:5432"},
                            [{"containerPort": 9000}])
    db, db_policy = admit("data", "db-0", ("StatefulSet", "db"),
                          {names.ANNOTATION_PURPOSE: "database", names.ANNOTATION_ALLOW_FROM: "purpose=backend@shop"},
                          [{"containerPort": 5432}])
    pods = [web, api, db, plain_pod("kube-system", "dns-1", {"k8s-app": "kube-dns"}),
            plain_pod("other", "stranger", {names.LABEL_PURPOSE: "frontend"})]
    return nca_connectivity(pods, [], [web_policy, api_policy, db_policy])


def test_declared_peers_are_allowed_on_the_declared_ports(connectivity: Any) -> None:
    assert connectivity.allows("shop/web-1", "shop/api-1", 9000, "TCP")
    assert connectivity.allows("shop/api-1", "data/db-0", 5432, "TCP")


def test_undeclared_ports_and_peers_are_denied(connectivity: Any) -> None:
    assert not connectivity.allows("shop/web-1", "shop/api-1", 8080, "TCP")
    assert not connectivity.allows("shop/web-1", "data/db-0", 5432, "TCP")
    assert not connectivity.allows("shop/api-1", "shop/web-1", 8080, "TCP")
    assert not connectivity.allows("shop/web-1", "other/stranger", 80, "TCP")
    assert not connectivity.allows("shop/api-1", "203.0.113.9", 443, "TCP")


def test_a_same_purpose_pod_in_another_namespace_is_not_a_declared_peer(connectivity: Any) -> None:
    # allow-from "purpose=frontend" without @namespace means the workload's own namespace.
    assert not connectivity.allows("other/stranger", "shop/api-1", 9000, "TCP")


def test_dns_to_the_cluster_dns_pods_is_allowed_and_nothing_else_there(connectivity: Any) -> None:
    for pod in ("shop/web-1", "shop/api-1", "data/db-0"):
        assert connectivity.allows(pod, "kube-system/dns-1", 53, "UDP")
        assert connectivity.allows(pod, "kube-system/dns-1", 53, "TCP")
        assert not connectivity.allows(pod, "kube-system/dns-1", 80, "TCP")
