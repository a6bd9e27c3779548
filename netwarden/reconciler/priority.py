"""Alerts before flows. While an alert is being handled (from its request to its policy write), flow
batches wait: before they are parsed and between chunks of the engine's work. An incident's signal
then never queues behind bulk flow ingestion for the engine lock, nor competes with it for the
interpreter: CPU-bound flow threads would otherwise hold the GIL for a whole switch interval at
each of the alert's many I/O steps, so while an alert is in flight the switch interval is short.
A wait is bounded, so a storm of alerts slows flows, never stops them.

Flow batches from many senders are parsed and scored one at a time (`flow_lane`): under the GIL
several CPU-bound batches in parallel go no faster than one, but each is one more thread an alert's
thread competes with for the interpreter. And the reconciler process runs with a short switch
interval all the time (`use_reconciler_switch_interval`): an alert's first steps (the receiver's loop
reading its request, the hand-off to a request thread) come before anyone knows it is an alert, and
each would otherwise wait up to CPython's default 5 ms for a flow thread to let go of the GIL. Once
started, the process moves what it built (informer caches, restored state, imported modules) out of
the cyclic garbage collector's reach (`freeze_started_objects`): a full collection walked all of it,
stopping every thread for 0.2-0.7 s on the shared machine, often enough to be an alert's p99."""

from __future__ import annotations

import gc
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

#: Longest a flow batch waits for alerts in flight before it goes on anyway.
MAX_WAIT_SECONDS = 2.0
#: The interpreter's thread switch interval while an alert is in flight (CPython's default is 5 ms):
#: a flow batch already past its turn hands the GIL back within this at each of the alert's I/O steps.
ALERT_SWITCH_INTERVAL = 0.0002
#: The reconciler process's switch interval the rest of the time: a bound on every GIL hand-off.
RECONCILER_SWITCH_INTERVAL = 0.0005


def use_reconciler_switch_interval() -> None:
    """Called once by the reconciler process at start (never by a library user's process)."""
    sys.setswitchinterval(RECONCILER_SWITCH_INTERVAL)


def freeze_started_objects() -> None:
    """Called once by the reconciler process when started: collect what is garbage now, then keep every
    object that survived out of later collections (gc.freeze: they are still freed when unreferenced;
    only a reference cycle among them would stay, and start-up's cycles were just collected)."""
    gc.collect()
    gc.freeze()


class SignalPriority:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._alerts = 0
        self._interval = sys.getswitchinterval()
        self._flow_lane = threading.Lock()

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

    @contextmanager
    def flow_lane(self) -> Iterator[None]:
        """Parse and score one flow batch at a time; the others wait here, blocked, holding no GIL."""
        with self._flow_lane:
            yield

    @property
    def alerts_in_flight(self) -> int:
        return self._alerts
