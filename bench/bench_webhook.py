"""Admission throughput and latency, measured against `netwarden webhook` (gunicorn, TLS) directly.

    .venv/bin/python bench/bench_webhook.py [--requests 2000] [--threads 4] [--workers 2] [--worker-threads 8]

Starts the local API server (for namespace lookups and the one policy write), the webhook as a
subprocess, then `--threads` client threads, each on its own keep-alive TLS connection, POST real
AdmissionReviews (shared/data/admission, opted in by namespace label). Baseline row: GET /healthz on
the same kind of connection; the ratio column is p50 / p50(healthz), i.e. the cost of a review
over the cost of an HTTP round trip on this machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from certs.pki import generate_ca, issue_certificate  # noqa: E402
from localkube import LocalKube  # noqa: E402
from netwarden import names  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "admission"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def review_body(name: str, namespace: str) -> bytes:
    body = json.loads((DATA / name).read_text())
    body["request"]["namespace"] = namespace
    body["request"]["object"]["metadata"]["namespace"] = namespace
    return json.dumps(body).encode()


def update_body(namespace: str) -> bytes:
    request = json.loads((DATA / "v1_pod-update_kubectl-apply_label-change_request-only.json").read_text())
    request["namespace"] = namespace
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}).encode()


def run(port: int, ca_file: str, method: str, path: str, body: bytes | None, total: int, threads: int) -> list[float]:
    context = ssl.create_default_context(cafile=ca_file)
    latencies: list[float] = []
    lock = threading.Lock()
    per_thread = total // threads

    def worker() -> None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
        mine = []
        headers = {"Content-Type": "application/json"} if body else {}
        for _ in range(per_thread):
            started = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"{path}: {response.status} {payload[:200]!r}")
        conn.close()
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    latencies.append(-(time.perf_counter() - started))  # wall time, carried as a negative sentinel
    return latencies


def summarise(label: str, samples: list[float], baseline_p50: float | None) -> tuple[str, float]:
    wall = -samples.pop()
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    ratio = f"{p50 / baseline_p50:5.1f}x" if baseline_p50 else "  1.0x"
    return f"| {label:<38} | {len(samples):>6} | {len(samples) / wall:>9.0f} | {p50 * 1000:>7.2f} | {p99 * 1000:>7.2f} | {ratio} |", p50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4, help="client threads (one keep-alive connection each)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--worker-threads", type=int, default=8, help="gthread threads per worker")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as tmp_name, LocalKube() as kube:
        tmp = Path(tmp_name)
        now = datetime.now(timezone.utc)
        ca = generate_ca("bench-ca", now=now, valid_for=timedelta(hours=1))
        leaf = issue_certificate(ca, "bench", now=now, valid_for=timedelta(hours=1), ip_addresses=["127.0.0.1"])
        (tmp / "ca.crt").write_bytes(ca.cert_pem)
        (tmp / "tls.crt").write_bytes(leaf.cert_pem)
        (tmp / "tls.key").write_bytes(leaf.key_pem)
        (tmp / "metrics").mkdir()
        from kubernetes import client

        core = client.CoreV1Api(kube.api_client())
        core.create_namespace({"metadata": {"name": "bench", "labels": {names.LABEL_INJECT: names.INJECT_ENABLED}}})
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO), "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics")}
        log = open(tmp / "webhook.log", "wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "webhook.cli", "--cert", str(tmp / "tls.crt"), "--key", str(tmp / "tls.key"),
             "--host", "127.0.0.1", "--port", str(port), "--kubeconfig", kube.write_kubeconfig(tmp / "kubeconfig"),
             "--workers", str(args.workers), "--threads", str(args.worker_threads)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            context = ssl.create_default_context(cafile=str(tmp / "ca.crt"))
            deadline = time.monotonic() + 60
            while True:
                try:
                    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=2)
                    conn.request("GET", "/readyz")
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError((tmp / "webhook.log").read_text())
                time.sleep(0.2)
            cases: list[tuple[str, str, str, bytes | None]] = [
                ("GET /healthz (baseline)", "GET", "/healthz", None),
                ("POST /mutate bare pod (v1)", "POST", "/mutate",
                 review_body("v1_pod-create_kubectl-apply_c7n-server-log.json", "bench")),
                ("POST /mutate ReplicaSet pod (v1beta1)", "POST", "/mutate",
                 review_body("v1beta1_pod-create_replicaset-controller_k8s-2018.json", "bench")),
                ("POST /validate pod UPDATE (v1)", "POST", "/validate", update_body("bench")),
            ]
            for _, method, path, body in cases:  # warm-up: caches, the one policy write, TLS
                run(port, str(tmp / "ca.crt"), method, path, body, args.threads * 10, args.threads)
            print(f"webhook: {args.workers} gunicorn workers x {args.worker_threads} threads, TLS; "
                  f"client: {args.threads} threads, keep-alive; {os.cpu_count()} CPUs")
            print("| case                                   |   reqs |  reviews/s | p50 ms  | p99 ms  | p50 ratio |")
            print("|---|---|---|---|---|---|")
            baseline = None
            for label, method, path, body in cases:
                line, p50 = summarise(label, run(port, str(tmp / "ca.crt"), method, path, body, args.requests,
                                                 args.threads), baseline)
                baseline = baseline or p50
                print(line)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
