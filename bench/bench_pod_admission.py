"""Pod create latency through the API server without netwarden's webhook and with it, on both engines.

The figure a platform team asks for before installing an admission webhook. For each engine
(local: localkube as its own process, like `netwarden demo`; kube: the real etcd + kube-apiserver +
kube-controller-manager) it starts the webhook (gunicorn, TLS, 2 workers x 4 threads) and creates N
bare pods per row in an opted-in namespace of the row's own: with no webhook registered, and with
the webhook registered exactly as the chart does (Mutating + Validating configurations, caBundle,
failurePolicy Ignore, timeoutSeconds 5). Every pod of the second row is a new bare-pod workload, so
every admission also writes that pod's baseline NetworkPolicy: the worst case. A third row creates
N pods of one workload (a ReplicaSet's, created as its controller's user by impersonation, with
generateName: one identity, one baseline), the common case of replicas, where the write is done once
and later reviews take the cached path (each still verifies the owner, from the webhook's cache).
A floor row registers, the same way, a webhook that answers every review at once (bench/webhook_peers.py
`admit`: one asyncio process, the uid, allowed, on /mutate a patch putting 7 labels on the pod; nothing
looked up or written), on bare pods: what calling any two webhooks costs the API server on this machine.
The rows' pods are created in interleaved rounds (`--rounds`, the configurations re-pointed before
each), so the shared machine's changing load falls on every row alike. One client, sequential
creates; the raw response is read but not deserialised into models. No reconciler and no kubelet run.

`--baseline-write async` (or `both`) runs the webhook with `webhook.baseline_write: async`: a new
workload's baseline is written just after its review, under the namespace's admission guard (a
deny-all for netwarden-labelled pods, written inside the first review), instead of inside it.

Where the added time goes: the webhook logs each review's own time (`latency_ms`, the policy write
included); the table's "in webhook" columns are the p50 of mutate + validate per pod, the rest of
the difference is the API server calling the two webhooks (TLS round trips, its own encoding and
patching) and, per new workload, the write's own storage.

Run: .venv/bin/python bench/bench_pod_admission.py [PODS] [--engine local|kube|both]
(default 1000 pods, both engines; the kube rows need `netwarden controlplane build`).
The ratio is "with webhook / without" on the same engine and the same kind of pods (bare pods, or the
ReplicaSet's; the rows without the webhook have ratio 1.0).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from kubernetes import client  # noqa: E402

from netwarden.model import names  # noqa: E402
from netwarden.platform.kube import load_api_client  # noqa: E402
from netwarden.tools.stack import (  # noqa: E402
    ManagedProcess,
    ensure_dns_service,
    free_port,
    make_tls,
    start_api_server,
    start_webhook,
    webhook_configurations,
)
from tests.support.waiting import wait_for  # noqa: E402

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
    one_workload: bool = False


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def opted_in_namespace(api: client.ApiClient) -> str:
    core = client.CoreV1Api(api)
    name = f"bench-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name, "annotations": {
        names.ANNOTATION_INJECT: names.INJECT_ENABLED, names.ANNOTATION_MODE: names.MODE_ENFORCE}}})
    wait_for(lambda: core.list_namespaced_service_account(name, field_selector="metadata.name=default").items,
             f"the default ServiceAccount in {name}", interval=0.05)
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


@dataclass
class Variant:
    """One row: where the configurations point (no webhook, or one of them) and which pods are created."""

    webhook: ManagedProcess | None
    url: str | None
    one_workload: bool
    baseline_write: str
    namespace: str = ""
    latencies: list[float] = field(default_factory=list)
    created: int = 0
    #: The floor webhook (answers at once), not netwarden's.
    floor: bool = False

    @property
    def label(self) -> str:
        if self.floor:
            return "floor: answers at once"
        if self.webhook is None:
            return "no, 1 workload" if self.one_workload else "no"
        return f"{self.baseline_write}, " + ("1 workload" if self.one_workload else "new workloads")


def register(api: client.ApiClient, url: str | None, ca_pem: bytes) -> None:
    """Point the Mutating and Validating configurations at `url` (None: no webhook registered)."""
    admission = client.AdmissionregistrationV1Api(api)
    for delete in (admission.delete_mutating_webhook_configuration,
                   admission.delete_validating_webhook_configuration):
        try:
            delete("netwarden")
        except client.ApiException as exc:
            if exc.status != 404:
                raise
    if url is not None:
        mutating, validating = webhook_configurations(url, ca_pem)
        admission.create_mutating_webhook_configuration(mutating)
        admission.create_validating_webhook_configuration(validating)
    time.sleep(1.0)  # the real apiserver picks configurations up from its informer (none registered: nothing to poll)


def finish(engine: str, api: client.ApiClient, variant: Variant) -> Row:
    """The row, once its baselines are all there (async: the last land just after their reviews)."""
    expected = 0 if variant.floor else 1 if variant.one_workload else variant.created
    if variant.webhook and not variant.floor:
        wait_for(lambda: baselines(api, variant.namespace) >= expected,
                 f"{expected} baselines for {variant.created} pods (was the webhook called?)", timeout=30)
    policies = baselines(api, variant.namespace)
    if variant.webhook and policies != expected:
        raise RuntimeError(f"the webhook wrote {policies} baselines for {variant.created} pods: was it called?")
    if not variant.webhook and policies:
        raise RuntimeError("policies were written without the webhook")
    if variant.floor:
        pod = client.CoreV1Api(api).list_namespaced_pod(variant.namespace, limit=1).items[0]
        if "netwarden.io/label-0" not in (pod.metadata.labels or {}):
            raise RuntimeError("the floor webhook's patch was not applied (was it called?)")
    in_webhook = None
    if variant.webhook is not None and not variant.floor:
        times = review_times(variant.webhook.log_path, variant.namespace)
        in_webhook = percentile(times["mutate"], 0.5) + percentile(times["validate"], 0.5)
    ms = [x * 1000 for x in variant.latencies]
    return Row(engine, variant.webhook is not None, len(ms), percentile(ms, 0.50), percentile(ms, 0.99),
               statistics.fmean(ms), policies, variant.label, in_webhook, variant.baseline_write, variant.one_workload)


def start_bench_webhook(workdir: Path, kubeconfig: str, api: client.ApiClient, tls: tuple[str, str, str],
                        baseline_write: str) -> tuple[ManagedProcess, str]:
    config = workdir / f"netwarden-{baseline_write}.yaml"
    config.write_text(yaml.safe_dump({"cluster": {"dns_service": "kube-system/kube-dns",
                                                  "default_mode": names.MODE_ENFORCE},
                                      "webhook": {"baseline_write": baseline_write}}))
    proc, url = start_webhook(workdir, kubeconfig, api, tls,
                              {"NETWARDEN_CONFIG": str(config), "NETWARDEN_LOG_LEVEL": "WARNING"})
    register(api, None, b"")  # start_webhook registered it; the rounds choose
    return proc, url


def start_floor_webhook(workdir: Path, tls: tuple[str, str, str]) -> tuple[ManagedProcess, str]:
    """bench/webhook_peers.py `admit`, listening once this returns."""
    port = free_port()
    log_path = workdir / "floor-webhook.log"
    labels = {f"netwarden.io/label-{i}": f"value-{i}" for i in range(7)}
    with log_path.open("wb") as out:
        popen = subprocess.Popen([sys.executable, "bench/webhook_peers.py", "admit", "--port", str(port), "--cert", tls[1],
                                  "--key", tls[2], "--labels", json.dumps(labels)],
                                 cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    proc = ManagedProcess("floor-webhook", popen, log_path)

    def listening() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    wait_for(listening, "the floor webhook to listen", timeout=30, interval=0.1, ignoring=(OSError,))
    return proc, f"https://127.0.0.1:{port}"


def run_engine(engine: str, pods: int, writes: list[str], rounds: int) -> list[Row]:
    """Every row's pods in `rounds` interleaved rounds (the order rotating), so a change in the
    machine's load falls on every row alike; each row's percentiles are over all its pods."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-admission-{engine}-"))
    kubeconfig = str(workdir / "kubeconfig")
    processes: list[ManagedProcess] = []
    closers: list[Callable[[], None]] = []
    try:
        start_api_server(workdir, engine, kubeconfig, processes, closers, progress=lambda _: None)
        api = load_api_client(kubeconfig)
        ensure_dns_service(api)
        tls = make_tls(workdir / "tls", "netwarden")
        ca_pem = Path(tls[0]).read_bytes()
        # Each row against pods of its own kind without the webhook: a ReplicaSet's pods cost the API server
        # more than bare ones (impersonation; its controller releases each pod the bench creates for it).
        variants = [Variant(None, None, False, ""), Variant(None, None, True, "")]
        floor, floor_url = start_floor_webhook(workdir, tls)
        processes.append(floor)
        variants.append(Variant(floor, floor_url, False, "", floor=True))
        for write in writes:
            proc, url = start_bench_webhook(workdir, kubeconfig, api, tls, write)
            processes.append(proc)
            variants += [Variant(proc, url, False, write), Variant(proc, url, True, write)]
        for variant in variants:
            variant.namespace = opted_in_namespace(api)
        per_round = [pods // rounds + (1 if r < pods % rounds else 0) for r in range(rounds)]
        for r, count in enumerate(per_round):
            for variant in variants[r % len(variants):] + variants[:r % len(variants)]:
                register(api, variant.url, ca_pem)
                if r == 0:
                    create_pods(api, variant.namespace, WARM_UP, "warm", variant.one_workload)
                    variant.created += WARM_UP
                variant.latencies += create_pods(api, variant.namespace, count, f"r{r}", variant.one_workload)
                variant.created += count
        return [finish(engine, api, variant) for variant in variants]
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
                        help="the webhook's webhook.baseline_write (both: two webhooks, a row each)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds the pods of each row are split in")
    args = parser.parse_args()
    engines = ["local", "kube"] if args.engine == "both" else [args.engine]
    writes = ["sync", "async"] if args.baseline_write == "both" else [args.baseline_write]
    rows = [row for engine in engines for row in run_engine(engine, args.pods, writes, args.rounds)]
    print(f"pod create latency, {args.pods} pods per row (+{WARM_UP} warm-up) in {args.rounds} interleaved rounds, "
          "one sequential client")
    print(f"{'engine':8} {'webhook':22} {'pods':>6} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} "
          f"{'p50 ratio':>10} {'p99 ratio':>10} {'policies':>9} {'in webhook p50 ms':>18}")
    for row in rows:
        base = next(r for r in rows if r.engine == row.engine and not r.webhook and r.one_workload == row.one_workload)
        inside = "" if row.in_webhook_ms is None else f"{row.in_webhook_ms:.2f}"
        print(f"{row.engine:8} {row.label:22} {row.pods:6d} {row.p50_ms:8.2f} {row.p99_ms:8.2f} "
              f"{row.mean_ms:8.2f} {row.p50_ms / base.p50_ms:10.2f} {row.p99_ms / base.p99_ms:10.2f} "
              f"{row.policies:9d} {inside:>18}")


if __name__ == "__main__":
    main()
