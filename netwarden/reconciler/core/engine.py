"""The decision engine: all per-workload state, fed with signals, answering with Decisions.

Both the live reconciler and an offline replay drive this one class, so it is deterministic for
the same inputs (no clock, no randomness; `now` is always passed in) and cheap per flow: a flow
costs two index lookups and one baseline update, and only a deviation runs the decision step.
The adapter keeps the pod index and per-namespace modes up to date and carries out the Decisions
(write with the policy model, record an Event, or hold as pending).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

from netwarden.model import names
from netwarden.model.declarations import parse_peer_declarations
from netwarden.model.errors import ConfigError
from netwarden.model.policy import DnsTarget, PolicyIntent
from netwarden.reconciler.core import actions, snapshot
from netwarden.reconciler.core.decision import (
    EFFECT_WRITE,
    LEVEL_QUARANTINE,
    LEVEL_TIGHTEN,
    QUARANTINE_POD,
    QUARANTINE_WORKLOAD,
    TIGHTEN,
    DecideContext,
    Decision,
    QuarantinedPod,
    WorkloadState,
    mode_effect,
)
from netwarden.reconciler.core.alerts import DUPLICATE, TOO_OLD, AlertMemory, Attribution, alert_verdict, attribute_alert
from netwarden.reconciler.core.behaviour import Baseline, Ends, FlowView, PodIndex, PodRef, resolve_ends, resolve_flow, update, views_of
from netwarden.reconciler.core.config import CoreConfig
from netwarden.reconciler.core.guard import GuardRails
from netwarden.reconciler.core.risk import RiskState, metric_alert_deviation, metric_alert_key, security_alert_deviation
from netwarden.reconciler.core.types import Endpoint, Flow, HealthSignal, MetricAlert, RestoredPolicy, SecurityAlert
from netwarden.reconciler.core.whatif import IsAllowed, RecentFlows, netpol_is_allowed


@dataclass(frozen=True)
class StatusRow:
    """One line of `netwarden status`."""

    identity: str
    namespace: str
    mode: str
    score: float
    step: str
    learning: bool
    policies: tuple[str, ...]
    quarantined: tuple[str, ...]
    pending: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.identity,
            "namespace": self.namespace,
            "mode": self.mode,
            "score": round(self.score, 2),
            "step": self.step,
            "learning": self.learning,
            "policies": list(self.policies),
            "quarantined": list(self.quarantined),
            "pending": self.pending,
        }


#: Endpoint pairs whose attribution the engine keeps between batches.
MAX_ENDPOINT_PAIRS = 16384


class _Tracked:
    """Everything the engine keeps for one workload (one dict lookup per flow view)."""

    __slots__ = ("baseline", "recent", "risk", "state", "past_alerts")

    def __init__(self, baseline: Baseline, recent: RecentFlows, risk: RiskState, state: WorkloadState) -> None:
        self.baseline = baseline
        self.recent = recent
        self.risk = risk
        self.state = state
        #: Alerts too old to act on: evidence of the past, shown by `explain` (bounded).
        self.past_alerts: deque[dict[str, Any]] = deque(maxlen=16)


@dataclass
class EngineCounters:
    flows: int = 0
    views: int = 0
    unresolved_flows: int = 0
    unattributed_alerts: int = 0
    #: Alerts attributed to no workload, by reason (core.alerts.UNATTRIBUTED_REASONS).
    unattributed_by_reason: dict[str, int] = field(default_factory=dict)
    #: Alerts recorded but not acted on, by reason (duplicate, too-old).
    alerts_ignored: dict[str, int] = field(default_factory=dict)
    deviations: int = 0


class DecisionEngine:
    """Holds baselines, risk, recent flows and steps for every workload seen."""

    def __init__(
        self,
        config: CoreConfig | None = None,
        *,
        index: PodIndex | None = None,
        dns: DnsTarget | None = None,
        is_allowed: IsAllowed | None = None,
        now: float = 0.0,
    ) -> None:
        self.config = config if config is not None else CoreConfig()
        self.index = index if index is not None else PodIndex()
        self.dns = dns if dns is not None else DnsTarget()
        self.is_allowed: IsAllowed = is_allowed if is_allowed is not None else default_is_allowed(self.dns)
        self.guard = GuardRails(self.config, now)
        parsed = parse_peer_declarations(" ".join(self.config.quarantine_exceptions))
        if parsed.errors:
            raise ConfigError("quarantine_exceptions: " + "; ".join(parsed.errors))
        self.exceptions = parsed.rules
        self.modes: dict[str, str] = {}
        self.base_intents: dict[str, PolicyIntent] = {}
        self.counters = EngineCounters()
        self.alert_memory = AlertMemory.from_config(self.config)
        #: Why the last alert ingested was not acted on (None when it was a reason to act).
        self.last_alert_ignored: str | None = None
        #: Where the last alert ingested was attributed (its `reason` says why nowhere).
        self.last_alert_attribution: Attribution | None = None
        self._tracked: dict[str, _Tracked] = {}
        #: Workloads with something to re-check on tick (score > 0, not at baseline, quarantines, pending).
        self._active: set[str] = set()
        #: (id(source), id(destination)) -> (source, destination, their ends): each endpoint pair's
        #: attribution, kept while the pod index (the same one) stays at its version (the endpoints are
        #: kept so their ids stay theirs); bounded.
        self._ends_of: dict[tuple[int, int], tuple[Endpoint, Endpoint, Ends | None]] = {}
        self._ends_version: tuple[PodIndex, int] | None = None

    # --- facts from the adapter ---------------------------------------------------------------
    def set_mode(self, namespace: str, mode: str) -> None:
        if mode not in names.MODES:
            raise ValueError(f"unknown mode {mode!r} (one of {', '.join(names.MODES)})")
        self.modes[namespace] = mode

    def mode_of(self, namespace: str) -> str:
        return self.modes.get(namespace, self.config.default_mode)

    def upsert_pod(self, ref: PodRef) -> None:
        self.index.add(ref)

    def remove_pod(self, namespace: str, pod: str, now: float) -> list[Decision]:
        """A pod is gone: out of the index, then forgotten (`forget_pod`)."""
        ref = self.index.remove(namespace, pod)
        return self.forget_pod(ref, now) if ref is not None and ref.resolvable else []

    def forget_pod(self, ref: PodRef, now: float) -> list[Decision]:
        """A pod the index no longer resolves (gone, finished, deleting): forget its health and per-pod
        score; lift its quarantine if it had one. The watch adapter updates the index itself, then calls this."""
        tracked = self._tracked.get(ref.identity)
        if tracked is None:
            return []
        tracked.state.health.pop(ref.pod, None)
        if ref.instance is not None:
            tracked.risk.forget_instance(ref.instance, now)
        return self._step(tracked, now)

    def set_base_intent(self, identity: str, intent: PolicyIntent) -> None:
        """The workload's declared baseline (what the admission webhook wrote): the most relax opens."""
        self.base_intents[identity] = intent
        tracked = self._tracked.get(identity)
        if tracked is not None:
            state = tracked.state
            at_base = state.intent == state.base_intent
            state.base_intent = intent
            if at_base and state.step == names.STEP_BASELINE:
                state.intent = actions.keep_excluded(intent, state.quarantined)

    def track(self, identity: str, namespace: str, now: float) -> None:
        """A workload's baseline policy exists: track it from now (learning starts at its first flow). Its
        past specs stay in the policy's history annotation, their one home (netwarden/reconciler/policy_ops.py)."""
        self._track(identity, namespace, now)

    def restore(self, restored: RestoredPolicy, now: float) -> bool:
        """Take over what a previous leader wrote (read back from the cluster at start-up or failover):
        its quarantines and steps end at their `expires-at`, not never (the old memory is gone) and not
        at once (the old evidence is gone too). Idempotent; True when it changed what the engine holds."""
        tracked = self._track(restored.identity, restored.namespace, now)
        state = tracked.state
        cfg = self.config
        if restored.role == names.ROLE_QUARANTINE:
            if not restored.instance or restored.instance in state.quarantined:
                return False
            expires = restored.expires_at if restored.expires_at is not None else now + cfg.quarantine_expiry_seconds
            state.quarantined[restored.instance] = QuarantinedPod(
                restored.instance, restored.pod, restored.since, expires, restored=True)
            state.intent = actions.keep_excluded(state.intent, state.quarantined)
        elif restored.role == names.ROLE_BASELINE and restored.step in (names.STEP_TIGHTENED, names.STEP_QUARANTINED):
            if state.step != names.STEP_BASELINE or state.changed_at is not None:
                return False  # this process has decided about it itself since
            state.step = restored.step
            state.step_since = restored.since
            state.expires_at = restored.expires_at
            state.restored = True
            if restored.step == names.STEP_QUARANTINED:
                intent = actions.workload_quarantine_intent(state.namespace, state.identity, self.exceptions)
                state.intent = actions.keep_excluded(intent, state.quarantined)
        else:
            return False
        self._active.add(restored.identity)
        return True

    def held_quarantines(self, now: float) -> list[Decision]:
        """The pod quarantines this engine holds from its own decisions (its own or a restored snapshot's,
        not read back from the cluster) that have not expired, each as the decision that writes it.

        A leader that died between deciding a quarantine and its first write reaching the cluster left
        it only in its saved snapshot: the new leader re-applies these where the cluster lacks one, so
        the decision is not lost. The evidence is the snapshot's; the expiry stays the original one."""
        out: list[Decision] = []
        for identity, tracked in self._tracked.items():
            state = tracked.state
            mode = self.mode_of(state.namespace)
            effect = mode_effect(mode, QUARANTINE_POD)
            if effect != EFFECT_WRITE:
                continue
            for instance, held in sorted(state.quarantined.items()):
                if held.restored or held.expires_at <= now:
                    continue
                intents = (actions.quarantine_intent(state.namespace, identity, instance, self.exceptions),
                           actions.keep_excluded(state.intent, state.quarantined))
                out.append(Decision(
                    QUARANTINE_POD, identity, state.namespace, now, mode, effect,
                    "decided before a restart; its write had not reached the cluster (resumed from the saved state)",
                    tracked.risk.instance_score(instance, now), state.step, state.step, (instance,),
                    (held.pod or "",), intents, expires_at=held.expires_at,
                    evidence=tuple(e for e in tracked.risk.evidence() if e.instance == instance),
                    level=LEVEL_QUARANTINE))
        return out

    def held_workload_steps(self, now: float) -> list[Decision]:
        """The workload steps (tightened, quarantined) this engine holds from its own decisions, not read
        back from the cluster, that have not expired, each as the decision that writes it.

        As `held_quarantines`, for a whole workload: a leader that died while its write was failing
        left the step only in its saved snapshot; the new leader re-applies each where the workload's
        policy says another step, so the cluster meets the decision again."""
        out: list[Decision] = []
        for identity, tracked in self._tracked.items():
            state = tracked.state
            if state.step not in (names.STEP_TIGHTENED, names.STEP_QUARANTINED) or state.restored:
                continue
            if state.expires_at is not None and state.expires_at <= now:
                continue
            action = QUARANTINE_WORKLOAD if state.step == names.STEP_QUARANTINED else TIGHTEN
            mode = self.mode_of(state.namespace)
            effect = mode_effect(mode, action)
            if effect != EFFECT_WRITE:
                continue
            out.append(Decision(
                action, identity, state.namespace, now, mode, effect,
                "decided before a restart; its write had not reached the cluster (resumed from the saved state)",
                tracked.risk.score_at(now), names.STEP_BASELINE, state.step, intents=(state.intent,),
                expires_at=state.expires_at, evidence=tuple(e for e in tracked.risk.evidence() if e.instance is None),
                level=LEVEL_QUARANTINE if action == QUARANTINE_WORKLOAD else LEVEL_TIGHTEN))
        return out

    # --- learned state that moves (leader change, partition move) ------------------------------
    def snapshot(self, identity: str, now: float) -> dict[str, Any] | None:
        """What was learned about one workload, as plain data (netwarden.reconciler.core.snapshot); None if untracked."""
        tracked = self._tracked.get(identity)
        if tracked is None:
            return None
        state = tracked.state
        return snapshot.workload_data(identity, state.namespace, tracked.baseline, tracked.risk, tracked.recent, state,
                                      now)

    def restore_snapshot(self, data: dict[str, Any], now: float) -> bool:
        """Take over a workload another engine learned (SnapshotError when it cannot be read). A workload
        this engine has already seen flows for keeps its own state: it is newer. True when restored."""
        data = snapshot.check(data)
        identity, namespace = data["identity"], data["namespace"]
        current = self._tracked.get(identity)
        if current is not None and (current.baseline.flows_seen or current.state.changed_at is not None):
            return False
        parts = snapshot.parts_of(data, self.config)
        tracked = self._track(identity, namespace, now)
        tracked.baseline, tracked.risk, tracked.recent, tracked.state = parts
        if identity in self.base_intents:
            tracked.state.base_intent = self.base_intents[identity]
        self._active.add(identity)
        return True

    def forget(self, identity: str) -> bool:
        """Stop tracking a workload (its partition went to another engine). True when it was tracked."""
        self._active.discard(identity)
        return self._tracked.pop(identity, None) is not None

    # --- signals ------------------------------------------------------------------------------
    def ingest_flow(self, flow: Flow, now: float) -> list[Decision]:
        """Score one flow; returns the decisions it triggered (usually none)."""
        counters = self.counters
        counters.flows += 1
        views = resolve_flow(flow, self.index)
        if not views:
            counters.unresolved_flows += 1
            return []
        return self.ingest_views(views, now)

    def ingest_flows(self, flows: Iterable[Flow], now: float | None = None) -> list[Decision]:
        """`ingest_flow` for each flow in order, at `now` (or each at its own time when None), with the
        same result; each distinct (source, destination) endpoint pair is resolved once until the pod
        index changes (parsers reuse one Endpoint per wire endpoint), and the counters move once."""
        index = self.index
        ends_of = self._ends_of
        if self._ends_version != (index, index.version) or len(ends_of) >= MAX_ENDPOINT_PAIRS:
            ends_of.clear()
            self._ends_version = (index, index.version)
        views: list[FlowView] = []
        add_views = views.extend
        total = unresolved = 0
        for flow in flows:
            total += 1
            if flow.reply:
                unresolved += 1
                continue
            source, destination = flow.source, flow.destination
            known = ends_of.get((id(source), id(destination)))
            if known is None:
                known = ends_of[(id(source), id(destination))] = (source, destination, resolve_ends(source, destination, index))
            ends = known[2]
            if ends is None:
                unresolved += 1
                continue
            add_views(views_of(flow, ends))
        counters = self.counters
        counters.flows += total
        counters.unresolved_flows += unresolved
        # Views do not depend on what scoring learns, so all are built first and scored in order.
        return self.ingest_views(views, now)

    def ingest_views(self, views: Iterable[FlowView], now: float | None, count: int = 1) -> list[Decision]:
        """Score flow views already resolved to their workloads (by the scale-out ingest, `count` times
        each), at `now`, or each at its own flow's time when None (a replay)."""
        out: list[Decision] = []
        get_tracked = self._tracked.get
        at = now
        seen = 0
        for view in views:
            seen += 1
            if now is None:
                at = view.time
            tracked = get_tracked(view.identity)
            if tracked is None:
                tracked = self._track(view.identity, view.namespace, at)
            deviations = update(tracked.baseline, view, at, count)
            if not view.dropped:
                tracked.recent.add(view, count)
            if deviations:
                self.counters.deviations += len(deviations)
                tracked.risk.add(deviations, at)
                self._active.add(view.identity)
                out.extend(self._step(tracked, at))
        self.counters.views += seen * count
        return out

    def ingest_alert(self, alert: SecurityAlert, now: float) -> list[Decision]:
        """A Falco alert: evidence about the pod it names, or about the workload it names as a whole
        (a k8s_audit alert about a Deployment); one naming neither is unattributed (counted, and
        `last_alert_attribution` says why). A duplicate (same id within the window) adds nothing; one
        older than the max age is recorded as evidence of the past and explained, never acted on."""
        self.last_alert_ignored = None
        where = self._attribute(alert.namespace, alert.pod, alert.target)
        if where.identity is None or where.namespace is None:
            return []
        verdict = self.last_alert_ignored = alert_verdict(alert, self.alert_memory, self.config, now)
        if verdict is not None:
            self.counters.alerts_ignored[verdict] = self.counters.alerts_ignored.get(verdict, 0) + 1
            if verdict == TOO_OLD:
                tracked = self._track(where.identity, where.namespace, now)
                past = security_alert_deviation(alert, where.identity, where.namespace, where.instance, self.config,
                                                about=where.workload)
                tracked.past_alerts.append({**past.to_dict(), "ignored": verdict, "age_seconds": round(now - alert.time, 1),
                                            "received": now})
            return []
        tracked = self._track(where.identity, where.namespace, now)
        deviation = security_alert_deviation(alert, where.identity, where.namespace, where.instance, self.config,
                                             about=where.workload)
        tracked.risk.add([deviation], now)
        self.counters.deviations += 1
        self._active.add(where.identity)
        return self._step(tracked, now)

    def ingest_metric_alert(self, alert: MetricAlert, now: float) -> list[Decision]:
        """An Alertmanager alert: held at full weight while firing, dropped when resolved. Labels naming a
        pod make it evidence about that pod; `namespace` + `deployment` (statefulset, daemonset,
        job_name, cronjob) and no pod of it, evidence about that workload as a whole."""
        self.last_alert_ignored = None
        where = self._attribute(alert.namespace, alert.pod, alert.target)
        if where.identity is None or where.namespace is None:
            return []
        tracked = self._track(where.identity, where.namespace, now)
        if alert.firing and tracked.risk.is_firing(metric_alert_key(alert)):
            # Alertmanager re-sends a firing alert every repeat interval: the same alert, not new evidence.
            self.last_alert_ignored = DUPLICATE
            self.counters.alerts_ignored[DUPLICATE] = self.counters.alerts_ignored.get(DUPLICATE, 0) + 1
            return []
        if alert.firing:
            deviation = metric_alert_deviation(alert, where.identity, where.namespace, where.instance, self.config,
                                               about=where.workload)
            tracked.risk.add([deviation], now)
            self.counters.deviations += 1
            self._active.add(where.identity)
        elif not tracked.risk.resolve_alert(metric_alert_key(alert)):
            return []
        return self._step(tracked, now)

    def ingest_health(self, signal: HealthSignal, now: float) -> list[Decision]:
        """Readiness and restarts of a pod; only matters right after an automatic tightening."""
        ref = self.index.by_pod.get((signal.namespace, signal.pod))
        if ref is None:
            return []
        # Tracked even before its first flow: the health at a tightening is what a rollback compares to.
        tracked = self._track(ref.identity, ref.namespace, now)
        tracked.state.health[signal.pod] = (signal.ready, signal.restarts)
        if not tracked.state.automatic:
            return []
        return self._step(tracked, now)

    def tick(self, now: float) -> list[Decision]:
        """Decay, expiry and relax for every workload that has something going on."""
        out: list[Decision] = []
        for identity in sorted(self._active):
            tracked = self._tracked[identity]
            out.extend(self._step(tracked, now))
            tracked.risk.prune(now)
            state = tracked.state
            if (
                tracked.risk.score_at(now) == 0.0
                and state.step == names.STEP_BASELINE
                and not state.quarantined
                and not state.pending
            ):
                self._active.discard(identity)
        return out

    # --- approvals ----------------------------------------------------------------------------
    def approve(self, identity: str, now: float) -> list[Decision]:
        """A user approved the pending change: apply it now (an approval bypasses the write budget)."""
        tracked = self._tracked.get(identity)
        if tracked is None or not tracked.state.pending:
            return []
        pending, tracked.state.pending = tracked.state.pending, ()
        out = []
        for decision in pending:
            applied = replace(decision, effect=EFFECT_WRITE, time=now, automatic=False)
            out.append(self._apply(tracked, applied))
        return out

    def reject(self, identity: str, now: float) -> int:
        """A user rejected the pending change: drop it and pause automatic proposals for a cooldown."""
        tracked = self._tracked.get(identity)
        if tracked is None:
            return 0
        count = len(tracked.state.pending)
        tracked.state.pending = ()
        if count:
            tracked.state.cooldown_until = now + self.config.rollback_cooldown_seconds
        return count

    # --- reads --------------------------------------------------------------------------------
    def status(self, now: float) -> list[StatusRow]:
        rows = []
        for identity in sorted(self._tracked):
            tracked = self._tracked[identity]
            state = tracked.state
            policies = [f"{names.ROLE_BASELINE}:{state.step}"] + [f"{names.ROLE_QUARANTINE}:{i}" for i in sorted(state.quarantined)]
            rows.append(
                StatusRow(
                    identity,
                    state.namespace,
                    self.mode_of(state.namespace),
                    tracked.risk.score_at(now),
                    state.step,
                    tracked.baseline.is_learning(now),
                    tuple(policies),
                    tuple(sorted(state.quarantined)),
                    len(state.pending),
                )
            )
        return rows

    def explain(self, identity: str, now: float) -> dict[str, Any]:
        tracked = self._tracked.get(identity)
        if tracked is None:
            return {"identity": identity, "known": False}
        state = tracked.state
        return {
            "identity": identity,
            "known": True,
            "namespace": state.namespace,
            "mode": self.mode_of(state.namespace),
            "step": state.step,
            "score": round(tracked.risk.score_at(now), 4),
            "expires_at": state.expires_at,
            "quarantined": {i: {"pod": q.pod, "since": q.since, "expires_at": q.expires_at, "restored": q.restored}
                            for i, q in sorted(state.quarantined.items())},
            "restored": state.restored,
            "baseline": tracked.baseline.summary(),
            "evidence": tracked.risk.explain(now),
            "past_alerts": list(tracked.past_alerts),
            "pending": [d.to_dict() for d in state.pending],
            "last_decision": state.last_decision.to_dict() if state.last_decision else None,
        }

    def baseline_of(self, identity: str) -> Baseline | None:
        tracked = self._tracked.get(identity)
        return tracked.baseline if tracked else None

    def state_of(self, identity: str) -> WorkloadState | None:
        tracked = self._tracked.get(identity)
        return tracked.state if tracked else None

    def risk_of(self, identity: str) -> RiskState | None:
        tracked = self._tracked.get(identity)
        return tracked.risk if tracked else None

    def workloads(self) -> tuple[str, ...]:
        return tuple(self._tracked)

    # --- internals ----------------------------------------------------------------------------
    def _attribute(self, namespace: str | None, pod: str | None, target: Any) -> Attribution:
        """Attribute one alert (core.alerts.attribute_alert), remember where, count it when nowhere."""
        where = self.last_alert_attribution = attribute_alert(namespace, pod, target, self.index, self._knows)
        if where.reason is not None:
            self.counters.unattributed_alerts += 1
            by_reason = self.counters.unattributed_by_reason
            by_reason[where.reason] = by_reason.get(where.reason, 0) + 1
        return where

    def _knows(self, identity: str) -> bool:
        """A workload with pods now, or with state here (its pods may all be restarting)."""
        return identity in self.index.by_identity or identity in self._tracked

    def _track(self, identity: str, namespace: str, now: float) -> _Tracked:
        tracked = self._tracked.get(identity)
        if tracked is None:
            cfg = self.config
            state = WorkloadState.new(identity, namespace, self.base_intents.get(identity), cfg.max_history)
            tracked = _Tracked(
                Baseline(identity, namespace, now, cfg),
                RecentFlows(cfg.what_if_window),
                RiskState(identity, cfg),
                state,
            )
            self._tracked[identity] = tracked
        return tracked

    def _step(self, tracked: _Tracked, now: float) -> list[Decision]:
        state = tracked.state
        ctx = DecideContext(
            config=self.config,
            baseline=tracked.baseline,
            recent=tracked.recent,
            replicas=self.index.replicas(state.identity),
            total_pods=self.index.pod_count(),
            is_allowed=self.is_allowed,
            exceptions=self.exceptions,
        )
        decisions = actions.decide(state, tracked.risk, self.mode_of(state.namespace), self.guard, now, ctx)
        out = [self._apply(tracked, d) for d in decisions]
        actions.settle(state, tracked.risk.score_at(now), self.config)
        if out:
            self._active.add(state.identity)
        return out

    def _apply(self, tracked: _Tracked, decision: Decision) -> Decision:
        """Move the workload's state along. A rollback carries the intent it returns to; the specs a
        policy had are kept on the policy (its history annotation), not here."""
        actions.apply_decision(tracked.state, decision, self.guard, self.config)
        return decision


def default_is_allowed(dns: DnsTarget) -> IsAllowed:
    """The NetworkPolicy semantics evaluator for the configured DNS target."""
    return netpol_is_allowed(dns)


def replay(engine: DecisionEngine, flows: Iterable[Flow]) -> list[Decision]:
    """Feed flows in order with `now` = each flow's time (what `netwarden replay` does)."""
    out: list[Decision] = []
    for flow in flows:
        out.extend(engine.ingest_flow(flow, flow.time))
    return out
