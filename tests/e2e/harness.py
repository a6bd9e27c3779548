"""The end-to-end harness: a real stack (LocalKube, the gunicorn TLS webhook, the reconciler as
processes), workloads created through the API, Hubble flows and Falco alerts POSTed to the signal
endpoints, a watch that timestamps every managed-policy change, and the checks the issue names
(nca and netpol_eval on what the reconciler wrote).

Why the timings in E2E_CONFIG: the story must be told in seconds. A 3 s learning window, 0.25 s
rate buckets, each single flow deviation weighted so that one of them crosses the tighten
threshold (10): world egress and a rate spike 12; a new peer 6 and a new namespace crossed 6, so
lateral movement into another namespace is 12 for the mover and only 6 (no step) for the peer
that merely receives it. Writes are not rate-limited here (the budget is a production guard rail
with its own tests), and the blast radius allows one pod of ten.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import signal
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import requests
from kubernetes import client, watch

from netwarden.model import names
from netwarden.model.netpol_eval import ContainerPort, ExternalIP, NamespaceInfo, PodInfo, PolicySet
from netwarden.tools.stack import ManagedProcess, Stack, start_stack
from netwarden.tools.traffic import PodEnd, WorldEnd, hubble_flow
from tests.support.data import falco_body  # noqa: F401 - the e2e tests take it from here
from tests.support.nca import NcaConnectivity, nca_connectivity
from tests.support.waiting import wait_for

#: The issue's behavioural bound: a signal leads to its policy within 1 s. Measured values are
#: tens of milliseconds (the decision is written before the POST is answered), so the bound
#: holds with a margin of more than 10x even on a loaded 2-core machine.
SIGNAL_TO_POLICY_BOUND_SECONDS = 1.0
LEARNING_SECONDS = 3.0
CLEANUP_GRACE_SECONDS = 3.0
QUARANTINE_EXCEPTION = "namespace=monitoring:9090"

E2E_CONFIG: dict[str, Any] = {
    "reconciler": {"cleanup_grace_seconds": CLEANUP_GRACE_SECONDS},
    "core": {
        "learning_seconds": LEARNING_SECONDS,
        "rate_bucket_seconds": 0.25,
        "rate_min_buckets": 4,
        "deviation_weights": {"new-peer": 6.0, "new-namespace": 6.0, "world-egress": 12.0, "rate-spike": 12.0},
        "blast_max_pod_fraction": 0.5,
        "write_rate_per_second": 100.0,
        "write_burst": 100,
        "quarantine_exceptions": [QUARANTINE_EXCEPTION],
    },
}

#: The DNS pod nca sees (the stack's kube-dns Service selects k8s-app=kube-dns; LocalKube runs no DNS).
DNS_POD = PodInfo("kube-system", "kube-dns-0", {"k8s-app": "kube-dns"}, "10.96.0.10",
                  (ContainerPort(53, "dns", "UDP"), ContainerPort(53, "dns-tcp", "TCP")))
DNS = {("UDP", 53, 53), ("TCP", 53, 53)}

# Latencies measured by every test in this run, printed at the end (tests/e2e/conftest.py).
LATENCIES: dict[str, list[tuple[float, float]]] = {}


# --- the cluster -------------------------------------------------------------------------------


@dataclass(frozen=True)
class App:
    namespace: str
    name: str
    replicas: int = 1
    ports: tuple[int, ...] = (8080,)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        return f"{self.namespace}.deploy.{self.name}"


class Cluster:
    """The API as a test drives it: namespaces, Deployments, pods, policies, Events."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.api = stack.api_client()
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.net = client.NetworkingV1Api(self.api)

    def plain(self, obj: Any) -> dict[str, Any]:
        return self.api.sanitize_for_serialization(obj)

    def namespace(self, name: str, *, opted_in: bool = True) -> None:
        annotations = {names.ANNOTATION_INJECT: names.INJECT_ENABLED, names.ANNOTATION_MODE: names.MODE_ENFORCE}
        self.core.create_namespace({"metadata": {"name": name, "annotations": annotations if opted_in else {}}})

    def deploy(self, app: App) -> None:
        template = {"metadata": {"labels": {"app": app.name}, "annotations": dict(app.annotations)},
                    "spec": {"containers": [{"name": app.name, "image": "example/app:1", "ports": [
                        {"containerPort": p, "protocol": "TCP"} for p in app.ports]}]}}
        self.apps.create_namespaced_deployment(app.namespace, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app.name, "labels": {"app": app.name}},
            "spec": {"replicas": app.replicas, "selector": {"matchLabels": {"app": app.name}}, "template": template}})

    def bare_pod(self, namespace: str, name: str, labels: Mapping[str, str]) -> None:
        self.core.create_namespaced_pod(namespace, {"metadata": {"name": name, "labels": dict(labels)},
                                                    "spec": {"containers": [{"name": "main", "image": "example/x:1"}]}})

    def pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        items = (self.core.list_namespaced_pod(namespace) if namespace else self.core.list_pod_for_all_namespaces()).items
        return [self.plain(p) for p in items if not p.metadata.deletion_timestamp]

    def pods_of(self, app: App) -> list[dict[str, Any]]:
        mine = [p for p in self.pods(app.namespace) if p["metadata"].get("labels", {}).get("app") == app.name]
        return sorted(mine, key=lambda p: p["metadata"]["name"])

    def ready_pods(self, app: App) -> list[dict[str, Any]] | None:
        pods = self.pods_of(app)
        ok = [p for p in pods if (p.get("status") or {}).get("podIP")
              and names.LABEL_INSTANCE in p["metadata"].get("labels", {})]
        return ok if len(ok) == app.replicas == len(pods) else None

    def deploy_ready(self, apps: Sequence[App]) -> dict[str, list[PodEnd]]:
        """Deploy apps, wait until every pod has an IP and netwarden's labels and every baseline exists."""
        for app in apps:
            self.deploy(app)
        ends = {app.name: [self.end(p) for p in wait_until(lambda a=app: self.ready_pods(a), what=f"{app.name} pods")]
                for app in apps}
        wait_until(lambda: all(self.workload_policy(a) for a in apps), what="baseline policies")
        return ends

    def end(self, pod: dict[str, Any]) -> PodEnd:
        meta = pod["metadata"]
        return PodEnd(meta["namespace"], meta["name"], pod["status"]["podIP"], meta.get("labels", {}))

    def policies(self) -> list[dict[str, Any]]:
        return [self.plain(p) for p in self.net.list_network_policy_for_all_namespaces().items]

    def managed(self) -> list[dict[str, Any]]:
        return [p for p in self.policies()
                if p["metadata"].get("labels", {}).get(names.LABEL_MANAGED_BY) == names.MANAGED_BY_VALUE]

    def workload_policy(self, app: App) -> dict[str, Any] | None:
        found = [p for p in self.managed() if p["metadata"]["labels"].get(names.LABEL_IDENTITY) == app.identity
                 and p["metadata"]["labels"].get(names.LABEL_POLICY_ROLE) == names.ROLE_BASELINE]
        return found[0] if found else None

    def namespaces(self) -> list[NamespaceInfo]:
        return [NamespaceInfo(n.metadata.name, n.metadata.labels or {}) for n in self.core.list_namespace().items]

    def netwarden_events(self) -> list[tuple[str, str, str]]:
        """(namespace, reason, involved object name) of every Event netwarden wrote."""
        return sorted((e.metadata.namespace, e.reason, e.involved_object.name)
                      for e in self.core.list_event_for_all_namespaces().items
                      if (e.reason or "").startswith("Netwarden"))

    def fault(self, **body: Any) -> int:
        """Inject a LocalKube fault (POST /_localkube/faults) and return its id."""
        return self._faults("POST", body).json()["id"]

    def faults(self) -> list[dict[str, Any]]:
        return self._faults("GET").json()["faults"]

    def clear_faults(self) -> None:
        self._faults("DELETE")

    def _faults(self, method: str, body: Any = None) -> requests.Response:
        config = self.api.configuration
        # The client's own header value for the kubeconfig's token ("Bearer <token>").
        response = requests.request(method, f"{config.host}/_localkube/faults", json=body, timeout=5,
                                    headers={"Authorization": config.get_api_key_with_prefix("BearerToken")})
        response.raise_for_status()
        return response


#: Wait for an eventual state; the bound is generous, never a speed claim.
wait_until = functools.partial(wait_for, timeout=20.0, interval=0.05)


# --- the policy watch --------------------------------------------------------------------------


@dataclass
class PolicyChange:
    seen: float  # time.monotonic() when the watch delivered it
    kind: str
    obj: dict[str, Any]


class PolicyRecorder:
    """Every managed NetworkPolicy change as a watch delivers it, timestamped on arrival."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.changes: list[PolicyChange] = []
        self.lock = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="e2e-policy-watch", daemon=True)

    def start(self) -> "PolicyRecorder":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        selector = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY_VALUE}"
        listing = self.cluster.net.list_network_policy_for_all_namespaces(label_selector=selector)
        version = listing.metadata.resource_version
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(self.cluster.net.list_network_policy_for_all_namespaces,
                                                  label_selector=selector, resource_version=version, timeout_seconds=5):
                    obj = self.cluster.plain(event["object"])
                    version = obj["metadata"].get("resourceVersion", version)
                    with self.lock:
                        self.changes.append(PolicyChange(time.monotonic(), event["type"], obj))
                        self.lock.notify_all()
                    if self._stop.is_set():
                        return
            except Exception:  # noqa: BLE001 - the harness's own watch restarts (faults are injected on purpose)
                self._stop.wait(0.1)  # a pause before watching again, not a wait for a state

    def mark(self) -> int:
        with self.lock:
            return len(self.changes)

    def since(self, mark: int) -> list[PolicyChange]:
        with self.lock:
            return list(self.changes[mark:])

    def wait_for(self, mark: int, predicate: Callable[[PolicyChange], bool], timeout: float = 10.0) -> PolicyChange:
        """The first change after `mark` that satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for change in self.changes[mark:]:
                    if predicate(change):
                        return change
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(c.kind, c.obj["metadata"]["name"], _annotation(c.obj, names.ANNOTATION_STEP))
                            for c in self.changes[mark:]]
                    raise AssertionError(f"no matching policy change within {timeout}s; saw {seen}")
                self.lock.wait(left)


def _annotation(obj: Mapping[str, Any], key: str) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get(key)


def is_step(app: App, step: str) -> Callable[[PolicyChange], bool]:
    def match(change: PolicyChange) -> bool:
        labels = change.obj["metadata"].get("labels") or {}
        return (change.kind != "DELETED" and labels.get(names.LABEL_IDENTITY) == app.identity
                and labels.get(names.LABEL_POLICY_ROLE) == names.ROLE_BASELINE
                and _annotation(change.obj, names.ANNOTATION_STEP) == step)
    return match


def quarantines(instance: str) -> Callable[[PolicyChange], bool]:
    def match(change: PolicyChange) -> bool:
        labels = change.obj["metadata"].get("labels") or {}
        selector = change.obj.get("spec", {}).get("podSelector", {}).get("matchLabels", {})
        return (change.kind != "DELETED" and labels.get(names.LABEL_POLICY_ROLE) == names.ROLE_QUARANTINE
                and selector.get(names.LABEL_INSTANCE) == instance)
    return match


# --- signals -----------------------------------------------------------------------------------


def flows_body(records: Iterable[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(r) for r in records)


def edge_flows(source: PodEnd | WorldEnd, destination: PodEnd | WorldEnd, port: int, count: int,
               protocol: str = "TCP") -> list[dict[str, Any]]:
    now = time.time()
    return [hubble_flow(source, destination, port, protocol, now, source_port=33000 + i % 20000) for i in range(count)]


def post(url: str, path: str, body: Any, token: str, ca_file: str) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(f"{url}{path}", data=data, timeout=15, verify=ca_file,
                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


@dataclass
class Measured:
    started: float
    answered: float
    answer: dict[str, Any]


def send(stack: Stack, path: str, body: Any, url: str | None = None) -> Measured:
    started = time.monotonic()
    response = post(url or stack.signals_url, path, body, stack.signal_token, stack.ca_file)
    answered = time.monotonic()
    assert response.status_code == 200, f"POST {path} -> {response.status_code}: {response.text[:300]}"
    return Measured(started, answered, response.json())


def record_latency(case: str, sent: Measured, change: PolicyChange) -> float:
    """Signal sent -> policy visible through a watch; returns seconds from the POST's start (the
    stricter measure; from the POST's return is also recorded)."""
    from_start = change.seen - sent.started
    from_answer = max(0.0, change.seen - sent.answered)
    LATENCIES.setdefault(case, []).append((from_start, from_answer))
    return from_start


def latency_table() -> str:
    rows = ["signal -> policy visible via watch (ms)      p50(start)  max(start)  p50(answer)  max(answer)  n"]
    for case, values in sorted(LATENCIES.items()):
        starts = [v[0] * 1000 for v in values]
        answers = [v[1] * 1000 for v in values]
        rows.append(f"  {case:40s} {statistics.median(starts):10.1f} {max(starts):11.1f} "
                    f"{statistics.median(answers):12.1f} {max(answers):12.1f} {len(values):3d}")
    return "\n".join(rows)


# --- reading what was written ------------------------------------------------------------------


def pod_info(pod: Mapping[str, Any]) -> PodInfo:
    ports = tuple(ContainerPort(c["containerPort"], c.get("name"), c.get("protocol", "TCP"))
                  for container in pod["spec"].get("containers", []) for c in container.get("ports") or [])
    meta = pod["metadata"]
    return PodInfo(meta["namespace"], meta["name"], meta.get("labels", {}), (pod.get("status") or {}).get("podIP"), ports)


@dataclass
class Connectivity:
    """The cluster as it is now, read by nca and by netpol_eval."""

    nca: NcaConnectivity
    policy_set: PolicySet
    pods: dict[str, PodInfo]

    def pair(self, src: str, dst: str | ExternalIP, port: int, protocol: str = "TCP") -> tuple[bool, bool]:
        """(nca's verdict, netpol_eval's verdict) for one connection; pods by "namespace/name"."""
        dst_nca = dst.ip if isinstance(dst, ExternalIP) else dst
        dst_eval = dst if isinstance(dst, ExternalIP) else self.pods[dst]
        return (self.nca.allows(src, dst_nca, port, protocol),
                self.policy_set.is_allowed(self.pods[src], dst_eval, port, protocol))

    def touching(self, pod_names: set[str]) -> dict[tuple[str, str], set[tuple[str, int, int]]]:
        """nca's allowed connections into or out of these pods: (src, dst) -> {(protocol, low, high)};
        external ranges normalised to their CIDRs."""
        out: dict[tuple[str, str], set[tuple[str, int, int]]] = {}
        for (src, dst), specs in self.nca.edges.items():
            if src == dst or not ({src, dst} & pod_names):
                continue
            key = (_cidrs(src), _cidrs(dst))
            for spec in specs:
                assert spec.protocol is not None and spec.ports is not None, f"{src} -> {dst}: all {spec}"
                for low, high in spec.ports:
                    out.setdefault(key, set()).add((spec.protocol, low, high))
        return out


def _cidrs(endpoint: str) -> str:
    """A pod name as is; an nca address range ("a-b", CIDRs, comma-separated) as sorted CIDRs."""
    head = endpoint.split("/")[0].split("-")[0].split(",")[0]
    try:
        ipaddress.ip_address(head)
    except ValueError:
        return endpoint
    networks: list[Any] = []
    for part in endpoint.split(","):
        if "-" in part:
            low, high = (ipaddress.ip_address(x) for x in part.split("-"))
            networks.extend(ipaddress.summarize_address_range(low, high))
        else:
            networks.append(ipaddress.ip_network(part, strict=False))
    return ",".join(str(n) for n in ipaddress.collapse_addresses(networks))


def connectivity(cluster: Cluster) -> Connectivity:
    pods = [pod_info(p) for p in cluster.pods() if (p.get("status") or {}).get("podIP")] + [DNS_POD]
    namespaces = cluster.namespaces()
    policies = cluster.policies()
    return Connectivity(nca_connectivity(pods, namespaces, policies), PolicySet(policies, namespaces),
                        {f"{p.namespace}/{p.name}": p for p in pods})


def key(pod: Mapping[str, Any]) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


# --- processes ---------------------------------------------------------------------------------


def running_stack(workdir: Path, config: Mapping[str, Any]) -> Stack:
    """The stack the end-to-end tests and the soak run: replicas publish where they take signals."""
    # The reconciler publishes where it takes signals (the pod IP in a cluster; loopback here).
    os.environ["NETWARDEN_POD_IP"] = "127.0.0.1"
    try:
        return start_stack(workdir, reconciler_config=dict(config), progress=lambda _m: None)
    finally:
        os.environ.pop("NETWARDEN_POD_IP", None)


def sigkill(proc: ManagedProcess) -> None:
    os.killpg(proc.popen.pid, signal.SIGKILL)
    proc.popen.wait(10)


def leader_metric(url: str, ca_file: str) -> float | None:
    try:
        text = requests.get(f"{url}/metrics", timeout=3, verify=ca_file).text
    except requests.RequestException:
        return None
    for line in text.splitlines():
        if line.startswith(names.METRIC_LEADER + " "):
            return float(line.split()[1])
    return None
