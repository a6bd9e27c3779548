"""Guard rails: what automatic actions may never do, however high a score climbs.

* Protected namespaces (the cluster's own, netwarden's) are never tightened or quarantined.
* Blast radius: at most N workloads, and at most a fraction of all pods, put under automatic
  quarantine within a sliding window; beyond it, alert-only.
* A token bucket caps API writes (time passed in, so replays are deterministic); safety writes
  (rollback, relax, quarantine release) have a bucket of their own, so tightenings never delay them.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from netwarden.reconciler.core.config import CoreConfig


class WriteBudget:
    """Token bucket: `rate` tokens a second, at most `burst` saved up."""

    __slots__ = ("rate", "burst", "tokens", "as_of")

    def __init__(self, rate: float, burst: int, now: float = 0.0) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.as_of = now

    def available(self, now: float) -> float:
        elapsed = max(0.0, now - self.as_of)
        return min(self.burst, self.tokens + elapsed * self.rate)

    def try_take(self, now: float, cost: float = 1.0) -> bool:
        tokens = self.available(now)
        self.as_of = max(self.as_of, now)
        if tokens + 1e-9 < cost:
            self.tokens = tokens
            return False
        self.tokens = tokens - cost
        return True


@dataclass(frozen=True)
class QuarantineRecord:
    time: float
    identity: str
    pods: int


class BlastRadius:
    """Sliding window of automatic quarantines, checked before another is allowed."""

    __slots__ = ("window", "max_workloads", "max_fraction", "records")

    def __init__(self, window: float, max_workloads: int, max_fraction: float) -> None:
        self.window = window
        self.max_workloads = max_workloads
        self.max_fraction = max_fraction
        self.records: deque[QuarantineRecord] = deque()

    def _expire(self, now: float) -> None:
        while self.records and self.records[0].time <= now - self.window:
            self.records.popleft()

    def check(self, identity: str, pods: int, total_pods: int, now: float) -> str | None:
        """None when allowed, else the reason it is not."""
        self._expire(now)
        workloads = {r.identity for r in self.records} | {identity}
        if len(workloads) > self.max_workloads:
            return (
                f"blast radius: {len(workloads) - 1} workloads already quarantined automatically within "
                f"{self.window:g}s (limit {self.max_workloads})"
            )
        pods_after = sum(r.pods for r in self.records) + pods
        # One pod is always allowed, so a small cluster can still isolate its one bad pod.
        allowed_pods = max(1, math.floor(self.max_fraction * total_pods))
        if pods_after > allowed_pods:
            return (
                f"blast radius: {pods_after} of {total_pods} pods would be under automatic quarantine within "
                f"{self.window:g}s (limit {self.max_fraction:.0%}, {allowed_pods} pods)"
            )
        return None

    def record(self, identity: str, pods: int, now: float) -> None:
        self._expire(now)
        self.records.append(QuarantineRecord(now, identity, pods))


class GuardRails:
    """Everything that can turn an automatic action into alert-only (or defer it)."""

    __slots__ = ("protected", "blast", "budget", "safety_budget")

    def __init__(self, config: CoreConfig, now: float = 0.0) -> None:
        self.protected = frozenset(config.protected_namespaces)
        self.blast = BlastRadius(config.blast_window_seconds, config.blast_max_workloads, config.blast_max_pod_fraction)
        self.budget = WriteBudget(config.write_rate_per_second, config.write_burst, now)
        self.safety_budget = WriteBudget(config.safety_write_rate_per_second, config.safety_write_burst, now)

    def is_protected(self, namespace: str) -> bool:
        return namespace in self.protected
