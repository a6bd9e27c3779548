"""The audit record: every authenticated request, per user, in the verbs RBAC authorizes."""

from __future__ import annotations

import threading

import requests
from kubernetes import client, watch

from localkube import LocalKube
from localkube.audit import AuditRecord, record_for

ALICE = "system:serviceaccount:team:alice"


def test_every_request_is_recorded_per_user_in_rbac_verbs() -> None:
    with LocalKube(tokens={"admin": "system:admin", "alice": ALICE}) as kube:
        core = client.CoreV1Api(kube.api_client("alice"))
        core.create_namespaced_config_map("default", {"metadata": {"name": "c"}, "data": {"a": "1"}})
        core.read_namespaced_config_map("c", "default")
        core.list_namespaced_config_map("default")
        core.list_config_map_for_all_namespaces()
        core.patch_namespaced_config_map("c", "default", {"data": {"a": "2"}})
        body = core.read_namespaced_config_map("c", "default")
        core.replace_namespaced_config_map("c", "default", body)
        core.read_namespace("default")
        core.delete_namespaced_config_map("c", "default")
        core.delete_collection_namespaced_config_map("default", label_selector="app=none")
        stream = watch.Watch().stream(core.list_namespaced_config_map, "default", label_selector="app=none",
                                      timeout_seconds=1)
        assert list(stream) == []
        client.CoreV1Api(kube.api_client("admin")).read_namespace("kube-system")
        calls = [(r.verb, r.api_group, r.resource, r.namespace, r.name) for r in kube.audit if r.user == ALICE]
        assert calls == [
            ("create", "", "configmaps", "default", ""),
            ("get", "", "configmaps", "default", "c"),
            ("list", "", "configmaps", "default", ""),
            ("list", "", "configmaps", "", ""),
            ("patch", "", "configmaps", "default", "c"),
            ("get", "", "configmaps", "default", "c"),
            ("update", "", "configmaps", "default", "c"),
            ("get", "", "namespaces", "", "default"),
            ("delete", "", "configmaps", "default", "c"),
            ("deletecollection", "", "configmaps", "default", ""),
            ("watch", "", "configmaps", "default", ""),
        ]
        assert [(r.verb, r.resource, r.name) for r in kube.audit if r.user == "system:admin"][-1:] == [
            ("get", "namespaces", "kube-system")]


def test_the_audit_is_served_over_http_and_can_be_cleared() -> None:
    with LocalKube(tokens={"admin": "system:admin", "alice": ALICE}) as kube:
        client.CoordinationV1Api(kube.api_client("alice")).create_namespaced_lease(
            "default", {"metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}})
        headers = {"Authorization": "Bearer admin"}
        items = requests.get(f"{kube.url}/_localkube/audit", headers=headers, timeout=10).json()["items"]
        assert {"user": ALICE, "verb": "create", "api_group": "coordination.k8s.io", "resource": "leases",
                "subresource": "", "namespace": "default", "name": "",
                "path": "/apis/coordination.k8s.io/v1/namespaces/default/leases"} in items
        assert requests.delete(f"{kube.url}/_localkube/audit", headers=headers, timeout=10).status_code == 200
        assert kube.audit == []


def test_unauthenticated_requests_are_refused_and_not_recorded() -> None:
    with LocalKube(tokens={"alice": ALICE}) as kube:
        response = requests.get(f"{kube.url}/api/v1/namespaces", headers={"Authorization": "Bearer wrong"}, timeout=10)
        assert response.status_code == 401
        assert kube.audit == []


def test_subresources_namespaces_and_discovery_are_attributed_as_the_authorizer_does() -> None:
    assert record_for("u", "PUT", "/api/v1/namespaces/shop/pods/web/status", {}) == AuditRecord(
        "u", "update", "", "pods", "status", "shop", "web", "/api/v1/namespaces/shop/pods/web/status")
    assert record_for("u", "GET", "/api/v1/namespaces/shop/status", {}).resource == "namespaces"
    assert record_for("u", "GET", "/api/v1/namespaces/shop/status", {}).subresource == "status"
    assert record_for("u", "GET", "/api/v1/namespaces", {"watch": "true"}).verb == "watch"
    assert record_for("u", "PATCH", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/m", {}) \
        == AuditRecord("u", "patch", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "", "m",
                       "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/m")
    discovery = record_for("u", "GET", "/apis/apps/v1", {})
    assert (discovery.resource, discovery.verb, discovery.path) == ("", "get", "/apis/apps/v1")


def test_concurrent_requests_are_all_recorded() -> None:
    with LocalKube() as kube:
        core = client.CoreV1Api(kube.api_client())

        def reads() -> None:
            for _ in range(20):
                core.read_namespace("default")

        threads = [threading.Thread(target=reads) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(1 for r in kube.audit if r.resource == "namespaces" and r.verb == "get") == 80
