"""From score to action: observe -> tighten -> quarantine, and back, within guard rails.

`decide` reads a workload's state, its risk and the guard rails and returns Decisions; `apply_decision`
moves the state along for the ones that take effect. `step` does both (as the engine does).

Rules, in order:
* learn mode never acts. A pending approval blocks new proposals (a rollback is never blocked).
* Rollback: health lost (readiness, restarts) within `rollback_window_seconds` of an automatic
  tightening -> back to the previous spec; automatic tightening then pauses for a cooldown.
* Escalation: score >= quarantine threshold -> quarantine, else >= tighten threshold -> tighten.
  A whole workload is quarantined only on workload-level evidence (rate spike, drop burst, an alert
  without a pod) or when hot pods cover all of at least two replicas; otherwise the hot pod
  instances are quarantined one by one, and a workload whose score is spread thin is tightened.
* Guard rails turn escalation into alert-only: protected namespace, rollback cooldown, blast radius
  (quarantines), and a what-if that finds the tightened policy would drop learned-baseline traffic
  (the tightening is refused; the dropped flows become evidence).
* De-escalation, one step per decision: quarantine -> tightened -> baseline, when the score falls
  below the hysteresis threshold, or once the expiry passed and it is below the escalation one.
* Mode effect: dry-run records (state moves, nothing is written), enforce writes (subject to the
  write budget, else deferred), approve records the decision as pending until approved.
"""

from __future__ import annotations

from typing import Iterable

from netwarden.model import names
from netwarden.model.policy import PolicyIntent, quarantine_intent, with_excluded_instances, workload_quarantine_intent
from netwarden.reconciler.core.behaviour import FlowView
from netwarden.reconciler.core.config import CoreConfig
from netwarden.reconciler.core.decision import (
    ALERT_ONLY,
    EFFECT_DEFERRED,
    EFFECT_PENDING,
    EFFECT_RECORD,
    EFFECT_WRITE,
    HEALTH_REGRESSION,
    LEVEL_NONE,
    LEVEL_QUARANTINE,
    LEVEL_TIGHTEN,
    LIFT_QUARANTINE,
    QUARANTINE_POD,
    QUARANTINE_WORKLOAD,
    RELAX,
    ROLLBACK,
    TIGHTEN,
    WHAT_IF_DROP,
    DecideContext,
    Decision,
    QuarantinedPod,
    WorkloadState,
    mode_effect,
)
from netwarden.reconciler.core.guard import GuardRails
from netwarden.reconciler.core.risk import Deviation, RiskState
from netwarden.reconciler.core.tightening import thin_baseline, tightened_intent
from netwarden.reconciler.core.whatif import WhatIf, what_if

# --- intents ------------------------------------------------------------------------------------


def unreachable_instances(ctx: "DecideContext") -> set[str]:
    """Instances of pods NetworkPolicy cannot reach (hostNetwork): never quarantined, never a reason
    to tighten their siblings."""
    return {r.instance for r in ctx.replicas if r.instance and r.outside_reach}


def keep_excluded(intent: PolicyIntent, instances: Iterable[str]) -> PolicyIntent:
    """The workload policy with these pod instances carved out (they have their own quarantine policy)."""
    if intent.instance is not None:
        return intent
    return with_excluded_instances(intent, instances)


# --- health -------------------------------------------------------------------------------------


def health_regressions(state: WorkloadState) -> list[str]:
    """What got worse since the last automatic tightening: readiness lost, restarts up."""
    snapshot = state.health_snapshot
    if snapshot is None:
        return []
    found = []
    for pod, (ready, restarts) in sorted(state.health.items()):
        before = snapshot.get(pod)
        if before is None:
            if restarts > 0:
                found.append(f"pod {pod} (started after the change) restarted {restarts} times")
            continue
        was_ready, was_restarts = before
        if was_ready and not ready:
            found.append(f"pod {pod} lost readiness")
        if restarts > was_restarts:
            found.append(f"pod {pod} restarts went from {was_restarts} to {restarts}")
    return found


# --- decide -------------------------------------------------------------------------------------


def decide(
    state: WorkloadState, risk: RiskState, mode: str, guard: GuardRails, now: float, ctx: DecideContext
) -> list[Decision]:
    """Decisions for one workload now. Reads state; only the write budget in `guard` is consumed."""
    if mode == names.MODE_LEARN:
        return []
    cfg = ctx.config
    score = risk.score_at(now)

    rollback = _rollback(state, mode, now, score, cfg)
    if rollback is not None:
        return [rollback]
    if state.pending:
        return []

    decisions: list[Decision] = []
    # Pod quarantines first: lift those whose pod cooled down, expired, or is gone.
    replica_instances = {r.instance for r in ctx.replicas if r.instance}
    still_quarantined = set(state.quarantined)
    for instance, held in sorted(state.quarantined.items()):
        pod_score = risk.instance_score(instance, now)
        gone = bool(ctx.replicas) and instance not in replica_instances
        expired = now >= held.expires_at
        cooled = pod_score < cfg.lift_threshold and not held.restored
        if gone or cooled or (expired and pod_score < cfg.quarantine_threshold):
            still_quarantined.discard(instance)
            why = "pod is gone" if gone else ("quarantine expired" if expired else "pod score fell below the lift threshold")
            intent = keep_excluded(state.intent, still_quarantined)
            decisions.append(
                _plain(LIFT_QUARANTINE, state, mode, now, score, f"{why} ({pod_score:.1f})", state.step, guard,
                       instances=(instance,), pods=(held.pod or "",), intents=(intent,), remove_instances=(instance,))
            )

    expired = state.expires_at is not None and now >= state.expires_at
    if state.step == names.STEP_QUARANTINED:
        if (score < cfg.lift_threshold and not state.restored) or (expired and score < cfg.quarantine_threshold):
            why = "quarantine expired" if expired else f"score {score:.1f} fell below {cfg.lift_threshold:g}"
            thin = thin_baseline(ctx.baseline, now, cfg)
            if thin is None:
                intent = keep_excluded(tightened_intent(state, ctx.baseline, ctx.recent), still_quarantined)
                decisions.append(
                    _plain(RELAX, state, mode, now, score, f"{why}: quarantine relaxed to the learned baseline",
                           names.STEP_TIGHTENED, guard, intents=(intent,), expires_at=now + cfg.tighten_expiry_seconds)
                )
            else:
                intent = keep_excluded(state.base_intent, still_quarantined)
                decisions.append(
                    _plain(RELAX, state, mode, now, score, f"{why}: quarantine relaxed to the declared baseline "
                           f"({thin})", names.STEP_BASELINE, guard, intents=(intent,))
                )
        return decisions
    # Evidence about pods already isolated one by one (or that no policy can reach) says nothing about
    # their siblings: the workload's own policy steps on what is left.
    set_aside = still_quarantined | unreachable_instances(ctx)
    siblings = max(0.0, score - sum(risk.instance_score(i, now) for i in set_aside))

    if score >= cfg.quarantine_threshold:
        decisions.extend(_quarantine(state, risk, mode, guard, now, ctx, score, replica_instances, still_quarantined))
        return decisions
    if state.step == names.STEP_TIGHTENED:
        if (siblings < cfg.relax_threshold and not state.restored) or (expired and siblings < cfg.tighten_threshold):
            intent = keep_excluded(state.base_intent, still_quarantined)
            why = "tightening expired" if expired else f"score {siblings:.1f} fell below {cfg.relax_threshold:g}"
            decisions.append(
                _plain(RELAX, state, mode, now, score, f"{why}: back to the declared baseline", names.STEP_BASELINE,
                       guard, intents=(intent,))
            )
        return decisions
    if siblings >= cfg.tighten_threshold:
        tightened = decide_tighten(state, risk, mode, guard, now, ctx, siblings)
        if tightened is not None:
            decisions.append(tightened)
    return decisions


def decide_tighten(
    state: WorkloadState, risk: RiskState, mode: str, guard: GuardRails, now: float, ctx: DecideContext, score: float
) -> Decision | None:
    cfg = ctx.config
    intent = tightened_intent(state, ctx.baseline, ctx.recent)
    reason = f"score {score:.1f} >= tighten threshold {cfg.tighten_threshold:g}: allow only the learned baseline"
    return _escalate(TIGHTEN, LEVEL_TIGHTEN, state, risk, mode, guard, now, ctx, score, reason, names.STEP_TIGHTENED,
                     intents=(intent,), expires_at=now + cfg.tighten_expiry_seconds)


def _quarantine(
    state: WorkloadState, risk: RiskState, mode: str, guard: GuardRails, now: float, ctx: DecideContext,
    score: float, replica_instances: set[str], quarantined: set[str],
) -> list[Decision]:
    cfg = ctx.config
    threshold = cfg.quarantine_threshold
    hot = [i for i in risk.instances() if i not in quarantined and risk.instance_score(i, now) >= threshold]
    workload_level = risk.workload_level_score(now)
    covers_all = len(replica_instances) >= 2 and replica_instances <= (set(hot) | quarantined)
    if workload_level >= threshold or covers_all:
        why = (
            f"workload-level evidence {workload_level:.1f} >= {threshold:g}" if workload_level >= threshold
            else f"evidence covers all {len(replica_instances)} replicas"
        )
        intent = keep_excluded(workload_quarantine_intent(state.namespace, state.identity, ctx.exceptions), quarantined)
        decision = _escalate(
            QUARANTINE_WORKLOAD, LEVEL_QUARANTINE, state, risk, mode, guard, now, ctx, score,
            f"score {score:.1f} >= quarantine threshold; {why}: isolate the workload", names.STEP_QUARANTINED,
            intents=(intent,), expires_at=now + cfg.quarantine_expiry_seconds,
            # Only the replicas not already isolated one by one are new under quarantine.
            blast_pods=max(1, len(replica_instances - quarantined)),
        )
        if decision is not None and decision.action == QUARANTINE_WORKLOAD:
            return [decision]
        # The workload-wide step was refused by a guard rail: still isolate the pods the evidence names.
        refused = [decision] if decision is not None else []
        return refused + _quarantine_pods(state, risk, mode, guard, now, ctx, score, hot, quarantined)
    if hot:
        return _quarantine_pods(state, risk, mode, guard, now, ctx, score, hot, quarantined)
    # What is left once the isolated pods' own evidence is set aside decides the siblings' policy:
    # one pod's alert never tightens the replicas it did not come from.
    siblings = max(0.0, score - sum(risk.instance_score(i, now) for i in quarantined | unreachable_instances(ctx)))
    if state.step == names.STEP_BASELINE and siblings >= cfg.tighten_threshold:
        decision = decide_tighten(state, risk, mode, guard, now, ctx, siblings)
        return [decision] if decision is not None else []
    return []


def _quarantine_pods(
    state: WorkloadState, risk: RiskState, mode: str, guard: GuardRails, now: float, ctx: DecideContext,
    score: float, hot: list[str], quarantined: set[str],
) -> list[Decision]:
    """Isolate each pod whose own evidence crosses the quarantine threshold."""
    threshold = ctx.config.quarantine_threshold
    pods_by_instance = {r.instance: r.pod for r in ctx.replicas if r.instance}
    out = []
    now_quarantined = set(quarantined)
    unreachable = unreachable_instances(ctx)
    for instance in sorted(hot, key=lambda i: i in unreachable):  # the ones a policy can isolate first
        if instance not in unreachable:
            now_quarantined.add(instance)
        intents = (
            quarantine_intent(state.namespace, state.identity, instance, ctx.exceptions),
            keep_excluded(state.intent, now_quarantined),
        )
        decision = _escalate(
            QUARANTINE_POD, LEVEL_QUARANTINE, state, risk, mode, guard, now, ctx, score,
            f"pod score {risk.instance_score(instance, now):.1f} >= quarantine threshold {threshold:g}: isolate the pod",
            state.step, instances=(instance,), pods=(pods_by_instance.get(instance, ""),), intents=intents,
            expires_at=now + ctx.config.quarantine_expiry_seconds, blast_pods=len(now_quarantined - quarantined),
            evidence_instance=instance,
        )
        if decision is None:
            continue
        out.append(decision)
        if decision.action != QUARANTINE_POD and instance not in unreachable:
            break  # one guard-rail alert covers the rest
    return out


def _escalate(
    action: str, level: int, state: WorkloadState, risk: RiskState, mode: str, guard: GuardRails, now: float,
    ctx: DecideContext, score: float, reason: str, step_after: str, *, intents: tuple[PolicyIntent, ...],
    instances: tuple[str, ...] = (), pods: tuple[str, ...] = (), expires_at: float | None = None,
    blast_pods: int = 0, evidence_instance: str | None = None,
) -> Decision | None:
    evidence = risk.evidence()
    if evidence_instance is not None:
        evidence = tuple(e for e in evidence if e.instance == evidence_instance) or evidence
    blocked: str | None = None
    check: WhatIf | None = None
    if guard.is_protected(state.namespace):
        blocked = f"namespace {state.namespace} is protected: never tightened or quarantined"
    elif now < state.cooldown_until:
        blocked = f"automatic changes paused until {state.cooldown_until:.0f} after a rollback"
    elif action == QUARANTINE_POD and evidence_instance in unreachable_instances(ctx):
        pod = next(r for r in ctx.replicas if r.instance == evidence_instance)
        blocked = f"pod {pod.pod}: {pod.outside_reach}"
    elif ctx.replicas and all(r.outside_reach for r in ctx.replicas):
        blocked = f"every pod of the workload is outside NetworkPolicy's reach ({ctx.replicas[0].outside_reach})"
    elif action in (QUARANTINE_POD, QUARANTINE_WORKLOAD):
        blocked = guard.blast.check(state.identity, blast_pods, ctx.total_pods, now)
    elif action == TIGHTEN:
        thin = thin_baseline(ctx.baseline, now, ctx.config)
        if thin is not None:
            blocked = f"{thin}: tightening to it would cut traffic never observed; refused (alert-only)"
    if blocked is None and action == TIGHTEN and ctx.recent is not None:
        horizon_views = ctx.recent.views(now, ctx.config.what_if_horizon_seconds)
        edges = ctx.baseline.edges if ctx.baseline is not None else ()
        check = what_if(intents[0], horizon_views, ctx.is_allowed, edges)
        if not check.safe:
            blocked = (
                f"what-if: the tightened policy would drop {len(check.dropped_baseline_flows)} learned-baseline "
                f"flow(s); tightening refused (downgraded to alert-only)"
            )
            evidence = evidence + tuple(_what_if_evidence(state, v, now) for v in check.dropped_baseline_flows[:16])
    if blocked is not None:
        if state.alerted_level >= level:
            return None
        return Decision(
            ALERT_ONLY, state.identity, state.namespace, now, mode, mode_effect(mode, ALERT_ONLY),
            f"{reason}; {blocked}", score, state.step, state.step, instances, pods, evidence=evidence,
            what_if=check, level=level,
        )
    effect = mode_effect(mode, action)
    if effect == EFFECT_WRITE and not guard.budget.try_take(now):
        effect = EFFECT_DEFERRED
        reason += " (deferred: API write budget exhausted)"
    return Decision(
        action, state.identity, state.namespace, now, mode, effect, reason, score, state.step, step_after,
        instances, pods, intents, expires_at=expires_at, evidence=evidence, what_if=check, level=level,
        blast_pods=blast_pods,
    )


def _plain(
    action: str, state: WorkloadState, mode: str, now: float, score: float, reason: str, step_after: str,
    guard: GuardRails, *, instances: tuple[str, ...] = (), pods: tuple[str, ...] = (),
    intents: tuple[PolicyIntent, ...] = (), remove_instances: tuple[str, ...] = (), expires_at: float | None = None,
) -> Decision:
    """A de-escalation: no guard rail stops it; it spends the safety budget, never the tightenings' one."""
    effect = mode_effect(mode, action)
    if effect == EFFECT_WRITE and not guard.safety_budget.try_take(now):
        effect = EFFECT_DEFERRED
        reason += " (deferred: API write budget exhausted)"
    return Decision(
        action, state.identity, state.namespace, now, mode, effect, reason, score, state.step, step_after,
        instances, pods, intents, remove_instances, expires_at=expires_at,
    )


def _rollback(state: WorkloadState, mode: str, now: float, score: float, cfg: CoreConfig) -> Decision | None:
    if not (state.automatic and state.step == names.STEP_TIGHTENED and state.changed_at is not None):
        return None
    if now - state.changed_at > cfg.rollback_window_seconds:
        return None
    regressions = health_regressions(state)
    if not regressions:
        return None
    previous = state.before[-1] if state.before else state.base_intent
    previous = keep_excluded(previous, state.quarantined)
    evidence = tuple(
        Deviation(HEALTH_REGRESSION, 0.0, now, state.identity, state.namespace, text) for text in regressions
    )
    if state.last_decision is not None:
        evidence = state.last_decision.evidence + evidence
    reason = f"health degraded within {cfg.rollback_window_seconds:g}s of an automatic tightening: " + "; ".join(regressions)
    # A rollback is a safety action: never deferred by the write budget, never held for approval.
    return Decision(
        ROLLBACK, state.identity, state.namespace, now, mode, mode_effect(mode, ROLLBACK), reason, score,
        state.step, _workload_step(previous), intents=(previous,), evidence=evidence,
    )


def _workload_step(intent: PolicyIntent) -> str:
    """The workload step an intent stands for (a learn-mode intent is the baseline step)."""
    return names.STEP_BASELINE if intent.step == names.STEP_LEARNING else intent.step


def _what_if_evidence(state: WorkloadState, view: FlowView, now: float) -> Deviation:
    return Deviation(
        WHAT_IF_DROP, 0.0, now, state.identity, state.namespace,
        f"tightened policy would drop learned flow {view.describe()}",
        instance=view.instance, pod=view.pod, direction=view.direction, peer=view.peer_value,
        port=view.port, protocol=view.protocol, details={"flow_time": view.time, "peer_kind": view.peer_kind},
    )


# --- apply --------------------------------------------------------------------------------------


def apply_decision(state: WorkloadState, decision: Decision, guard: GuardRails, config: CoreConfig) -> None:
    """Move the state along for a decision that takes effect (record or write); queue pending ones."""
    if decision.effect == EFFECT_PENDING:
        state.pending = (*state.pending, decision)
        return
    if decision.effect not in (EFFECT_RECORD, EFFECT_WRITE):
        return
    now = decision.time
    action = decision.action
    state.last_decision = decision
    if action not in (ALERT_ONLY, QUARANTINE_POD, LIFT_QUARANTINE):
        state.restored = False  # the workload's step is this process's own decision from now on
    if action == ALERT_ONLY:
        state.alerted_level = max(state.alerted_level, decision.level)
    elif action in (TIGHTEN, QUARANTINE_WORKLOAD):
        state.before.append(state.intent)
        state.intent = decision.intents[0]
        state.step = decision.step_after
        state.step_since = now
        state.expires_at = decision.expires_at
        state.automatic = True
        state.changed_at = now
        if action == TIGHTEN:
            state.health_snapshot = dict(state.health)
        else:
            guard.blast.record(state.identity, max(1, decision.blast_pods), now)
    elif action == QUARANTINE_POD:
        for instance, pod in zip(decision.instances, decision.pods):
            state.quarantined[instance] = QuarantinedPod(instance, pod or None, now, decision.expires_at or now)
            guard.blast.record(state.identity, 1, now)
        state.intent = decision.intents[-1]
    elif action == LIFT_QUARANTINE:
        for instance in decision.remove_instances:
            state.quarantined.pop(instance, None)
        state.intent = keep_excluded(decision.intents[0], state.quarantined)
    elif action == RELAX:
        state.intent = keep_excluded(decision.intents[0], state.quarantined)
        state.step = decision.step_after
        state.step_since = now
        state.expires_at = decision.expires_at
        state.health_snapshot = None
        if state.step != names.STEP_TIGHTENED:
            state.automatic = False
            state.changed_at = None
            state.before.clear()
    elif action == ROLLBACK:
        if state.before:
            state.before.pop()
        state.intent = keep_excluded(decision.intents[0], state.quarantined)
        state.step = decision.step_after
        state.step_since = now
        state.expires_at = None
        state.automatic = False
        state.changed_at = None
        state.health_snapshot = None
        state.cooldown_until = now + config.rollback_cooldown_seconds


def settle(state: WorkloadState, score: float, config: CoreConfig) -> None:
    """Once the score is low again, a later escalation may raise a fresh guard-rail alert."""
    if score < config.relax_threshold:
        state.alerted_level = LEVEL_NONE


def step(
    state: WorkloadState, risk: RiskState, mode: str, guard: GuardRails, now: float, ctx: DecideContext
) -> list[Decision]:
    """Decide and apply: the decisions returned have already moved `state` (pending ones are queued)."""
    decisions = decide(state, risk, mode, guard, now, ctx)
    for decision in decisions:
        apply_decision(state, decision, guard, ctx.config)
    settle(state, risk.score_at(now), ctx.config)
    return decisions
