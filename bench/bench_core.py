"""Decision-core throughput (flows scored/s) and memory per workload.

Run: .venv/bin/python bench/bench_core.py [FLOWS]

Synthetic cluster: W workloads of 2 replicas, each talking to 3 usual peers (one in another
namespace), some egress to the world, and after the learning window a trickle of new peers so the
decision step runs too. Rows:
  iterate (baseline)  - a loop touching every flow's fields: the floor for any Python consumer
  resolve only        - the pod-index lookups that turn a flow into per-workload views
  engine.ingest_flow  - the whole core: resolve, learn/deviate, rate EWMA, recent flows, risk, decide
Memory: tracemalloc of the engine's state after every workload has learned its baseline.
"""

from __future__ import annotations

import gc
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netwarden.model import names  # noqa: E402
from netwarden.reconciler.core.behaviour import resolve_flow  # noqa: E402
from netwarden.reconciler.core.pods import PodRef  # noqa: E402
from netwarden.reconciler.core.config import CoreConfig  # noqa: E402
from netwarden.reconciler.core.engine import DecisionEngine  # noqa: E402
from netwarden.reconciler.core.types import Endpoint, Flow  # noqa: E402

PORTS = (5432, 6379, 8080, 443, 53)


def cluster(workloads: int) -> list[list[PodRef]]:
    out = []
    for w in range(workloads):
        namespace = f"ns{w % 50}"
        identity = f"{namespace}.deploy.app{w}"
        out.append(
            [PodRef(identity, namespace, f"app{w}-{r}", f"inst-{w}-{r}", f"10.{w // 250}.{w % 250}.{r + 1}") for r in range(2)]
        )
    return out


def synthetic_flows(pods: list[list[PodRef]], count: int, duration: float, seed: int = 7) -> list[Flow]:
    """Flows spread over `duration` seconds; 2% of flows after 60% of the time go to a fresh peer."""
    rng = random.Random(seed)
    n = len(pods)
    peers = [[rng.randrange(n) for _ in range(3)] for _ in range(n)]
    flows = []
    for i in range(count):
        t = duration * i / count
        w = rng.randrange(n)
        src = pods[w][rng.randrange(2)]
        roll = rng.random()
        if roll < 0.05:
            dst = Endpoint(f"203.0.113.{rng.randrange(4)}", world=True)
            port = 443
        elif t > duration * 0.6 and roll < 0.07:
            dst_pod = pods[rng.randrange(n)][0]
            dst, port = Endpoint(dst_pod.ip), rng.choice(PORTS) + rng.randrange(3)
        else:
            k = rng.randrange(3)
            dst_pod = pods[peers[w][k]][rng.randrange(2)]
            dst, port = Endpoint(dst_pod.ip), PORTS[k]
        flows.append(Flow(t, Endpoint(src.ip), dst, port, "TCP", bytes=rng.randrange(100, 2000)))
    return flows


def engine_for(pods: list[list[PodRef]], mode: str = names.MODE_ENFORCE) -> DecisionEngine:
    engine = DecisionEngine(CoreConfig(default_mode=mode, learning_seconds=300.0))
    for replicas in pods:
        for ref in replicas:
            engine.upsert_pod(ref)
    return engine


def timed(label: str, run, count: int) -> tuple[str, float]:
    gc.collect()
    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    return label, count / elapsed


def throughput(flow_count: int, workloads: int = 500) -> None:
    pods = cluster(workloads)
    flows = synthetic_flows(pods, flow_count, duration=1800.0)
    engine = engine_for(pods)

    def iterate() -> None:
        total = 0
        for f in flows:
            total += (f.port or 0) + len(f.source.ip or "") + len(f.destination.ip or "") + int(f.reply)

    def resolve_only() -> None:
        index = engine.index
        for f in flows:
            resolve_flow(f, index)

    decisions: list = []

    def ingest() -> None:
        ingest_flow = engine.ingest_flow
        for f in flows:
            out = ingest_flow(f, f.time)
            if out:
                decisions.extend(out)

    rows = [timed("iterate (baseline)", iterate, flow_count), timed("resolve only", resolve_only, flow_count),
            timed("engine.ingest_flow", ingest, flow_count)]
    base = rows[0][1]
    print(f"throughput: {flow_count} flows, {workloads} workloads x 2 replicas, enforce mode")
    print(f"{'step':24} {'flows/s':>12} {'vs baseline':>12}")
    for label, rate in rows:
        print(f"{label:24} {rate:12,.0f} {rate / base:12.3f}")
    c = engine.counters
    print(f"  views {c.views:,}, deviations {c.deviations:,}, decisions {len(decisions):,}")


def memory(workloads: int, flows_per_workload: int = 40) -> tuple[int, int]:
    pods = cluster(workloads)
    flows = synthetic_flows(pods, workloads * flows_per_workload, duration=600.0, seed=11)
    gc.collect()
    tracemalloc.start()
    engine = engine_for(pods)
    after_index, _ = tracemalloc.get_traced_memory()
    for f in flows:
        engine.ingest_flow(f, f.time)
    engine.tick(600.0)
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return after_index, current


def main(flow_count: int = 200_000) -> None:
    throughput(flow_count)
    print()
    print(f"{'workloads':>10} {'pod index MiB':>14} {'engine MiB':>11} {'KiB/workload':>13}")
    for workloads in (1_000, 10_000):
        index_bytes, total = memory(workloads)
        state = total - index_bytes
        print(f"{workloads:>10,} {index_bytes / 2**20:14.1f} {state / 2**20:11.1f} {state / workloads / 1024:13.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
