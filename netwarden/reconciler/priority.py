"""Alerts before flows. While an alert is being handled (from its request to its policy write), flow
batches wait: before they are parsed and between chunks of the engine's work. An incident's signal
then never queues behind bulk flow ingestion for the engine lock, nor competes with it for the
interpreter: CPU-bound flow threads would otherwise hold the GIL for a whole switch interval at
each of the alert's many I/O steps, so while an alert is in flight the switch interval is short.
A wait is bounded, so a storm of alerts slows flows, never stops them."""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Iterator

#: Longest a flow batch waits for alerts in flight before it goes on anyway.
MAX_WAIT_SECONDS = 2.0
#: The interpreter's thread switch interval while an alert is in flight (CPython's default is 5 ms):
#: a flow batch already past its turn hands the GIL back within this at each of the alert's I/O steps.
ALERT_SWITCH_INTERVAL = 0.0002


class SignalPriority:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._alerts = 0
        self._interval = sys.getswitchinterval()

    @contextmanager
    def alert(self) -> Iterator[None]:
        """Hold flows back while the block runs (nests; counts overlapping alerts)."""
        with self._cond:
            self._alerts += 1
            if self._alerts == 1:
                self._interval = sys.getswitchinterval()
                sys.setswitchinterval(min(self._interval, ALERT_SWITCH_INTERVAL))
        try:
            yield
        finally:
            with self._cond:
                self._alerts -= 1
                if not self._alerts:
                    sys.setswitchinterval(self._interval)
                    self._cond.notify_all()

    def wait_turn(self, timeout: float = MAX_WAIT_SECONDS) -> None:
        """Called by flow ingestion between pieces of work: returns at once unless an alert is in flight."""
        if self._alerts:  # an unlocked read: the common case costs one attribute load
            with self._cond:
                self._cond.wait_for(lambda: not self._alerts, timeout)

    @property
    def alerts_in_flight(self) -> int:
        return self._alerts
