from __future__ import annotations

import pytest

from netwarden.reconciler.core.risk import (
    METRIC_ALERT,
    NEW_PEER,
    RATE_SPIKE,
    Deviation,
    RiskState,
    metric_alert_deviation,
    security_alert_deviation,
)
from netwarden.reconciler.core.types import MetricAlert
from tests.core.corekit import API, FAST, falco, with_config


def dev(kind: str = NEW_PEER, weight: float = 4.0, t: float = 0.0, instance: str | None = "inst-api-a") -> Deviation:
    return Deviation(kind, weight, t, API, "shop", f"{kind} at {t}", instance=instance)


def test_score_halves_every_half_life() -> None:
    risk = RiskState(API, FAST)
    risk.add([dev(weight=8.0)], 0.0)
    assert risk.score_at(0.0) == pytest.approx(8.0)
    assert risk.score_at(FAST.half_life_seconds) == pytest.approx(4.0)
    assert risk.score_at(3 * FAST.half_life_seconds) == pytest.approx(1.0)
    assert risk.score_at(100 * FAST.half_life_seconds) == 0.0


def test_pod_evidence_counts_for_the_pod_and_the_workload_not_the_workload_level() -> None:
    risk = RiskState(API, FAST)
    risk.add([dev(weight=5.0), dev(RATE_SPIKE, 8.0, instance=None)], 0.0)
    assert risk.score_at(0.0) == pytest.approx(13.0)
    assert risk.instance_score("inst-api-a", 0.0) == pytest.approx(5.0)
    assert risk.instance_score("inst-api-b", 0.0) == 0.0
    assert risk.workload_level_score(0.0) == pytest.approx(8.0)
    assert risk.instances() == ("inst-api-a",)


def test_explain_lists_the_strongest_evidence_first() -> None:
    risk = RiskState(API, FAST)
    risk.add([dev(weight=3.0, t=0.0)], 0.0)
    risk.add([dev(RATE_SPIKE, 8.0, t=10.0, instance=None)], 10.0)
    rows = risk.explain(20.0)
    assert [r["kind"] for r in rows] == [RATE_SPIKE, NEW_PEER]
    assert rows[0]["contribution"] == pytest.approx(8.0 * 0.5 ** (10.0 / FAST.half_life_seconds), abs=1e-3)


def test_evidence_kept_is_bounded_and_keeps_the_strongest() -> None:
    risk = RiskState(API, with_config(max_evidence=4))
    risk.add([dev(weight=50.0, t=0.0)], 0.0)
    for n in range(20):
        risk.add([dev(weight=1.0, t=float(n))], float(n))
    weights = sorted(e.weight for e in risk.evidence())
    assert len(weights) == 4 and weights[-1] == 50.0


def test_falco_weight_follows_priority_and_names_the_pod() -> None:
    critical = security_alert_deviation(falco(1.0, "api-7d9f-a"), API, "shop", "inst-api-a", FAST)
    notice = security_alert_deviation(falco(1.0, "api-7d9f-a", "notice"), API, "shop", "inst-api-a", FAST)
    assert critical.weight == FAST.falco_priority_weights["critical"] > notice.weight
    assert critical.instance == "inst-api-a" and "Terminal shell" in critical.summary


def test_firing_alerts_hold_their_weight_and_stop_when_resolved() -> None:
    risk = RiskState(API, FAST)
    firing = MetricAlert(0.0, True, "HighErrorRate", "critical", "shop", "api-7d9f-a", fingerprint="abc")
    deviation = metric_alert_deviation(firing, API, "shop", "inst-api-a", FAST)
    risk.add([deviation], 0.0)
    risk.add([deviation], 60.0)  # Alertmanager re-sends firing alerts: no stacking
    assert risk.score_at(10 * FAST.half_life_seconds) == pytest.approx(FAST.alert_severity_weights["critical"])
    assert risk.resolve_alert("abc") is True
    assert risk.score_at(10 * FAST.half_life_seconds) == 0.0
    rows = risk.explain(1.0)
    assert rows[0]["kind"] == METRIC_ALERT and rows[0]["active"] is False and rows[0]["contribution"] == 0.0


def test_unknown_severity_uses_the_default_weight() -> None:
    alert = MetricAlert(0.0, True, "Odd", "page-me", "shop", None)
    assert metric_alert_deviation(alert, API, "shop", None, FAST).weight == FAST.alert_severity_weights["default"]
