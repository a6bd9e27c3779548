"""Flows/s into the engine: subscribed from Hubble Relay's GetFlows stream vs POSTed as JSON lines.

    .venv/bin/python bench/bench_streams.py [--flows 20000]

The same records both ways (real Hubble exports, re-timed so each is a distinct flow), into the same
sink: the decision core's engine (netwarden.reconciler.core.engine.DecisionEngine.ingest_flow, as the
reconciler's runtime calls it). The reconciler side (gRPC client or HTTP receiver, parser, engine)
runs in this process pinned to one core; the sender (the Relay stand-in serving GetFlows, or a
client POSTing batches of 500 JSON lines, as `hubble observe -o json | curl` would) runs in a child
process on the other core. Timed from the first request to the last flow in the engine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netwarden.reconciler.core.config import CoreConfig  # noqa: E402
from netwarden.reconciler.core.engine import DecisionEngine  # noqa: E402
from netwarden.reconciler.core.types import Flow  # noqa: E402

DATA = ROOT / "tests" / "data" / "hubble"
POST_BATCH = 500


def records(count: int) -> list[dict]:
    """Real exported L3/L4 flows, cycled, each re-timed 1 ms apart with its own uuid."""
    lines = [json.loads(line) for path in sorted(DATA.glob("*.jsonl")) for line in path.read_text().splitlines()
             if line.strip()]
    l3l4 = [line for line in lines if line["flow"].get("Type") == "L3_L4"]
    start = time.time() - count / 1000
    out = []
    for i in range(count):
        record = json.loads(json.dumps(l3l4[i % len(l3l4)]))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + i / 1000)) + f".{(i % 1000) * 1_000_000:09d}Z"
        record["flow"]["time"] = record["time"] = stamp
        record["flow"]["uuid"] = f"00000000-0000-0000-0000-{i:012d}"
        out.append(record)
    return out


class EngineSink:
    """What the runtime does with accepted flows, minus the policy writes: the engine scores them."""

    def __init__(self, expected: int) -> None:
        self.engine = DecisionEngine(CoreConfig(learning_seconds=300.0))
        self.count = 0
        self.done = threading.Event()
        self.expected = expected
        self.lock = threading.Lock()

    def accept_flows(self, flows: Sequence[Flow]) -> None:
        now = time.time()
        with self.lock:
            for flow in flows:
                self.engine.ingest_flow(flow, now)
            self.count += len(flows)
            if self.count >= self.expected:
                self.done.set()

    def accept_alert(self, alert: object) -> None:
        pass

    def accept_metric_alerts(self, alerts: Sequence[object]) -> None:
        pass


def child(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, {1}))


def relay_command(count: int, workdir: Path) -> tuple[list[str], str]:
    """The real Hubble observer server (tools/hubble) fed from a file of the records when it is built,
    else the stand-in generated from the same protos; and which one it is."""
    from localkube.controlplane_build import find_hubble

    binary = find_hubble()
    if binary is None:
        return [sys.executable, __file__, "--serve-relay", str(count)], "the Python stand-in (tools/hubble not built)"
    flows = workdir / "flows.jsonl"
    lines = [json.dumps(record) for record in records(count + 1)]  # cilium's ring serves an entry once the next is written
    flows.write_text("\n".join(lines) + "\n")
    return [str(binary), "--flows", str(flows), "--max-flows", str((1 << (count + 2).bit_length()) - 1)], \
        "cilium's observer server (tools/hubble)"


def run_grpc(count: int) -> tuple[float, str]:
    import tempfile

    from netwarden.reconciler.sources.hubble import HubbleRelaySource

    workdir = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    command, which = relay_command(count, workdir)
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                              preexec_fn=lambda: os.sched_setaffinity(0, {1}))
    assert server.stdout is not None
    address = server.stdout.readline().split()[-1]  # "ready ADDRESS" once every message is published
    floor = bare_receive(address, count)
    sink = EngineSink(count)
    started = time.perf_counter()
    source = HubbleRelaySource(address, sink, since=1.0, buffer_size=count).start()
    try:
        if not sink.done.wait(600):
            raise SystemExit(f"gRPC: only {sink.count} of {count} flows arrived")
        elapsed = time.perf_counter() - started
        assert source.stats.dropped == {}, source.stats.dropped
    finally:
        source.stop()
        server.terminate()
        server.wait()
    return elapsed, floor, which


def bare_receive(address: str, count: int) -> float:
    """The transport's floor: the same GetFlows read by a bare loop (messages decoded, nothing else)."""
    import grpc

    from netwarden.reconciler.sources import records
    from netwarden.reconciler.sources.proto import observer_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        call = observer_pb2_grpc.ObserverStub(channel).GetFlows(records.hubble_request(since_ns=1_000_000_000))
        started = time.perf_counter()
        for received, _ in enumerate(call, start=1):
            if received == count:
                break
        elapsed = time.perf_counter() - started
        call.cancel()
    return elapsed


def run_post(count: int) -> float:
    from prometheus_client import CollectorRegistry

    from netwarden.reconciler.receivers import ReceiverServer, create_receiver_app

    sink = EngineSink(count)
    app = create_receiver_app(sink, token=None, registry=CollectorRegistry())
    server = ReceiverServer(app, "127.0.0.1", 0).start()
    poster = child(["--post", f"http://127.0.0.1:{server.port}/signals/flows", str(count)])
    assert poster.stdout is not None
    poster.stdout.readline()  # "ready": bodies built, connection open
    started = time.perf_counter()
    os.kill(poster.pid, 10)  # SIGUSR1: go
    try:
        if not sink.done.wait(600):
            raise SystemExit(f"POST: only {sink.count} of {count} flows arrived")
        elapsed = time.perf_counter() - started
    finally:
        poster.wait()
        server.stop()
    return elapsed


def serve_relay(count: int) -> None:
    from netwarden.tools.replay_server import ReplayServer, hubble_response

    server = ReplayServer().start()
    server.observer.publish(hubble_response(record) for record in records(count))
    print(f"ready {server.address}", flush=True)
    threading.Event().wait()


def post(url: str, count: int) -> None:
    import signal

    import requests

    lines = [json.dumps(record) for record in records(count)]
    bodies = ["\n".join(lines[i:i + POST_BATCH]) for i in range(0, count, POST_BATCH)]
    go = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: go.set())
    session = requests.Session()
    print("ready", flush=True)
    go.wait()
    for body in bodies:
        response = session.post(url, data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 200 and response.json()["rejected_total"] == 0, response.text[:300]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flows", type=int, default=20_000)
    parser.add_argument("--serve-relay", type=int)
    parser.add_argument("--post", nargs=2)
    args = parser.parse_args()
    if args.serve_relay:
        return serve_relay(args.serve_relay)
    if args.post:
        return post(args.post[0], int(args.post[1]))
    os.sched_setaffinity(0, {0})
    count = args.flows
    post_s = run_post(count)
    grpc_s, floor_s, which = run_grpc(count)
    rows = [("POST /signals/flows, JSON lines (batches of 500)", post_s), ("Hubble Relay GetFlows stream (gRPC)", grpc_s),
            ("floor: the same GetFlows read by a bare loop, no conversion, no engine", floor_s)]
    print(f"{count} real Hubble flows into the engine, reconciler side on one core, sender on the other; "
          f"GetFlows served by {which}")
    print(f"| path | seconds | flows/s | vs POST |\n|---|---|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.2f} | {count / seconds:,.0f} | {post_s / seconds:.2f}x |")


if __name__ == "__main__":
    main()
