"""CustomResourceDefinitions: installing one makes its resources served and discoverable, as upstream.

Uses the real network-policy-api CRDs (tests/data/crds): netwarden detects its quarantine backend from
discovery, so the local engine must reveal ClusterNetworkPolicy only once its CRD is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from localkube import LocalKube
from tests.support.waiting import wait_for

CRDS = Path(__file__).resolve().parents[1] / "data" / "crds"
GROUP = "policy.networking.k8s.io"


def crd(file: str) -> dict[str, Any]:
    return yaml.safe_load((CRDS / file).read_text())


def cnp(name: str, tier: str = "Admin") -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1beta1", "kind": "ClusterNetworkPolicy", "metadata": {"name": name},
            "spec": {"tier": tier, "priority": 10, "subject": {"namespaces": {}},
                     "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}}


@pytest.fixture()
def kube() -> Any:
    with LocalKube() as server:
        yield server


def test_installing_a_crd_serves_its_versions_and_deleting_it_removes_them_and_their_objects(kube: LocalKube) -> None:
    api = kube.api_client()
    ext, custom = client.ApiextensionsV1Api(api), client.CustomObjectsApi(api)
    groups = lambda: {g["name"]: [v["version"] for v in g["versions"]]  # noqa: E731
                      for g in requests.get(f"{kube.url}/apis", timeout=5).json()["groups"]}
    assert GROUP not in groups()
    assert requests.get(f"{kube.url}/apis/{GROUP}/v1beta1", timeout=5).status_code == 404

    ext.create_custom_resource_definition(crd("clusternetworkpolicies-v0.3.0-standard.yaml"))
    ext.create_custom_resource_definition(crd("adminnetworkpolicies-v0.1.7-standard.yaml"))
    assert groups()[GROUP] == ["v1beta1", "v1alpha2", "v1alpha1"]  # Kubernetes' version priority
    listed = requests.get(f"{kube.url}/apis/{GROUP}/v1beta1", timeout=5).json()["resources"]
    assert {r["name"]: r["namespaced"] for r in listed} == {"clusternetworkpolicies": False,
                                                           "clusternetworkpolicies/status": False}

    created = custom.create_cluster_custom_object(GROUP, "v1beta1", "clusternetworkpolicies", cnp("q"))
    assert created["metadata"]["uid"] and created["metadata"]["generation"] == 1
    # One object, served in every version the CRD serves (apiVersion follows the URL).
    assert custom.get_cluster_custom_object(GROUP, "v1alpha2", "clusternetworkpolicies", "q")["apiVersion"] \
        == f"{GROUP}/v1alpha2"
    items = custom.list_cluster_custom_object(GROUP, "v1beta1", "clusternetworkpolicies",
                                              label_selector="")["items"]
    assert [i["metadata"]["name"] for i in items] == ["q"] and items[0]["apiVersion"] == f"{GROUP}/v1beta1"

    ext.delete_custom_resource_definition("clusternetworkpolicies.policy.networking.k8s.io")
    assert groups()[GROUP] == ["v1alpha1"]
    with pytest.raises(ApiException) as gone:
        custom.get_cluster_custom_object(GROUP, "v1beta1", "clusternetworkpolicies", "q")
    assert gone.value.status == 404
    ext.create_custom_resource_definition(crd("clusternetworkpolicies-v0.3.0-standard.yaml"))
    # Re-installed: the old objects do not come back.
    wait_for(lambda: custom.list_cluster_custom_object(GROUP, "v1beta1", "clusternetworkpolicies")["items"] == [],
             "objects of a deleted CRD removed", timeout=10)


def test_custom_objects_are_validated_against_the_crd_schema(kube: LocalKube) -> None:
    api = kube.api_client()
    client.ApiextensionsV1Api(api).create_custom_resource_definition(crd("clusternetworkpolicies-v0.3.0-standard.yaml"))
    custom = client.CustomObjectsApi(api)
    with pytest.raises(ApiException) as bad_tier:
        custom.create_cluster_custom_object(GROUP, "v1beta1", "clusternetworkpolicies", cnp("bad", tier="Top"))
    assert bad_tier.value.status == 422 and "spec.tier" in bad_tier.value.body
    wrong = cnp("bad-priority")
    wrong["spec"]["priority"] = 5000
    with pytest.raises(ApiException) as bad_priority:
        custom.create_cluster_custom_object(GROUP, "v1beta1", "clusternetworkpolicies", wrong)
    assert bad_priority.value.status == 422 and "spec.priority" in bad_priority.value.body


def test_custom_objects_can_be_watched_and_deleted(kube: LocalKube) -> None:
    api = kube.api_client()
    client.ApiextensionsV1Api(api).create_custom_resource_definition(crd("adminnetworkpolicies-v0.1.7-standard.yaml"))
    custom = client.CustomObjectsApi(api)
    anp = {"apiVersion": f"{GROUP}/v1alpha1", "kind": "AdminNetworkPolicy", "metadata": {"name": "a", "labels": {"x": "1"}},
           "spec": {"priority": 3, "subject": {"namespaces": {}}}}
    custom.create_cluster_custom_object(GROUP, "v1alpha1", "adminnetworkpolicies", anp)
    listed = requests.get(f"{kube.url}/apis/{GROUP}/v1alpha1/adminnetworkpolicies?labelSelector=x%3D1", timeout=5).json()
    rv = listed["metadata"]["resourceVersion"]
    custom.delete_cluster_custom_object(GROUP, "v1alpha1", "adminnetworkpolicies", "a")
    with requests.get(f"{kube.url}/apis/{GROUP}/v1alpha1/adminnetworkpolicies?watch=1&resourceVersion={rv}"
                      "&timeoutSeconds=2", stream=True, timeout=10) as response:
        first = next(response.iter_lines())
    assert b'"DELETED"' in first and b'"AdminNetworkPolicy"' in first
