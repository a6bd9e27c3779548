"""Pod create latency through the API server without netwarden's webhook and with it, on both engines.

The figure a platform team asks for before installing an admission webhook. For each engine
(local: localkube as its own process, like `netwarden demo`; kube: the real etcd + kube-apiserver +
kube-controller-manager) it creates N bare pods in an opted-in namespace with no webhook registered,
then starts the webhook (gunicorn, TLS, 2 workers x 4 threads) and registers it exactly as the chart
does (Mutating + Validating configurations, caBundle, failurePolicy Ignore, timeoutSeconds 5) and
creates N more. Every pod is a new bare-pod workload, so every admission with the webhook also
writes that pod's baseline NetworkPolicy from inside the request: the worst case. A third row
creates N pods of one workload (a ReplicaSet's, created as its controller's user by impersonation, with
generateName: one identity, one baseline), the common case of replicas, where the write is done once
and later reviews take the cached path (each still verifies the owner, from the webhook's cache).
One client, sequential creates; the raw response is read but not deserialised into models. No
reconciler and no kubelet run, so nothing else loads the server.

`--baseline-write async` (or `both`) runs the webhook with `webhook.baseline_write: async`: a new
workload's baseline is written just after its review, under the namespace's admission guard (a
deny-all for netwarden-labelled pods, written inside the first review), instead of inside it.

Where the added time goes: the webhook logs each review's own time (`latency_ms`, the policy write
included); the table's "in webhook" columns are the p50 of mutate + validate per pod, the rest of
the difference is the API server calling the two webhooks (TLS round trips, its own encoding and
patching) and, per new workload, the write's own storage.

Run: .venv/bin/python bench/bench_pod_admission.py [PODS] [--engine local|kube|both]
(default 1000 pods, both engines; the kube rows need `netwarden controlplane build`).
The ratio is "with webhook / without" on the same engine (the baseline row has ratio 1.0).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml
from kubernetes import client

from netwarden.model import names
from netwarden.platform.kube import load_api_client
from netwarden.tools.stack import ManagedProcess, ensure_dns_service, make_tls, start_api_server, start_webhook

WARM_UP = 20


@dataclass(frozen=True)
class Row:
    engine: str
    webhook: bool
    pods: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    policies: int
    label: str = ""
    in_webhook_ms: float | None = None
    baseline_write: str = ""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def opted_in_namespace(api: client.ApiClient) -> str:
    core = client.CoreV1Api(api)
    name = f"bench-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name, "annotations": {
        names.ANNOTATION_INJECT: names.INJECT_ENABLED, names.ANNOTATION_MODE: names.MODE_ENFORCE}}})
    deadline = time.monotonic() + 60
    while not core.list_namespaced_service_account(name, field_selector="metadata.name=default").items:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no default ServiceAccount in {name}")
        time.sleep(0.05)
    return name


def create_pods(api: client.ApiClient, namespace: str, count: int, prefix: str, one_workload: bool = False
                ) -> list[float]:
    """Seconds per create, as the client sees it (request, admission, storage, response)."""
    core = client.CoreV1Api(api)
    naming: dict[str, object] = {}
    if one_workload:  # a ReplicaSet's pods, as its controller creates them (only its claim of the owner counts)
        naming = {"generateName": "web-", "ownerReferences": [replica_set(api, namespace)]}
        impersonating = client.ApiClient(api.configuration)
        impersonating.set_default_header("Impersonate-User", "system:serviceaccount:kube-system:replicaset-controller")
        core = client.CoreV1Api(impersonating)
    latencies = []
    for i in range(count):
        if not one_workload:
            naming = {"name": f"{prefix}-{i}"}
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {**naming, "annotations": {names.ANNOTATION_PURPOSE: "frontend"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 8080}]}]}}
        started = time.perf_counter()
        response = core.create_namespaced_pod(namespace, body, _preload_content=False)
        response.data  # noqa: B018 - read the whole body inside the timing
        latencies.append(time.perf_counter() - started)
        if response.status != 201:
            raise RuntimeError(f"pod create answered {response.status}")
    return latencies


def replica_set(api: client.ApiClient, namespace: str) -> dict[str, object]:
    """A ReplicaSet of no replicas whose selector matches none of the bench's pods (the real controller releases
    them and creates none of its own); its controller reference, once."""
    apps = client.AppsV1Api(api)
    found = apps.list_namespaced_replica_set(namespace, field_selector="metadata.name=web").items
    rs = found[0] if found else apps.create_namespaced_replica_set(namespace, {
        "metadata": {"name": "web"}, "spec": {"replicas": 0, "selector": {"matchLabels": {"bench": "none"}},
        "template": {"metadata": {"labels": {"bench": "none"}},
                     "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}})
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": rs.metadata.uid, "controller": True}


def review_times(log: Path, namespace: str) -> dict[str, list[float]]:
    """Each webhook's own time per review in `namespace` (ms), from its JSON log lines."""
    times: dict[str, list[float]] = {"mutate": [], "validate": []}
    for line in log.read_text().splitlines():
        if '"admission_review"' not in line or namespace not in line:
            continue
        record = json.loads(line)
        if record.get("namespace") == namespace and record.get("webhook") in times:
            times[record["webhook"]].append(float(record["latency_ms"]))
    return times


def baselines(api: client.ApiClient, namespace: str) -> int:
    selector = f"{names.LABEL_POLICY_ROLE}={names.ROLE_BASELINE}"
    return len(client.NetworkingV1Api(api).list_namespaced_network_policy(namespace, label_selector=selector).items)


def measure(engine: str, api: client.ApiClient, pods: int, webhook: ManagedProcess | None,
            one_workload: bool = False, baseline_write: str = "") -> Row:
    namespace = opted_in_namespace(api)
    create_pods(api, namespace, WARM_UP, "warm", one_workload)
    latencies = create_pods(api, namespace, pods, "pod", one_workload)
    expected = 1 if one_workload else pods + WARM_UP
    deadline = time.monotonic() + 30  # async: the last baselines land just after their reviews
    policies = baselines(api, namespace)
    while webhook and policies < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        policies = baselines(api, namespace)
    if webhook and policies != expected:
        raise RuntimeError(f"the webhook wrote {policies} baselines for {pods + WARM_UP} pods: was it called?")
    if not webhook and policies:
        raise RuntimeError("policies were written without the webhook")
    in_webhook = None
    if webhook is not None:
        times = review_times(webhook.log_path, namespace)
        in_webhook = percentile(times["mutate"], 0.5) + percentile(times["validate"], 0.5)
    ms = [x * 1000 for x in latencies]
    label = "no" if webhook is None else f"{baseline_write}, " + ("1 workload" if one_workload else "new workloads")
    return Row(engine, webhook is not None, pods, percentile(ms, 0.50), percentile(ms, 0.99), statistics.fmean(ms),
               policies, label, in_webhook, baseline_write)


def start_bench_webhook(workdir: Path, kubeconfig: str, api: client.ApiClient,
                        baseline_write: str = "sync") -> ManagedProcess:
    ensure_dns_service(api)
    admission = client.AdmissionregistrationV1Api(api)
    for delete in (admission.delete_mutating_webhook_configuration,
                   admission.delete_validating_webhook_configuration):
        try:  # a previous webhook's registration
            delete("netwarden")
        except client.ApiException as exc:
            if exc.status != 404:
                raise
    config = workdir / f"netwarden-{baseline_write}.yaml"
    config.write_text(yaml.safe_dump({"cluster": {"dns_service": "kube-system/kube-dns",
                                                  "default_mode": names.MODE_ENFORCE},
                                      "webhook": {"baseline_write": baseline_write}}))
    proc, _ = start_webhook(workdir, kubeconfig, api, make_tls(workdir / "tls", "netwarden"),
                            {"NETWARDEN_CONFIG": str(config), "NETWARDEN_LOG_LEVEL": "WARNING"})
    time.sleep(1.0)  # the real apiserver picks configurations up from its informer
    return proc


def run_engine(engine: str, pods: int, writes: list[str]) -> list[Row]:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-admission-{engine}-"))
    kubeconfig = str(workdir / "kubeconfig")
    processes: list[ManagedProcess] = []
    closers: list[Callable[[], None]] = []
    try:
        start_api_server(workdir, engine, kubeconfig, processes, closers, progress=lambda _: None)
        api = load_api_client(kubeconfig)
        rows = [measure(engine, api, pods, None)]
        for write in writes:
            webhook = start_bench_webhook(workdir, kubeconfig, api, write)
            processes.append(webhook)
            rows.append(measure(engine, api, pods, webhook, baseline_write=write))
            rows.append(measure(engine, api, pods, webhook, one_workload=True, baseline_write=write))
            webhook.stop()
        return rows
    finally:
        for proc in processes:
            proc.stop()
        for close in closers:
            close()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pods", nargs="?", type=int, default=1000)
    parser.add_argument("--engine", choices=["local", "kube", "both"], default="both")
    parser.add_argument("--baseline-write", choices=["sync", "async", "both"], default="sync",
                        help="the webhook's webhook.baseline_write (both: one webhook after the other)")
    args = parser.parse_args()
    engines = ["local", "kube"] if args.engine == "both" else [args.engine]
    writes = ["sync", "async"] if args.baseline_write == "both" else [args.baseline_write]
    rows = [row for engine in engines for row in run_engine(engine, args.pods, writes)]
    print(f"pod create latency, {args.pods} pods per row (+{WARM_UP} warm-up), one sequential client")
    print(f"{'engine':8} {'webhook':22} {'pods':>6} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} "
          f"{'p50 ratio':>10} {'p99 ratio':>10} {'policies':>9} {'in webhook p50 ms':>18}")
    for row in rows:
        base = next(r for r in rows if r.engine == row.engine and not r.webhook)
        inside = "" if row.in_webhook_ms is None else f"{row.in_webhook_ms:.2f}"
        print(f"{row.engine:8} {row.label:22} {row.pods:6d} {row.p50_ms:8.2f} {row.p99_ms:8.2f} "
              f"{row.mean_ms:8.2f} {row.p50_ms / base.p50_ms:10.2f} {row.p99_ms / base.p99_ms:10.2f} "
              f"{row.policies:9d} {inside:>18}")


if __name__ == "__main__":
    main()
