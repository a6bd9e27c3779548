"""API semantics any Kubernetes API server has, checked through the official client."""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest
from kubernetes import client, watch

from conformance_cluster import Cluster, pod_body

from tests.support.waiting import wait_for


def status_of(exc: client.ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


def gone(fn: Callable[[], Any]) -> bool:
    try:
        fn()
    except client.ApiException as exc:
        return exc.status == 404
    return False


def test_discovery_lists_core_and_group_resources(cluster: Cluster) -> None:
    api = client.ApisApi(cluster.api_client())
    groups = {g.name for g in api.get_api_versions().groups}
    assert {"apps", "batch", "networking.k8s.io", "coordination.k8s.io", "policy",
            "admissionregistration.k8s.io", "rbac.authorization.k8s.io", "events.k8s.io"} <= groups
    core = client.CoreV1Api(cluster.api_client()).get_api_resources()
    pods = next(r for r in core.resources if r.name == "pods")
    assert pods.namespaced and pods.kind == "Pod" and "watch" in pods.verbs
    assert any(r.name == "pods/status" for r in core.resources)
    netpol = client.NetworkingV1Api(cluster.api_client()).get_api_resources()
    assert any(r.name == "networkpolicies" and r.kind == "NetworkPolicy" for r in netpol.resources)
    assert client.VersionApi(cluster.api_client()).get_code().major == "1"


def test_namespace_gets_metadata_name_label(core: client.CoreV1Api, namespace: str) -> None:
    ns = core.read_namespace(namespace)
    assert ns.metadata.labels["kubernetes.io/metadata.name"] == namespace
    assert ns.status.phase == "Active"


def test_create_fills_uid_timestamp_rv_and_pod_defaults(core: client.CoreV1Api, namespace: str) -> None:
    pod = core.create_namespaced_pod(namespace, pod_body("web"))
    assert pod.metadata.uid and pod.metadata.creation_timestamp and pod.metadata.resource_version
    assert pod.metadata.namespace == namespace
    assert pod.status.phase == "Pending"
    assert pod.spec.service_account_name == "default"
    assert pod.spec.restart_policy == "Always"


def test_generate_name_appends_a_random_suffix(core: client.CoreV1Api, namespace: str) -> None:
    body = pod_body("")
    body["metadata"] = {"generateName": "worker-"}
    a = core.create_namespaced_pod(namespace, body)
    b = core.create_namespaced_pod(namespace, body)
    assert a.metadata.name.startswith("worker-") and len(a.metadata.name) == len("worker-") + 5
    assert a.metadata.name != b.metadata.name


def test_resource_versions_increase_across_types(core: client.CoreV1Api, namespace: str) -> None:
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "a"}, "data": {"k": "v"}})
    pod = core.create_namespaced_pod(namespace, pod_body("p"))
    assert int(pod.metadata.resource_version) > int(cm.metadata.resource_version)


def test_duplicate_create_is_409_already_exists(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "dup"}})
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "dup"}})
    body = status_of(err.value)
    assert err.value.status == 409 and body["reason"] == "AlreadyExists" and body["kind"] == "Status"
    assert body["message"] == 'configmaps "dup" already exists'


def test_get_missing_is_404_not_found_status(core: client.CoreV1Api, namespace: str) -> None:
    with pytest.raises(client.ApiException) as err:
        core.read_namespaced_pod("nope", namespace)
    body = status_of(err.value)
    assert err.value.status == 404 and body["reason"] == "NotFound" and body["status"] == "Failure"
    assert body["message"] == 'pods "nope" not found'


def test_body_namespace_disagreeing_with_url_is_400(core: client.CoreV1Api, namespace: str) -> None:
    body = {"metadata": {"name": "x", "namespace": "kube-system"}}
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_config_map(namespace, body)
    assert err.value.status == 400 and status_of(err.value)["reason"] == "BadRequest"


def test_create_in_missing_namespace_is_404(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_config_map("does-not-exist-ns", {"metadata": {"name": "x"}})
    assert err.value.status == 404


def test_list_carries_resource_version_and_filters_by_label_selector(core: client.CoreV1Api,
                                                                     namespace: str) -> None:
    core.create_namespaced_pod(namespace, pod_body("a", {"app": "web", "tier": "front"}))
    core.create_namespaced_pod(namespace, pod_body("b", {"app": "db"}))
    core.create_namespaced_pod(namespace, pod_body("c", {"app": "cache", "tier": "back"}))

    def names(selector: str) -> list[str]:
        return sorted(p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector=selector).items)

    assert core.list_namespaced_pod(namespace).metadata.resource_version
    assert names("app=web") == ["a"]
    assert names("app==db") == ["b"]
    assert names("app!=web") == ["b", "c"]
    assert names("app in (web,db)") == ["a", "b"]
    assert names("app notin (web,db)") == ["c"]
    assert names("tier") == ["a", "c"]
    assert names("!tier") == ["b"]
    assert names("tier,app=cache") == ["c"]


def test_invalid_label_selector_is_400(core: client.CoreV1Api, namespace: str) -> None:
    with pytest.raises(client.ApiException) as err:
        core.list_namespaced_pod(namespace, label_selector="app in web")
    assert err.value.status == 400


def test_field_selectors_on_name_namespace_phase_and_node(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, pod_body("a", nodeName="node-1"))
    core.create_namespaced_pod(namespace, pod_body("b"))
    names = lambda sel: sorted(p.metadata.name for p in core.list_namespaced_pod(namespace, field_selector=sel).items)  # noqa: E731
    assert names("metadata.name=b") == ["b"]
    assert names(f"metadata.namespace={namespace}") == ["a", "b"]
    assert names("spec.nodeName=node-1") == ["a"]
    assert names("status.phase=Pending") == ["a", "b"]
    assert names("status.phase!=Pending") == []


def test_list_limit_and_continue_pages_through_everything(core: client.CoreV1Api, namespace: str) -> None:
    wait_for(lambda: root_ca_config_map(core, namespace))  # the namespace's own ConfigMap pages along
    for i in range(5):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"cm-{i}"}})
    first = core.list_namespaced_config_map(namespace, limit=2)
    assert len(first.items) == 2 and first.metadata._continue
    seen = [c.metadata.name for c in first.items]
    token = first.metadata._continue
    while token:
        page = core.list_namespaced_config_map(namespace, limit=2, _continue=token)
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
    assert sorted(seen) == sorted([f"cm-{i}" for i in range(5)] + ["kube-root-ca.crt"])


def test_replace_with_stale_resource_version_is_409_conflict(core: client.CoreV1Api, namespace: str) -> None:
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "c"}, "data": {"v": "1"}})
    cm.data = {"v": "2"}
    core.replace_namespaced_config_map("c", namespace, cm)
    cm.data = {"v": "3"}
    with pytest.raises(client.ApiException) as err:
        core.replace_namespaced_config_map("c", namespace, cm)
    assert err.value.status == 409 and status_of(err.value)["reason"] == "Conflict"


def test_replace_without_resource_version_is_unconditional(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "c"}, "data": {"v": "1"}})
    core.patch_namespaced_config_map("c", namespace, {"data": {"v": "2"}})
    out = core.replace_namespaced_config_map("c", namespace, {"metadata": {"name": "c"}, "data": {"v": "3"}})
    assert out.data == {"v": "3"}


def test_generation_bumps_on_spec_change_only(cluster: Cluster, namespace: str) -> None:
    net = client.NetworkingV1Api(cluster.api_client())
    np = net.create_namespaced_network_policy(namespace, {"metadata": {"name": "np"}, "spec": {"podSelector": {}}})
    assert np.metadata.generation == 1
    np = net.patch_namespaced_network_policy("np", namespace, {"metadata": {"labels": {"x": "y"}}})
    assert np.metadata.generation == 1
    np = net.patch_namespaced_network_policy("np", namespace, {"spec": {"podSelector": {"matchLabels": {"a": "b"}}}})
    assert np.metadata.generation == 2


def test_pod_status_subresource_keeps_spec_but_takes_metadata(core: client.CoreV1Api, namespace: str) -> None:
    """pods/status resets spec (and ownerReferences) to the stored values; labels do go through, as
    upstream's podStatusStrategy lets them (kubelets relied on it)."""
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    core.create_namespaced_pod(namespace, pod_body("p", {"a": "1"}))
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    out = core.patch_namespaced_pod_status("p", namespace, {"status": {"phase": "Running", "podIP": "10.0.0.7"},
                                                            "spec": {"activeDeadlineSeconds": 5},
                                                            "metadata": {"labels": {"a": "2"},
                                                                         "ownerReferences": [ref]}})
    assert out.status.phase == "Running" and out.status.pod_ip == "10.0.0.7"
    assert out.metadata.labels == {"a": "2"}
    assert out.spec.active_deadline_seconds is None and not out.metadata.owner_references
    ignored = core.patch_namespaced_pod("p", namespace, {"status": {"phase": "Failed"},
                                                         "metadata": {"labels": {"a": "3"}}})
    assert ignored.status.phase == "Running" and ignored.metadata.labels == {"a": "3"}
    fresh = core.read_namespaced_pod("p", namespace)
    fresh.status.phase = "Succeeded"
    assert core.replace_namespaced_pod_status("p", namespace, fresh).status.phase == "Succeeded"


def test_json_patch_merge_patch_and_strategic_merge(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, pod_body("p", {"a": "1"}))
    out = core.patch_namespaced_pod("p", namespace, [{"op": "add", "path": "/metadata/labels/b", "value": "2"}])
    assert out.metadata.labels == {"a": "1", "b": "2"}
    out = core.patch_namespaced_pod("p", namespace, {"metadata": {"labels": {"a": None}}},
                                    _content_type="application/merge-patch+json")
    assert out.metadata.labels == {"b": "2"}
    out = core.patch_namespaced_pod("p", namespace, {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}})
    assert [(c.name, c.image) for c in out.spec.containers] == [("app", "nginx:2")]
    assert out.spec.containers[0].termination_message_path == "/dev/termination-log"


def test_strategic_merge_merges_owner_references_and_finalizers(core: client.CoreV1Api, namespace: str) -> None:
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "c", "finalizers": ["a.io/x"],
                                                               "ownerReferences": [ref]}})
    owner2 = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner2"}})
    ref2 = {**ref, "name": "owner2", "uid": owner2.metadata.uid}
    out = core.patch_namespaced_config_map("c", namespace, {"metadata": {"finalizers": ["b.io/y"],
                                                                         "ownerReferences": [ref2]}})
    # apimachinery's order: items the live list never had come first, then the live ones
    assert out.metadata.finalizers == ["b.io/y", "a.io/x"]
    assert [r.name for r in out.metadata.owner_references] == ["owner2", "owner"]
    out = core.patch_namespaced_config_map("c", namespace, {"metadata": {"finalizers": ["a.io/x", "c.io/z"]}})
    assert out.metadata.finalizers == ["b.io/y", "a.io/x", "c.io/z"]
    core.patch_namespaced_config_map("c", namespace, [{"op": "remove", "path": "/metadata/finalizers"}])


def test_strategic_merge_keeps_live_order_of_keyed_items(cluster: Cluster, namespace: str) -> None:
    apps = client.AppsV1Api(cluster.api_client())
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": "d"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "d"}},
                 "template": {"metadata": {"labels": {"app": "d"}},
                              "spec": {"containers": [{"name": n, "image": "nginx:1"} for n in "abc"]}}}})
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"},
                                                           {"name": "new", "image": "nginx:2"},
                                                           {"name": "a", "image": "nginx:2"}]}}}}
    out = apps.patch_namespaced_deployment("d", namespace, patch)
    # patch items keep the patch's order; a live-only item goes before a patch item the live list put after it
    assert [(c.name, c.image) for c in out.spec.template.spec.containers] == [
        ("b", "nginx:1"), ("c", "nginx:2"), ("new", "nginx:2"), ("a", "nginx:2")]


def test_json_patch_with_field_manager_records_the_manager(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "c"}, "data": {"a": "1"}})
    out = core.patch_namespaced_config_map("c", namespace, [{"op": "add", "path": "/data/b", "value": "2"}],
                                           field_manager="netwarden-certs")
    assert out.data == {"a": "1", "b": "2"}
    entry = next(m for m in out.metadata.managed_fields if m.manager == "netwarden-certs")
    assert entry.operation == "Update" and "f:b" in entry.fields_v1["f:data"]


def test_merge_patch_replaces_lists(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "c", "finalizers": ["a.io/x"]}})
    out = core.patch_namespaced_config_map("c", namespace, {"metadata": {"finalizers": ["b.io/y"]}},
                                           _content_type="application/merge-patch+json")
    assert out.metadata.finalizers == ["b.io/y"]
    core.patch_namespaced_config_map("c", namespace, {"metadata": {"finalizers": None}},
                                     _content_type="application/merge-patch+json")


def test_server_side_apply_creates_then_merges(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api_client())
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}}
    made = core.patch_namespaced_config_map("applied", namespace, body, field_manager="netwarden",
                                            _content_type="application/apply-patch+yaml")
    assert made.data == {"a": "1"}
    assert any(m.manager == "netwarden" and m.operation == "Apply" for m in made.metadata.managed_fields)
    body["data"] = {"a": "2"}
    again = core.patch_namespaced_config_map("applied", namespace, body, field_manager="netwarden",
                                             _content_type="application/apply-patch+yaml")
    assert again.data == {"a": "2"}


def test_finalizers_keep_object_until_removed(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "f", "finalizers": ["example.com/hold"]}})
    core.delete_namespaced_config_map("f", namespace)
    held = core.read_namespaced_config_map("f", namespace)
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("f", namespace, {"metadata": {"finalizers": None}},
                                     _content_type="application/merge-patch+json")
    assert wait_for(lambda: gone(lambda: core.read_namespaced_config_map("f", namespace)))


def test_owner_deletion_garbage_collects_dependents(cluster: Cluster, namespace: str) -> None:
    apps = client.AppsV1Api(cluster.api_client())
    core = client.CoreV1Api(cluster.api_client())
    rs = apps.create_namespaced_replica_set(namespace, {
        "metadata": {"name": "rs"},
        "spec": {"selector": {"matchLabels": {"app": "x"}},
                 "template": {"metadata": {"labels": {"app": "x"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": rs.metadata.uid,
           "controller": True, "blockOwnerDeletion": True}
    body = pod_body("rs-pod", {"app": "x"})  # a ReplicaSet controller releases pods its selector misses
    body["metadata"]["ownerReferences"] = [ref]
    core.create_namespaced_pod(namespace, body)
    apps.delete_namespaced_replica_set("rs", namespace, propagation_policy="Background")
    assert wait_for(lambda: gone(lambda: core.read_namespaced_pod("rs-pod", namespace)))


def test_orphan_propagation_keeps_dependents_without_the_owner_ref(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api_client())
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "dep", "ownerReferences": [ref]}})
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Orphan")
    assert wait_for(lambda: gone(lambda: core.read_namespaced_config_map("owner", namespace)))
    assert not core.read_namespaced_config_map("dep", namespace).metadata.owner_references


def test_deleting_a_namespace_deletes_its_contents(core: client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "c"}})
    core.create_namespaced_pod("doomed", pod_body("p"))
    core.delete_namespace("doomed")
    assert wait_for(lambda: gone(lambda: core.read_namespace("doomed")))
    assert wait_for(lambda: gone(lambda: core.read_namespaced_pod("p", "doomed")))


def test_invalid_names_and_labels_are_422_with_causes(core: client.CoreV1Api, namespace: str) -> None:
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "Bad_Name",
                                                                   "labels": {"ok": "x" * 64}}})
    body = status_of(err.value)
    assert err.value.status == 422 and body["reason"] == "Invalid"
    fields = {c["field"] for c in body["details"]["causes"]}
    assert fields == {"metadata.name", "metadata.labels"}
    assert body["message"].startswith('ConfigMap "Bad_Name" is invalid: [')


def test_pod_without_containers_or_bad_port_is_invalid(core: client.CoreV1Api, namespace: str) -> None:
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_pod(namespace, {"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "nginx", "ports": [{"containerPort": 70000}]}]}})
    causes = status_of(err.value)["details"]["causes"]
    assert causes == [{"reason": "FieldValueInvalid", "field": "spec.containers[0].ports[0].containerPort",
                       "message": "Invalid value: 70000: must be between 1 and 65535, inclusive"}]


def _netpol(spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "np"}, "spec": {"podSelector": {}, **spec}}


@pytest.mark.parametrize("spec, field", [
    ({"policyTypes": ["Sideways"]}, "spec.policyTypes[0]"),
    ({"ingress": [{"ports": [{"protocol": "ICMP", "port": 80}]}]}, "spec.ingress[0].ports[0].protocol"),
    ({"ingress": [{"ports": [{"port": 8080, "endPort": 80}]}]}, "spec.ingress[0].ports[0].endPort"),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}, "spec.egress[0].to[0].ipBlock.cidr"),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}}]}]},
     "spec.egress[0].to[0].ipBlock.except[0]"),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]}, "spec.ingress[0].from[0]"),
])
def test_invalid_network_policies_are_422(cluster: Cluster, namespace: str, spec: dict[str, Any],
                                         field: str) -> None:
    net = client.NetworkingV1Api(cluster.api_client())
    with pytest.raises(client.ApiException) as err:
        net.create_namespaced_network_policy(namespace, _netpol(spec))
    assert err.value.status == 422
    assert field in {c["field"] for c in status_of(err.value)["details"]["causes"]}


def test_valid_network_policy_round_trips(cluster: Cluster, namespace: str) -> None:
    net = client.NetworkingV1Api(cluster.api_client())
    out = net.create_namespaced_network_policy(namespace, _netpol({
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"a": "b"}}, "podSelector": {}}],
                     "ports": [{"port": 8000, "endPort": 8080, "protocol": "TCP"}]}],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                    "ports": [{"port": "dns", "protocol": "UDP"}]}]}))
    assert out.spec.egress[0].to[0].ip_block.var_except == ["10.1.0.0/16"]


def test_network_policy_empty_lists_and_label_maps_are_omitted(cluster: Cluster, namespace: str) -> None:
    """Go's omitempty: a spec written with `ingress: []` comes back without the key (anything that
    hashes or compares the spec it wrote must expect that), while empty selectors and rules stay."""
    net = client.NetworkingV1Api(cluster.api_client())
    net.create_namespaced_network_policy(namespace, {"metadata": {"name": "np"}, "spec": {
        "podSelector": {"matchLabels": {"a": "b"}, "matchExpressions": []}, "policyTypes": ["Ingress", "Egress"],
        "ingress": [], "egress": [{}, {"to": [{"podSelector": {}, "namespaceSelector": {"matchLabels": {}}}],
                                       "ports": [{"protocol": "UDP", "port": 53}]}]}})
    raw = json.loads(net.read_namespaced_network_policy("np", namespace, _preload_content=False).data)
    assert raw["spec"] == {"podSelector": {"matchLabels": {"a": "b"}}, "policyTypes": ["Ingress", "Egress"],
                           "egress": [{}, {"to": [{"podSelector": {}, "namespaceSelector": {}}],
                                           "ports": [{"protocol": "UDP", "port": 53}]}]}


def test_dry_run_create_persists_nothing(core: client.CoreV1Api, namespace: str) -> None:
    made = core.create_namespaced_config_map(namespace, {"metadata": {"name": "dry"}}, dry_run="All")
    assert made.metadata.name == "dry"
    assert gone(lambda: core.read_namespaced_config_map("dry", namespace))


def test_watch_streams_added_modified_deleted(core: client.CoreV1Api, namespace: str) -> None:
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "w"}})
    core.patch_namespaced_config_map("w", namespace, {"data": {"a": "1"}})
    core.delete_namespaced_config_map("w", namespace)
    events = []
    for ev in watch.Watch().stream(core.list_namespaced_config_map, namespace, resource_version=rv,
                                   timeout_seconds=2):
        if ev["object"].metadata.name != "w":
            continue  # kube-root-ca.crt is published into new namespaces asynchronously, on both engines
        events.append((ev["type"], ev["object"].metadata.name))
        if len(events) == 3:
            break
    assert events == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_watch_from_zero_starts_with_synthetic_added(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "pre"}})
    wait_for(lambda: root_ca_config_map(core, namespace))
    w = watch.Watch()
    seen = []
    for ev in w.stream(core.list_namespaced_config_map, namespace, resource_version="0", timeout_seconds=2):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 2:
            w.stop()
    assert sorted(seen) == [("ADDED", "kube-root-ca.crt"), ("ADDED", "pre")]


def root_ca_config_map(core: client.CoreV1Api, namespace: str) -> Any:
    items = core.list_namespaced_config_map(namespace, field_selector="metadata.name=kube-root-ca.crt").items
    return items[0] if items else None


def test_every_namespace_gets_the_root_ca_config_map_back(core: client.CoreV1Api, namespace: str) -> None:
    cm = wait_for(lambda: root_ca_config_map(core, namespace))
    assert cm.data["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
    assert cm.metadata.annotations["kubernetes.io/description"].startswith("Contains a CA bundle")
    core.patch_namespaced_config_map("kube-root-ca.crt", namespace, {"data": {"ca.crt": "tampered"}})
    assert wait_for(lambda: root_ca_config_map(core, namespace).data["ca.crt"] == cm.data["ca.crt"])
    core.delete_namespaced_config_map("kube-root-ca.crt", namespace)
    assert wait_for(lambda: (root_ca_config_map(core, namespace) or cm).metadata.uid != cm.metadata.uid)


def test_deployment_status_subresource_keeps_labels(cluster: Cluster, namespace: str) -> None:
    apps = client.AppsV1Api(cluster.api_client())
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": "d", "labels": {"a": "1"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "d"}},
                 "template": {"metadata": {"labels": {"app": "d"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    out = apps.patch_namespaced_deployment_status("d", namespace, {"metadata": {"labels": {"a": "2"},
                                                                                "annotations": {"n": "1"}},
                                                                   "status": {"observedGeneration": 7}})
    assert out.metadata.labels == {"a": "1"} and out.metadata.annotations["n"] == "1"
    assert out.status.observed_generation == 7


def test_watch_applies_label_selector_transitions(core: client.CoreV1Api, namespace: str) -> None:
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "x", "labels": {"sel": "no"}}})
    core.patch_namespaced_config_map("x", namespace, {"metadata": {"labels": {"sel": "yes"}}})
    core.patch_namespaced_config_map("x", namespace, {"metadata": {"labels": {"sel": "no"}}})
    events = []
    for ev in watch.Watch().stream(core.list_namespaced_config_map, namespace, resource_version=rv,
                                   label_selector="sel=yes", timeout_seconds=2):
        events.append(ev["type"])
        if len(events) == 2:
            break
    assert events == ["ADDED", "DELETED"]


def test_watch_timeout_ends_the_stream(core: client.CoreV1Api, namespace: str) -> None:
    events = list(watch.Watch().stream(core.list_namespaced_secret, namespace, timeout_seconds=1))
    assert events == []


def test_leases_and_webhook_configurations_are_served(cluster: Cluster, namespace: str) -> None:
    coord = client.CoordinationV1Api(cluster.api_client())
    lease = coord.create_namespaced_lease(namespace, {"metadata": {"name": "leader"},
                                                      "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}})
    lease.spec.holder_identity = "b"
    assert coord.replace_namespaced_lease("leader", namespace, lease).spec.holder_identity == "b"
    adm = client.AdmissionregistrationV1Api(cluster.api_client())
    names = [c.metadata.name for c in adm.list_mutating_webhook_configuration().items]
    assert isinstance(names, list)
