"""The engine-independent handle the `cluster` fixture yields, and small body builders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes import client, config


@dataclass
class Cluster:
    engine: str
    kubeconfig: str

    def api_client(self) -> client.ApiClient:
        cfg = client.Configuration()
        config.load_kube_config(config_file=self.kubeconfig, client_configuration=cfg)
        return client.ApiClient(cfg)


def pod_body(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}], **spec}}
