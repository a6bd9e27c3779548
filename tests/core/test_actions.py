"""Decisions through the engine: thresholds, hysteresis, modes, guard rails, what-if, rollback."""

from __future__ import annotations

import pytest

from netwarden.model import names
from netwarden.model.policy import Peer, PolicyIntent, PortSpec, Rule
from netwarden.reconciler.core import decision as D
from netwarden.reconciler.core.pods import PodRef
from netwarden.model.errors import ConfigError
from netwarden.reconciler.core.types import MetricAlert
from tests.core.corekit import API, DB, FAST, engine, falco, flow, health, ip, learn_api_to_db, with_config


def new_peers(e, t: float, count: int, src: int = 0, start_port: int = 1000):
    """`count` flows from one api pod to db ports never seen: one new-peer deviation each (3 points).

    The db sees the same flows as new ingress peers; only the api's decisions are returned.
    """
    out = []
    for n in range(count):
        out += e.ingest_flow(flow(t + n * 0.01, ip(API, src), ip(DB), start_port + n), t + n * 0.01)
    return [d for d in out if d.identity == API]


def actions_of(decisions):
    return [d.action for d in decisions]


def of(decisions, identity: str = API):
    return [d for d in decisions if d.identity == identity]


def test_score_below_the_tighten_threshold_does_nothing() -> None:
    e = engine()
    t = learn_api_to_db(e)
    assert new_peers(e, t, 3) == []  # 9 < 10
    assert e.state_of(API).step == names.STEP_BASELINE


def test_crossing_the_tighten_threshold_tightens_to_the_learned_baseline() -> None:
    e = engine()
    t = learn_api_to_db(e)
    (decision,) = new_peers(e, t, 4)
    assert (decision.action, decision.effect, decision.step_after) == (D.TIGHTEN, D.EFFECT_WRITE, names.STEP_TIGHTENED)
    assert decision.event_reason == names.EVENT_POLICY_TIGHTENED
    (intent,) = decision.intents
    assert intent.egress == (
        Rule((Peer("identity", DB, "shop"),), (PortSpec("TCP", 5432),)),
        Rule((Peer("identity", "kube-system.deploy.coredns", "kube-system"),), (PortSpec("UDP", 53),)),
    )
    assert intent.ingress == ()  # api learned no ingress
    assert decision.expires_at == decision.time + FAST.tighten_expiry_seconds
    assert {ev.kind for ev in decision.evidence} == {"new-peer"} and len(decision.evidence) == 4
    assert decision.what_if is not None and decision.what_if.safe
    assert e.state_of(API).step == names.STEP_TIGHTENED


def test_hysteresis_keeps_a_tightening_until_the_score_falls_below_the_relax_threshold() -> None:
    e = engine()
    t = learn_api_to_db(e)
    new_peers(e, t, 4)  # 12 points
    half = FAST.half_life_seconds
    assert of(e.tick(t + half * 1.2)) == []  # ~5.2: below tighten, above relax: stays
    assert e.state_of(API).step == names.STEP_TIGHTENED
    (relax,) = of(e.tick(t + half * 1.7))  # ~3.7 < 4
    assert relax.action == D.RELAX and relax.step_after == names.STEP_BASELINE
    assert relax.intents[0] == e.state_of(API).base_intent
    assert of(e.tick(t + half * 1.8)) == []


def test_a_tightening_relaxes_once_it_expires_and_the_score_is_below_threshold() -> None:
    e = engine(with_config(tighten_expiry_seconds=60.0, half_life_seconds=100_000.0))
    t = learn_api_to_db(e)
    new_peers(e, t, 4)  # 12, barely decaying: still above the tighten threshold at expiry
    assert of(e.tick(t + 120.0)) == [] and e.state_of(API).step == names.STEP_TIGHTENED
    e2 = engine(with_config(tighten_expiry_seconds=60.0, half_life_seconds=200.0))
    t2 = learn_api_to_db(e2)
    new_peers(e2, t2, 4)
    (relax,) = of(e2.tick(t2 + 70.0))  # 12 * 0.5**0.35 ~ 9.4 < 10, expired
    assert relax.action == D.RELAX and "expired" in relax.reason


def test_a_critical_falco_alert_on_one_pod_quarantines_that_pod_only() -> None:
    e = engine()
    t = learn_api_to_db(e)
    (decision,) = e.ingest_alert(falco(t, "api-7d9f-b"), t)
    assert decision.action == D.QUARANTINE_POD and decision.instances == ("inst-api-b",) and decision.pods == ("api-7d9f-b",)
    quarantine, workload = decision.intents
    assert quarantine.instance == "inst-api-b" and quarantine.step == names.STEP_QUARANTINED and quarantine.egress == ()
    assert workload.excluded_instances == ("inst-api-b",) and workload.instance is None
    assert [ev.kind for ev in decision.evidence] == ["security-alert"]
    assert e.state_of(API).step == names.STEP_BASELINE and set(e.state_of(API).quarantined) == {"inst-api-b"}


def test_workload_level_evidence_quarantines_the_whole_workload() -> None:
    weights = {**FAST.deviation_weights, "rate-spike": 30.0}
    e = engine(with_config(blast_max_pod_fraction=1.0, deviation_weights=weights))
    t = learn_api_to_db(e)
    firing = MetricAlert(t, True, "ExfiltrationSuspected", "critical", "shop", "api-7d9f-a", fingerprint="f1")
    assert actions_of(e.ingest_metric_alert(firing, t)) == [D.TIGHTEN]  # pod-level evidence, 12 points
    decisions = []
    for k in range(400):  # a rate spike is evidence about the workload as a whole
        decisions += of(e.ingest_flow(flow(t + 5, ip(API), ip(DB), 5432), t + 5))
    assert actions_of(decisions) == [D.QUARANTINE_WORKLOAD]
    quarantine = next(d for d in decisions if d.action == D.QUARANTINE_WORKLOAD)
    assert quarantine.intents[0].instance is None and quarantine.intents[0].step == names.STEP_QUARANTINED
    assert e.state_of(API).step == names.STEP_QUARANTINED


def test_pod_evidence_covering_every_replica_quarantines_the_workload() -> None:
    e = engine(with_config(blast_max_pod_fraction=1.0))
    t = learn_api_to_db(e)
    (first,) = e.ingest_alert(falco(t, "api-7d9f-a"), t)
    (second,) = e.ingest_alert(falco(t + 1, "api-7d9f-b"), t + 1)
    assert first.action == D.QUARANTINE_POD
    assert second.action == D.QUARANTINE_WORKLOAD and "covers all 2 replicas" in second.reason


def test_quarantine_relaxes_step_by_step_to_tightened_then_baseline() -> None:
    e = engine(with_config(blast_max_pod_fraction=1.0))
    t = learn_api_to_db(e)
    e.ingest_alert(falco(t, "api-7d9f-a"), t)
    e.ingest_alert(falco(t + 1, "api-7d9f-b"), t + 1)
    half = FAST.half_life_seconds
    steps = []
    for k in range(1, 40):
        steps += [(d.action, d.step_after) for d in e.tick(t + k * half / 4)]
    workload_steps = [s for s in steps if s[0] == D.RELAX]
    assert workload_steps == [(D.RELAX, names.STEP_TIGHTENED), (D.RELAX, names.STEP_BASELINE)]
    assert (D.LIFT_QUARANTINE, names.STEP_QUARANTINED) in steps or (D.LIFT_QUARANTINE, names.STEP_TIGHTENED) in steps
    assert e.state_of(API).quarantined == {}


def test_learn_mode_never_acts() -> None:
    e = engine(with_config(default_mode=names.MODE_LEARN))
    t = learn_api_to_db(e)
    assert new_peers(e, t, 10) == []
    assert e.ingest_alert(falco(t, "api-7d9f-a", "emergency"), t) == []
    assert e.state_of(API).step == names.STEP_BASELINE and e.risk_of(API).score_at(t) > FAST.quarantine_threshold


def test_dry_run_records_the_step_but_writes_nothing() -> None:
    e = engine(with_config(default_mode=names.MODE_DRY_RUN))
    t = learn_api_to_db(e)
    (decision,) = new_peers(e, t, 4)
    assert decision.action == D.TIGHTEN and decision.effect == D.EFFECT_RECORD and not decision.writes
    assert decision.event_reason == names.EVENT_DRY_RUN
    assert e.state_of(API).step == names.STEP_TIGHTENED


def test_approve_mode_holds_the_change_until_approved() -> None:
    e = engine(with_config(default_mode=names.MODE_APPROVE))
    t = learn_api_to_db(e)
    (decision,) = new_peers(e, t, 4)
    assert decision.effect == D.EFFECT_PENDING and decision.event_reason == names.EVENT_CHANGE_PENDING
    assert e.state_of(API).step == names.STEP_BASELINE
    assert new_peers(e, t + 1, 2, start_port=3000) == []  # no second proposal while one is pending
    (applied,) = e.approve(API, t + 5)
    assert applied.effect == D.EFFECT_WRITE and e.state_of(API).step == names.STEP_TIGHTENED
    assert list(e.state_of(API).before) == [e.state_of(API).base_intent]  # what a rollback returns to


def test_a_rejected_proposal_is_dropped_and_proposals_pause() -> None:
    e = engine(with_config(default_mode=names.MODE_APPROVE))
    t = learn_api_to_db(e)
    new_peers(e, t, 4)
    assert e.reject(API, t + 1) == 1
    decisions = new_peers(e, t + 2, 4, start_port=3000)
    assert actions_of(decisions) == [D.ALERT_ONLY] and "paused" in decisions[0].reason


def test_modes_are_per_namespace() -> None:
    e = engine()
    e.set_mode("shop", names.MODE_LEARN)
    t = learn_api_to_db(e)
    assert new_peers(e, t, 5) == []
    assert e.status(t)[[r.identity for r in e.status(t)].index(API)].mode == names.MODE_LEARN


def test_a_protected_namespace_gets_alert_only_once_per_escalation() -> None:
    e = engine()
    e.upsert_pod(PodRef("kube-system.deploy.metrics", "kube-system", "metrics-0", "inst-m", "10.0.8.1"))
    for n in range(150):
        e.ingest_flow(flow(float(n), "10.0.8.1", ip(DB), 5432), float(n))
    decisions = []
    for n in range(6):
        decisions += e.ingest_flow(flow(200.0 + n, "10.0.8.1", ip(DB), 2000 + n), 200.0 + n)
    decisions += e.ingest_alert(falco(210.0, "metrics-0", namespace="kube-system"), 210.0)
    decisions = of(decisions, "kube-system.deploy.metrics")
    assert actions_of(decisions) == [D.ALERT_ONLY, D.ALERT_ONLY]  # one at tighten level, one at quarantine level
    assert all("protected" in d.reason and d.effect == D.EFFECT_RECORD for d in decisions)
    assert decisions[0].event_reason == names.EVENT_GUARD_RAIL
    assert e.state_of("kube-system.deploy.metrics").step == names.STEP_BASELINE


def test_blast_radius_turns_further_quarantines_into_alert_only() -> None:
    e = engine(with_config(blast_max_workloads=1, blast_max_pod_fraction=1.0))
    t = learn_api_to_db(e)
    (first,) = e.ingest_alert(falco(t, "api-7d9f-a"), t)
    (second,) = e.ingest_alert(falco(t, "db-0"), t)
    assert first.action == D.QUARANTINE_POD
    assert second.action == D.ALERT_ONLY and "blast radius" in second.reason and "1 workloads" in second.reason
    assert e.state_of(DB).quarantined == {}


def test_blast_radius_limits_the_fraction_of_pods() -> None:
    e = engine(with_config(blast_max_pod_fraction=0.2))  # 5 pods: one allowed
    t = learn_api_to_db(e)
    assert e.ingest_alert(falco(t, "api-7d9f-a"), t)[0].action == D.QUARANTINE_POD
    (second,) = e.ingest_alert(falco(t, "redis-0", namespace="cache"), t)
    assert second.action == D.ALERT_ONLY and "pods" in second.reason


def test_an_empty_write_budget_defers_the_write() -> None:
    e = engine(with_config(write_burst=1, write_rate_per_second=0.001, blast_max_pod_fraction=1.0))
    t = learn_api_to_db(e)
    assert e.ingest_alert(falco(t, "api-7d9f-a"), t)[0].effect == D.EFFECT_WRITE
    (deferred,) = e.ingest_alert(falco(t, "db-0"), t)
    assert deferred.effect == D.EFFECT_DEFERRED and "write budget" in deferred.reason
    assert e.state_of(DB).quarantined == {}
    assert e.tick(t + 2000.0)[0].effect == D.EFFECT_WRITE  # decided again once tokens refill


def test_a_tightening_that_would_drop_baseline_traffic_is_refused() -> None:
    e = engine()
    declared = PolicyIntent(  # the declared baseline allows only the db, not DNS over TCP to a cidr
        "shop", API, egress=(Rule((Peer("identity", DB, "shop"),), (PortSpec("TCP", 5432),)),), include_dns=False
    )
    e.set_base_intent(API, declared)
    t = 0.0
    while t < 150.0:
        e.ingest_flow(flow(t, ip(API), ip(DB), 5432), t)
        e.ingest_flow(flow(t, ip(API), "198.51.100.7", 443, world=True), t)  # learned, allowed by another policy
        t += 1
    (decision,) = new_peers(e, t, 4)
    assert decision.action == D.ALERT_ONLY and "refused" in decision.reason
    assert decision.what_if is not None and [v.peer_value for v in decision.what_if.dropped_baseline_flows] == ["198.51.100.7"]
    assert any(ev.kind == D.WHAT_IF_DROP and ev.peer == "198.51.100.7" for ev in decision.evidence)
    assert e.state_of(API).step == names.STEP_BASELINE


def test_health_lost_after_an_automatic_tightening_rolls_it_back() -> None:
    e = engine()
    t = learn_api_to_db(e)
    e.ingest_health(health(t, "api-7d9f-a", True, 0), t)
    (tighten,) = new_peers(e, t, 4)
    assert e.ingest_health(health(t + 10, "api-7d9f-a", True, 0), t + 10) == []
    (rollback,) = e.ingest_health(health(t + 20, "api-7d9f-a", False, 1), t + 20)
    assert rollback.action == D.ROLLBACK and rollback.effect == D.EFFECT_WRITE
    assert rollback.event_reason == names.EVENT_POLICY_ROLLED_BACK
    assert "lost readiness" in rollback.reason and "restarts went from 0 to 1" in rollback.reason
    assert rollback.intents[0] == e.state_of(API).base_intent
    kinds = [ev.kind for ev in rollback.evidence]
    assert "new-peer" in kinds and D.HEALTH_REGRESSION in kinds
    assert e.state_of(API).step == names.STEP_BASELINE and not e.state_of(API).before
    again = new_peers(e, t + 30, 4, start_port=5000)
    assert actions_of(again) == [D.ALERT_ONLY]  # cooldown after a rollback


def test_health_lost_after_the_rollback_window_does_not_roll_back() -> None:
    e = engine()
    t = learn_api_to_db(e)
    e.ingest_health(health(t, "api-7d9f-a", True, 0), t)
    new_peers(e, t, 4)
    assert e.ingest_health(health(t + FAST.rollback_window_seconds + 1, "api-7d9f-a", False, 3), t + FAST.rollback_window_seconds + 1) == []


def test_a_quarantine_lifts_when_the_pod_is_gone() -> None:
    e = engine()
    t = learn_api_to_db(e)
    e.ingest_alert(falco(t, "api-7d9f-a"), t)
    (lift,) = e.remove_pod("shop", "api-7d9f-a", t + 5)
    assert lift.action == D.LIFT_QUARANTINE and lift.remove_instances == ("inst-api-a",) and "gone" in lift.reason
    assert lift.intents[0].excluded_instances == ()


def test_status_and_explain_describe_the_workload() -> None:
    e = engine()
    t = learn_api_to_db(e)
    e.ingest_alert(falco(t, "api-7d9f-a"), t)
    row = next(r for r in e.status(t) if r.identity == API)
    assert row.policies == ("baseline:baseline", "quarantine:inst-api-a") and row.score >= FAST.quarantine_threshold
    explained = e.explain(API, t)
    assert explained["evidence"][0]["kind"] == "security-alert"
    assert explained["last_decision"]["action"] == D.QUARANTINE_POD
    assert e.explain("nobody", t) == {"identity": "nobody", "known": False}


def test_alerts_for_unknown_pods_are_counted_not_guessed() -> None:
    e = engine()
    assert e.ingest_alert(falco(1.0, "ghost-pod"), 1.0) == []
    assert e.ingest_metric_alert(MetricAlert(1.0, True, "X", "critical", "shop", None), 1.0) == []
    assert e.counters.unattributed_alerts == 2


def test_restarts_from_before_the_tightening_do_not_roll_it_back() -> None:
    e = engine()
    e.ingest_health(health(0.0, "api-7d9f-b", True, 7), 0.0)  # reported before the workload's first flow
    t = learn_api_to_db(e)
    new_peers(e, t, 4)
    assert e.ingest_health(health(t + 10, "api-7d9f-b", True, 7), t + 10) == []
    assert e.state_of(API).step == names.STEP_TIGHTENED


def test_configured_exceptions_stay_open_into_a_quarantined_pod() -> None:
    e = engine(with_config(quarantine_exceptions=("namespace=monitoring:9090",)))
    t = learn_api_to_db(e)
    (decision,) = e.ingest_alert(falco(t, "api-7d9f-a"), t)
    quarantine = decision.intents[0]
    assert quarantine.ingress == (Rule((Peer("namespace", "monitoring"),), (PortSpec("TCP", 9090),)),)
    assert quarantine.egress == ()


def test_a_malformed_exception_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="quarantine_exceptions"):
        engine(with_config(quarantine_exceptions=("bogus",)))


def test_escalating_to_the_workload_counts_only_replicas_not_yet_isolated() -> None:
    """Regression: the blast radius counted already-quarantined replicas twice and refused the escalation."""
    e = engine(with_config(blast_max_pod_fraction=0.4))  # 5 pods: two may be under automatic quarantine
    t = learn_api_to_db(e)
    assert e.ingest_alert(falco(t, "api-7d9f-a"), t)[0].action == D.QUARANTINE_POD
    (second,) = e.ingest_alert(falco(t + 1, "api-7d9f-b"), t + 1)
    assert second.action == D.QUARANTINE_WORKLOAD and second.blast_pods == 1


def test_a_refused_workload_quarantine_still_isolates_the_pod_the_alert_names() -> None:
    """Regression: when the workload-wide step was refused, the named pod was left running unisolated."""
    weights = {**FAST.deviation_weights, "rate-spike": 30.0}
    e = engine(with_config(blast_max_pod_fraction=0.4, deviation_weights=weights))  # 5 pods: two allowed
    t = learn_api_to_db(e)
    spike = []
    for _ in range(400):  # workload-level evidence on both ends: db (1 pod) is isolated, api (2 more) would exceed
        spike += e.ingest_flow(flow(t + 5, ip(API), ip(DB), 5432), t + 5)
    api = [d.action for d in spike if d.identity == API]
    assert D.ALERT_ONLY in api and D.QUARANTINE_WORKLOAD not in api
    decisions = e.ingest_alert(falco(t + 6, "api-7d9f-a"), t + 6)
    assert [d.action for d in decisions] == [D.QUARANTINE_POD] and decisions[0].instances == ("inst-api-a",)
