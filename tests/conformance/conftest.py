"""The `cluster` fixture: an API server these tests run against, through the official client only.

Engines: "local" (localkube, in-process). Another engine ("kube", a real kube-apiserver) can be added
to ENGINES later; tests here must therefore use only what a real API server offers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
from kubernetes import client, config

ENGINES = ["local"]


@dataclass
class Cluster:
    engine: str
    kubeconfig: str

    def api_client(self) -> client.ApiClient:
        cfg = client.Configuration()
        config.load_kube_config(config_file=self.kubeconfig, client_configuration=cfg)
        return client.ApiClient(cfg)


@pytest.fixture(scope="module", params=ENGINES)
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if request.param == "local":
        from localkube import LocalKube

        with LocalKube() as kube:
            path = kube.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")
            yield Cluster("local", path)
    else:  # pragma: no cover - engines added later
        pytest.skip(f"engine {request.param} not available")


@pytest.fixture
def core(cluster: Cluster) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api_client())


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace per test (deleted afterwards)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    try:
        core.delete_namespace(name)
    except client.ApiException:
        pass


def pod_body(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}], **spec}}
