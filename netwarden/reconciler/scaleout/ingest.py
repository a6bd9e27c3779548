"""The ingest role: signals in, folded observations out to Kafka, keyed by the workload they are about.

Stateless apart from the pod index (from the pod watch, as in single mode) and the fold table. It is
a SignalSink: the same receivers and stream clients that feed the single-mode engine feed it. A flow
is resolved into its views (egress for the source's workload, ingress for the destination's), and
views are folded: within a bucket (`fold_seconds`), views of one workload with the same edge, pod
and verdict become one row with a count, so Kafka carries edges and rates, not packets. Alerts and
pod health are resolved to their workload and sent at once, on the same partition as its flows.

Kafka being away (broker restart, a network cut) is absorbed by librdkafka's queue, bounded by
`max_buffered` records; past it, or once a record waited `delivery_timeout_ms`, observations are
dropped and counted (`netwarden_ingest_dropped_total{reason}`), never blocking the receivers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from netwarden.reconciler import metrics
from netwarden.reconciler.core.behaviour import FlowView, resolve_flow
from netwarden.reconciler.core.pods import PodIndex
from netwarden.reconciler.core.types import Flow, HealthSignal, MetricAlert, SecurityAlert
from netwarden.reconciler.scaleout import wire
from netwarden.reconciler.scaleout.wire import Topics, partition_of

log = logging.getLogger("netwarden.scaleout.ingest")

#: Fold key: identity, edge, pod instance, pod, dropped.
FoldKey = tuple[str, tuple, str | None, str | None, bool]


@dataclass
class FoldTable:
    """Views of the current bucket, folded; `drain` hands them over per workload. Pure, no clock."""

    max_rows: int = 50_000
    rows: "OrderedDict[FoldKey, list[Any]]" = field(default_factory=OrderedDict)
    views_in: int = 0

    def add(self, view: FlowView) -> bool:
        """Fold one view; False when the table is full (the caller drains first)."""
        key = (view.identity, view.key or view.edge, view.instance, view.pod, view.dropped)
        row = self.rows.get(key)
        self.views_in += 1
        if row is not None:
            row[0] = view  # the latest view carries the latest time, peer address and purpose
            row[1] += 1
            return True
        if len(self.rows) >= self.max_rows:
            self.views_in -= 1
            return False
        self.rows[key] = [view, 1]
        return True

    def drain(self) -> list[tuple[str, str, list[tuple[FlowView, int]]]]:
        """(identity, namespace, [(view, count), ...]) per workload, in first-seen order; empties the table."""
        by_workload: dict[str, tuple[str, list[tuple[FlowView, int]]]] = {}
        for (identity, *_), (view, count) in self.rows.items():
            entry = by_workload.get(identity)
            if entry is None:
                entry = by_workload[identity] = (view.namespace, [])
            entry[1].append((view, count))
        self.rows = OrderedDict()
        return [(identity, ns, folds) for identity, (ns, folds) in by_workload.items()]


@dataclass
class IngestCounters:
    flows: int = 0
    views: int = 0
    unresolved: int = 0
    records: int = 0
    delivered: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n
        metrics.INGEST_DROPPED.labels(reason).inc(n)


class Ingest:
    """Receivers' SignalSink in scale-out mode: folds and produces, with a bounded buffer."""

    def __init__(self, bootstrap: str, index: PodIndex, topics: Topics = Topics(), *, fold_seconds: float = 1.0,
                 max_buffered: int = 100_000, delivery_timeout_ms: int = 120_000,
                 extra: dict[str, Any] | None = None, clock: Callable[[], float] = time.time) -> None:
        from confluent_kafka import Producer

        self.index = index
        self.topics = topics
        self.fold_seconds = fold_seconds
        self.clock = clock
        self.counters = IngestCounters()
        self._table = FoldTable()
        self._lock = threading.Lock()
        self._producer = Producer({
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,  # retried after a broker restart without duplicates or reordering
            "linger.ms": 20,
            "compression.type": "lz4",
            "queue.buffering.max.messages": max_buffered,
            "message.timeout.ms": delivery_timeout_ms,
            "reconnect.backoff.max.ms": 1000,
            **(extra or {}),
        })
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None

    # -- SignalSink ------------------------------------------------------------------------------
    def accept_flows(self, flows: Sequence[Flow]) -> None:
        full = False
        with self._lock:
            for flow in flows:
                self.counters.flows += 1
                views = resolve_flow(flow, self.index)
                if not views:
                    self.counters.unresolved += 1
                for view in views:
                    self.counters.views += 1
                    if not self._table.add(view):
                        full = True
                        self._flush_locked()
                        self._table.add(view)
        if full:
            self._producer.poll(0)

    def accept_alert(self, alert: SecurityAlert) -> None:
        ref = self.index.by_pod.get((alert.namespace or "", alert.pod or ""))
        if ref is None:
            self.counters.unresolved += 1
            return
        self._produce(ref.identity, wire.alert_record(ref.identity, alert))

    def accept_metric_alerts(self, alerts: Sequence[MetricAlert]) -> None:
        for alert in alerts:
            ref = self.index.by_pod.get((alert.namespace or "", alert.pod or ""))
            if ref is None:
                self.counters.unresolved += 1
                continue
            self._produce(ref.identity, wire.metric_record(ref.identity, alert))

    def accept_health(self, signal: HealthSignal) -> None:
        ref = self.index.by_pod.get((signal.namespace, signal.pod))
        if ref is not None:
            self._produce(ref.identity, wire.health_record(ref.identity, signal))

    # -- producing -------------------------------------------------------------------------------
    def flush(self) -> int:
        """Close the current bucket: one record per workload. Returns how many records were queued."""
        with self._lock:
            return self._flush_locked()

    def _flush_locked(self) -> int:
        queued = 0
        for identity, namespace, folds in self._table.drain():
            queued += self._produce(identity, wire.edges_record(identity, namespace, folds), views=sum(n for _, n in folds))
        return queued

    def _produce(self, identity: str, value: bytes, views: int = 1) -> int:
        partition = partition_of(identity, self.topics.partitions)

        def delivered(err: Any, _msg: Any) -> None:
            if err is None:
                self.counters.delivered += 1
            else:
                self.counters.drop("delivery-failed", views)

        try:
            self._producer.produce(self.topics.observations, value, identity.encode(), partition=partition,
                                   on_delivery=delivered)
        except BufferError:
            self.counters.drop("buffer-full", views)
            return 0
        self.counters.records += 1
        return 1

    def buffered(self) -> int:
        """Records handed to the client and not yet acknowledged by the broker."""
        return len(self._producer)

    def start(self) -> "Ingest":
        self._flusher = threading.Thread(target=self._loop, name="ingest-fold", daemon=True)
        self._flusher.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.fold_seconds):
            self.flush()
            self._producer.poll(0)

    def stop(self, timeout: float = 10.0) -> int:
        """Flush the last bucket and wait for delivery; returns what is still undelivered."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout)
        self.flush()
        return self._producer.flush(timeout)

    def poll(self, timeout: float = 0.0) -> None:
        self._producer.poll(timeout)


def fold_ratio(flows: Iterable[Flow], index: PodIndex, fold_seconds: float) -> tuple[int, int, int]:
    """(flows, views, rows): how much folding by `fold_seconds` buckets of flow time shrinks a recording."""
    table = FoldTable(max_rows=10**9)
    n_flows = rows = 0
    bucket = None
    for flow in flows:
        n_flows += 1
        b = int(flow.time // fold_seconds)
        if bucket is not None and b != bucket:
            rows += len(table.rows)
            table.drain()
        bucket = b
        for view in resolve_flow(flow, index):
            table.add(view)
    rows += len(table.rows)
    return n_flows, table.views_in, rows
