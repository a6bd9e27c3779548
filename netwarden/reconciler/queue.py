"""A work queue of workload identities: dedup, coalescing, per-key exponential backoff.

Semantics follow client-go's workqueue: a key is in the queue at most once; a key added while a
worker processes it is marked dirty and handed out again after `done()`, never to two workers at
once. `add()` waits a short coalescing delay, so a burst of pod events for one workload becomes
one reconcile. Failures re-add with exponential backoff per key; success `forget()`s it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

#: Key prefixes the reconciler queues (netwarden/reconciler/controller.py dispatches on them): a workload, a pod to
#: backfill, a managed policy, a quarantine step to retry, a namespace whose containment to check, a workload
#: decision's write to retry.
WL, POD, NP, QR, CC, WD = "wl:", "pod:", "np:", "qr:", "cc:", "wd:"


@dataclass
class QueueStats:
    added: int = 0
    coalesced: int = 0
    handed_out: int = 0
    retries: int = 0


@dataclass
class WorkQueue:
    """Keys are workload identities (any hashable string)."""

    coalesce: float = 0.05
    base_backoff: float = 0.05
    max_backoff: float = 60.0
    clock: Callable[[], float] = time.monotonic
    stats: QueueStats = field(default_factory=QueueStats)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, str]] = []
        self._due: dict[str, float] = {}  # key -> when it is due (keys waiting in the heap)
        self._processing: set[str] = set()
        self._dirty: dict[str, float] = {}  # added while processing: re-queue after done()
        self._failures: dict[str, int] = {}
        self._seq = itertools.count()
        self._shutdown = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._due)

    def add(self, key: str, delay: float | None = None) -> None:
        """Queue `key` to run after `delay` (default: the coalescing delay); an earlier due time wins."""
        when = self.clock() + (self.coalesce if delay is None else max(0.0, delay))
        with self._cond:
            if self._shutdown:
                return
            self.stats.added += 1
            if key in self._processing:
                self._dirty[key] = min(when, self._dirty.get(key, when))
                return
            current = self._due.get(key)
            if current is not None:
                self.stats.coalesced += 1
                if current <= when:
                    return
            self._due[key] = when
            heapq.heappush(self._heap, (when, next(self._seq), key))
            self._cond.notify()

    def add_rate_limited(self, key: str) -> float:
        """Re-queue after a failure: base * 2**failures, capped. Returns the delay chosen."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
            self.stats.retries += 1
        delay = min(self.max_backoff, self.base_backoff * 2 ** failures)
        self.add(key, delay)
        return delay

    def forget(self, key: str) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def idle(self) -> bool:
        """Nothing due, waiting or being processed: every key added so far has been handled."""
        with self._cond:
            return not self._due and not self._processing and not self._dirty

    def failures(self, key: str) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def get(self, timeout: float | None = None) -> str | None:
        """The next due key (blocks until one is due); None on shutdown or timeout."""
        deadline = None if timeout is None else self.clock() + timeout
        with self._cond:
            while True:
                if self._shutdown:
                    return None
                now = self.clock()
                while self._heap:
                    when, _, key = self._heap[0]
                    if self._due.get(key) != when:
                        heapq.heappop(self._heap)  # superseded by an earlier add
                        continue
                    if when > now:
                        break
                    heapq.heappop(self._heap)
                    del self._due[key]
                    self._processing.add(key)
                    self.stats.handed_out += 1
                    return key
                wait = None if not self._heap else self._heap[0][0] - now
                if deadline is not None:
                    remaining = deadline - now
                    if remaining <= 0:
                        return None
                    wait = remaining if wait is None else min(wait, remaining)
                self._cond.wait(wait)

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            when = self._dirty.pop(key, None)
        if when is not None:
            self.add(key, max(0.0, when - self.clock()))

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
