"""LocalKube over real HTTP, the official client, and helpers to make namespaces and pods."""

from __future__ import annotations

import functools
import uuid
from typing import Any, Iterator

import pytest
from kubernetes import client

from localkube import LocalKube
from netwarden.model import names
from netwarden.platform.kube import KubeClient, RetryPolicy
from tests.support.waiting import wait_for

FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.1, request_timeout=5.0)


@pytest.fixture
def cluster() -> Iterator[LocalKube]:
    with LocalKube(bookmark_interval=0.5) as server:
        yield server


@pytest.fixture
def kube(cluster: LocalKube) -> KubeClient:
    return KubeClient(cluster.api_client(), FAST_RETRY)


@pytest.fixture
def core(cluster: LocalKube) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api_client())


@pytest.fixture
def net(cluster: LocalKube) -> client.NetworkingV1Api:
    return client.NetworkingV1Api(cluster.api_client())


#: Wait for an eventual state (watch-driven); the bound is generous, never a speed assertion.
wait_until = functools.partial(wait_for, timeout=15.0, interval=0.05)


def make_namespace(core: client.CoreV1Api, name: str, *, opted_in: bool = True, mode: str | None = None) -> None:
    labels = {names.LABEL_INJECT: names.INJECT_ENABLED} if opted_in else {}
    annotations = {names.ANNOTATION_MODE: mode} if mode else {}
    core.create_namespace({"metadata": {"name": name, "labels": labels, "annotations": annotations}})


def make_pod(core: client.CoreV1Api, namespace: str, name: str, *, labels: dict[str, str] | None = None,
             annotations: dict[str, str] | None = None, ip: str | None = None, ports: tuple[int, ...] = (8080,),
             owner: dict[str, Any] | None = None, sidecar_ports: tuple[int, ...] = ()) -> dict[str, Any]:
    """`sidecar_ports`: a native sidecar (an init container with restartPolicy Always) serving them."""
    body: dict[str, Any] = {
        "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
        "spec": {"containers": [{"name": "app", "image": "nginx",
                                 "ports": [{"containerPort": p, "protocol": "TCP"} for p in ports]}]},
    }
    if sidecar_ports:
        body["spec"]["initContainers"] = [{"name": "proxy", "image": "envoy", "restartPolicy": "Always",
                                           "ports": [{"containerPort": p, "protocol": "TCP"} for p in sidecar_ports]}]
    if owner:
        body["metadata"]["ownerReferences"] = [owner]
    created = core.create_namespaced_pod(namespace, body)
    if ip:
        set_pod_status(core, namespace, name, ip=ip, ready=True)
    return created.to_dict()


def set_pod_status(core: client.CoreV1Api, namespace: str, name: str, *, ip: str | None = None,
                   ready: bool = True, phase: str = "Running", restarts: int = 0) -> None:
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [{"name": "app", "image": "nginx", "imageID": "", "ready": ready,
                               "restartCount": restarts, "state": {}}],
    }
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    core.patch_namespaced_pod_status(name, namespace, {"status": status})


def make_deployment(apps: client.AppsV1Api, namespace: str, name: str, template_hash: str, *,
                    replicas: int = 2) -> dict[str, Any]:
    """A Deployment and its ReplicaSet (no controller runs here); returns the pods' owner reference."""
    template = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}
    spec = {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template}
    deployment = apps.create_namespaced_deployment(namespace, {"metadata": {"name": name}, "spec": spec})
    owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": deployment.metadata.uid,
             "controller": True}
    rs = apps.create_namespaced_replica_set(namespace, {"metadata": {"name": f"{name}-{template_hash}",
                                                                     "ownerReferences": [owner]}, "spec": spec})
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs.metadata.name, "uid": rs.metadata.uid,
            "controller": True}


def managed_labels(identity: str, instance: str | None = None) -> dict[str, str]:
    labels = {names.LABEL_IDENTITY: identity, names.LABEL_INSTANCE: instance or uuid.uuid4().hex[:10]}
    return labels
