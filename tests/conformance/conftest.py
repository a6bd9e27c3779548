"""The `cluster` fixture: an API server these tests run against, through the official client only.

Engines: "local" (localkube, in-process). Another engine ("kube", a real kube-apiserver) can be added
to ENGINES later; tests here must therefore use only what a real API server offers.
"""

from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest
from kubernetes import client

from conformance_cluster import Cluster, pod_body  # noqa: F401 - re-exported for tests
from tests.support.waiting import wait_for

ENGINES = ["local", pytest.param("kube", marks=pytest.mark.kube)]


@pytest.fixture(scope="session")
def kube_control_plane() -> Iterator[Any]:
    """The real upstream control plane, started once per session; skipped when not built."""
    from localkube.controlplane_build import ControlPlaneNotBuilt, find_binaries
    from localkube.kube_engine import KubeControlPlane

    try:
        binaries = find_binaries()
    except ControlPlaneNotBuilt as exc:
        pytest.skip(f"real control plane not built ({exc})")
    with KubeControlPlane(binaries) as kube:
        yield kube


@pytest.fixture(scope="module", params=ENGINES)
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if request.param == "local":
        from localkube import LocalKube

        with LocalKube() as kube:
            path = kube.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")
            yield Cluster("local", path)
    elif request.param == "kube":
        yield Cluster("kube", str(request.getfixturevalue("kube_control_plane").kubeconfig))
    else:  # pragma: no cover - engines added later
        pytest.skip(f"engine {request.param} not available")


@pytest.fixture
def core(cluster: Cluster) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api_client())


@pytest.fixture
def namespace(core: client.CoreV1Api, cluster: Cluster) -> Iterator[str]:
    """A fresh namespace per test (deleted afterwards)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    if cluster.engine == "kube":  # a real API server refuses pods until the default ServiceAccount exists
        wait_for(lambda: core.list_namespaced_service_account(name, field_selector="metadata.name=default").items,
                 f"the default ServiceAccount in {name}", timeout=30, interval=0.05)
    yield name
    try:
        core.delete_namespace(name)
    except client.ApiException:
        pass


