"""Issue 12 items 3 and 5 in the pure core: one pod's alert never cuts its siblings, a baseline learned
from too little traffic is never tightened to, alerts are de-duplicated and aged, and what a previous
leader wrote is taken over with its expiry."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from netwarden.model import names
from netwarden.reconciler.core import decision as D
from netwarden.reconciler.core.alerts import DUPLICATE, TOO_OLD, AlertMemory, security_alert_key
from netwarden.reconciler.core.types import MetricAlert, RestoredPolicy
from netwarden.reconciler.signals.falco import parse_falco_event
from tests.core.corekit import API, FAST, engine, falco, flow, ip, learn_api_to_db, pod_ref, with_config
from tests.support.data import falco_body

T0 = 1_000.0
POD_A, POD_B = pod_ref(API, 0), pod_ref(API, 1)


def test_an_alert_for_one_replica_before_any_flow_never_tightens_its_sibling() -> None:
    """The reproduced case: Critical alert for replica 0 of two, nothing learned yet."""
    e = engine(with_config(blast_max_pod_fraction=1.0))
    (decision,) = e.ingest_alert(falco(T0, POD_A.pod), T0)
    assert decision.action == D.QUARANTINE_POD and decision.instances == (POD_A.instance,)
    for t in (T0 + 1, T0 + 5, T0 + 60, T0 + 600):
        assert [d.action for d in e.tick(t)] == []
    state = e.state_of(API)
    assert state.step == names.STEP_BASELINE and state.intent.excluded_instances == (POD_A.instance,)
    assert state.intent.egress == state.base_intent.egress, "the sibling keeps the declared baseline"


def test_an_alert_for_one_replica_after_learning_does_not_tighten_the_sibling_either() -> None:
    e = engine(with_config(blast_max_pod_fraction=1.0))
    t = learn_api_to_db(e)
    (decision,) = e.ingest_alert(falco(t, POD_A.pod), t)
    assert decision.action == D.QUARANTINE_POD
    assert all(d.action != D.TIGHTEN for s in range(1, 200, 7) for d in e.tick(t + s))
    assert e.state_of(API).step == names.STEP_BASELINE


def test_tightening_to_an_empty_baseline_is_refused_with_the_reason() -> None:
    e = engine()
    # Workload-level evidence (an alert naming no known pod instance is about the workload): 15 points.
    decisions = e.ingest_alert(replace(falco(T0, POD_A.pod, "error")), T0)
    (refused,) = decisions
    assert refused.action == D.ALERT_ONLY and refused.event_reason == names.EVENT_GUARD_RAIL
    assert "no traffic learned yet (empty baseline)" in refused.reason
    assert e.explain(API, T0)["last_decision"]["reason"] == refused.reason


def test_tightening_to_a_baseline_still_learning_is_refused_then_allowed_once_learned() -> None:
    e = engine()
    for t in range(0, 40):  # 40 s of the 100 s learning window
        e.ingest_flow(flow(float(t), ip(API, 0), "10.0.2.10", 5432), float(t))
    (refused,) = e.ingest_alert(falco(40.0, POD_A.pod, "error"), 40.0)
    assert refused.action == D.ALERT_ONLY and "learned for only 40s of the 100s learning window" in refused.reason
    later = learn_api_to_db(e, until=400.0)
    (tightened,) = e.ingest_alert(falco(later, POD_B.pod, "error"), later)
    assert tightened.action == D.TIGHTEN and tightened.intents[0].egress


@settings(max_examples=60, deadline=None)
@given(alerts=st.lists(st.tuples(st.sampled_from([0, 1]), st.sampled_from(["critical", "error", "warning"]),
                                 st.floats(0, 900)), min_size=1, max_size=6))
def test_alerts_about_pods_never_tighten_below_what_unnamed_siblings_use(alerts: list[tuple[int, str, float]]) -> None:
    """Property: whatever pod alerts arrive, a replica no alert named keeps every learned flow."""
    e = engine(with_config(blast_max_pod_fraction=1.0))
    t = learn_api_to_db(e)
    named = set()
    for n, priority, dt in sorted(alerts, key=lambda a: a[2]):
        named.add(n)
        e.ingest_alert(falco(t + dt, (POD_A, POD_B)[n].pod, priority), t + dt)
        e.tick(t + dt)
    state = e.state_of(API)
    for n in {0, 1} - named:
        sibling = (POD_A, POD_B)[n]
        view = flow(t, ip(API, n), "10.0.2.10", 5432)
        for v in __import__("netwarden.reconciler.core.behaviour", fromlist=["resolve_flow"]).resolve_flow(view, e.index):
            if v.identity == API:
                assert e.is_allowed(state.intent, v), f"sibling {sibling.pod} lost {v.describe()}"


# --- alerts: duplicates and age ------------------------------------------------------------------

def test_a_falcosidekick_body_sent_five_times_is_one_alert() -> None:
    e = engine(with_config(blast_max_pod_fraction=1.0))
    alert = parse_falco_event(falco_body("shop", POD_A.pod, "Error", fresh=False))  # 15 points: five of them would be 75
    now = alert.time + 1
    decisions = [d for _ in range(5) for d in e.ingest_alert(alert, now)]
    assert [d.action for d in decisions] == [D.ALERT_ONLY]  # the first one's refused tightening, once
    assert e.counters.alerts_ignored == {DUPLICATE: 4}
    assert e.risk_of(API).score_at(now) == 15.0


def test_an_alert_from_2024_is_evidence_of_the_past_sent_once_or_five_times() -> None:
    e = engine(with_config(blast_max_pod_fraction=1.0))
    alert = parse_falco_event(falco_body("shop", POD_A.pod, "Critical", fresh=False))
    now = alert.time + 86_400 * 365
    for _ in range(5):
        assert e.ingest_alert(alert, now) == []
    assert e.counters.alerts_ignored == {TOO_OLD: 1, DUPLICATE: 4}
    assert e.state_of(API).quarantined == {} and e.risk_of(API).score_at(now) == 0.0
    (past,) = e.explain(API, now)["past_alerts"]
    assert past["ignored"] == TOO_OLD and past["pod"] == POD_A.pod and past["age_seconds"] > 3e7


def test_an_alert_just_inside_the_max_age_acts_and_just_outside_does_not() -> None:
    cfg = with_config(alert_max_age_seconds=600.0, blast_max_pod_fraction=1.0)
    inside, outside = engine(cfg), engine(cfg)
    assert [d.action for d in inside.ingest_alert(falco(T0, POD_A.pod), T0 + 599)] == [D.QUARANTINE_POD]
    assert outside.ingest_alert(falco(T0, POD_A.pod), T0 + 601) == []


def test_alerts_without_an_id_are_told_apart_by_content_and_ids_win_over_content() -> None:
    one, other = falco(T0, POD_A.pod), falco(T0, POD_B.pod)
    assert security_alert_key(one) != security_alert_key(other)
    assert security_alert_key(replace(one, alert_id="u1")) == security_alert_key(replace(other, alert_id="u1"))
    memory = AlertMemory(window=10.0, max_keys=2)
    assert not memory.seen("a", 0.0) and memory.seen("a", 5.0) and not memory.seen("a", 11.0)
    for key in "bcd":
        memory.seen(key, 12.0)
    assert len(memory) <= 3


def test_an_alertmanager_alert_re_sent_while_firing_is_a_counted_duplicate() -> None:
    e = engine()
    alert = MetricAlert(T0, True, "HighErrorRate", "critical", "shop", POD_A.pod, fingerprint="f1")
    e.ingest_metric_alert(alert, T0)
    assert e.ingest_metric_alert(replace(alert, time=T0 + 300), T0 + 300) == []
    assert e.counters.alerts_ignored == {DUPLICATE: 1}


# --- taking over after a restart -----------------------------------------------------------------

def test_a_restored_quarantine_ends_at_its_expiry_not_at_once_and_not_never() -> None:
    e = engine()
    restored = RestoredPolicy(API, "shop", names.ROLE_QUARANTINE, names.STEP_QUARANTINED, T0 - 100, T0 + 50,
                              POD_A.instance, POD_A.pod)
    assert e.restore(restored, T0) and not e.restore(restored, T0), "idempotent"
    assert e.tick(T0 + 1) == [] and e.tick(T0 + 49) == []
    (lift,) = e.tick(T0 + 50)
    assert lift.action == D.LIFT_QUARANTINE and lift.remove_instances == (POD_A.instance,)
    assert "expired" in lift.reason


def test_a_restored_tightening_relaxes_at_its_expiry() -> None:
    e = engine()
    e.restore(RestoredPolicy(API, "shop", names.ROLE_BASELINE, names.STEP_TIGHTENED, T0 - 10, T0 + 30), T0)
    assert e.tick(T0 + 29) == []
    (relax,) = e.tick(T0 + 30)
    assert relax.action == D.RELAX and relax.step_after == names.STEP_BASELINE


def test_a_restored_workload_quarantine_relaxes_to_the_declared_baseline_when_nothing_was_learned() -> None:
    e = engine(FAST)
    e.restore(RestoredPolicy(API, "shop", names.ROLE_BASELINE, names.STEP_QUARANTINED, T0 - 10, T0 + 30), T0)
    (relax,) = e.tick(T0 + 31)
    assert relax.action == D.RELAX and relax.step_after == names.STEP_BASELINE and "empty baseline" in relax.reason


# --- safety writes never wait behind tightenings (issue 11) --------------------------------------

def test_after_a_busy_minute_of_tightenings_a_relax_is_not_deferred() -> None:
    e = engine(with_config(write_rate_per_second=1.0, write_burst=10))
    e.guard.budget.try_take(T0, cost=10.0)  # the tightenings' bucket is empty at T0
    state = e._track(API, "shop", T0).state
    e.restore(RestoredPolicy(API, "shop", names.ROLE_BASELINE, names.STEP_TIGHTENED, T0 - 60, T0), T0)
    (relax,) = e.tick(T0)
    assert relax.action == D.RELAX and relax.effect == D.EFFECT_WRITE, relax.reason
    assert state.step == names.STEP_BASELINE
    assert not e.guard.budget.try_take(T0), "the relax did not spend the tightenings' budget"


# --- pods NetworkPolicy cannot reach (hostNetwork) -----------------------------------------------

def test_an_alert_for_a_host_network_pod_is_alert_only_and_never_tightens_its_siblings() -> None:
    from netwarden.model.reach import HOST_NETWORK_REASON

    e = engine(with_config(blast_max_pod_fraction=1.0))
    t = learn_api_to_db(e)
    e.upsert_pod(replace(POD_A, outside_reach=HOST_NETWORK_REASON))
    (decision,) = e.ingest_alert(falco(t, POD_A.pod), t)
    assert decision.action == D.ALERT_ONLY and "hostNetwork" in decision.reason
    assert all(d.action == D.ALERT_ONLY for s in range(1, 100, 9) for d in e.tick(t + s))
    assert e.state_of(API).quarantined == {} and e.state_of(API).step == names.STEP_BASELINE
