"""Fixtures for tests against the real upstream control plane (skipped when it is not built)."""

from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from localkube.controlplane_build import ControlPlaneBinaries, ControlPlaneNotBuilt, find_binaries
from localkube.kube_engine import KubeControlPlane
from localkube.kubelet import FakeKubelet
from tests.support.waiting import wait_for


@pytest.fixture(scope="session")
def kube_binaries() -> ControlPlaneBinaries:
    try:
        return find_binaries()
    except ControlPlaneNotBuilt as exc:
        pytest.skip(f"real control plane not built ({exc})")


@pytest.fixture(scope="session")
def kube_cluster(kube_binaries: ControlPlaneBinaries) -> Iterator[KubeControlPlane]:
    with KubeControlPlane(kube_binaries) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kube_api(kube_cluster: KubeControlPlane) -> Any:
    return kube_cluster.api_client()


@pytest.fixture
def namespace(kube_api: Any) -> Iterator[str]:
    """A fresh namespace whose default ServiceAccount exists (pods are refused before that)."""
    core = client.CoreV1Api(kube_api)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_for(lambda: _exists(lambda: core.read_namespaced_service_account("default", name)), f"default SA in {name}")
    yield name
    core.delete_namespace(name)


@pytest.fixture
def kubelet(kube_api: Any, namespace: str) -> Iterator[FakeKubelet]:
    fake = FakeKubelet(kube_api, namespaces=(namespace,))
    yield fake
    fake.stop()


def _exists(read: Any) -> bool:
    try:
        read()
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise




@pytest.fixture
def wait() -> Any:
    return wait_for
