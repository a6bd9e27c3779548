"""Containment on real packets: how long from a signal to the first refused (or accepted) connection.

    .venv/bin/python bench/bench_packets.py [--alerts 50] [--rollbacks 20] [--writes 50]

Needs root, iptables-legacy, the kernel's NFQUEUE, and `netwarden controlplane build` (control plane +
enforcer). Starts the real stack with real pod networking (`start_stack(engine="kube", real_packets=True)`:
every pod a network namespace with real listeners, kube-network-policies enforcing NetworkPolicy and
AdminNetworkPolicy v1alpha1 on the node) and prints three tables:

1. Falco alert -> first refused connection to the quarantined pod (a client pod connects to it in a
   tight loop; a "refused" connection is a SYN the enforcer dropped), over --alerts replicas of one
   Deployment, one alert each; split into netwarden's share (alert POST -> quarantine policy visible
   through a watch) and the rest (policy visible -> first refused connection).
2. `netwarden rollback` of a tightened policy -> first accepted connection again, over --rollbacks
   workloads (each learned, tightened by an Error alert, then rolled back).
3. The enforcer alone: a NetworkPolicy (and an AdminNetworkPolicy) write -> verdict change, and its
   delete -> verdict back, --writes times each, with no netwarden in the path.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client, watch  # noqa: E402

from netwarden.model import names  # noqa: E402
from netwarden.tools.stack import Stack, real_packets_missing, start_stack  # noqa: E402
from netwarden.tools.traffic import PodEnd, steady_flows  # noqa: E402
from tests.support.data import falco_body  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

LEARNING_SECONDS = 2.0
CONFIG: dict[str, Any] = {
    "reconciler": {"cleanup_grace_seconds": 60.0},
    "core": {"learning_seconds": LEARNING_SECONDS, "blast_max_workloads": 1000, "blast_max_pod_fraction": 1.0,
             "write_rate_per_second": 1000.0, "write_burst": 1000},
}
PROBE_TIMEOUT = 0.25


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def row(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"| {name} | {len(ms)} | {percentile(ms, 0.5):.1f} | {percentile(ms, 0.99):.1f} | {min(ms):.1f} | "
            f"{max(ms):.1f} | {statistics.mean(ms):.1f} |")


HEADER = "| what | n | p50 ms | p99 ms | min ms | max ms | mean ms |\n|---|---|---|---|---|---|---|"


#: The one waiting helper, with a bench's patience; what is timed comes from the watch, not from this poll.
wait = functools.partial(wait_for, timeout=120.0, interval=0.05)


#: Opening connections: a new one every this many seconds while earlier ones still wait for a verdict.
STAGGER = 0.002


def first_change(stack: Stack, source_ip: str, destination_ip: str, port: int, want: str,
                 timeout: float = 30.0) -> float:
    """The monotonic start time of the first connection whose result is `want`.

    "dropped": connections one after another (an accepted one takes about a millisecond, so the first
    dropped one starts within a millisecond of the change). "open": a dropped connection only says so
    after PROBE_TIMEOUT, so connections are started every STAGGER seconds on threads, and the earliest
    start that got through is the answer (resolution: STAGGER, not PROBE_TIMEOUT).
    """
    deadline = time.monotonic() + timeout
    if want == "dropped":
        while time.monotonic() < deadline:
            started = time.monotonic()
            if stack.pod_network.probe(source_ip, destination_ip, port, timeout=PROBE_TIMEOUT) == want:
                return started
        raise TimeoutError(f"{source_ip} -> {destination_ip}:{port} never became {want}")
    opened: list[float] = []
    lock = threading.Lock()

    def one(started: float) -> None:
        if stack.pod_network.probe(source_ip, destination_ip, port, timeout=PROBE_TIMEOUT) == want:
            with lock:
                opened.append(started)

    threads = []
    while time.monotonic() < deadline:
        with lock:
            if opened:
                break
        started = time.monotonic()
        thread = threading.Thread(target=one, args=(started,), daemon=True)
        thread.start()
        threads.append(thread)
        time.sleep(STAGGER)  # the pace of new connections is the resolution measured, not a wait
    for thread in threads:
        thread.join()
    if not opened:
        raise TimeoutError(f"{source_ip} -> {destination_ip}:{port} never became {want}")
    return min(opened)


@dataclass
class AddedWatch:
    """Monotonic time of every ADDED/MODIFIED namespaced NetworkPolicy and cluster-scoped
    AdminNetworkPolicy, seen through real watches."""

    api: client.ApiClient
    namespace: str
    added: list[tuple[float, str]] = field(default_factory=list)

    def start(self) -> AddedWatch:
        net, custom = client.NetworkingV1Api(self.api), client.CustomObjectsApi(self.api)
        threading.Thread(target=self._run, args=(net.list_namespaced_network_policy, self.namespace),
                         daemon=True).start()
        threading.Thread(target=self._run, args=(custom.list_cluster_custom_object, "policy.networking.k8s.io",
                                                 "v1alpha1", "adminnetworkpolicies"), daemon=True).start()
        return self

    def _run(self, lister: Callable[..., Any], *args: Any) -> None:
        try:
            for event in watch.Watch().stream(lister, *args):
                if event["type"] in ("ADDED", "MODIFIED"):
                    obj = event["object"]
                    name = obj["metadata"]["name"] if isinstance(obj, dict) else obj.metadata.name
                    self.added.append((time.monotonic(), f"{event['type']}:{name}"))
        except client.ApiException:
            return  # the resource is not served: nothing of that kind is ever added
        except Exception:  # noqa: BLE001 - the API server went away at the end of the run
            return

    def first_after(self, since: float, prefix: str) -> float | None:
        """When the first event whose "TYPE:name" starts with `prefix` was seen at or after `since`."""
        return next((t for t, name in list(self.added) if t >= since and name.startswith(prefix)), None)


def running(api: client.ApiClient, namespace: str, selector: str, count: int) -> list[Any]:
    core = client.CoreV1Api(api)

    def ready() -> list[Any] | None:
        found = [p for p in core.list_namespaced_pod(namespace, label_selector=selector).items
                 if p.status.phase == "Running" and p.status.pod_ip and not p.metadata.deletion_timestamp]
        return sorted(found, key=lambda p: p.metadata.name) if len(found) >= count else None
    return wait(ready, f"{count} pods {selector}", timeout=600)


def namespace(api: client.ApiClient, name: str) -> None:
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name, "annotations": {
        names.ANNOTATION_INJECT: names.INJECT_ENABLED, names.ANNOTATION_MODE: names.MODE_ENFORCE}}})
    wait(lambda: client.CoreV1Api(api).list_namespaced_service_account(
        name, field_selector="metadata.name=default").items, "default ServiceAccount")


def deployment(api: client.ApiClient, ns: str, name: str, replicas: int, annotations: dict[str, str],
               port: int | None = 8080) -> None:
    container: dict[str, Any] = {"name": "app", "image": "stand-in"}
    if port:
        container["ports"] = [{"containerPort": port}]
    client.AppsV1Api(api).create_namespaced_deployment(ns, {
        "metadata": {"name": name}, "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name, "bench": ns}, "annotations": annotations},
                     "spec": {"containers": [container]}}}})


def falco(stack: Stack, pod: Any, priority: str) -> None:
    stack.post_signal("/signals/falco", falco_body(pod.metadata.namespace, pod.metadata.name, priority))


def use_backend(stack: Stack, backend: str) -> bool:
    """Restart the reconciler with `reconciler.quarantine_backend: backend`; False when netwarden has no such option."""
    import dataclasses

    import requests
    import yaml

    from netwarden.platform.config import ReconcilerConfig

    if "quarantine_backend" not in {f.name for f in dataclasses.fields(ReconcilerConfig)}:
        return backend == "networkpolicy"
    path = stack.workdir / "netwarden.yaml"
    config = yaml.safe_load(path.read_text())
    config["reconciler"]["quarantine_backend"] = backend
    path.write_text(yaml.safe_dump(config))
    stack.restart("reconciler")

    def ready() -> bool:
        try:
            return requests.get(f"{stack.signals_url}/readyz", timeout=2, verify=stack.ca_file).status_code == 200
        except requests.RequestException:
            return False
    wait(ready, "the reconciler back")
    return True


def bench_quarantine(stack: Stack, api: client.ApiClient, alerts: int, backend: str) -> dict[str, list[float]]:
    ns = f"bq-{uuid.uuid4().hex[:6]}"
    namespace(api, ns)
    deployment(api, ns, "client", 1, {names.ANNOTATION_PURPOSE: "frontend",
                                      names.ANNOTATION_ALLOW_TO: "purpose=backend:8080"}, port=None)
    # one replica more than alerts: evidence on every replica would quarantine the workload instead
    deployment(api, ns, "app", alerts + 1, {names.ANNOTATION_PURPOSE: "backend",
                                            names.ANNOTATION_ALLOW_FROM: "purpose=frontend"})
    (client_pod,) = running(api, ns, "app=client", 1)
    targets = running(api, ns, "app=app", alerts + 1)[:alerts]
    added = AddedWatch(api, ns).start()
    out: dict[str, list[float]] = {f"{backend}: alert -> first refused connection": [],
                                   f"{backend}: alert -> netwarden's writes visible": [],
                                   f"{backend}: writes visible -> first refused (enforcer)": []}
    for pod in targets:
        first_change(stack, client_pod.status.pod_ip, pod.status.pod_ip, 8080, "open")
        sent = time.monotonic()
        falco(stack, pod, "Critical")
        refused = first_change(stack, client_pod.status.pod_ip, pod.status.pod_ip, 8080, "dropped")
        visible = wait(lambda: added.first_after(sent, "ADDED:netwarden-quarantine-"), "the quarantine object")
        if backend == "networkpolicy":  # the pod is also carved out of its workload's policy (NotIn), after
            try:
                visible = max(visible, wait(lambda: added.first_after(sent, "MODIFIED:netwarden-deploy-app"),
                                            "the workload policy's carve-out", timeout=3.0))
            except TimeoutError:
                pass  # no carve-out for this quarantine: the quarantine policy alone is netwarden's write
        out[f"{backend}: alert -> first refused connection"].append(refused - sent)
        out[f"{backend}: alert -> netwarden's writes visible"].append(visible - sent)
        out[f"{backend}: writes visible -> first refused (enforcer)"].append(max(0.0, refused - visible))
    return out


def bench_rollback(stack: Stack, api: client.ApiClient, count: int) -> dict[str, list[float]]:
    from netwarden.reconciler.policy_ops import PolicyWriter, rollback
    from netwarden.platform.kube import KubeClient

    ns = f"br-{uuid.uuid4().hex[:6]}"
    namespace(api, ns)
    for name in ("web", "admin"):
        deployment(api, ns, name, 1, {names.ANNOTATION_PURPOSE: "frontend",
                                      names.ANNOTATION_ALLOW_TO: "purpose=backend:8080"}, port=None)
    for i in range(count):
        deployment(api, ns, f"api{i}", 1, {names.ANNOTATION_PURPOSE: "backend",
                                           names.ANNOTATION_ALLOW_FROM: "purpose=frontend"})
    (web,), (admin,) = running(api, ns, "app=web", 1), running(api, ns, "app=admin", 1)
    apis = [running(api, ns, f"app=api{i}", 1)[0] for i in range(count)]
    ends = {p.metadata.name: PodEnd(ns, p.metadata.name, p.status.pod_ip, p.metadata.labels or {})
            for p in [web, *apis]}
    edges = [(ends[web.metadata.name], ends[p.metadata.name], 8080, "TCP", "FORWARDED") for p in apis]
    records = steady_flows(edges, start=time.time(), seconds=LEARNING_SECONDS + 1, rate=max(100, 20 * count))
    stack.post_signal("/signals/flows", "\n".join(json.dumps(r) for r in records))
    time.sleep(LEARNING_SECONDS + 1.5)  # the learning window is time by definition
    net = client.NetworkingV1Api(api)
    for pod in apis:
        falco(stack, pod, "Error")
    for i in range(count):
        wait(lambda: (net.read_namespaced_network_policy(f"netwarden-deploy-api{i}", ns).metadata.annotations or {})
             .get(names.ANNOTATION_STEP) == names.STEP_TIGHTENED, f"api{i} tightened")
    writer = PolicyWriter(KubeClient(stack.api_client()))
    out: dict[str, list[float]] = {"rollback -> first accepted connection": []}
    for i, pod in enumerate(apis):
        first_change(stack, admin.status.pod_ip, pod.status.pod_ip, 8080, "dropped")
        started = time.monotonic()
        rollback(writer, ns, f"netwarden-deploy-api{i}", None, changed_by="bench")
        accepted = first_change(stack, admin.status.pod_ip, pod.status.pod_ip, 8080, "open")
        out["rollback -> first accepted connection"].append(accepted - started)
    return out


def bench_enforcer(stack: Stack, api: client.ApiClient, writes: int) -> dict[str, list[float]]:
    ns = f"be-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})  # not opted in: no netwarden policies
    wait(lambda: client.CoreV1Api(api).list_namespaced_service_account(
        ns, field_selector="metadata.name=default").items, "default ServiceAccount")
    deployment(api, ns, "a", 1, {}, port=8080)
    deployment(api, ns, "b", 1, {}, port=8080)
    (a,), (b,) = running(api, ns, "app=a", 1), running(api, ns, "app=b", 1)
    net, custom = client.NetworkingV1Api(api), client.CustomObjectsApi(api)
    out: dict[str, list[float]] = {"NetworkPolicy create -> first refused": [], "NetworkPolicy delete -> first accepted": [],
                                   "AdminNetworkPolicy create -> first refused": [],
                                   "AdminNetworkPolicy delete -> first accepted": []}
    deny = {"metadata": {"name": "deny-b"}, "spec": {"podSelector": {"matchLabels": {"app": "b"}},
                                                     "policyTypes": ["Ingress"]}}
    anp = {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
           "metadata": {"name": f"deny-{ns}-b"},
           "spec": {"priority": 0, "subject": {"pods": {
               "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
               "podSelector": {"matchLabels": {"app": "b"}}}},
               "ingress": [{"name": "deny", "action": "Deny", "from": [{"namespaces": {}}]}]}}
    group = ("policy.networking.k8s.io", "v1alpha1", "adminnetworkpolicies")
    for _ in range(writes):
        first_change(stack, a.status.pod_ip, b.status.pod_ip, 8080, "open")
        started = time.monotonic()
        net.create_namespaced_network_policy(ns, deny)
        out["NetworkPolicy create -> first refused"].append(
            first_change(stack, a.status.pod_ip, b.status.pod_ip, 8080, "dropped") - started)
        started = time.monotonic()
        net.delete_namespaced_network_policy("deny-b", ns)
        out["NetworkPolicy delete -> first accepted"].append(
            first_change(stack, a.status.pod_ip, b.status.pod_ip, 8080, "open") - started)
        if stack.enforcer.admin_network_policy:
            started = time.monotonic()
            custom.create_cluster_custom_object(*group, anp)
            out["AdminNetworkPolicy create -> first refused"].append(
                first_change(stack, a.status.pod_ip, b.status.pod_ip, 8080, "dropped") - started)
            started = time.monotonic()
            custom.delete_cluster_custom_object(*group, anp["metadata"]["name"])
            out["AdminNetworkPolicy delete -> first accepted"].append(
                first_change(stack, a.status.pod_ip, b.status.pod_ip, 8080, "open") - started)
    return {k: v for k, v in out.items() if v}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=50)
    parser.add_argument("--rollbacks", type=int, default=20)
    parser.add_argument("--writes", type=int, default=50)
    parser.add_argument("--backends", default="networkpolicy,adminnetworkpolicy",
                        help="netwarden quarantine backends to time, comma-separated (reconciler restarted for each)")
    args = parser.parse_args()
    missing = real_packets_missing("kube")
    if missing:
        print("cannot run: needs " + "; ".join(missing), file=sys.stderr)
        return 2
    stack = start_stack(Path(tempfile.mkdtemp(prefix="nw-bench-packets-")), engine="kube", reconciler_config=CONFIG,
                        real_packets=True, progress=lambda m: print(m, file=sys.stderr))
    try:
        api = stack.api_client()
        results: dict[str, list[float]] = {}
        results.update(bench_enforcer(stack, api, args.writes))
        for backend in args.backends.split(","):
            if use_backend(stack, backend):
                results.update(bench_quarantine(stack, api, args.alerts, backend))
            else:
                print(f"skipping the {backend} backend: netwarden has no reconciler.quarantine_backend here",
                      file=sys.stderr)
        use_backend(stack, "networkpolicy")
        results.update(bench_rollback(stack, api, args.rollbacks))
    finally:
        stack.stop()
    print("\nreal packets, kube-network-policies (NetworkPolicy + AdminNetworkPolicy) on this machine "
          f"(refused: no verdict within {PROBE_TIMEOUT * 1000:.0f} ms, connections one after another; accepted: "
          f"connections started every {STAGGER * 1000:.0f} ms)\n")
    print(HEADER)
    for name, values in results.items():
        print(row(name, values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
