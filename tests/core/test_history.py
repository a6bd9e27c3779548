from __future__ import annotations

import json

import pytest

from netwarden.model import names
from netwarden.model.errors import HistoryError, NetwardenError
from netwarden.model.history import PolicyHistory


def spec(n: int) -> dict[str, object]:
    return {"podSelector": {"matchLabels": {names.LABEL_IDENTITY: "shop.deploy.api"}}, "ingress": [{"ports": [{"port": n}]}]}


def test_push_records_the_replaced_spec_under_its_revision() -> None:
    history = PolicyHistory(current_revision=3)
    history = history.push(spec(1), names.STEP_BASELINE, "tighten", 10.0)
    history = history.push(spec(2), names.STEP_TIGHTENED, "quarantine-workload", 20.0)
    assert history.current_revision == 5
    assert history.revisions() == (3, 4)
    assert history.previous().spec == spec(2)
    assert history.previous(3).spec == spec(1) and history.previous(3).reason == "tighten"
    assert history.previous(99) is None


def test_pop_goes_back_one_entry_and_keeps_revisions_moving_forward() -> None:
    history = PolicyHistory().push(spec(1), names.STEP_BASELINE, "tighten", 1.0)
    rolled = history.pop()
    assert rolled.entries == () and rolled.current_revision == history.current_revision + 1
    assert PolicyHistory().pop() == PolicyHistory()


def test_history_keeps_at_most_max_entries_newest_last() -> None:
    history = PolicyHistory(max_entries=3)
    for n in range(10):
        history = history.push(spec(n), names.STEP_BASELINE, "tighten", float(n))
    assert history.revisions() == (7, 8, 9)


def test_history_fits_its_byte_budget_by_dropping_the_oldest() -> None:
    big = {"ingress": [{"from": [{"ipBlock": {"cidr": f"10.{i // 256}.{i % 256}.0/24"}} for i in range(200)]}]}
    history = PolicyHistory(max_entries=10, max_bytes=20_000)
    for n in range(10):
        history = history.push(big, names.STEP_BASELINE, "tighten", float(n))
    text = history.to_annotation()
    assert len(text.encode()) <= 20_000
    assert 0 < len(history.entries) < 10
    assert history.revisions()[-1] == 9


def test_annotation_round_trips() -> None:
    history = PolicyHistory().push(spec(1), names.STEP_BASELINE, "tighten", 1.5).push(spec(2), names.STEP_TIGHTENED, "relax", 2.5)
    text = history.to_annotation()
    again = PolicyHistory.from_annotation(text)
    assert again.entries == history.entries and again.current_revision == history.current_revision
    assert json.loads(text)["v"] == 1


def test_absent_annotation_is_empty_and_malformed_ones_are_errors() -> None:
    assert PolicyHistory.from_annotation(None, current_revision=4).current_revision == 4
    for bad in ("{", "[]", '{"v": 1, "entries": [{"revision": "x", "spec": {}}]}', '{"v": 1, "entries": [{"revision": 1}]}',
                '{"v": 1, "entries": [{"revision": 2, "spec": {}}, {"revision": 1, "spec": {}}]}'):
        with pytest.raises(HistoryError) as info:
            PolicyHistory.from_annotation(bad)
        assert isinstance(info.value, NetwardenError) and isinstance(info.value, ValueError)  # one error tree


def test_tracking_a_workload_from_its_policy_starts_learning_at_that_moment_not_at_epoch() -> None:
    """Regression: tracking that starts when the webhook's policy appears used to create a baseline at t=0,
    so its learning window had ended in 1970 and every first flow counted as a new peer."""
    from netwarden.reconciler.core.engine import DecisionEngine

    engine = DecisionEngine()
    engine.track("shop.deploy.api", "shop", now=1_000_000.0)
    baseline = engine.baseline_of("shop.deploy.api")
    assert baseline is not None
    assert baseline.learning_until == 1_000_000.0 + engine.config.learning_seconds
