"""The kube engine runs the genuine kube-apiserver and controllers: real validation, RBAC, GC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from localkube.controlplane_build import KUBERNETES_VERSION, ControlPlaneBinaries
from localkube.kube_engine import KubeControlPlane
from localkube.kubelet import POD_CIDR, FakeKubelet

pytestmark = pytest.mark.kube

LABELS = {"app": "web"}


def deployment(name: str, replicas: int = 2) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": LABELS},
            "template": {"metadata": {"labels": LABELS}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}},
        },
    }


def network_policy(name: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name},
        "spec": {
            "podSelector": {"matchLabels": LABELS},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}],
                         "ports": [{"port": 8080}]}],
        },
    }
    if owner:
        body["metadata"]["ownerReferences"] = [owner]
    return body


def test_api_server_reports_the_pinned_version_and_is_ready(kube_cluster: KubeControlPlane) -> None:
    status, body = kube_cluster.get("/version")
    assert status == 200 and json.loads(body)["gitVersion"] == KUBERNETES_VERSION
    assert kube_cluster.get("/readyz")[0] == 200
    assert kube_cluster.url.startswith("https://127.0.0.1:")


def test_anonymous_requests_are_authenticated_but_not_authorised(kube_cluster: KubeControlPlane) -> None:
    """RBAC is on: without the admin certificate the API refuses to list namespaces."""
    import ssl
    import urllib.error
    import urllib.request

    context = ssl.create_default_context(cadata=kube_cluster.ca_cert_pem.decode())
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(kube_cluster.url + "/api/v1/namespaces", context=context, timeout=5)
    assert refused.value.code == 403


def test_namespaces_pods_and_network_policies_round_trip(kube_api: Any, namespace: str) -> None:
    core, net = client.CoreV1Api(kube_api), client.NetworkingV1Api(kube_api)
    assert core.read_namespace(namespace).status.phase == "Active"
    pod = core.create_namespaced_pod(namespace, {"metadata": {"name": "p", "labels": LABELS},
                                                 "spec": {"containers": [{"name": "app", "image": "nginx"}]}})
    assert pod.spec.service_account_name == "default"  # ServiceAccount admission ran
    assert core.read_namespaced_pod("p", namespace).metadata.labels == LABELS
    created = net.create_namespaced_network_policy(namespace, network_policy("np"))
    assert created.spec.policy_types == ["Ingress"]  # defaulted by the real API server
    assert created.spec.ingress[0].ports[0].protocol == "TCP"
    assert [p.metadata.name for p in net.list_namespaced_network_policy(namespace).items] == ["np"]
    net.delete_namespaced_network_policy("np", namespace)
    assert net.list_namespaced_network_policy(namespace).items == []


def test_an_invalid_network_policy_is_rejected_by_real_validation(kube_api: Any, namespace: str) -> None:
    bad = network_policy("bad")
    bad["spec"]["ingress"][0]["ports"] = [{"port": 70000}]
    with pytest.raises(ApiException) as rejected:
        client.NetworkingV1Api(kube_api).create_namespaced_network_policy(namespace, bad)
    assert rejected.value.status == 422


def test_a_deployment_gets_a_replicaset_that_creates_owned_pods(kube_api: Any, namespace: str, wait: Any) -> None:
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=2))
    pods = wait(lambda: [p for p in core.list_namespaced_pod(namespace).items] if len(
        core.list_namespaced_pod(namespace).items) == 2 else None, "2 pods from the ReplicaSet")
    replica_sets = apps.list_namespaced_replica_set(namespace).items
    assert len(replica_sets) == 1
    assert replica_sets[0].metadata.owner_references[0].kind == "Deployment"
    for pod in pods:
        owner = pod.metadata.owner_references[0]
        assert (owner.kind, owner.name) == ("ReplicaSet", replica_sets[0].metadata.name)


def test_garbage_collector_deletes_a_policy_owned_by_a_deleted_deployment(kube_api: Any, namespace: str, wait: Any) -> None:
    apps, net = client.AppsV1Api(kube_api), client.NetworkingV1Api(kube_api)
    owner = apps.create_namespaced_deployment(namespace, deployment("web", replicas=0))
    reference = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": owner.metadata.uid}
    net.create_namespaced_network_policy(namespace, network_policy("owned", reference))
    net.create_namespaced_network_policy(namespace, network_policy("unowned"))
    apps.delete_namespaced_deployment("web", namespace)
    wait(lambda: [p.metadata.name for p in net.list_namespaced_network_policy(namespace).items] == ["unowned"],
         "the garbage collector to delete the owned NetworkPolicy")


def test_fake_kubelet_runs_pods_and_drives_readiness_and_restarts(
    kube_api: Any, namespace: str, kubelet: FakeKubelet, wait: Any
) -> None:
    import ipaddress

    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=2))
    wait(lambda: (apps.read_namespaced_deployment("web", namespace).status.ready_replicas or 0) == 2,
         "the Deployment to report 2 ready replicas")
    pods = core.list_namespaced_pod(namespace).items
    assert {p.status.phase for p in pods} == {"Running"}
    assert len({p.status.pod_ip for p in pods}) == 2
    assert all(ipaddress.ip_address(p.status.pod_ip) in POD_CIDR for p in pods)

    name = pods[0].metadata.name
    kubelet.set_ready(namespace, name, False)
    wait(lambda: apps.read_namespaced_deployment("web", namespace).status.ready_replicas == 1,
         "the Deployment to notice the unready pod")
    kubelet.restart(namespace, name)
    assert core.read_namespaced_pod(name, namespace).status.container_statuses[0].restart_count == 1


def test_deleted_pods_go_away_and_the_replicaset_replaces_them(
    kube_api: Any, namespace: str, kubelet: FakeKubelet, wait: Any
) -> None:
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=1))
    first = wait(lambda: [p.metadata.name for p in core.list_namespaced_pod(namespace).items
                          if p.status.phase == "Running"], "a running pod")[0]
    core.delete_namespaced_pod(first, namespace)
    wait(lambda: [p.metadata.name for p in core.list_namespaced_pod(namespace).items
                  if p.status.phase == "Running" and p.metadata.name != first], "a running replacement")
    wait(lambda: first not in [p.metadata.name for p in core.list_namespaced_pod(namespace).items],
         "the deleted pod to be gone")


CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    from localkube.controlplane_build import find_binaries
    from localkube.kube_engine import KubeControlPlane
    cluster = KubeControlPlane(find_binaries()).start()
    pids = [child.process.pid for child in cluster._children]
    print(json.dumps({"pids": pids, "workdir": str(cluster._workdir)}), flush=True)
    if sys.argv[1] == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    # "exit": leave without stop(); atexit must clean up
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead for our purpose
        return stat.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_children_die_with_the_process_that_started_them(kube_binaries: ControlPlaneBinaries, how: str, wait: Any) -> None:
    result = subprocess.run([sys.executable, "-c", CHILD, how], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[2])
    started = json.loads(result.stdout.strip().splitlines()[0])
    assert len(started["pids"]) == 3
    wait(lambda: not any(_alive(pid) for pid in started["pids"]), "etcd, kube-apiserver and controller-manager to exit")
    if how == "exit":
        assert not Path(started["workdir"]).exists()
    else:
        import shutil

        shutil.rmtree(started["workdir"], ignore_errors=True)  # SIGKILL leaves the state dir behind


def test_stop_kills_the_children_and_removes_the_state(kube_binaries: ControlPlaneBinaries) -> None:
    cluster = KubeControlPlane(kube_binaries).start()
    processes = [child.process for child in cluster._children]
    workdir = cluster._workdir
    assert workdir is not None and workdir.exists()
    cluster.stop()
    assert all(process.poll() is not None for process in processes)
    assert not workdir.exists()
    cluster.stop()  # idempotent


def test_service_account_tokens_authenticate_and_rbac_decides(
    kube_cluster: KubeControlPlane, kube_api: Any, namespace: str, wait: Any
) -> None:
    core, rbac = client.CoreV1Api(kube_api), client.RbacAuthorizationV1Api(kube_api)
    request = core.create_namespaced_service_account_token(
        "default", namespace, {"spec": {"audiences": [], "expirationSeconds": 600}}
    )
    as_sa = client.CoreV1Api(kube_cluster.api_client(token=request.status.token))
    with pytest.raises(ApiException) as forbidden:
        as_sa.list_namespaced_pod(namespace)
    assert forbidden.value.status == 403
    assert f"system:serviceaccount:{namespace}:default" in forbidden.value.body
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "sa-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
    })

    def can_list() -> bool:
        try:
            as_sa.list_namespaced_pod(namespace)
            return True
        except ApiException as exc:
            if exc.status == 403:
                return False
            raise

    wait(can_list, "the RoleBinding to take effect")


def test_a_port_taken_between_choosing_and_binding_is_retried_with_new_ports(
    kube_binaries: ControlPlaneBinaries, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from localkube import kube_engine

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    real_free_ports = kube_engine.free_ports
    calls: list[list[int]] = []

    def first_one_taken(count: int) -> list[int]:
        ports = real_free_ports(count)
        if not calls:
            ports[0] = squatter.getsockname()[1]  # etcd's client port
        calls.append(ports)
        return ports

    monkeypatch.setattr(kube_engine, "free_ports", first_one_taken)
    try:
        with KubeControlPlane(kube_binaries) as cluster:
            assert cluster.get("/readyz")[0] == 200
    finally:
        squatter.close()
    assert len(calls) == 2
