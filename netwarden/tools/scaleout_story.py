"""The scale-out story (`netwarden demo --scale-out`, tests/scaleout, bench/bench_scaleout.py): workloads
that learn, then some deviate.

`Story` builds pods and flows; `single_mode(story)` is what the in-process engine decides for the
same flows (the reference the sharded engines must equal); `DecideProcess` runs one decide engine as
`netwarden scaleout decide` so the story can kill -9 it; `run_demo` tells the whole story on a real broker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from netwarden.model import names
from netwarden.reconciler.core.pods import PodRef
from netwarden.reconciler.core.config import CoreConfig
from netwarden.reconciler.core.engine import DecisionEngine
from netwarden.reconciler.core.snapshot import intent_data
from netwarden.reconciler.core.types import Endpoint, Flow
from netwarden.reconciler.scaleout.ingest import Ingest
from netwarden.reconciler.scaleout.wire import Topics

#: What a decide process needs of a pod (the rest of a PodRef is the adapter's).
ENGINE_FIELDS = ("identity", "namespace", "pod", "instance", "ip", "purpose", "outside_reach")

#: Learning ends 100 s after a workload's first flow; guard rails are cluster-wide and would make a
#: sharded engine differ from one engine only by where the bound is counted, so they are opened here.
CORE: dict[str, Any] = {
    "learning_seconds": 100.0, "rate_bucket_seconds": 10.0, "half_life_seconds": 3600.0,
    "default_mode": names.MODE_ENFORCE, "blast_max_pod_fraction": 1.0, "blast_max_workloads": 100_000,
    "write_burst": 1_000_000, "safety_write_burst": 1_000_000, "rate_spike_min_flows": 1_000_000,
}


def core_config() -> CoreConfig:
    return CoreConfig.from_mapping(CORE)


@dataclass(frozen=True)
class Story:
    workloads: int = 48
    learn_steps: int = 110
    deviate_steps: int = 20

    def identity(self, i: int) -> str:
        return f"ns{i % 6}.deploy.app{i}"

    def ip(self, i: int) -> str:
        return f"10.{i // 250}.{i % 250}.10"

    def pods(self) -> list[PodRef]:
        return [PodRef(self.identity(i), f"ns{i % 6}", f"app{i}-0", f"inst-app{i}", self.ip(i), "backend")
                for i in range(self.workloads)]

    def step(self, t: int) -> list[Flow]:
        """Flows at time t: every workload talks to its two neighbours; after learning every fourth one
        also reaches out to new peers and to the world (enough to tighten, then quarantine)."""
        n, out = self.workloads, []
        for i in range(n):
            out.append(Flow(float(t), Endpoint(self.ip(i)), Endpoint(self.ip((i + 1) % n)), 8080, "TCP"))
            out.append(Flow(float(t), Endpoint(self.ip(i)), Endpoint(self.ip((i + 2) % n)), 5432, "TCP"))
            if t >= self.learn_steps and i % 4 == 0:
                k = t - self.learn_steps
                out.append(Flow(float(t), Endpoint(self.ip(i)), Endpoint(f"203.0.113.{k % 250}", world=True), 443, "TCP"))
                out.append(Flow(float(t), Endpoint(self.ip(i)), Endpoint(self.ip((i + 7 + k) % n)), 9000 + k, "TCP"))
        return out

    def steps(self, start: int, stop: int) -> Iterator[tuple[int, list[Flow]]]:
        for t in range(start, stop):
            yield t, self.step(t)

    @property
    def total_steps(self) -> int:
        return self.learn_steps + self.deviate_steps


def decision_row(decision: Any) -> tuple:
    """What must match between modes: what was decided and what it writes (not when, to the millisecond)."""
    return (decision.action, decision.effect, decision.step_after,
            json.dumps([intent_data(i) for i in decision.intents], sort_keys=True))


def file_row(record: dict[str, Any]) -> tuple:
    return (record["action"], record["effect"], record["step_after"], json.dumps(record["intents"], sort_keys=True))


def single_mode(story: Story) -> dict[str, list[tuple]]:
    """identity -> its decisions in order, from one in-process engine fed every flow (today's path)."""
    engine = DecisionEngine(core_config())
    for ref in story.pods():
        engine.upsert_pod(ref)
    out: dict[str, list[tuple]] = {}
    for t, flows in story.steps(0, story.total_steps):
        for flow in flows:
            for decision in engine.ingest_flow(flow, float(t)):
                out.setdefault(decision.identity, []).append(decision_row(decision))
    return out


def produce(ingest: Ingest, story: Story, start: int, stop: int) -> None:
    """One fold bucket per time step, as a 1 s bucket would close between seconds of flows."""
    for _, flows in story.steps(start, stop):
        ingest.accept_flows(flows)
        ingest.flush()
    ingest.poll(0)


class DecideProcess:
    """`netwarden scaleout decide` in its own process group (so kill -9 takes it down and nothing else)."""

    def __init__(self, bootstrap: str, name: str, workdir: Path, story: Story, topics: Topics,
                 group: str = "decide") -> None:
        self.name = name
        self.status_path = workdir / f"status-{name}.json"
        pods = workdir / "pods.json"
        if not pods.exists():
            pods.write_text(json.dumps([{k: v for k, v in asdict(p).items() if k in ENGINE_FIELDS} for p in story.pods()]))
        core = workdir / "core.json"
        if not core.exists():
            core.write_text(json.dumps(CORE))
        self.log = open(workdir / f"decide-{name}.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "netwarden.reconciler.scaleout.cli", "decide", "--bootstrap", bootstrap, "--name", name,
             "--pods", str(pods), "--core", str(core), "--sink-dir", str(workdir / "sink"), "--status",
             str(self.status_path), "--partitions", str(topics.partitions), "--checkpoint-seconds", "1",
             "--observations-topic", topics.observations, "--state-topic", topics.state, "--group", group],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=Path(__file__).resolve().parents[2], env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def committed_to_end(bootstrap: str, topics: Topics, group: str) -> bool:
    """Every partition's committed offset (the last checkpoint) has reached the end of the log."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "isolation.level": "read_committed", "log_level": 3})
    try:
        parts = [TopicPartition(topics.observations, p) for p in range(topics.partitions)]
        committed = {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10)}
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topics.observations, p), timeout=10)[1]
                for p in range(topics.partitions)}
    finally:
        consumer.close()
    return all(committed[p] >= ends[p] for p in ends if ends[p] > 0)


def by_workload(writes: list[dict[str, Any]]) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for record in writes:
        out.setdefault(record["identity"], []).append(file_row(record))
    return out


def run_demo(out: Callable[[str], None] = print, workdir: Path | None = None) -> int:
    """`netwarden demo --scale-out`: a real Kafka broker, ingest, 3 decide engines over 12 partitions, one
    killed -9 mid-stream; fails (exit 1) unless every workload's decisions equal single mode's, once each."""
    import tempfile
    import time

    from localkube.kafka_broker import KafkaBroker
    from localkube.kafka_build import KafkaNotBuilt, find
    from netwarden.reconciler.core.pods import PodIndex
    from netwarden.reconciler.scaleout.cli import read_writes
    from netwarden.reconciler.scaleout.topics import ensure_topics
    from netwarden.reconciler.scaleout.wire import partition_of

    try:
        dist = find()
    except KafkaNotBuilt as exc:
        out(f"error: {exc}")
        return 2
    story, topics = Story(), Topics()
    with tempfile.TemporaryDirectory(prefix="netwarden-scaleout-") as scratch:
        root = workdir or Path(scratch)
        started = time.monotonic()
        broker = KafkaBroker(dist, root / "kafka", topics.partitions).start()
        engines: list[DecideProcess] = []
        try:
            ensure_topics(broker.bootstrap, topics, extra={"log_level": 0})
            out(f"[{time.monotonic() - started:5.1f}s] Kafka {dist.version} (KRaft) on {broker.bootstrap}: "
                f"{topics.observations} and {topics.state} (compacted), {topics.partitions} partitions each")
            engines = [DecideProcess(broker.bootstrap, f"decide-{k}", root, story, topics, group="demo") for k in range(3)]
            _wait(lambda: sorted(p for e in engines for p in e.status().get("owned", [])) == list(range(topics.partitions))
                  and all(e.status().get("owned") for e in engines), 120)
            for e in engines:
                out(f"[{time.monotonic() - started:5.1f}s] {e.name} owns partitions {e.status()['owned']}")
            index = PodIndex()
            for ref in story.pods():
                index.add(ref)
            ingest = Ingest(broker.bootstrap, index, topics, extra={"log_level": 0})
            produce(ingest, story, 0, story.learn_steps)
            ingest.poll(1)
            _wait(lambda: committed_to_end(broker.bootstrap, topics, "demo"), 120)
            out(f"[{time.monotonic() - started:5.1f}s] {story.workloads} workloads learned for {story.learn_steps} s of "
                f"flows ({ingest.counters.flows:,} flows -> {ingest.counters.records:,} Kafka records); state checkpointed")
            victim = max(engines, key=lambda e: len(e.status()["owned"]))
            half = story.learn_steps + story.deviate_steps // 2
            produce(ingest, story, story.learn_steps, half)
            _wait(lambda: victim.status().get("decisions", 0) > 0, 60)
            victim.kill()
            out(f"[{time.monotonic() - started:5.1f}s] kill -9 {victim.name} mid-stream (it owned {victim.status()['owned']})")
            produce(ingest, story, half, story.total_steps)
            ingest.stop()
            expected = single_mode(story)
            sink = root / "sink"
            equal = _wait(lambda: by_workload(read_writes(sink)) == expected, 120)
            writes = read_writes(sink)
            for e in engines:
                s = e.status()
                mine = {w["identity"] for w in writes if w["engine"] == e.name}
                out(f"[{time.monotonic() - started:5.1f}s] {e.name}: decided for {len(mine)} workloads, restored "
                    f"{s.get('restored', 0)} from the changelog, skipped {s.get('duplicates', 0)} replayed decisions"
                    + (" (killed)" if e is victim else ""))
            twice = len(writes) - len({(w["identity"], tuple(w["sequence"])) for w in writes})
            owners = {w["identity"]: {x["engine"] for x in writes if x["identity"] == w["identity"]} for w in writes}
            out(f"decisions: {len(writes)} written, {twice} written twice; equal to single mode: {equal}; "
                f"workloads that moved with their baselines and were decided by a survivor: "
                f"{sum(1 for i in owners if partition_of(i, topics.partitions) in set(victim.status()['owned']))}")
            return 0 if equal and not twice else 1
        finally:
            for e in engines:
                e.stop()
            broker.stop()


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False
