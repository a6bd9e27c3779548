"""FakeKubelet behaves the same on both engines: pods run, readiness flips, restarts count, deletes finish."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any, Iterator

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from localkube.kubelet import POD_CIDR, FakeKubelet


@pytest.fixture(params=["local", pytest.param("kube", marks=pytest.mark.kube)])
def api(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "kube":
        yield request.getfixturevalue("kube_api")
        return
    from localkube import LocalKube

    with LocalKube() as kube:
        yield kube.api_client()


@pytest.fixture
def pod_namespace(api: Any, wait: Any) -> Iterator[str]:
    core = client.CoreV1Api(api)
    name = f"k-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    wait(lambda: core.list_namespaced_service_account(name, field_selector="metadata.name=default").items,
         "the default ServiceAccount")
    yield name
    core.delete_namespace(name)


def _pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}


def test_pods_become_running_ready_with_distinct_pod_ips(api: Any, pod_namespace: str) -> None:
    core = client.CoreV1Api(api)
    with FakeKubelet(api, namespaces=(pod_namespace,)) as kubelet:
        for name in ("a", "b"):
            core.create_namespaced_pod(pod_namespace, _pod(name))
        pods = [kubelet.wait_running(pod_namespace, name) for name in ("a", "b")]
    ips = {pod["status"]["podIP"] for pod in pods}
    assert len(ips) == 2 and all(ipaddress.ip_address(ip) in POD_CIDR for ip in ips)
    for pod in pods:
        assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"
        assert pod["status"]["containerStatuses"][0]["name"] == "app"


def test_readiness_and_restarts_are_visible_through_the_api(api: Any, pod_namespace: str) -> None:
    core = client.CoreV1Api(api)
    with FakeKubelet(api, namespaces=(pod_namespace,)) as kubelet:
        core.create_namespaced_pod(pod_namespace, _pod("a"))
        kubelet.wait_running(pod_namespace, "a")
        kubelet.set_ready(pod_namespace, "a", False)
        kubelet.restart(pod_namespace, "a")
        kubelet.restart(pod_namespace, "a")
    status = core.read_namespaced_pod("a", pod_namespace).status
    assert {c.type: c.status for c in status.conditions}["Ready"] == "False"
    assert status.container_statuses[0].restart_count == 2
    assert status.container_statuses[0].last_state.terminated.exit_code == 1


def test_pods_outside_the_watched_namespaces_are_left_pending(api: Any, pod_namespace: str, wait: Any) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(pod_namespace, _pod("a"))
    with FakeKubelet(api, namespaces=("somewhere-else",)) as kubelet:
        wait(kubelet.synced.is_set, "the kubelet's first list (pods listed are handled before it is set)")
    assert core.read_namespaced_pod("a", pod_namespace).status.phase == "Pending"


def test_deleted_pods_are_gone(api: Any, pod_namespace: str, wait: Any) -> None:
    core = client.CoreV1Api(api)
    with FakeKubelet(api, namespaces=(pod_namespace,)) as kubelet:
        core.create_namespaced_pod(pod_namespace, _pod("a"))
        kubelet.wait_running(pod_namespace, "a")
        core.delete_namespaced_pod("a", pod_namespace)

        def gone() -> bool:
            try:
                core.read_namespaced_pod("a", pod_namespace)
                return False
            except ApiException as exc:
                return exc.status == 404

        wait(gone, "the pod to be deleted")
