"""The live flow path end to end (HTTPS receiver -> parse -> attribute -> score), against floors.

    .venv/bin/python bench/bench_receiver.py [--flows 100000] [--batch 500] [--rounds 3]

One load generator (a child process: one keep-alive TLS connection, bearer token, POSTing JSON-lines
bodies of --batch Hubble flows) drives, in interleaved rounds, four servers in this process:
* floors: a bare TLS HTTP/1.1 server (a socket, a read of Content-Length bytes, a fixed answer)
  that only decodes each line with `json.loads`, with `orjson.loads`, or into netwarden's typed
  msgspec Struct (netwarden.reconciler.signals.hubble.HubbleLine), and scores nothing;
* netwarden: the reconciler's receiver (netwarden/reconciler/receivers.py on netwarden/reconciler/httpserver.py, TLS,
  token check, per-record rejection bookkeeping) feeding a DecisionEngine that knows the pods, as the
  reconciler runtime does (one lock per batch, every flow attributed and scored).
The dataset is bench_replay's (synthetic `hubble observe -o json` lines of realistic size, 200
workloads x 2 pods). "per server CPU-second" divides by the CPU time this process used during the
round (the load generator is another process): the figure per core, less sensitive to a shared
machine than the wall-clock rate.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKEN = "bench-token"


# --- the load generator (child process) ------------------------------------------------------------

def load(port: int, ca: str, flows_path: str, batch: int) -> None:
    """Wait for a line on stdin, POST every batch over one keep-alive TLS connection, print seconds."""
    lines = Path(flows_path).read_bytes().splitlines()
    bodies = [b"\n".join(lines[i:i + batch]) + b"\n" for i in range(0, len(lines), batch)]
    context = ssl.create_default_context(cafile=ca)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
    for line in sys.stdin:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context)
        started = time.perf_counter()
        for body in bodies:
            connection.request("POST", "/signals/flows", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise SystemExit(f"status {response.status}: {answer[:300]!r}")
        print(time.perf_counter() - started, flush=True)
        connection.close()


# --- floors -------------------------------------------------------------------------------------

class FloorServer:
    """TLS, HTTP/1.1 keep-alive, Content-Length bodies; decodes each line and answers a fixed body."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

    def __init__(self, context: ssl.SSLContext, decode: Callable[[bytes], object]) -> None:
        self.context, self.decode = context, decode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.flows = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        decode = self.decode
        with self.context.wrap_socket(raw, server_side=True) as conn:
            reader = conn.makefile("rb")
            while True:
                length = 0
                line = reader.readline()
                if not line:
                    return
                while line not in (b"\r\n", b"\n", b""):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                    line = reader.readline()
                body = reader.read(length)
                count = 0
                for record in body.split(b"\n"):
                    if record:
                        decode(record)
                        count += 1
                self.flows += count
                conn.sendall(self.ANSWER)

    def stop(self) -> None:
        self.sock.close()


# --- netwarden -------------------------------------------------------------------------------------

class EngineSink:
    """What the reconciler runtime does with accepted flows: under its engine lock, score a chunk at a time."""

    def __init__(self, pods_path: Path) -> None:
        from netwarden.model import names
        from netwarden.tools.replay import pod_refs_from_snapshot
        from netwarden.reconciler.core.config import CoreConfig
        from netwarden.reconciler.core.engine import DecisionEngine

        self.engine = DecisionEngine(CoreConfig.from_mapping({"default_mode": names.MODE_DRY_RUN}))
        for ref in pod_refs_from_snapshot(json.loads(pods_path.read_text())):
            self.engine.upsert_pod(ref)
        self.lock = threading.RLock()
        self.flows = 0

    def accept_flows(self, flows: Sequence[object]) -> None:
        ingest = self.engine.ingest_flows
        with self.lock:
            for start in range(0, len(flows), 100):  # the runtime's FLOW_CHUNK, each flow at its own time
                ingest(flows[start:start + 100])  # type: ignore[arg-type]
            self.flows += len(flows)

    def accept_alert(self, alert: object) -> None:
        pass

    def accept_metric_alerts(self, alerts: Sequence[object]) -> None:
        pass


def netwarden_server(tls_dir: Path, pods: Path):  # noqa: ANN201 - (server, stop, counter)
    from prometheus_client import CollectorRegistry

    from netwarden.reconciler.receivers import ReceiverServer, TokenFile, create_receiver_app
    from netwarden.webhook.serving import CertificateReloader

    token = tls_dir / "token"
    token.write_text(TOKEN + "\n")
    reloader = CertificateReloader(str(tls_dir / "tls.crt"), str(tls_dir / "tls.key"))
    sink = EngineSink(pods)
    app = create_receiver_app(sink, token=TokenFile(str(token)), tls=reloader, registry=CollectorRegistry(),
                              max_body_bytes=64 * 1024 * 1024)
    server = ReceiverServer(app, "127.0.0.1", 0, tls=reloader).start()
    return server.port, server.stop, lambda: sink.flows


def write_tls(directory: Path) -> ssl.SSLContext:
    from netwarden.certs.cli import new_ca_and_serving

    ca, serving = new_ca_and_serving(service="bench", namespace="bench", now=datetime.now(timezone.utc),
                                     ips=("127.0.0.1",))
    (directory / "ca.crt").write_bytes(ca.cert_pem)
    (directory / "tls.crt").write_bytes(serving.cert_pem)
    (directory / "tls.key").write_bytes(serving.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(directory / "tls.crt"), str(directory / "tls.key"))
    return context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--workloads", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        return load(int(args.load[0]), args.load[1], args.load[2], int(args.load[3]))

    import orjson

    from bench.bench_replay import make_dataset
    from netwarden.reconciler.signals.hubble import decode_hubble_line

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        flows, pods = make_dataset(directory, args.flows, args.workloads)
        context = write_tls(directory)
        floors = {"floor: TLS + HTTP + json.loads": json.loads, "floor: TLS + HTTP + orjson.loads": orjson.loads,
                  "floor: TLS + HTTP + msgspec typed decode": decode_hubble_line}
        servers: dict[str, tuple[int, Callable[[], None], Callable[[], int]]] = {}
        for label, decode in floors.items():
            floor = FloorServer(context, decode)
            servers[label] = (floor.port, floor.stop, lambda floor=floor: floor.flows)  # type: ignore[misc]
        servers["netwarden receiver -> parse -> attribute -> score"] = netwarden_server(directory, pods)
        generators = {label: subprocess.Popen(
            [sys.executable, __file__, "--load", str(port), str(directory / "ca.crt"), str(flows), str(args.batch)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for label, (port, _, _) in servers.items()}
        wall: dict[str, list[float]] = {label: [] for label in servers}
        cpu: dict[str, list[float]] = {label: [] for label in servers}
        try:
            for _ in range(args.rounds):
                for label, proc in generators.items():  # interleaved: each server once per round
                    assert proc.stdin is not None and proc.stdout is not None
                    before, cpu_before = servers[label][2](), time.process_time()
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                    wall[label].append(float(proc.stdout.readline()))
                    cpu[label].append(time.process_time() - cpu_before)
                    assert servers[label][2]() - before == args.flows, f"{label}: not every flow arrived"
        finally:
            for proc in generators.values():
                proc.stdin.close()  # type: ignore[union-attr]
                proc.wait()
            for _, stop, _ in servers.values():
                stop()
    print(f"{args.flows:,} Hubble flows per round in POSTs of {args.batch}, {args.rounds} interleaved rounds, "
          f"medians; one TLS keep-alive client in another process\n")
    base_cpu = statistics.median(cpu["floor: TLS + HTTP + json.loads"])
    print("| what | flows/s (wall) | flows per server CPU-second | CPU time vs json.loads floor |")
    print("|---|---|---|---|")
    for label in servers:
        w, c = statistics.median(wall[label]), statistics.median(cpu[label])
        print(f"| {label} | {args.flows / w:,.0f} | {args.flows / c:,.0f} | {c / base_cpu:.2f}x |")


if __name__ == "__main__":
    main()
