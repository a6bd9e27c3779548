"""Scale-out on a real Kafka broker: fold reduction, end-to-end flows/s with 1-3 decide engines, rebalance
after kill -9, restore time per 10k workloads; each against its in-process peer measured in the same run.

    python bench/bench_scaleout.py [--workloads 200] [--per-edge 5] [--seconds 120]

Needs the broker (`netwarden controlplane build --component kafka`). Prints markdown tables.
Load: every workload talks to 3 peers, `--per-edge` flows per edge per second of flow time, for
`--seconds` (past the 100 s learning window), then each reaches two new world addresses (a tightening:
what the rebalance figure waits for).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localkube.kafka_broker import KafkaBroker  # noqa: E402
from localkube.kafka_build import find  # noqa: E402
from netwarden.reconciler.core.pods import PodIndex, PodRef  # noqa: E402
from netwarden.reconciler.core.engine import DecisionEngine  # noqa: E402
from netwarden.reconciler.core.types import Endpoint, Flow  # noqa: E402
from netwarden.reconciler.scaleout.decide import Decider, MemorySink  # noqa: E402
from netwarden.reconciler.scaleout.ingest import Ingest, fold_ratio  # noqa: E402
from netwarden.reconciler.scaleout.statestore import encode_all, restore_into  # noqa: E402
from netwarden.reconciler.scaleout.topics import ensure_topics  # noqa: E402
from netwarden.reconciler.scaleout.wire import Topics, partition_of  # noqa: E402
from netwarden.reconciler.signals.parse import parse_flow_any  # noqa: E402
from netwarden.tools.scaleout_story import DecideProcess, Story, core_config  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

HUBBLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "hubble"


class Load(Story):
    """Story's pods, with `per_edge` flows per edge per second and three peers per workload."""

    def __init__(self, workloads: int, per_edge: int, seconds: int) -> None:
        super().__init__(workloads=workloads, learn_steps=seconds, deviate_steps=1)
        object.__setattr__(self, "per_edge", per_edge)

    def step(self, t: int) -> list[Flow]:
        n, out = self.workloads, []
        for i in range(n):
            for j, port in ((1, 8080), (2, 5432), (5, 6379)):
                flow = Flow(float(t), Endpoint(self.ip(i)), Endpoint(self.ip((i + j) % n)), port, "TCP")
                out.extend([flow] * self.per_edge)  # type: ignore[attr-defined]
            if t >= self.learn_steps:
                for k in (1, 2):
                    out.append(Flow(float(t), Endpoint(self.ip(i)), Endpoint(f"198.51.100.{k}", world=True), 443, "TCP"))
        return out


def hubble_fold() -> list[str]:
    """The shared Hubble exports: flows -> views -> rows after folding (1 s and 10 s buckets)."""
    flows = []
    for path in sorted(HUBBLE.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    flows.append(parse_flow_any(json.loads(line)))
                except ValueError:
                    pass
    index = PodIndex()
    for flow in flows:  # each endpoint's pod is its own workload here (the exports carry no netwarden labels)
        for end in (flow.source, flow.destination):
            if end.namespace and end.pod:
                workload = end.pod.rsplit("-", 2)[0] if end.pod.count("-") >= 2 else end.pod
                index.add(PodRef(f"{end.namespace}.deploy.{workload}", end.namespace, end.pod, None, end.ip))
    rows = ["| export | flows | views | rows, 1 s buckets | rows, 10 s buckets | Kafka records / flow |", "|---|---|---|---|---|---|"]
    n, views, one = fold_ratio(flows, index, 1.0)
    _, _, ten = fold_ratio(flows, index, 10.0)
    rows.append(f"| tests/data/hubble/*.jsonl ({len(list(HUBBLE.glob('*.jsonl')))} files) | {n} | {views} | {one} | {ten} | "
                f"{one / n:.2f} (1 s), {ten / n:.2f} (10 s) |")
    return rows


def peer_rate(load: Load) -> tuple[float, int]:
    """Single mode: one in-process engine, every flow (flows/s)."""
    engine = DecisionEngine(core_config())
    for ref in load.pods():
        engine.upsert_pod(ref)
    total = 0
    started = time.perf_counter()
    for t, flows in load.steps(0, load.total_steps):
        for flow in flows:
            engine.ingest_flow(flow, float(t))
        total += len(flows)
    return total / (time.perf_counter() - started), total


def produce_all(broker: KafkaBroker, topics: Topics, load: Load) -> tuple[float, int, int, int]:
    index = PodIndex()
    for ref in load.pods():
        index.add(ref)
    ingest = Ingest(broker.bootstrap, index, topics, extra={"log_level": 3})
    started = time.perf_counter()
    flows = 0
    for _, batch in load.steps(0, load.total_steps):
        ingest.accept_flows(batch)
        ingest.flush()
        ingest.poll(0)
        flows += len(batch)
    ingest.stop(60)
    seconds = time.perf_counter() - started
    return flows / seconds, flows, ingest.counters.views, ingest.counters.records


def decide_run(broker: KafkaBroker, load: Load, engines: int, workdir: Path) -> dict:
    """End to end: engines joined first, then this process ingests the whole load while they decide."""
    topics = Topics(f"bench-obs-{engines}", f"bench-state-{engines}", 12)
    ensure_topics(broker.bootstrap, topics)
    procs = [DecideProcess(broker.bootstrap, f"g{engines}e{k}", workdir, load, topics, group=f"bench-{engines}")
             for k in range(engines)]
    try:
        wait_for(lambda: sorted(q for p in procs for q in p.status().get("owned", [])) == list(range(12))
                 and all(p.status().get("owned") for p in procs), "the engines to join", timeout=120)
        started = time.monotonic()
        ingest_rate, flows, views, records = produce_all(broker, topics, load)
        all_decided(procs, records, timeout=900 - (time.monotonic() - started))
        elapsed = time.monotonic() - started
        per = [p.status().get("records", 0) for p in procs]
        result = {"engines": engines, "seconds": elapsed, "flows": flows, "views": views, "records": records,
                  "flows_per_s": flows / elapsed, "ingest_flows_per_s": ingest_rate,
                  "flows_per_engine_s": [flows * r / records / elapsed for r in per]}
        if engines == 3:
            result.update(rebalance(procs, topics, broker, load))
    finally:
        for p in procs:
            p.stop()
    # Decide alone: the same records, already in Kafka, read by a fresh group of `engines` engines.
    procs = [DecideProcess(broker.bootstrap, f"d{engines}e{k}", workdir, load, topics, group=f"bench-only-{engines}")
             for k in range(engines)]
    try:
        all_decided(procs, records, timeout=900)
        statuses = [p.status() for p in procs]
        first = min(s["first_record_at"] for s in statuses if s.get("first_record_at"))
        last = max(s["last_record_at"] for s in statuses if s.get("last_record_at"))
        result["decide_only_flows_per_s"] = flows / (last - first)
        result["decide_only_per_engine"] = [flows * s.get("records", 0) / records / (last - first) for s in statuses]
        return result
    finally:
        for p in procs:
            p.stop()


def all_decided(procs: list[DecideProcess], records: int, timeout: float) -> None:
    """Every record decided (the figure timed around this wait is good to its 50 ms interval)."""
    wait_for(lambda: sum(p.status().get("records", 0) for p in procs) >= records, "the decide engines to finish",
             timeout=timeout, interval=0.05)


def rebalance(procs: list[DecideProcess], topics: Topics, broker: KafkaBroker, load: Load) -> dict:
    """kill -9 the engine with most partitions, send a deviation for its workloads, time the takeover."""
    victim = max(procs, key=lambda p: len(p.status().get("owned", [])))
    moved = set(victim.status()["owned"])
    survivors = [p for p in procs if p is not victim]
    before = {p.name: p.status().get("written", 0) for p in survivors}
    killed = time.monotonic()
    victim.kill()
    index = PodIndex()
    for ref in load.pods():
        index.add(ref)
    ingest = Ingest(broker.bootstrap, index, topics, extra={"log_level": 3})
    t = load.total_steps
    for i in range(load.workloads):  # two new world peers for every moved workload: a tightening each
        if partition_of(load.identity(i), topics.partitions) in moved:
            ingest.accept_flows([Flow(float(t), Endpoint(load.ip(i)), Endpoint(f"192.0.2.{k}", world=True), 443, "TCP")
                                 for k in (7, 8, 9)])
    ingest.stop(30)
    reassigned = first = None
    while time.monotonic() - killed < 120 and first is None:
        statuses = [p.status() for p in survivors]
        if reassigned is None and {q for s in statuses for q in s.get("owned", [])} >= moved:
            reassigned = time.monotonic()
        if any(s.get("written", 0) > before[s["name"]] for s in statuses):
            first = time.monotonic()
        time.sleep(0.05)  # a sampling loop timing two moments (missing ones are reported as nan), not a wait
    return {"reassigned_s": (reassigned or float("nan")) - killed, "first_decision_s": (first or float("nan")) - killed,
            "moved_partitions": len(moved)}


def restore_bench(broker: KafkaBroker, workloads: int = 10_000) -> dict:
    """10k learned workloads: snapshot -> changelog topic -> restore, against the in-process decode+restore."""
    cfg = core_config()
    engine = DecisionEngine(cfg)
    from netwarden.reconciler.core.behaviour import EGRESS, FlowView, PEER_IDENTITY

    for i in range(workloads):
        identity = f"ns{i % 50}.deploy.app{i}"
        for j in range(8):
            view = FlowView(identity, f"ns{i % 50}", f"inst{i}", f"app{i}-0", EGRESS, PEER_IDENTITY,
                            f"ns{j}.deploy.peer{j}", f"ns{j}", 8000 + j, "TCP", 50.0, False)
            engine.ingest_views([view], 50.0, 3)
    blobs = encode_all(engine.snapshot(w, 60.0) for w in engine.workloads())
    size = sum(len(b) for b in blobs.values())
    started = time.perf_counter()
    restore_into(DecisionEngine(cfg), blobs.values(), 60.0)
    in_process = time.perf_counter() - started
    topics = Topics("bench-restore-obs", "bench-restore-state", 12)
    ensure_topics(broker.bootstrap, topics)
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20, "compression.type": "lz4", "log_level": 3})
    for identity, raw in blobs.items():
        while True:
            try:
                producer.produce(topics.state, raw, identity.encode(), partition=partition_of(identity, 12))
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)
    decider = Decider(broker.bootstrap, DecisionEngine(cfg), MemorySink(), topics, name="restore-bench",
                      extra={"log_level": 3})
    started = time.perf_counter()
    restored = decider._restore(list(range(12)))
    from_kafka = time.perf_counter() - started
    return {"workloads": restored, "bytes": size, "kafka_s": from_kafka, "in_process_s": in_process}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workloads", type=int, default=200)
    parser.add_argument("--per-edge", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=110)
    args = parser.parse_args()
    print("\n".join(hubble_fold()), "\n")
    load = Load(args.workloads, args.per_edge, args.seconds)
    peer, total = peer_rate(load)
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        broker = KafkaBroker(find(), workdir / "kafka").start()
        try:
            print(f"| path (12 partitions, one broker, 2 cores shared by all) | flows/s | ratio to single mode "
                  f"({peer:,.0f} flows/s, one process, every flow) |\n|---|---|---|")
            runs = []
            for engines in (1, 2, 3):
                sub = workdir / f"e{engines}"
                sub.mkdir()
                run = decide_run(broker, load, engines, sub)
                runs.append(run)
                per = ", ".join(f"{r:,.0f}" for r in run["flows_per_engine_s"])
                only = ", ".join(f"{r:,.0f}" for r in run["decide_only_per_engine"])
                print(f"| decide alone, {engines} engine(s), records already in Kafka (per engine {only} flows/s) "
                      f"| {run['decide_only_flows_per_s']:,.0f} | {run['decide_only_flows_per_s'] / peer:.2f} |")
                print(f"| ingest -> Kafka -> decide, {engines} engine(s): {run['flows']:,} flows -> {run['views']:,} views "
                      f"-> {run['records']:,} records ({run['records'] / run['flows']:.3f}/flow) in {run['seconds']:.1f} s; "
                      f"per engine {per} flows/s; ingest alone {run['ingest_flows_per_s']:,.0f} flows/s "
                      f"| {run['flows_per_s']:,.0f} | {run['flows_per_s'] / peer:.2f} |")
            reb = runs[-1]
            print(f"\n| rebalance after kill -9 (3 engines, {reb['moved_partitions']} partitions moved) | seconds |\n|---|---|")
            print(f"| kill -> partitions reassigned (broker session timeout 6 s) | {reb['reassigned_s']:.1f} |")
            print(f"| kill -> first decision by a survivor | {reb['first_decision_s']:.1f} |")
            res = restore_bench(broker)
            print(f"\n| restore of {res['workloads']:,} workloads ({res['bytes'] / 1e6:.1f} MB of snapshots) | seconds | ratio |\n|---|---|---|")
            print(f"| from the changelog (12 partitions, read committed) | {res['kafka_s']:.2f} | {res['kafka_s'] / res['in_process_s']:.2f} |")
            print(f"| peer: decode + restore in process | {res['in_process_s']:.2f} | 1.00 |")
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
