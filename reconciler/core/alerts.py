"""Which alerts are reasons to act now: de-duplicated by their id, and aged.

A falcosidekick body sent five times is one alert, not five; a body from 2019 is evidence of the
past, not a reason to isolate a pod today. Pure: `now` is passed in; memory is bounded.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass

from reconciler.core.config import CoreConfig
from reconciler.core.types import SecurityAlert

#: Why an alert is kept as evidence but not acted on (the metric's `reason` label).
DUPLICATE = "duplicate"
TOO_OLD = "too-old"


def security_alert_key(alert: SecurityAlert) -> str:
    """falcosidekick's uuid when it sent one, else a hash of what the alert says (time included)."""
    if alert.alert_id:
        return f"id:{alert.alert_id}"
    content = [alert.source_format, alert.time, alert.namespace, alert.pod, alert.rule, alert.priority, alert.output]
    return "sha256:" + hashlib.sha256(json.dumps(content, default=str).encode()).hexdigest()[:32]


@dataclass
class AlertMemory:
    """Alert keys seen recently (each remembered for `window` seconds, at most `max_keys` of them)."""

    window: float
    max_keys: int

    def __post_init__(self) -> None:
        self._until: OrderedDict[str, float] = OrderedDict()

    @classmethod
    def from_config(cls, config: CoreConfig) -> "AlertMemory":
        return cls(config.alert_dedup_seconds, config.alert_dedup_max)

    def seen(self, key: str, now: float) -> bool:
        """True when `key` was seen within the window; remembers it either way."""
        while self._until:
            oldest, until = next(iter(self._until.items()))
            if until > now and len(self._until) <= self.max_keys:
                break
            del self._until[oldest]
        if key in self._until:
            return True
        self._until[key] = now + self.window
        return False

    def __len__(self) -> int:
        return len(self._until)


def alert_verdict(alert: SecurityAlert, memory: AlertMemory, config: CoreConfig, now: float) -> str | None:
    """None when the alert is a reason to act now; else DUPLICATE or TOO_OLD."""
    if memory.seen(security_alert_key(alert), now):
        return DUPLICATE
    if now - alert.time > config.alert_max_age_seconds:
        return TOO_OLD
    return None
