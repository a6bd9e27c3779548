"""Fixtures for tests against the real upstream control plane (skipped when it is not built)."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from localkube.controlplane_build import ControlPlaneBinaries, ControlPlaneNotBuilt, find_binaries
from localkube.kube_engine import KubeControlPlane
from localkube.kubelet import FakeKubelet
from tests.support.namespaces import fresh_namespace
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
    with fresh_namespace(kube_api, "t") as name:
        yield name


@pytest.fixture
def kubelet(kube_api: Any, namespace: str) -> Iterator[FakeKubelet]:
    fake = FakeKubelet(kube_api, namespaces=(namespace,))
    yield fake
    fake.stop()


@pytest.fixture
def wait() -> Any:
    return wait_for
