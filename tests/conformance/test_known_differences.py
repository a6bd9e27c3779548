"""Where localkube deliberately differs from kube-apiserver (localkube/README.md, "Known differences").

Each test states what each engine does. If localkube learns the real behaviour, its test fails:
change the expectation to the real one, move the test to test_api_conformance.py, and drop the
README entry.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from kubernetes import client

from conformance_cluster import Cluster, pod_body
from tests.support.waiting import wait_for


def test_empty_maps_outside_network_policy_specs_are_kept_locally(cluster: Cluster, namespace: str) -> None:
    """omitempty is modelled for NetworkPolicy specs only: elsewhere `labels: {}` round-trips locally."""
    core = client.CoreV1Api(cluster.api_client())
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "c", "labels": {}, "annotations": {}}})
    meta = core.read_namespaced_config_map("c", namespace).metadata
    expected = {} if cluster.engine == "local" else None
    assert (meta.labels, meta.annotations) == (expected, expected)


def test_server_side_apply_conflicts_between_managers_only_on_the_real_server(cluster: Cluster,
                                                                             namespace: str) -> None:
    """localkube records managers but keeps no field ownership: a second manager's apply just wins."""
    core = client.CoreV1Api(cluster.api_client())
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned"}, "data": {"a": "1"}}
    core.patch_namespaced_config_map("owned", namespace, body, field_manager="first",
                                     _content_type="application/apply-patch+yaml")
    body["data"] = {"a": "2"}
    if cluster.engine == "local":
        out = core.patch_namespaced_config_map("owned", namespace, body, field_manager="second",
                                               _content_type="application/apply-patch+yaml")
        assert out.data == {"a": "2"}
    else:
        with pytest.raises(client.ApiException) as err:
            core.patch_namespaced_config_map("owned", namespace, body, field_manager="second",
                                             _content_type="application/apply-patch+yaml")
        assert err.value.status == 409 and "conflict" in err.value.body.lower()


def test_rbac_and_token_requests_exist_only_on_the_real_server(cluster: Cluster, namespace: str) -> None:
    """A service account's token is refused (403) without a Role on kube; localkube serves no TokenRequest
    and, without `tokens=`, treats every caller as system:admin (no authorization at all)."""
    core = client.CoreV1Api(cluster.api_client())
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    request = {"spec": {"audiences": [], "expirationSeconds": 600}}
    if cluster.engine == "local":
        with pytest.raises(client.ApiException) as missing:
            core.create_namespaced_service_account_token("nobody", namespace, request)
        assert missing.value.status == 404
        token = "any-token-at-all"
    else:
        token = core.create_namespaced_service_account_token("nobody", namespace, request).status.token
    cfg = cluster.api_client().configuration
    as_token = client.Configuration()
    as_token.host, as_token.ssl_ca_cert, as_token.verify_ssl = cfg.host, cfg.ssl_ca_cert, cfg.verify_ssl
    as_token.api_key = {"BearerToken": f"Bearer {token}"}
    as_nobody = client.CoreV1Api(client.ApiClient(as_token))
    if cluster.engine == "local":
        assert as_nobody.list_namespaced_secret("kube-system").kind == "SecretList"
    else:
        with pytest.raises(client.ApiException) as err:
            as_nobody.list_namespaced_secret("kube-system")
        assert err.value.status == 403


def test_a_scheduled_pod_is_deleted_at_once_locally_but_gracefully_on_the_real_server(
        cluster: Cluster, namespace: str) -> None:
    """No graceful termination locally: a pod bound to a node is gone on delete (a kubelet finishes it upstream)."""
    core = client.CoreV1Api(cluster.api_client())
    core.create_namespaced_pod(namespace, pod_body("bound", nodeName="node-1"))
    core.delete_namespaced_pod("bound", namespace)
    if cluster.engine == "local":
        with pytest.raises(client.ApiException) as err:
            core.read_namespaced_pod("bound", namespace)
        assert err.value.status == 404
    else:
        held = core.read_namespaced_pod("bound", namespace)
        assert held.metadata.deletion_timestamp is not None and held.metadata.deletion_grace_period_seconds == 30
        core.delete_namespaced_pod("bound", namespace, grace_period_seconds=0)


def test_core_and_events_api_events_share_storage_only_on_the_real_server(cluster: Cluster,
                                                                          namespace: str) -> None:
    core = client.CoreV1Api(cluster.api_client())
    events = client.EventsV1Api(cluster.api_client())
    core.create_namespaced_event(namespace, {
        "metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": namespace},
        "reason": "Test", "message": "m", "type": "Normal", "source": {"component": "test"}})
    raw = json.loads(events.list_namespaced_event(namespace, _preload_content=False).data)
    seen = [e["metadata"]["name"] for e in raw["items"]]
    assert seen == ([] if cluster.engine == "local" else ["e"])


def test_openapi_is_served_only_by_the_real_server(cluster: Cluster) -> None:
    api = cluster.api_client()
    method, url, headers, body, _ = api.param_serialize("GET", "/openapi/v2", auth_settings=["BearerToken"],
                                                        header_params={"Accept": "application/json"})
    assert api.call_api(method, url, headers, body).status == (404 if cluster.engine == "local" else 200)


def test_deployments_make_replica_sets_only_with_the_real_controllers(cluster: Cluster, namespace: str) -> None:
    """The `cluster` fixture's localkube runs no workload controllers (localkube.workloads is separate)."""
    apps = client.AppsV1Api(cluster.api_client())
    labels = {"app": f"d-{uuid.uuid4().hex[:4]}"}
    apps.create_namespaced_deployment(namespace, {"metadata": {"name": "d"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    if cluster.engine == "local":
        time.sleep(2)  # a negative claim (no controller makes one): the time a controller would have taken
        assert apps.list_namespaced_replica_set(namespace).items == []
    else:
        made = wait_for(lambda: apps.list_namespaced_replica_set(namespace).items, "the ReplicaSet", timeout=30)
        assert len(made) == 1
