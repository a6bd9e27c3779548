"""Start-up and request latency of the two engines: the in-process LocalKube and the real control plane.

Run: .venv/bin/python bench/bench_kube_engine.py [ROUNDS]
Needs `netwarden controlplane build` for the kube rows. Ratios are relative to LocalKube (baseline).
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from typing import Any, Callable

from kubernetes import client

from localkube import LocalKube
from localkube.controlplane_build import find_binaries
from localkube.kube_engine import KubeControlPlane


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(make: Callable[[], Any], rounds: int, requests: int) -> tuple[float, float]:
    """(median start-up seconds, median seconds per create+get of a ConfigMap)."""
    startups, per_request = [], []
    for _ in range(rounds):
        engine = make()
        startups.append(timed(engine.start))
        try:
            core = client.CoreV1Api(engine.api_client())

            def churn() -> None:
                for _ in range(requests):
                    name = f"c-{uuid.uuid4().hex[:8]}"
                    core.create_namespaced_config_map("default", {"metadata": {"name": name}})
                    core.read_namespaced_config_map(name, "default")

            per_request.append(timed(churn) / requests)
        finally:
            engine.stop()
    return statistics.median(startups), statistics.median(per_request)


def main(rounds: int = 3, requests: int = 50) -> None:
    rows = [("LocalKube (baseline)", *measure(LocalKube, rounds, requests))]
    binaries = find_binaries()
    rows.append(("KubeControlPlane (etcd + kube-apiserver + kcm)", *measure(lambda: KubeControlPlane(binaries), rounds, requests)))
    base_start, base_request = rows[0][1], rows[0][2]
    print(f"{'engine':50} {'start-up ms':>12} {'ratio':>8} {'create+get ms':>14} {'ratio':>8}")
    for name, startup, request in rows:
        print(f"{name:50} {startup * 1000:12.1f} {startup / base_start:8.1f} {request * 1000:14.2f} {request / base_request:8.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
