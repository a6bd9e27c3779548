"""Proof on real packets (issue 12, item 6): what netwarden writes is what a real enforcer enforces.

One stack serves the module: the real control plane, the webhook and the reconciler
(`start_stack(engine="kube", real_packets=True)`), the kubelet stand-in in network-namespace mode (each
pod a namespace, a veth and a /32 from 198.19.64.0/20, a real listener per declared containerPort) and
the pinned kube-network-policies enforcing NetworkPolicy and AdminNetworkPolicy v1alpha1 on the pods'
node. Every claim is a TCP connection (or a UDP echo) from one pod's namespace to another's: "open" is a
completed handshake, "dropped" a SYN the enforcer's verdict threw away. No evaluator decides anything.

Skips, naming what is missing, without root, iproute2/iptables-legacy/unshare, the kernel's NFQUEUE,
the built control plane or the built enforcer (`netwarden controlplane build`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any, Iterator

import dataclasses

import pytest
import requests
import yaml
from kubernetes import client

from localkube.podnet import PodNetwork, cleanup_leftovers, list_netns, missing_prerequisites
from netwarden.model import names
from netwarden.platform.config import ReconcilerConfig
from netwarden.tools.stack import Stack, real_packets_missing, start_stack
from netwarden.tools.traffic import PodEnd, steady_flows
from tests.support.data import falco_body
from tests.support.namespaces import OPTED_IN_ENFORCE, fresh_namespace
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kube

LEARNING_SECONDS = 2.0
RECONCILER_CONFIG: dict[str, Any] = {
    "reconciler": {"cleanup_grace_seconds": 2.0},
    "core": {"learning_seconds": LEARNING_SECONDS, "rate_bucket_seconds": 0.5, "rate_min_buckets": 4,
             "blast_max_pod_fraction": 1.0, "blast_max_workloads": 50},
}
OPEN, DROPPED = "open", "dropped"
#: netwarden's AdminNetworkPolicy quarantine backend (issue 12 item 1) is selectable when this option exists.
HAS_BACKENDS = "quarantine_backend" in {f.name for f in dataclasses.fields(ReconcilerConfig)}
if HAS_BACKENDS:  # start on NetworkPolicy; the AdminNetworkPolicy tests switch (one reconciler restart)
    RECONCILER_CONFIG["reconciler"]["quarantine_backend"] = "networkpolicy"


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack(kube_binaries: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    missing = real_packets_missing("kube")
    if missing:
        pytest.skip("real packets need: " + "; ".join(missing))
    started = start_stack(tmp_path_factory.mktemp("kube-packets"), engine="kube", reconciler_config=RECONCILER_CONFIG,
                          real_packets=True, progress=lambda _: None)
    network_id = started.pod_network.id
    try:
        create_dns_pod(started.api_client())
        yield started
    finally:
        started.stop()
    assert [n for n in list_netns() if n.startswith(network_id)] == [], "pod network left namespaces behind"


@pytest.fixture(scope="module")
def api(stack: Stack) -> client.ApiClient:
    return stack.api_client()


@pytest.fixture
def shop(api: client.ApiClient) -> Iterator[str]:
    """A namespace opted in to netwarden in enforce mode."""
    with fresh_namespace(api, "pk", OPTED_IN_ENFORCE) as name:
        yield name


@pytest.fixture
def plain(api: client.ApiClient) -> Iterator[str]:
    """A namespace netwarden leaves alone: only the test's own policies apply."""
    with fresh_namespace(api, "pl") as name:
        yield name


def use_backend(stack: Stack, backend: str) -> None:
    """Restart the reconciler with `reconciler.quarantine_backend: backend` (it is read at start-up)."""
    if not HAS_BACKENDS:
        if backend != "networkpolicy":
            pytest.skip("netwarden's AdminNetworkPolicy quarantine backend is not in this tree")
        return
    path = stack.workdir / "netwarden.yaml"
    config = yaml.safe_load(path.read_text())
    if config["reconciler"].get("quarantine_backend") == backend:
        return
    config["reconciler"]["quarantine_backend"] = backend
    path.write_text(yaml.safe_dump(config))
    restarted = stack.restart("reconciler")
    wait_for(lambda: restarted.alive() and _ready(f"{stack.signals_url}/readyz", stack.ca_file),
             "the reconciler back with its new backend")


def _ready(url: str, ca_file: str) -> bool:
    try:
        return requests.get(url, timeout=2, verify=ca_file).status_code == 200
    except requests.RequestException:
        return False


# --- helpers -------------------------------------------------------------------------------------

def create_dns_pod(api: client.ApiClient) -> None:
    """The DNS stand-in the baselines' DNS rule selects (k8s-app=kube-dns, the kube-dns Service's selector)."""
    client.CoreV1Api(api).create_namespaced_pod("kube-system", {
        "metadata": {"name": "dns-stand-in", "labels": {"k8s-app": "kube-dns"}},
        "spec": {"containers": [{"name": "dns", "image": "dns-stand-in", "ports": [
            {"containerPort": 53, "protocol": "UDP"}, {"containerPort": 53, "protocol": "TCP"}]}]}})


def dns_pod(api: client.ApiClient) -> Any:
    return wait_for(lambda: _running(client.CoreV1Api(api).read_namespaced_pod("dns-stand-in", "kube-system")),
                    "the DNS stand-in running")


def _running(pod: Any) -> Any:
    return pod if pod.status.phase == "Running" and pod.status.pod_ip else None


def deploy(api: client.ApiClient, namespace: str, name: str, *, replicas: int = 1, port: int | None = 8080,
           annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> None:
    template_labels = {"app": name, **(labels or {})}
    container: dict[str, Any] = {"name": "app", "image": "stand-in"}
    if port is not None:
        container["ports"] = [{"containerPort": port}]
    client.AppsV1Api(api).create_namespaced_deployment(namespace, {
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": template_labels, "annotations": annotations or {}},
                              "spec": {"containers": [container]}}}})


def pods(api: client.ApiClient, namespace: str, app: str, count: int = 1) -> list[Any]:
    """The app's pods once `count` of them run with an IP, sorted by name (#0, #1, ...)."""
    def ready() -> list[Any] | None:
        found = [p for p in client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"app={app}").items
                 if _running(p) and not p.metadata.deletion_timestamp]
        return sorted(found, key=lambda p: p.metadata.name) if len(found) == count else None
    return wait_for(ready, f"{count} running pods of {namespace}/{app}")


#: How long a connection may wait before it counts as dropped. An accepted SYN completes in about a
#: millisecond, but on the loaded 2-core machine about one allowed SYN in thirty went unanswered until its
#: retransmission after 1 s (most likely a verdict lost on the enforcer's side; not traced further). So a
#: claim that a connection works allows one retransmission (2.5 s); a claim that it is dropped waits 1 s,
#: four times over (`settles`), which a lost verdict cannot fake.
OPEN_TIMEOUT, DROPPED_TIMEOUT = 2.5, 1.0


def probe(stack: Stack, source: Any, destination: Any, port: int, *, udp: bool = False,
          timeout: float = OPEN_TIMEOUT) -> str:
    if udp:
        return stack.pod_network.probe_udp(source.status.pod_ip, destination.status.pod_ip, port, timeout)
    return stack.pod_network.probe(source.status.pod_ip, destination.status.pod_ip, port, timeout)


def settles(stack: Stack, source: Any, destination: Any, port: int, want: str, *, udp: bool = False,
            timeout: float = 20.0) -> None:
    """Wait until the connection gives `want` (policies reach the enforcer through its watch), then hold it
    for three more connections, so a verdict seen once is not a race."""
    what = f"{source.metadata.name} -> {destination.metadata.name}:{port}{'/udp' if udp else ''} {want}"
    patience = OPEN_TIMEOUT if want == OPEN else DROPPED_TIMEOUT
    wait_for(lambda: probe(stack, source, destination, port, udp=udp, timeout=patience) == want, what,
             timeout=timeout)
    seen = [probe(stack, source, destination, port, udp=udp, timeout=patience) for _ in range(3)]
    assert seen == [want] * 3, f"{what}: then {seen}"


def send_flows(stack: Stack, edges: list[tuple[Any, Any, int]], seconds: float, rate: float = 100) -> None:
    """Hubble flows for `edges` (pod, pod, port), time-stamped over the next `seconds`."""
    ends = {}
    for source, destination, _ in edges:
        for pod in (source, destination):
            ends[pod.metadata.name] = PodEnd(pod.metadata.namespace, pod.metadata.name, pod.status.pod_ip,
                                             pod.metadata.labels or {})
    records = list(steady_flows([(ends[s.metadata.name], ends[d.metadata.name], port, "TCP", "FORWARDED")
                                 for s, d, port in edges], start=time.time(), seconds=seconds, rate=rate))
    stack.post_signal("/signals/flows", "\n".join(json.dumps(r) for r in records))


def falco(stack: Stack, pod: Any, priority: str) -> None:
    stack.post_signal("/signals/falco", falco_body(pod.metadata.namespace, pod.metadata.name, priority))


def step_of(api: client.ApiClient, namespace: str, policy: str) -> str:
    found = client.NetworkingV1Api(api).read_namespaced_network_policy(policy, namespace)
    return (found.metadata.annotations or {}).get(names.ANNOTATION_STEP, "")


def learned_then_tightened(stack: Stack, api: client.ApiClient, namespace: str) -> tuple[Any, Any, Any]:
    """web and admin (both purpose=frontend) may reach api; only web does while netwarden learns; an Error
    alert on api then tightens it to what it learned. Returns (web, admin, api) pods."""
    deploy(api, namespace, "web", annotations={names.ANNOTATION_PURPOSE: "frontend",
                                               names.ANNOTATION_ALLOW_TO: "purpose=backend:8080"})
    deploy(api, namespace, "admin", annotations={names.ANNOTATION_PURPOSE: "frontend",
                                                 names.ANNOTATION_ALLOW_TO: "purpose=backend:8080"})
    deploy(api, namespace, "api", annotations={names.ANNOTATION_PURPOSE: "backend",
                                               names.ANNOTATION_ALLOW_FROM: "purpose=frontend"})
    (web,), (admin,), (api_pod,) = pods(api, namespace, "web"), pods(api, namespace, "admin"), pods(api, namespace, "api")
    settles(stack, admin, api_pod, 8080, OPEN)  # the baseline lets every frontend in
    settles(stack, web, api_pod, 8080, OPEN)
    send_flows(stack, [(web, api_pod, 8080)], seconds=LEARNING_SECONDS + 1)
    time.sleep(LEARNING_SECONDS + 1.5)  # the learning window is time by definition: let it close
    falco(stack, api_pod, "Error")  # 15 points: above tighten (10), below quarantine (25)
    wait_for(lambda: step_of(api, namespace, "netwarden-deploy-api") == names.STEP_TIGHTENED, "api tightened")
    return web, admin, api_pod


# --- the proofs ----------------------------------------------------------------------------------

def test_a_baseline_allows_exactly_the_declared_peers_and_dns(stack: Stack, api: client.ApiClient,
                                                             shop: str) -> None:
    deploy(api, shop, "web", annotations={names.ANNOTATION_PURPOSE: "frontend",
                                          names.ANNOTATION_ALLOW_TO: "purpose=backend:8080"})
    deploy(api, shop, "api", annotations={names.ANNOTATION_PURPOSE: "backend",
                                          names.ANNOTATION_ALLOW_FROM: "purpose=frontend",
                                          names.ANNOTATION_ALLOW_TO: "purpose=database:5432"})
    deploy(api, shop, "db", port=5432, annotations={names.ANNOTATION_PURPOSE: "database",
                                                    names.ANNOTATION_ALLOW_FROM: "purpose=backend"})
    deploy(api, shop, "stray", port=9000, annotations={names.ANNOTATION_PURPOSE: "batch"})
    (web,), (api_pod,), (db,), (stray,) = (pods(api, shop, app) for app in ("web", "api", "db", "stray"))
    dns = dns_pod(api)
    # declared: frontend -> backend:8080, backend -> database:5432
    settles(stack, web, api_pod, 8080, OPEN)
    settles(stack, api_pod, db, 5432, OPEN)
    # everything else is dropped: undeclared peers, the wrong direction, a declared peer's other pod
    settles(stack, web, db, 5432, DROPPED)
    settles(stack, stray, api_pod, 8080, DROPPED)
    settles(stack, stray, db, 5432, DROPPED)
    settles(stack, api_pod, web, 8080, DROPPED)
    settles(stack, db, api_pod, 8080, DROPPED)
    settles(stack, web, stray, 9000, DROPPED)
    # DNS for every pod, over TCP and UDP, even the one that declared nothing
    for pod in (web, api_pod, db, stray):
        settles(stack, pod, dns, 53, OPEN)
        settles(stack, pod, dns, 53, OPEN, udp=True)


def test_a_tightening_narrows_real_traffic_to_what_was_learned(stack: Stack, api: client.ApiClient,
                                                               shop: str) -> None:
    web, admin, api_pod = learned_then_tightened(stack, api, shop)
    settles(stack, admin, api_pod, 8080, DROPPED)  # declared, never seen: cut
    settles(stack, web, api_pod, 8080, OPEN)  # learned: kept


def test_a_rollback_restores_the_traffic_a_tightening_cut(stack: Stack, api: client.ApiClient, shop: str) -> None:
    web, admin, api_pod = learned_then_tightened(stack, api, shop)
    settles(stack, admin, api_pod, 8080, DROPPED)
    rollback = subprocess.run([sys.executable, "-m", "netwarden.cli", "rollback", "netwarden-deploy-api", "-n", shop,
                               "--kubeconfig", stack.kubeconfig], capture_output=True, text=True, timeout=60)
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    settles(stack, admin, api_pod, 8080, OPEN)
    settles(stack, web, api_pod, 8080, OPEN)


@pytest.mark.parametrize("backend", ["networkpolicy", "adminnetworkpolicy"])
def test_a_one_pod_quarantine_refuses_that_pods_connections_while_its_sibling_keeps_them(
        stack: Stack, api: client.ApiClient, shop: str, backend: str) -> None:
    use_backend(stack, backend)
    deploy(api, shop, "web", annotations={names.ANNOTATION_PURPOSE: "frontend",
                                          names.ANNOTATION_ALLOW_TO: "purpose=backend:8080"})
    deploy(api, shop, "api", replicas=2, annotations={names.ANNOTATION_PURPOSE: "backend",
                                                      names.ANNOTATION_ALLOW_FROM: "purpose=frontend",
                                                      names.ANNOTATION_ALLOW_TO: "purpose=database:5432"})
    deploy(api, shop, "db", port=5432, annotations={names.ANNOTATION_PURPOSE: "database",
                                                    names.ANNOTATION_ALLOW_FROM: "purpose=backend"})
    (web,), (api0, api1), (db,) = pods(api, shop, "web"), pods(api, shop, "api", 2), pods(api, shop, "db")
    dns = dns_pod(api)
    for replica in (api0, api1):
        settles(stack, web, replica, 8080, OPEN)
        settles(stack, replica, db, 5432, OPEN)
    send_flows(stack, [(web, api0, 8080), (web, api1, 8080), (api0, db, 5432), (api1, db, 5432)],
               seconds=LEARNING_SECONDS + 1)
    falco(stack, api0, "Critical")
    settles(stack, web, api0, 8080, DROPPED)  # nothing reaches the quarantined pod
    settles(stack, api0, db, 5432, DROPPED)  # and it reaches nothing
    settles(stack, api0, dns, 53, OPEN, udp=True)  # but DNS
    # its sibling keeps every connection, now and after the reconciler's follow-up decisions
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert probe(stack, web, api1, 8080) == OPEN
        assert probe(stack, api1, db, 5432) == OPEN


def quarantine_anp(namespace: str, pod_name: str, priority: int = 0) -> dict[str, Any]:
    """An Admin-tier quarantine of one pod: deny ingress from and egress to every namespace."""
    everywhere = [{"namespaces": {}}]
    return {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
            "metadata": {"name": f"quarantine-{namespace}-{pod_name}"},
            "spec": {"priority": priority,
                     "subject": {"pods": {"namespaceSelector": {"matchLabels": {
                         "kubernetes.io/metadata.name": namespace}},
                         "podSelector": {"matchLabels": {"quarantine": pod_name}}}},
                     "ingress": [{"name": "deny-all-in", "action": "Deny", "from": everywhere}],
                     "egress": [{"name": "deny-all-out", "action": "Deny", "to": everywhere}]}}


def test_a_users_allow_policy_reopens_a_networkpolicy_quarantine_but_not_an_adminnetworkpolicy_one(
        stack: Stack, api: client.ApiClient, plain: str) -> None:
    core, net = client.CoreV1Api(api), client.NetworkingV1Api(api)
    custom = client.CustomObjectsApi(api)
    deploy(api, plain, "web")
    deploy(api, plain, "api", replicas=2)
    (web,), (api0, api1) = pods(api, plain, "web"), pods(api, plain, "api", 2)
    core.patch_namespaced_pod(api0.metadata.name, plain, {"metadata": {"labels": {"quarantine": api0.metadata.name}}})
    # the user's own policy: api accepts web on 8080
    net.create_namespaced_network_policy(plain, {
        "metadata": {"name": "users-web-to-api"},
        "spec": {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                              "ports": [{"protocol": "TCP", "port": 8080}]}]}})
    # a NetworkPolicy quarantine of api#0 (deny all, as netwarden's NetworkPolicy backend writes it)
    net.create_namespaced_network_policy(plain, {
        "metadata": {"name": "quarantine-api-0"},
        "spec": {"podSelector": {"matchLabels": {"quarantine": api0.metadata.name}},
                 "policyTypes": ["Ingress", "Egress"]}})
    settles(stack, web, api1, 8080, OPEN)
    settles(stack, web, api0, 8080, OPEN)  # NetworkPolicies add up: the user's allow wins
    anp = quarantine_anp(plain, api0.metadata.name)
    custom.create_cluster_custom_object("policy.networking.k8s.io", "v1alpha1", "adminnetworkpolicies", anp)
    try:
        settles(stack, web, api0, 8080, DROPPED)  # the Admin tier is final: no NetworkPolicy reopens it
        settles(stack, api0, web, 8080, DROPPED)
        settles(stack, web, api1, 8080, OPEN)  # its sibling is untouched
    finally:
        custom.delete_cluster_custom_object("policy.networking.k8s.io", "v1alpha1", "adminnetworkpolicies",
                                            anp["metadata"]["name"])
    settles(stack, web, api0, 8080, OPEN)  # lifting the quarantine restores it


# --- the pod network's own hygiene ----------------------------------------------------------------

def test_a_crashed_owners_namespaces_are_found_by_prefix_and_removed() -> None:
    missing = missing_prerequisites()
    if missing:
        pytest.skip("pod networking needs: " + "; ".join(missing))
    script = ("import os, sys\nfrom localkube.podnet import PodNetwork\n"
              "net = PodNetwork().start()\nnet.add_pod('a', 'ns', 'a', [8080])\n"
              "print(net.id, flush=True)\nos.kill(os.getpid(), 9)\n")
    crashed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert crashed.returncode == -9, crashed.stderr
    network_id = crashed.stdout.strip()
    left = [n for n in list_netns() if n.startswith(network_id)]
    assert sorted(left) == [f"{network_id}-node", f"{network_id}-p1"]  # a crash leaves them behind...
    removed = cleanup_leftovers()
    assert set(left) <= set(removed)  # ...and the next run's cleanup finds them by their prefix
    assert [n for n in list_netns() if n.startswith(network_id)] == []
    with PodNetwork() as fresh:  # and a new network works
        a = fresh.add_pod("a", "ns", "a", [8080])
        b = fresh.add_pod("b", "ns", "b", [8080])
        assert fresh.probe("a", b.ip, 8080) == OPEN and fresh.probe("b", a.ip, 8080) == OPEN


def test_netwardens_adminnetworkpolicy_quarantine_holds_against_a_users_allow_policy(
        stack: Stack, api: client.ApiClient, shop: str) -> None:
    use_backend(stack, "adminnetworkpolicy")
    net, custom = client.NetworkingV1Api(api), client.CustomObjectsApi(api)
    deploy(api, shop, "web", annotations={names.ANNOTATION_PURPOSE: "frontend",
                                          names.ANNOTATION_ALLOW_TO: "purpose=backend:8080"})
    deploy(api, shop, "api", replicas=2, annotations={names.ANNOTATION_PURPOSE: "backend",
                                                      names.ANNOTATION_ALLOW_FROM: "purpose=frontend"})
    (web,), (api0, api1) = pods(api, shop, "web"), pods(api, shop, "api", 2)
    dns = dns_pod(api)
    # the user's own allow policy, which would reopen a NetworkPolicy quarantine (see the test above)
    net.create_namespaced_network_policy(shop, {
        "metadata": {"name": "users-web-to-api"},
        "spec": {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                              "ports": [{"protocol": "TCP", "port": 8080}]}]}})
    settles(stack, web, api0, 8080, OPEN)
    send_flows(stack, [(web, api0, 8080), (web, api1, 8080)], seconds=LEARNING_SECONDS + 1)
    falco(stack, api0, "Critical")
    written = wait_for(lambda: [o for o in custom.list_cluster_custom_object(
        "policy.networking.k8s.io", "v1alpha1", "adminnetworkpolicies")["items"]
        if o["metadata"]["name"].startswith("netwarden-quarantine-")], "netwarden's AdminNetworkPolicy")
    assert len(written) == 1
    settles(stack, web, api0, 8080, DROPPED)  # the user's allow does not reopen it
    settles(stack, api0, web, 8080, DROPPED)
    settles(stack, api0, dns, 53, OPEN, udp=True)  # DNS stays, above the Deny
    settles(stack, web, api1, 8080, OPEN)  # the sibling keeps its traffic
    # the pod goes: so does its cluster-scoped quarantine (no owner reference can do that)
    client.CoreV1Api(api).delete_namespaced_pod(api0.metadata.name, shop)
    wait_for(lambda: not [o for o in custom.list_cluster_custom_object(
        "policy.networking.k8s.io", "v1alpha1", "adminnetworkpolicies")["items"]
        if o["metadata"]["name"] == written[0]["metadata"]["name"]], "the quarantine removed with its pod")
