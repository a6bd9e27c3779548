"""Reconciler adapter costs, printed as a table with a ratio to a plain baseline.

    .venv/bin/python bench/bench_reconciler.py

* flows through POST /signals/flows (Flask test client, JSON lines, real Hubble records) vs the
  bare parser loop over the same records (the receiver's overhead over parsing);
* work-queue add+get+done per key vs a bare dict insert+pop;
* index lookups by IP vs a bare dict lookup.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry  # noqa: E402

from netwarden.reconciler.queue import WorkQueue  # noqa: E402
from netwarden.reconciler.receivers import create_receiver_app  # noqa: E402
from netwarden.reconciler.signals.parse import parse_flow_any  # noqa: E402
from netwarden.reconciler.core.pods import PodIndex  # noqa: E402
from netwarden.reconciler.watch import ClusterIndex  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "hubble" / "hubble-otel_gke-istio_2021_l3l4_10flows.jsonl"


class NullSink:
    def accept_flows(self, flows: Sequence[object]) -> None:
        pass

    def accept_alert(self, alert: object) -> None:
        pass

    def accept_metric_alerts(self, alerts: Sequence[object]) -> None:
        pass


def per_op(fn: Callable[[], int], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        count = fn()
        best = min(best, (time.perf_counter() - start) / count)
    return best


def main() -> None:
    lines = [line for line in DATA.read_text().splitlines() if line.strip()] * 100  # 1000 records
    body = ("\n".join(lines) + "\n").encode()
    records = [json.loads(line) for line in lines]
    app = create_receiver_app(NullSink(), token=None, registry=CollectorRegistry())
    http = app.test_client()

    def receiver() -> int:
        assert http.post("/signals/flows", data=body).json["accepted"] == len(lines)
        return len(lines)

    def parser() -> int:
        for record in records:
            parse_flow_any(record)
        return len(records)

    keys = [f"ns.deploy.w{i}" for i in range(10_000)]

    def queue_ops() -> int:
        queue = WorkQueue(coalesce=0.0)
        for key in keys:
            queue.add(key)
        for _ in keys:
            queue.done(queue.get(timeout=0))
        return len(keys)

    def dict_ops() -> int:
        store: dict[str, int] = {}
        for key in keys:
            store[key] = 1
        for key in keys:
            store.pop(key)
        return len(keys)

    pods = PodIndex()
    index = ClusterIndex(pods=pods)
    for i in range(5000):
        index.put_pod({"metadata": {"namespace": "ns", "name": f"p{i}", "uid": str(i),
                                    "labels": {"netwarden.io/identity": f"ns.deploy.w{i % 50}"}},
                       "status": {"podIP": f"10.{i // 250}.{i % 250}.1", "phase": "Running"}})
    ips = [f"10.{i // 250}.{i % 250}.1" for i in range(5000)]
    plain = {ip: ip for ip in ips}

    def index_lookups() -> int:
        for ip in ips:
            pods.by_ip.get(ip)
        return len(ips)

    def dict_lookups() -> int:
        for ip in ips:
            plain.get(ip)
        return len(ips)

    rows = [
        ("flows via POST /signals/flows", per_op(receiver), "parse_flow_any loop", per_op(parser)),
        ("work queue add+get+done", per_op(queue_ops), "dict insert+pop", per_op(dict_ops)),
        ("index pod_by_ip", per_op(index_lookups), "dict.get", per_op(dict_lookups)),
    ]
    print(f"{'operation':32} {'us/op':>9}  {'baseline':22} {'us/op':>9}  {'ratio':>6}")
    for name, cost, base_name, base in rows:
        print(f"{name:32} {cost * 1e6:9.2f}  {base_name:22} {base * 1e6:9.2f}  {cost / base:6.1f}x")


if __name__ == "__main__":
    main()
