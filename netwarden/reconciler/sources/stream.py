"""A long-lived gRPC flow subscription that survives its server: the shared half of the Hubble Relay
and Goldmane clients (netwarden/reconciler/sources/hubble.py, goldmane.py).

Two threads per source. The *reader* holds the stream: it connects (TLS files re-read on every
connect, so rotated certificates apply at the next one), reads messages as fast as they come into a
bounded buffer, and on any failure reconnects with capped exponential backoff, asking the server to
resume from the last flow it saw (the source decides how; duplicates of that instant are skipped).
The *feeder* takes batches from the buffer, turns them into `Flow`s through the flow parsers' own mapping and hands
them to the sink (the engine). A feeder slower than the stream never slows the reader: when the
buffer is full the oldest message is dropped and counted, so memory stays bounded and the engine
sees the freshest traffic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, Iterator, Sequence, TypeVar

import grpc

from netwarden.model import names
from netwarden.platform.logs import log_event
from netwarden.reconciler.core.types import Flow, SignalError
from netwarden.reconciler.signals.streams import SignalCounters

log = logging.getLogger("netwarden.reconciler.sources")

M = TypeVar("M")

#: gRPC channel options: find a dead peer within ~40 s even when no flow comes.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
)


@dataclass(frozen=True)
class TlsFiles:
    """A mounted Kubernetes TLS Secret: ca.crt verifies the server; tls.crt + tls.key, when present,
    are netwarden's client certificate (mTLS). Read at every connect, never cached."""

    directory: str
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        folder = Path(self.directory)

        def read(name: str) -> bytes | None:
            path = folder / name
            return path.read_bytes() if path.exists() else None

        cert, key = read("tls.crt"), read("tls.key")
        if (cert is None) != (key is None):
            raise ValueError(f"{folder}: tls.crt and tls.key come together (mTLS) or not at all")
        return grpc.ssl_channel_credentials(root_certificates=read("ca.crt"), private_key=key,
                                            certificate_chain=cert)


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.2
    maximum: float = 30.0
    factor: float = 2.0

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay
            delay = min(self.maximum, delay * self.factor)


@dataclass
class StreamStats:
    """What a source reports as metrics (netwarden/reconciler/metrics.py collects them). Thread-safe enough:
    each counter has one writer."""

    source: str
    received: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    connected: bool = False
    #: Wall-clock seconds between the newest flow's own time and its arrival.
    lag_seconds: float = 0.0
    last_error: str = ""

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        out: list[tuple[str, dict[str, str], float]] = [
            (names.METRIC_STREAM_RECEIVED, {"source": self.source}, self.received),
            (names.METRIC_STREAM_RECONNECTS, {"source": self.source}, self.reconnects),
            (names.METRIC_STREAM_CONNECTED, {"source": self.source}, 1.0 if self.connected else 0.0),
            (names.METRIC_STREAM_LAG, {"source": self.source}, self.lag_seconds),
        ]
        out += [(names.METRIC_STREAM_DROPPED, {"source": self.source, "reason": reason}, n)
                for reason, n in sorted(self.dropped.items())]
        return out


class BoundedBuffer(Generic[M]):
    """A FIFO of at most `capacity` items; a put into a full one drops the oldest and says so."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("buffer capacity must be at least 1")
        self._items: deque[M] = deque()
        self._capacity = capacity
        self._ready = threading.Condition()

    def put(self, item: M) -> bool:
        """False when an older item had to go to make room."""
        with self._ready:
            dropped = len(self._items) >= self._capacity
            if dropped:
                self._items.popleft()
            self._items.append(item)
            self._ready.notify()
            return not dropped

    def take(self, most: int, timeout: float) -> list[M]:
        """Up to `most` items, waiting up to `timeout` for the first."""
        with self._ready:
            if not self._items:
                self._ready.wait(timeout)
            batch = []
            while self._items and len(batch) < most:
                batch.append(self._items.popleft())
            return batch

    def __len__(self) -> int:
        return len(self._items)


class FlowSource(Generic[M]):
    """One subscription. Subclasses say how to open the stream (`open`), where a message sits in time
    (`position`) and what record the parser reads from it (`record`)."""

    #: Metric label and log name ("hubble-relay", "goldmane").
    name = "stream"
    #: The flow format label its flows are counted under (netwarden_signals_total{format}).
    record_format = "hubble"

    def __init__(self, address: str, sink: Any, *, tls: TlsFiles | None = None, buffer_size: int = 10_000,
                 counters: SignalCounters | None = None, backoff: Backoff = Backoff(),
                 active: Callable[[], bool] = lambda: True, batch_size: int = 512,
                 clock: Callable[[], float] = time.time) -> None:
        self.address = address
        self.sink = sink
        self.tls = tls
        self.buffer: BoundedBuffer[M] = BoundedBuffer(buffer_size)
        self.counters = counters if counters is not None else SignalCounters()
        self.backoff = backoff
        self.active = active
        self.batch_size = batch_size
        self.clock = clock
        self.stats = StreamStats(self.name)
        self.accepted = 0
        self._stop = threading.Event()
        self._call: Any = None
        self._call_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- what a source says ------------------------------------------------------------------
    def open(self, channel: grpc.Channel) -> Iterable[M]:
        """The stream call (a grpc response iterator with .cancel()) resuming after what was seen."""
        raise NotImplementedError

    def seen(self, message: M) -> bool:
        """Record the message's position; False when it was already delivered before a reconnect."""
        return True

    def message_time(self, message: M) -> float | None:
        """When the flow happened, epoch seconds (for the lag gauge)."""
        return None

    def flow(self, message: M) -> Flow:
        """The message as a Flow, through the same mapping as the source's JSON export
        (netwarden/reconciler/sources/records.py); SignalError when it is not a usable flow."""
        raise NotImplementedError

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> "FlowSource[M]":
        for target, role in ((self._read_loop, "reader"), (self._feed_loop, "feeder")):
            thread = threading.Thread(target=target, name=f"{self.name}-{role}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._cancel()
        for thread in self._threads:
            thread.join(timeout)

    def _cancel(self) -> None:
        with self._call_lock:
            if self._call is not None:
                self._call.cancel()

    def channel(self) -> grpc.Channel:
        if self.tls is None:
            return grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        options = CHANNEL_OPTIONS
        if self.tls.server_name:
            options += (("grpc.ssl_target_name_override", self.tls.server_name),)
        return grpc.secure_channel(self.address, self.tls.credentials(), options=options)

    # -- the reader --------------------------------------------------------------------------
    def _read_loop(self) -> None:
        delays = self.backoff.delays()
        first = True
        while not self._stop.is_set():
            if not self.active():
                self._stop.wait(0.5)  # a standby replica: the leader holds the stream
                continue
            if not first:
                self.stats.reconnects += 1
            first = False
            received_before = self.stats.received
            try:
                self._read_once()
                reason = "the server ended the stream"
            except grpc.RpcError as err:
                code = err.code() if hasattr(err, "code") else None
                reason = f"{getattr(code, 'name', code)}: {err.details() if hasattr(err, 'details') else err}"
            except Exception as err:  # noqa: BLE001 - a bad file or certificate must not end the thread
                reason = f"{type(err).__name__}: {err}"
            self.stats.connected = False
            if self._stop.is_set():
                return
            self.stats.last_error = reason
            if self.stats.received > received_before:
                delays = self.backoff.delays()  # it worked for a while: start the backoff over
            delay = next(delays)
            log_event(log, "warning", {"event": "flow_stream_lost", "source": self.name, "address": self.address,
                                       "reason": reason, "retry_in_seconds": round(delay, 2)})
            self._stop.wait(delay)

    def _read_once(self) -> None:
        channel = self.channel()
        try:
            call = self.open(channel)
            with self._call_lock:
                self._call = call
            if self._stop.is_set():
                return
            for message in call:
                self.stats.connected = True
                if not self.seen(message):
                    continue
                self.stats.received += 1
                when = self.message_time(message)
                if when is not None:
                    self.stats.lag_seconds = max(0.0, self.clock() - when)
                if not self.buffer.put(message):
                    self.stats.dropped["buffer-full"] += 1
                if self._stop.is_set() or not self.active():
                    call.cancel()
                    return
        finally:
            with self._call_lock:
                self._call = None
            channel.close()

    # -- the feeder --------------------------------------------------------------------------
    def _feed_loop(self) -> None:
        while not self._stop.is_set():
            batch = self.buffer.take(self.batch_size, timeout=0.5)
            if batch:
                self.feed(batch)

    def feed(self, batch: Sequence[M]) -> None:
        """Parse a batch and hand it to the engine; counted as accepted once the engine has it."""
        flows: list[Flow] = []
        for message in batch:
            try:
                flows.append(self.flow(message))
            except SignalError as err:
                self.counters.record_error(self.record_format, err)
                self.stats.dropped[f"rejected:{err.reason}"] += 1
        if flows:
            try:
                self.sink.accept_flows(flows)
            except Exception:  # noqa: BLE001 - the engine's fault is logged; the stream goes on
                log_event(log, "error", {"event": "flow_stream_engine_error", "source": self.name}, exc_info=True)
                self.stats.dropped["engine-error"] += len(flows)
                return
            self.counters.record_ok(self.record_format, len(flows))
            self.accepted += len(flows)


class StreamStatsCollector:
    """prometheus_client collector over the sources' StreamStats."""

    HELP = {
        names.METRIC_STREAM_RECEIVED: ("counter", "Flows received from a gRPC flow source (Hubble Relay, Goldmane)."),
        names.METRIC_STREAM_DROPPED: ("counter", "Streamed flows dropped, by source and reason (buffer-full, "
                                                 "rejected:<parser reason>, engine-error)."),
        names.METRIC_STREAM_RECONNECTS: ("counter", "Reconnections of a gRPC flow source."),
        names.METRIC_STREAM_CONNECTED: ("gauge", "1 while the gRPC flow source's stream is up."),
        names.METRIC_STREAM_LAG: ("gauge", "Seconds between the newest streamed flow's time and its arrival."),
    }

    def __init__(self, stats: Callable[[], Iterable[StreamStats]]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[object]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        families: dict[str, Any] = {}
        for metric, (kind, text) in self.HELP.items():
            labels = ["source", "reason"] if metric == names.METRIC_STREAM_DROPPED else ["source"]
            if kind == "counter":
                families[metric] = CounterMetricFamily(metric.removesuffix("_total"), text, labels=labels)
            else:
                families[metric] = GaugeMetricFamily(metric, text, labels=labels)
        for stats in self.stats():
            for metric, labels, value in stats.samples():
                families[metric].add_metric(list(labels.values()), value)
        yield from families.values()
