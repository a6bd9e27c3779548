"""Calico Goldmane client: Flows.List for the recent past at start-up, then Flows.Stream.

Goldmane aggregates flows per 15 s window and per pod prefix; each FlowResult becomes the record
Whisker serves as JSON for it (records.goldmane_record), read by the same parser as that JSON. A reconnect
resumes Stream at the newest window start seen; results of that window already delivered (same
flow key) are skipped.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import grpc

from netwarden.reconciler.core.types import Flow
from netwarden.reconciler.sources import records
from netwarden.reconciler.sources.proto import goldmane_pb2, goldmane_pb2_grpc
from netwarden.reconciler.sources.stream import FlowSource

#: Calico's Goldmane Service (mTLS with the certificates Calico issues in calico-system).
DEFAULT_ADDRESS = "goldmane.calico-system.svc:7443"
#: Goldmane's aggregation window, seconds (Stream requires it).
AGGREGATION_SECONDS = 15
LIST_PAGE_SIZE = 1000


class GoldmaneSource(FlowSource[goldmane_pb2.FlowResult]):
    name = "goldmane"
    record_format = "goldmane"

    def __init__(self, address: str, sink: Any, *, backfill_seconds: int = 60,
                 list_timeout: float = 30.0, **kwargs: Any) -> None:
        """At start-up, List the last `backfill_seconds` (0: none) before streaming."""
        super().__init__(address, sink, **kwargs)
        self.backfill_seconds = backfill_seconds
        self.list_timeout = list_timeout
        self._last_start: int | None = None
        self._keys_at_last: set[bytes] = set()

    def open(self, channel: grpc.Channel) -> Iterable[goldmane_pb2.FlowResult]:
        stub = goldmane_pb2_grpc.FlowsStub(channel)
        backfill: list[goldmane_pb2.FlowResult] = []
        if self._last_start is None and self.backfill_seconds > 0:
            backfill = list(self._list(stub))
        start = self._last_start if self._last_start is not None else 0  # 0: from now on
        if backfill:
            start = max(r.flow.start_time for r in backfill)
        stream = stub.Stream(goldmane_pb2.FlowStreamRequest(start_time_gte=start,
                                                            aggregation_interval=AGGREGATION_SECONDS))
        return _Chained(backfill, stream)

    def _list(self, stub: goldmane_pb2_grpc.FlowsStub) -> Iterator[goldmane_pb2.FlowResult]:
        page = 0
        while True:
            result = stub.List(goldmane_pb2.FlowListRequest(start_time_gte=-self.backfill_seconds, page=page,
                                                            page_size=LIST_PAGE_SIZE), timeout=self.list_timeout)
            yield from result.flows
            page += 1
            if page >= result.meta.totalPages or not result.flows:
                return

    def seen(self, message: goldmane_pb2.FlowResult) -> bool:
        start, key = records.goldmane_identity(message)
        last = self._last_start
        if last is not None and (start < last or (start == last and key in self._keys_at_last)):
            return False
        if last is None or start > last:
            self._last_start = start
            self._keys_at_last = set()
        self._keys_at_last.add(key)
        return True

    def message_time(self, message: goldmane_pb2.FlowResult) -> float | None:
        return float(message.flow.end_time) if message.flow.end_time else None

    def flow(self, message: goldmane_pb2.FlowResult) -> Flow:
        return records.goldmane_flow(message)


class _Chained:
    """The backfill, then the live stream, behind one iterator with the stream's cancel()."""

    def __init__(self, first: list[goldmane_pb2.FlowResult], stream: Any) -> None:
        self._first = first
        self._stream = stream

    def __iter__(self) -> Iterator[goldmane_pb2.FlowResult]:
        yield from self._first
        yield from self._stream

    def cancel(self) -> None:
        self._stream.cancel()
