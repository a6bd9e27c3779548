"""localkube throughput on this machine: creates/s, GETs/s and watch events/s through the official client.

Run: .venv/bin/python bench/bench_localkube.py [N]
The baseline rows (a raw dict insert, a store insert without HTTP) show how much the HTTP + client
layers cost; ratios are relative to the client GET rate.
"""

from __future__ import annotations

import sys
import time
import uuid

from kubernetes import client, watch

from localkube import LocalKube
from localkube.resources import lookup
from localkube.store import Store


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def main(n: int = 500) -> None:
    rows: list[tuple[str, int, float]] = []

    d: dict[str, dict[str, object]] = {}
    t = time.perf_counter()
    for i in range(n * 100):
        d[f"k{i}"] = {"metadata": {"name": f"k{i}", "uid": str(uuid.uuid4())}}
    rows.append(("baseline: raw dict insert", n * 100, rate(n * 100, time.perf_counter() - t)))

    store, cm = Store(), lookup("", "v1", "configmaps")
    t = time.perf_counter()
    for i in range(n * 10):
        store.create(cm, {"metadata": {"name": f"c{i}", "namespace": "default"}})  # type: ignore[arg-type]
    rows.append(("store.create (no HTTP)", n * 10, rate(n * 10, time.perf_counter() - t)))

    with LocalKube() as kube:
        core = client.CoreV1Api(kube.api_client())
        start_rv = core.list_namespaced_config_map("default").metadata.resource_version
        t = time.perf_counter()
        for i in range(n):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"b{i}"}, "data": {"i": str(i)}})
        rows.append(("client create configmap", n, rate(n, time.perf_counter() - t)))

        t = time.perf_counter()
        for i in range(n):
            core.read_namespaced_config_map(f"b{i}", "default")
        rows.append(("client GET configmap", n, rate(n, time.perf_counter() - t)))

        t = time.perf_counter()
        for i in range(n):
            core.create_namespaced_pod("default", {"metadata": {"name": f"p{i}"},
                                                   "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
        rows.append(("client create pod", n, rate(n, time.perf_counter() - t)))

        seen = 0
        t = time.perf_counter()
        for _ in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=start_rv,
                                      timeout_seconds=30):
            seen += 1
            if seen == n:
                break
        rows.append(("watch events (replay, client decode)", seen, rate(seen, time.perf_counter() - t)))

    get_rate = next(r for name, _, r in rows if name == "client GET configmap")
    print(f"{'operation':40} {'n':>8} {'ops/s':>12} {'x GET':>8}")
    for name, count, r in rows:
        print(f"{name:40} {count:8d} {r:12.0f} {r / get_rate:8.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
