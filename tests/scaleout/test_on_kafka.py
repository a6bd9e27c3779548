"""Scale-out mode on a real Kafka broker: 12 partitions, 3 decide engines as processes, ingest in this one.

Each engine writes through one shared conditional sink (netwarden/reconciler/scaleout/cli.py:FileSink), so the tests see
who decided what, in which order, and whether anything was written twice.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from localkube.kafka_broker import KafkaBroker
from netwarden.reconciler.core.pods import PodIndex
from netwarden.reconciler.scaleout.cli import read_writes
from netwarden.reconciler.scaleout.ingest import Ingest
from netwarden.reconciler.scaleout.topics import ensure_topics
from netwarden.reconciler.scaleout.wire import Topics, partition_of
from netwarden.tools.scaleout_story import DecideProcess, Story, by_workload, committed_to_end, produce, single_mode
from tests.support.waiting import wait_for

STORY = Story()


def ingest_for(broker: KafkaBroker, topics: Topics, **kwargs) -> Ingest:
    index = PodIndex()
    for ref in STORY.pods():
        index.add(ref)
    return Ingest(broker.bootstrap, index, topics, extra={"log_level": 3}, **kwargs)


def start_engines(broker: KafkaBroker, topics: Topics, workdir: Path, n: int = 3) -> list[DecideProcess]:
    engines = [DecideProcess(broker.bootstrap, f"e{k}", workdir, STORY, topics, group=topics.observations) for k in range(n)]
    def spread() -> bool:
        dead = [e.name for e in engines if e.process.poll() is not None]
        assert not dead, f"decide engines exited: {dead} (see {workdir}/decide-*.log)"
        owned = sorted(p for e in engines for p in e.status().get("owned", []))
        return owned == list(range(topics.partitions)) and all(e.status().get("owned") for e in engines)

    wait_for(spread, "12 partitions spread over the engines", timeout=90)
    return engines


def test_each_workload_is_decided_by_exactly_one_engine_and_as_single_mode_decides(
        kafka_broker: KafkaBroker, topics: Topics, tmp_path: Path) -> None:
    ensure_topics(kafka_broker.bootstrap, topics)
    engines = start_engines(kafka_broker, topics, tmp_path)
    try:
        ingest = ingest_for(kafka_broker, topics)
        produce(ingest, STORY, 0, STORY.total_steps)
        assert ingest.stop() == 0 and not ingest.counters.dropped
        expected = single_mode(STORY)
        wait_for(lambda: by_workload(read_writes(tmp_path / "sink")) == expected, "the engines' decisions", timeout=120)
        writes = read_writes(tmp_path / "sink")
        deciders = {}
        for record in writes:
            deciders.setdefault(record["identity"], set()).add(record["engine"])
        assert all(len(names) == 1 for names in deciders.values()), deciders
        owners = {e.name: set(e.status()["owned"]) for e in engines}
        for identity, (name,) in deciders.items():  # and it is the engine that owns the workload's partition
            assert partition_of(identity, topics.partitions) in owners[name]
        assert len({n for names in deciders.values() for n in names}) == 3  # the work really is spread
    finally:
        for engine in engines:
            engine.stop()


def test_a_killed_engines_workloads_move_with_their_baselines_and_no_decision_is_lost_or_written_twice(
        kafka_broker: KafkaBroker, topics: Topics, tmp_path: Path) -> None:
    ensure_topics(kafka_broker.bootstrap, topics)
    engines = start_engines(kafka_broker, topics, tmp_path)
    try:
        ingest = ingest_for(kafka_broker, topics)
        produce(ingest, STORY, 0, STORY.learn_steps)  # learning, checkpointed
        ingest.flush()
        ingest.poll(1)
        wait_for(lambda: committed_to_end(kafka_broker.bootstrap, topics, topics.observations), "a checkpoint after learning")
        victim = max(engines, key=lambda e: len(e.status()["owned"]))
        moved = set(victim.status()["owned"])
        half = STORY.learn_steps + STORY.deviate_steps // 2
        produce(ingest, STORY, STORY.learn_steps, half)  # mid-stream: the victim is deciding when it dies
        wait_for(lambda: victim.status().get("decisions", 0) > 0, "the victim deciding")
        victim.kill()
        produce(ingest, STORY, half, STORY.total_steps)
        assert ingest.stop() == 0
        survivors = [e for e in engines if e is not victim]
        wait_for(lambda: {p for e in survivors for p in e.status().get("owned", [])} == set(range(topics.partitions)),
                 "the victim's partitions reassigned", timeout=90)
        expected = single_mode(STORY)
        wait_for(lambda: by_workload(read_writes(tmp_path / "sink")) == expected,
                 "every decision, once, as single mode made it", timeout=120)
        writes = read_writes(tmp_path / "sink")
        sequences = Counter((w["identity"], tuple(w["sequence"])) for w in writes)
        assert max(sequences.values()) == 1
        moved_workloads = {w["identity"] for w in writes if partition_of(w["identity"], topics.partitions) in moved}
        after = [w for w in writes if w["identity"] in moved_workloads and w["engine"] != victim.name]
        assert after  # decisions about the moved workloads came from the survivors, after learning, not a new one
        restored = sum(e.status()["restored"] for e in survivors)
        assert restored >= len(moved_workloads)  # their baselines came back from the changelog, not from zero
    finally:
        for engine in engines:
            engine.stop()


def test_ingest_buffers_within_its_bound_while_the_broker_is_down_counts_drops_and_recovers(
        kafka_broker: KafkaBroker, topics: Topics) -> None:
    ensure_topics(kafka_broker.bootstrap, topics)
    ingest = ingest_for(kafka_broker, topics, max_buffered=200, delivery_timeout_ms=60_000)
    produce(ingest, STORY, 0, 2)

    def delivered() -> bool:
        ingest.poll(0.1)
        return ingest.counters.delivered == ingest.counters.records

    wait_for(delivered, "delivery with the broker up")
    kafka_broker.stop()
    try:
        produce(ingest, STORY, 2, 12)  # 10 buckets x 48 workloads: more than the 200 records it may hold
        assert ingest.buffered() <= 200
        assert ingest.counters.dropped.get("buffer-full", 0) > 0
    finally:
        kafka_broker.start()
    produce(ingest, STORY, 12, 14)
    assert ingest.stop(60) == 0  # what it held is delivered once the broker is back, and new records too
    c = ingest.counters
    assert c.delivered + sum(c.dropped.values()) >= c.records
    assert c.delivered == c.records and "delivery-failed" not in c.dropped
