"""The decide role: one member of a consumer group, owning the workloads of its partitions.

On assignment it restores the partitions' workloads from the compacted state changelog (read
committed) and resumes at the group's committed offset, which was committed in the same Kafka
transaction as those snapshots: state and position always agree, and a zombie (an engine the group
already replaced) is fenced by the broker when it tries to commit. Each observation is scored with
its own time as `now`, so any engine replaying the same records from the same state makes the same
decisions.

Writes leave Kafka, so they are fenced twice: a decision is handed to the sink only while the engine
still owns the partition (else counted in `netwarden_decisions_fenced_total`), and the sink writes it
only if its sequence (partition offset, index within the record) is past the last one written for
that workload (the policy's resourceVersion precondition carries that check in the cluster). A
replay after a crash therefore recomputes decisions the dead engine already wrote and the sink
skips them: none lost, none written twice.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from netwarden.platform.logs import log_event
from netwarden.reconciler import metrics
from netwarden.reconciler.core import snapshot
from netwarden.reconciler.core.decision import Decision
from netwarden.reconciler.core.engine import DecisionEngine
from netwarden.reconciler.core.snapshot import SnapshotError
from netwarden.reconciler.scaleout import wire
from netwarden.reconciler.scaleout.statestore import count as count_snapshot
from netwarden.reconciler.scaleout.statestore import restore_into
from netwarden.reconciler.scaleout.wire import Topics, WireError, partition_of

log = logging.getLogger("netwarden.scaleout.decide")

#: (partition, offset, index of the decision within what that record produced): a decision's place in the log.
Sequence_ = tuple[int, int, int]


class PolicySink(Protocol):
    def write(self, decision: Decision, sequence: Sequence_) -> bool:
        """Write unless a decision at or past `sequence` was written for the workload; True when written."""


@dataclass
class DecideCounters:
    records: int = 0
    malformed: int = 0
    decisions: int = 0
    written: int = 0
    duplicates: int = 0
    fenced: int = 0
    restored: int = 0
    assignments: int = 0
    #: Seconds spent restoring state on each assignment, and workloads restored then.
    restores: list[tuple[float, int]] = field(default_factory=list)
    #: monotonic time of the last assignment, and of the first write after it (rebalance -> first decision).
    assigned_at: float = 0.0
    first_write_after_assign: float | None = None
    #: monotonic time of the first and the latest record handled (the bench's decide-only rate).
    first_record_at: float | None = None
    last_record_at: float | None = None


class Decider:
    """Consumes its partitions, restores and checkpoints their state, decides, and hands writes to the sink."""

    def __init__(self, bootstrap: str, engine: DecisionEngine, sink: PolicySink, topics: Topics = Topics(), *,
                 group: str = "netwarden-decide", name: str = "decide", checkpoint_seconds: float = 2.0,
                 extra: dict[str, Any] | None = None, tick: bool = True) -> None:
        self.bootstrap = bootstrap
        self.engine = engine
        self.sink = sink
        self.topics = topics
        self.group = group
        self.name = name
        self.checkpoint_seconds = checkpoint_seconds
        self.extra = extra or {}
        #: Tick the engine (decay, expiry, relax) at each checkpoint, at the latest record's time. Off when
        #: the reconciler runtime's own ticker does it (the decide role).
        self.tick = tick
        self._ticks = 0
        self.counters = DecideCounters()
        self.lock = threading.RLock()  # the engine's lock: status reads from other threads take it too
        #: partition -> next offset to process
        self.owned: dict[int, int] = {}
        #: partition -> workloads changed since the last checkpoint
        self.dirty: dict[int, set[str]] = {}
        self.latest_time = 0.0
        self._stop = threading.Event()
        self._consumer: Any = None
        self._producer: Any = None

    # -- life cycle ------------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> None:
        """Consume until `stop` (or `self.stop()`); a clean stop checkpoints and leaves the group."""
        from confluent_kafka import Consumer, Producer

        stop = stop or self._stop
        self._consumer = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": self.group, "client.id": self.name,
            "group.protocol": "consumer", "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "isolation.level": "read_committed", **self.extra,
        })
        self._producer = Producer({
            "bootstrap.servers": self.bootstrap, "transactional.id": f"{self.group}-{self.name}",
            "linger.ms": 5, "compression.type": "lz4", **self.extra,
        })
        self._producer.init_transactions(30)
        self._consumer.subscribe([self.topics.observations], on_assign=self._assigned, on_revoke=self._revoked,
                                 on_lost=self._lost)
        last_checkpoint = time.monotonic()
        try:
            while not stop.is_set() and not self._stop.is_set():
                messages = self._consumer.consume(500, 0.2)
                with self.lock:
                    for message in messages:
                        self._handle(message)
                if time.monotonic() - last_checkpoint >= self.checkpoint_seconds:
                    with self.lock:
                        self._tick()
                        self._checkpoint(list(self.owned))
                    last_checkpoint = time.monotonic()
            with self.lock:
                self._checkpoint(list(self.owned))
        finally:
            self._consumer.close()  # leaves the group: the partitions move at once, not after a session timeout

    def stop(self) -> None:
        self._stop.set()

    # -- records ---------------------------------------------------------------------------------
    def _handle(self, message: Any) -> None:
        if message.error():
            return
        partition, offset = message.partition(), message.offset()
        if partition not in self.owned:
            return
        self.counters.records += 1
        self.counters.last_record_at = time.monotonic()
        if self.counters.first_record_at is None:
            self.counters.first_record_at = self.counters.last_record_at
        self.owned[partition] = offset + 1
        try:
            record = wire.loads(message.value())
        except WireError:
            self.counters.malformed += 1
            return
        decisions = self._decide(record)
        self.dirty.setdefault(partition, set()).add(record["id"])
        for index, decision in enumerate(decisions):
            self._write(decision, (partition, offset, index))

    def _decide(self, record: dict[str, Any]) -> list[Decision]:
        engine, kind = self.engine, record["k"]
        if kind == wire.EDGES:
            out: list[Decision] = []
            for view, n in wire.views_of(record):
                self.latest_time = max(self.latest_time, view.time)
                out.extend(engine.ingest_views((view,), view.time, n))
            return out
        if kind == wire.FALCO:
            alert = wire.security_alert_of(record)
            return engine.ingest_alert(alert, alert.time)
        if kind == wire.METRIC:
            metric = wire.metric_alert_of(record)
            return engine.ingest_metric_alert(metric, metric.time)
        signal = wire.health_of(record)
        return engine.ingest_health(signal, signal.time)

    def _write(self, decision: Decision, sequence: Sequence_) -> None:
        self.counters.decisions += 1
        partition = sequence[0]
        if partition not in self.owned or partition_of(decision.identity, self.topics.partitions) != partition:
            self.counters.fenced += 1
            metrics.DECISIONS_FENCED.inc()
            return
        if self.sink.write(decision, sequence):
            self.counters.written += 1
            if self.counters.first_write_after_assign is None:
                self.counters.first_write_after_assign = time.monotonic()
        else:
            self.counters.duplicates += 1

    def _tick(self) -> None:
        """Time-driven decisions (relax, expiry) at event time; placed after the partition's last record, so
        the next record's decisions still come after them in the workload's sequence."""
        if not self.tick or not self.latest_time:
            return
        self._ticks += 1
        for index, decision in enumerate(self.engine.tick(self.latest_time)):
            partition = partition_of(decision.identity, self.topics.partitions)
            offset = self.owned.get(partition, 0) - 1
            self._write(decision, (partition, offset, 1_000_000 + self._ticks * 1_000 + index))

    # -- state -----------------------------------------------------------------------------------
    def _checkpoint(self, partitions: list[int]) -> None:
        """Snapshots of the changed workloads and the offsets, in one transaction (fenced if we are a zombie)."""
        from confluent_kafka import KafkaException, TopicPartition

        partitions = [p for p in partitions if p in self.owned]
        if not partitions:
            return
        producer, now = self._producer, self.latest_time
        try:
            producer.begin_transaction()
            for p in partitions:
                for identity in sorted(self.dirty.pop(p, set())):
                    data = self.engine.snapshot(identity, now)
                    if data is None:
                        continue
                    try:
                        raw = snapshot.to_bytes(data)
                    except SnapshotError as exc:
                        count_snapshot("save", exc.reason)
                        continue
                    producer.produce(self.topics.state, raw, identity.encode(), partition=p)
                    count_snapshot("save", "written")
            offsets = [TopicPartition(self.topics.observations, p, self.owned[p]) for p in partitions]
            producer.send_offsets_to_transaction(offsets, self._consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
        except KafkaException as exc:
            log_event(log, "warning", {"event": "checkpoint_failed", "engine": self.name, "error": str(exc)})
            try:
                producer.abort_transaction(10)
            except KafkaException:
                pass
            for p in partitions:  # written again at the next checkpoint
                self.dirty.setdefault(p, set()).update(self._workloads_of(p))

    def _workloads_of(self, partition: int) -> set[str]:
        return {w for w in self.engine.workloads() if partition_of(w, self.topics.partitions) == partition}

    def _restore(self, partitions: list[int]) -> int:
        """Read the state changelog of `partitions` to its end (committed records only) and restore it."""
        from confluent_kafka import Consumer, TopicPartition

        reader = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"{self.group}-restore-{self.name}",
                           "enable.auto.commit": False, "isolation.level": "read_committed", **self.extra})
        latest: dict[bytes, bytes | None] = {}
        try:
            ends = {}
            for p in partitions:
                low, high = reader.get_watermark_offsets(TopicPartition(self.topics.state, p), timeout=10)
                if high > low:
                    ends[p] = high
            reader.assign([TopicPartition(self.topics.state, p, 0) for p in ends])
            pending = dict(ends)
            deadline = time.monotonic() + 60
            while pending and time.monotonic() < deadline:
                for message in reader.consume(1000, 0.5):
                    if message.error():
                        continue
                    latest[message.key()] = message.value()
                    if message.offset() + 1 >= pending.get(message.partition(), 0):
                        pending.pop(message.partition(), None)
                for p in list(pending):  # transaction markers take offsets too: the position tells the end
                    position = reader.position([TopicPartition(self.topics.state, p)])[0].offset
                    if position >= pending[p]:
                        pending.pop(p)
        finally:
            reader.close()
        return restore_into(self.engine, (raw for raw in latest.values() if raw is not None), self.latest_time)

    # -- rebalance callbacks (on the consuming thread, inside consume) ---------------------------
    def _assigned(self, consumer: Any, partitions: list[Any]) -> None:
        started = time.monotonic()
        with self.lock:
            new = [tp.partition for tp in partitions]
            restored = self._restore(new)
            committed = consumer.committed(partitions, timeout=10)
            for tp in committed:
                self.owned[tp.partition] = tp.offset if tp.offset >= 0 else 0
        consumer.incremental_assign(partitions)
        seconds = time.monotonic() - started
        self.counters.assignments += 1
        self.counters.restored += restored
        self.counters.restores.append((seconds, restored))
        self.counters.assigned_at = time.monotonic()
        self.counters.first_write_after_assign = None
        log_event(log, "info", {"event": "partitions_assigned", "engine": self.name, "partitions": sorted(new),
                                "restored": restored, "seconds": round(seconds, 3)})

    def _revoked(self, consumer: Any, partitions: list[Any]) -> None:
        gone = [tp.partition for tp in partitions]
        with self.lock:
            self._checkpoint(gone)  # handed over cleanly: the next owner starts exactly here
            self._drop(gone)
        consumer.incremental_unassign(partitions)

    def _lost(self, consumer: Any, partitions: list[Any]) -> None:
        with self.lock:
            self._drop([tp.partition for tp in partitions])  # no checkpoint: another engine owns them already
        consumer.incremental_unassign(partitions)

    def _drop(self, partitions: list[int]) -> None:
        for p in partitions:
            self.owned.pop(p, None)
            self.dirty.pop(p, None)
            for identity in self._workloads_of(p):
                self.engine.forget(identity)
        log_event(log, "info", {"event": "partitions_revoked", "engine": self.name, "partitions": sorted(partitions)})


class MemorySink:
    """Policies kept in memory with the sink's precondition (tests and the bench; the cluster's writer
    carries the same check as a resourceVersion precondition on the policy's annotation)."""

    def __init__(self, on_write: Callable[[Decision, Sequence_], None] | None = None) -> None:
        self.lock = threading.Lock()
        self.last: dict[str, Sequence_] = {}
        self.written: list[tuple[Decision, Sequence_]] = []
        self.intents: dict[str, Any] = {}
        self.on_write = on_write

    def write(self, decision: Decision, sequence: Sequence_) -> bool:
        with self.lock:
            last = self.last.get(decision.identity)
            if last is not None and sequence <= last:
                return False
            self.last[decision.identity] = sequence
            self.written.append((decision, sequence))
            if decision.intents:
                for intent in decision.intents:
                    self.intents[(decision.identity, intent.instance)] = intent
        if self.on_write is not None:
            self.on_write(decision, sequence)
        return True
