"""Snapshot and restore of learned state: a new owner of a workload decides as the old one would have."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from netwarden.reconciler.core import snapshot
from netwarden.reconciler.core.engine import DecisionEngine
from netwarden.reconciler.core.snapshot import SnapshotError
from tests.core.corekit import API, DB, engine, flow, ip, learn_api_to_db, with_config
from tests.core.test_properties import PROTECTED_POD, drive, events

#: Guard rails are cluster-wide (not per workload, not in a snapshot): wide enough never to be what differs.
OPEN_GUARDS = dict(blast_max_pod_fraction=1.0, blast_max_workloads=10_000, write_burst=100_000, safety_write_burst=100_000)


def _engine() -> DecisionEngine:
    e = engine(with_config(**OPEN_GUARDS))
    e.upsert_pod(PROTECTED_POD)
    return e


def _moved(old: DecisionEngine, now: float) -> DecisionEngine:
    """A fresh engine that restored every workload of `old` through the byte encoding the stores carry."""
    new = _engine()
    for identity in old.workloads():
        raw = snapshot.to_bytes(old.snapshot(identity, now))
        assert new.restore_snapshot(snapshot.from_bytes(raw), now)
    return new


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events, events)
def test_a_restored_engine_decides_identically_to_the_one_it_was_snapshot_from(before, after) -> None:
    original = _engine()
    drive(original, before)
    now = 120.0 + sum(gap for gap, _ in before)
    restored = _moved(original, now)
    assert [r.to_dict() for r in restored.status(now)] == [r.to_dict() for r in original.status(now)]
    # The stream goes on from where it stopped, on both: every decision is the same, evidence included.
    one = [d.to_dict() for d in drive(original, after, now, learn=False)]
    two = [d.to_dict() for d in drive(restored, after, now, learn=False)]
    assert one == two
    later = now + 1e4
    for identity in original.workloads():
        assert _learned(restored, identity, later) == _learned(original, identity, later)


def _learned(e: DecisionEngine, identity: str, now: float) -> tuple:
    """What explain shows of the learned state, and the recent edges the what-if replays."""
    shown = {k: v for k, v in e.explain(identity, now).items() if k != "past_alerts"}
    recent = e._tracked[identity].recent
    return shown, [(v.edge, v.time, recent.count(v.edge)) for v in recent.views()]


def test_a_moved_workload_does_not_learn_again_and_reports_a_new_peer() -> None:
    e = engine()
    learn_api_to_db(e)
    assert not e.baseline_of(API).is_learning(200.0)
    moved = engine()
    moved.restore_snapshot(snapshot.from_bytes(snapshot.to_bytes(e.snapshot(API, 200.0))), 200.0)
    assert not moved.baseline_of(API).is_learning(200.0)
    assert moved.baseline_of(API).learned_edges() == e.baseline_of(API).learned_edges()
    moved.ingest_flow(flow(201.0, ip(API), "203.0.113.7", 443, world=True), 201.0)
    assert moved.risk_of(API).score_at(201.0) > 0  # a deviation at once, not a new learning window


def test_an_engine_that_saw_flows_itself_keeps_its_own_state() -> None:
    old = engine()
    learn_api_to_db(old)
    mine = engine()
    mine.ingest_flow(flow(300.0, ip(API), ip(DB)), 300.0)
    assert not mine.restore_snapshot(old.snapshot(API, 300.0), 300.0)
    assert mine.baseline_of(API).flows_seen == 1


def test_a_snapshot_of_another_version_is_refused_with_a_reason() -> None:
    e = engine()
    learn_api_to_db(e)
    data = e.snapshot(API, 200.0)
    with pytest.raises(SnapshotError) as info:
        engine().restore_snapshot({**data, "v": 99}, 200.0)
    assert info.value.reason == "version"
    with pytest.raises(SnapshotError) as info:
        snapshot.from_bytes(b"not deflated")
    assert info.value.reason == "malformed"


def test_a_snapshot_stays_within_its_byte_bound_at_the_caps() -> None:
    e = engine()
    t = 0.0
    for n in range(5000):  # far more distinct peers and ports than the caps keep
        t += 0.01
        e.ingest_flow(flow(t, ip(API), f"10.{n % 250}.{n // 250}.9", 1000 + n, world=True), t)
    raw = snapshot.to_bytes(e.snapshot(API, t))
    assert len(raw) < snapshot.MAX_BYTES
    assert len(snapshot.from_bytes(raw)["baseline"]["edges"]) <= e.config.max_peers_per_workload


def test_forget_drops_a_workload_that_moved_away() -> None:
    e = engine()
    learn_api_to_db(e)
    assert e.forget(API) and API not in e.workloads() and not e.forget(API)
