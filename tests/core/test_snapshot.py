"""Snapshot and restore of learned state: a new owner of a workload decides as the old one would have."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from netwarden.reconciler.core import snapshot
from netwarden.reconciler.core.engine import DecisionEngine
from netwarden.reconciler.core.snapshot import SnapshotError
from netwarden.reconciler.core import decision as D
from tests.core.corekit import API, DB, engine, flow, health, ip, learn_api_to_db, with_config
from tests.core.test_actions import new_peers
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


# --- rolling upgrade: one VERSION, both directions ---------------------------------------------

#: Snapshots written by commit e0fbee7 (before the engine stopped keeping a policy history): a workload
#: just tightened (its history in the snapshot) and one just rolled back (its decision carries
#: restore_revision and restore_spec). Made by that commit's engine, in the scenario below.
E0FBEE7 = json.loads((Path(__file__).parent / "data" / "snapshot_e0fbee7.json").read_text())


def _tightened_and_rolled_back() -> dict[str, dict]:
    """This engine's snapshots in the scenario that made E0FBEE7 (tests/core/test_actions.py)."""
    e = engine()
    t = learn_api_to_db(e)
    e.ingest_health(health(t, "api-7d9f-a", True, 0), t)
    (tighten,) = new_peers(e, t, 4)
    tightened = e.snapshot(API, t + 1)
    (rollback,) = e.ingest_health(health(t + 20, "api-7d9f-a", False, 1), t + 20)
    assert rollback.action == D.ROLLBACK
    return {"tightened": tightened, "rolled_back": e.snapshot(API, t + 21)}


#: Values the reader takes whole, not key by key (a NetworkPolicy spec, the annotation's text).
OPAQUE = {"restore_spec", "history"}


def _keys(data: object, path: str = "") -> set[str]:
    """Every key path in a snapshot (a list's rows by their first one: rows share a shape)."""
    if isinstance(data, dict):
        return {p for k, v in data.items()
                for p in {f"{path}/{k}", *(() if k in OPAQUE else _keys(v, f"{path}/{k}"))}}
    if isinstance(data, list) and data:
        return _keys(data[0], f"{path}[]")
    return set()


@pytest.mark.parametrize("case", ["tightened", "rolled_back"])
def test_a_snapshot_of_the_previous_shape_restores_and_the_new_owner_decides_on(case: str) -> None:
    old = E0FBEE7[case]
    assert "history" in old and "restore_spec" in old["state"]["last_decision"]  # the shape under test
    e = engine()
    assert e.restore_snapshot(snapshot.from_bytes(snapshot.to_bytes(old)), old["taken_at"])
    ours = _tightened_and_rolled_back()[case]
    assert e.state_of(API).step == ours["state"]["step"] == old["state"]["step"]
    assert e.state_of(API).last_decision.action == old["state"]["last_decision"]["action"]
    assert e.explain(API, old["taken_at"])["last_decision"]["action"] == old["state"]["last_decision"]["action"]


@pytest.mark.parametrize("case", ["tightened", "rolled_back"])
def test_a_new_snapshot_keeps_every_key_the_previous_reader_requires_with_a_neutral_value(case: str) -> None:
    """A leader of e0fbee7 taking over during a rolling upgrade reads these: a key it lacks is a KeyError
    there (it catches only SnapshotError). The kept keys say "nothing to restore": its rollback then reads
    the policy's history annotation, the one home of past specs."""
    new = _tightened_and_rolled_back()[case]
    missing = _keys(E0FBEE7[case]) - _keys(new)
    assert not missing, f"keys the previous reader requires, no longer written: {sorted(missing)}"
    assert new["history"] is None
    assert {k: new["state"]["last_decision"][k] for k in snapshot.LEGACY_DECISION} == snapshot.LEGACY_DECISION


def test_a_snapshot_whose_parts_do_not_fit_is_refused_as_malformed_and_the_workload_is_left_alone() -> None:
    e = engine()
    learn_api_to_db(e)
    data = e.snapshot(API, 200.0)
    del data["state"]["last_decision"]
    fresh = engine()
    with pytest.raises(SnapshotError) as info:
        fresh.restore_snapshot(data, 200.0)
    assert info.value.reason == "malformed" and "last_decision" in str(info.value)
    assert API not in fresh.workloads()
