"""Alerts before flows: a flow batch waits while an alert is handled, and never longer than the bound."""

from __future__ import annotations

import gc
import sys
import threading
import time
from typing import Sequence

import pytest
from prometheus_client import CollectorRegistry

from netwarden.reconciler.priority import (ALERT_SWITCH_INTERVAL, RECONCILER_SWITCH_INTERVAL, SignalPriority,
                                            freeze_started_objects, use_reconciler_switch_interval)
from netwarden.reconciler.receivers import create_receiver_app
from tests.support.data import PAYLOADS
from tests.support.waiting import wait_for

HUBBLE = (PAYLOADS / "hubble/hubble-otel_gke-istio_2021_l3l4_10flows.jsonl").read_bytes()
FALCO = (PAYLOADS / "falco/falcosidekick_webhook-post-body_terminal-shell_2024.json").read_bytes()


class SlowAlertSink:
    """Holds each alert until released; records when flows arrive."""

    def __init__(self) -> None:
        self.signal_priority = SignalPriority()
        self.release = threading.Event()
        self.alert_started = threading.Event()
        self.flows_at: list[float] = []

    def accept_flows(self, flows: Sequence[object]) -> None:
        self.flows_at.append(time.monotonic())

    def accept_alert(self, alert: object) -> None:
        self.alert_started.set()
        self.release.wait(10)

    def accept_metric_alerts(self, alerts: Sequence[object]) -> list:
        return []


def test_a_flow_batch_posted_during_an_alert_is_scored_after_it() -> None:
    sink = SlowAlertSink()
    client = create_receiver_app(sink, token=None, registry=CollectorRegistry()).test_client()
    alert = threading.Thread(target=lambda: client.post("/signals/falco", data=FALCO))
    alert.start()
    assert sink.alert_started.wait(10)
    flows = threading.Thread(target=lambda: client.post("/signals/flows", data=HUBBLE))
    flows.start()
    flows.join(0.3)
    assert sink.flows_at == [] and flows.is_alive()  # held back while the alert is in flight
    released = time.monotonic()
    sink.release.set()
    wait_for(lambda: sink.flows_at, timeout=10)
    assert sink.flows_at[0] >= released
    alert.join(10)
    flows.join(10)


def test_wait_turn_is_immediate_without_alerts_and_bounded_with_one() -> None:
    priority = SignalPriority()
    started = time.monotonic()
    priority.wait_turn()
    assert time.monotonic() - started < 0.05
    with priority.alert(), priority.alert():
        assert priority.alerts_in_flight == 2
        started = time.monotonic()
        priority.wait_turn(timeout=0.2)  # a storm of alerts slows flows, never stops them
        assert 0.2 <= time.monotonic() - started < 2.0
    assert priority.alerts_in_flight == 0


def test_the_last_alert_to_finish_lets_flows_go() -> None:
    priority = SignalPriority()
    done = threading.Event()
    with priority.alert():
        waiter = threading.Thread(target=lambda: (priority.wait_turn(timeout=10), done.set()))
        waiter.start()
        assert not done.wait(0.2)
    assert done.wait(5)
    waiter.join(5)


class CountingFlowSink(SlowAlertSink):
    """Records how many flow batches are being scored at once."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.batches = 0

    def accept_flows(self, flows: Sequence[object]) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.02)  # a batch long enough for the others to arrive meanwhile
        with self.lock:
            self.now -= 1
            self.batches += 1


def test_flow_batches_from_many_senders_are_scored_one_at_a_time() -> None:
    sink = CountingFlowSink()
    client = create_receiver_app(sink, token=None, registry=CollectorRegistry()).test_client()
    senders = [threading.Thread(target=lambda: client.post("/signals/flows", data=HUBBLE)) for _ in range(6)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(10)
    assert sink.batches == 6 and sink.most == 1


def test_the_process_switch_interval_is_short_and_an_alert_makes_it_shorter() -> None:
    before = sys.getswitchinterval()
    try:
        use_reconciler_switch_interval()
        assert sys.getswitchinterval() == pytest.approx(RECONCILER_SWITCH_INTERVAL) and RECONCILER_SWITCH_INTERVAL < before
        priority = SignalPriority()
        with priority.alert():  # the interpreter keeps it in microseconds: compared approximately
            assert sys.getswitchinterval() == pytest.approx(ALERT_SWITCH_INTERVAL)
        assert sys.getswitchinterval() == pytest.approx(RECONCILER_SWITCH_INTERVAL)
    finally:
        sys.setswitchinterval(before)


def test_objects_built_at_start_are_kept_out_of_later_collections() -> None:
    try:
        freeze_started_objects()
        assert gc.get_freeze_count() > 0 and gc.get_count()[2] == 0
    finally:
        gc.unfreeze()
