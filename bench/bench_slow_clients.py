"""Slow and idle clients against both servers, before and after issue 11's serving fixes, in one run.

    .venv/bin/python bench/bench_slow_clients.py [--idle 300] [--slow 64] [--requests 30]

Signal receiver (in this process, TLS): GET /healthz on a new connection per request (as a probe
does) with 0 and then `--idle` idle TCP connections open; then the thread count with `--idle` slow
TLS clients (handshake done, request head cut short). "before" is the werkzeug threaded server the
receivers used until this change (handshake in its accept loop, a thread per connection), rebuilt
here; "after" is netwarden/reconciler/httpserver.py. Webhook (`netwarden webhook`, 2 workers x 8 threads,
against the local API server): POST /mutate with 0 and then `--slow` hostile clients (silent TCP,
cut ClientHello, cut request head, missing body); "before" is gunicorn's stock gthread worker, "after"
netwarden/webhook/serving.py's guarded worker. A request that takes longer than the client's timeout
(`--probe-timeout`, `--review-timeout`) counts as failed, not in the latencies. Loopback only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from netwarden.certs.pki import generate_ca, issue_certificate  # noqa: E402
from localkube import LocalKube  # noqa: E402
from netwarden.model import names  # noqa: E402
from netwarden.tools.stack import free_port, stop_group  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

DATA = REPO / "tests" / "data" / "admission"
PYTHON_BEFORE = ("import sys, netwarden.webhook.serving as s; s.guarded_worker_class = lambda *a: 'gthread'; "
                 "from netwarden.webhook.cli import main; sys.exit(main(sys.argv[1:]))")


def latencies(port: int, context: ssl.SSLContext, method: str, path: str, body: bytes | None, count: int,
              timeout: float) -> tuple[list[float], int]:
    """`count` requests, each on a new TLS connection; (latencies of those answered 200, failures)."""
    answered: list[float] = []
    failed = 0
    for _ in range(count):
        started = time.perf_counter()
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                answered.append(time.perf_counter() - started)
            else:
                failed += 1
        except OSError:
            failed += 1
        finally:
            conn.close()
    return answered, failed


def row(server: str, case: str, samples: list[float], failed: int, threads: str = "") -> str:
    if samples:
        ordered = sorted(samples)
        p50 = f"{statistics.median(ordered) * 1000:8.1f}"
        p99 = f"{ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000:8.1f}"
    else:
        p50 = p99 = "       -"
    return f"| {server:<26} | {case:<34} | {len(samples) + failed:>4} | {failed:>6} | {p50} | {p99} | {threads:>7} |"


# --- the signal receiver ------------------------------------------------------------------------


class Sink:
    def accept_flows(self, flows: Any) -> None: ...

    def accept_alert(self, alert: Any) -> None: ...

    def accept_metric_alerts(self, alerts: Any) -> None: ...


def werkzeug_receiver(app: Any, context: ssl.SSLContext) -> tuple[int, Callable[[], None]]:
    """The receivers' server before this change: werkzeug, threaded, TLS handshake in accept()."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, name="signal-receiver", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()  # waits for the accept loop: close the idle clients first
        server.server_close()

    return server.server_port, stop


def guarded_receiver(app: Any, reloader: Any) -> tuple[int, Callable[[], None]]:
    from netwarden.reconciler.receivers import ReceiverServer

    server = ReceiverServer(app, "127.0.0.1", 0, tls=reloader).start()
    return server.port, server.stop


def hostile_idle(port: int, count: int, stack: ExitStack) -> None:
    """Connect without waiting (as an attacker would): a server whose backlog is full leaves the rest pending."""
    for _ in range(count):
        sock = stack.enter_context(socket.socket())
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))


def hostile_slow_tls(port: int, count: int, context: ssl.SSLContext, stack: ExitStack) -> None:
    for _ in range(count):
        tls = stack.enter_context(context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10)))
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")


def receiver_rows(tmp: Path, args: argparse.Namespace, client: ssl.SSLContext) -> Iterator[str]:
    from prometheus_client import CollectorRegistry

    from netwarden.reconciler.receivers import create_receiver_app
    from netwarden.platform.tls import CertificateReloader

    for label in ("receiver before (werkzeug)", "receiver after (asyncio)"):
        reloader = CertificateReloader(str(tmp / "tls.crt"), str(tmp / "tls.key"))
        app = create_receiver_app(Sink(), token=None, registry=CollectorRegistry(), tls=reloader)
        base_threads = threading.active_count()
        port, stop = (werkzeug_receiver(app, reloader.context()) if "before" in label
                      else guarded_receiver(app, reloader))
        try:
            samples, failed = latencies(port, client, "GET", "/healthz", None, args.requests, args.probe_timeout)
            yield row(label, "GET /healthz, 0 idle (baseline)", samples, failed)
            with ExitStack() as stack:
                hostile_idle(port, args.idle, stack)
                samples, failed = latencies(port, client, "GET", "/healthz", None, args.requests, args.probe_timeout)
                yield row(label, f"GET /healthz, {args.idle} idle TCP open", samples, failed)
            if "before" in label:  # its accept loop is free again only once the idle sockets are gone
                wait_for(lambda: latencies(port, client, "GET", "/healthz", None, 1, 2)[0], "the accept loop free",
                         interval=0.2)
            with ExitStack() as stack:
                hostile_slow_tls(port, args.idle, client, stack)
                time.sleep(1.0)  # the slow clients are the load: the server takes them at its pace, nothing to poll
                threads = threading.active_count() - base_threads
                samples, failed = latencies(port, client, "GET", "/healthz", None, args.requests, args.probe_timeout)
                yield row(label, f"GET /healthz, {args.idle} slow TLS open", samples, failed, str(threads))
        finally:
            stop()


# --- the webhook --------------------------------------------------------------------------------


def hostile_mix(port: int, count: int, context: ssl.SSLContext, stack: ExitStack) -> None:
    for n in range(count):
        raw = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=2))
        kind = n % 4
        try:
            if kind == 1:
                raw.sendall(b"\x16\x03\x01\x02\x00\x01")
            elif kind >= 2:
                tls = stack.enter_context(context.wrap_socket(raw))
                tls.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\n" if kind == 2 else
                            b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{")
        except OSError:
            pass  # a server already stalled cannot even take the hostile clients' handshakes


def webhook_rows(tmp: Path, args: argparse.Namespace, client: ssl.SSLContext, kube: LocalKube) -> Iterator[str]:
    body = json.loads((DATA / "v1_pod-create_kubectl-apply_c7n-server-log.json").read_text())
    body["request"]["namespace"] = body["request"]["object"]["metadata"]["namespace"] = "bench"
    review = json.dumps(body).encode()
    kubeconfig = kube.write_kubeconfig(tmp / "kubeconfig")
    for label, launcher in (("webhook before (gthread)", ["-c", PYTHON_BEFORE]),
                            ("webhook after (guarded)", ["-m", "netwarden.webhook.cli"])):
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO), "PROMETHEUS_MULTIPROC_DIR": str(tmp / f"metrics-{port}")}
        os.makedirs(env["PROMETHEUS_MULTIPROC_DIR"])
        log = open(tmp / f"webhook-{port}.log", "wb")
        process = subprocess.Popen(
            [sys.executable, *launcher, "--cert", str(tmp / "tls.crt"), "--key", str(tmp / "tls.key"),
             "--host", "127.0.0.1", "--port", str(port), "--kubeconfig", kubeconfig, "--workers", "2",
             "--threads", "8"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            def ready() -> bool:
                if process.poll() is not None:
                    raise RuntimeError((tmp / f"webhook-{port}.log").read_text())
                return bool(latencies(port, client, "GET", "/readyz", None, 1, 2)[0])

            wait_for(ready, f"{label} ready", interval=0.2)
            latencies(port, client, "POST", "/mutate", review, 5, args.review_timeout)  # warm-up: caches, the write
            samples, failed = latencies(port, client, "POST", "/mutate", review, args.requests, args.review_timeout)
            yield row(label, "POST /mutate, 0 slow (baseline)", samples, failed)
            with ExitStack() as stack:
                hostile_mix(port, args.slow, client, stack)
                samples, failed = latencies(port, client, "POST", "/mutate", review, args.requests,
                                            args.review_timeout)
                yield row(label, f"POST /mutate, {args.slow} slow clients", samples, failed)
        finally:
            stop_group(process, timeout=20)
            log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=int, default=300, help="idle / slow clients against the receiver")
    parser.add_argument("--slow", type=int, default=64, help="hostile clients against the webhook")
    parser.add_argument("--requests", type=int, default=30, help="requests per case")
    parser.add_argument("--probe-timeout", type=float, default=1.0, help="the kubelet's default probe timeout")
    parser.add_argument("--review-timeout", type=float, default=5.0, help="the chart's webhook timeoutSeconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-slow-") as tmp_name, LocalKube() as kube:
        tmp = Path(tmp_name)
        now = datetime.now(timezone.utc)
        ca = generate_ca("bench-ca", now=now, valid_for=timedelta(hours=1))
        leaf = issue_certificate(ca, "bench", now=now, valid_for=timedelta(hours=1), ip_addresses=["127.0.0.1"])
        (tmp / "tls.crt").write_bytes(leaf.cert_pem)
        (tmp / "tls.key").write_bytes(leaf.key_pem)
        client = ssl.create_default_context(cadata=ca.cert_pem.decode())
        client.check_hostname = False
        from kubernetes import client as kclient

        kclient.CoreV1Api(kube.api_client()).create_namespace(
            {"metadata": {"name": "bench", "labels": {names.LABEL_INJECT: names.INJECT_ENABLED}}})
        print(f"{os.cpu_count()} CPUs; new TLS connection per request; failed = no 200 within the client's timeout "
              f"({args.probe_timeout} s probe, {args.review_timeout} s review); threads = added by the server")
        print("| server                     | case                               | reqs | failed | p50 ms   | p99 ms   | threads |")
        print("|---|---|---|---|---|---|---|")
        for line in receiver_rows(tmp, args, client):
            print(line, flush=True)
        for line in webhook_rows(tmp, args, client, kube):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
