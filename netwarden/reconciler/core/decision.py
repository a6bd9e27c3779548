"""What a decision is: the actions and their mode effects, one Decision, and a workload's state.

The values `actions.decide` returns and `actions.apply_decision` moves along; the engine, the
snapshot and the adapters (which carry decisions out) read them without needing the rules.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from netwarden.model import names
from netwarden.model.policy import PolicyIntent, Rule
from netwarden.reconciler.core.behaviour import Baseline
from netwarden.reconciler.core.config import CoreConfig
from netwarden.reconciler.core.pods import PodRef
from netwarden.reconciler.core.risk import Deviation
from netwarden.reconciler.core.whatif import DEFAULT_IS_ALLOWED, IsAllowed, RecentFlows, WhatIf

# --- actions and effects ------------------------------------------------------------------------
class Action(StrEnum):
    """What a decision does to a workload (the value is what Events, annotations and logs say)."""

    NONE = "none"
    TIGHTEN = "tighten"
    QUARANTINE_POD = "quarantine-pod"
    QUARANTINE_WORKLOAD = "quarantine-workload"
    RELAX = "relax"
    LIFT_QUARANTINE = "lift-quarantine"
    ALERT_ONLY = "alert-only"
    ROLLBACK = "rollback"


class Effect(StrEnum):
    """What the mode lets a decision do."""

    NONE = "none"  # learn mode: nothing happens
    RECORD = "record"  # dry-run (and alert-only): state and events, no policy write
    WRITE = "write"  # enforce: write the intents
    PENDING = "pending"  # approve: proposed, awaiting a user's approval
    DEFERRED = "deferred"  # enforce, but the write budget is empty: decided again later


NONE, TIGHTEN, RELAX, ROLLBACK = Action.NONE, Action.TIGHTEN, Action.RELAX, Action.ROLLBACK
QUARANTINE_POD, QUARANTINE_WORKLOAD = Action.QUARANTINE_POD, Action.QUARANTINE_WORKLOAD
LIFT_QUARANTINE, ALERT_ONLY = Action.LIFT_QUARANTINE, Action.ALERT_ONLY
ACTIONS = tuple(Action)
ESCALATIONS = (TIGHTEN, QUARANTINE_POD, QUARANTINE_WORKLOAD)
#: Actions whose workload-policy write only opens or undoes: they spend the safety budget.
SAFETY_ACTIONS = (ROLLBACK, RELAX, LIFT_QUARANTINE)

EFFECT_NONE, EFFECT_RECORD, EFFECT_WRITE = Effect.NONE, Effect.RECORD, Effect.WRITE
EFFECT_PENDING, EFFECT_DEFERRED = Effect.PENDING, Effect.DEFERRED

LEVEL_NONE, LEVEL_TIGHTEN, LEVEL_QUARANTINE = 0, 1, 2

#: Evidence-only kinds (weight 0): they explain a decision, they do not raise a score.
WHAT_IF_DROP = "what-if-drop"
HEALTH_REGRESSION = "health-regression"

_EVENT_REASONS = {
    TIGHTEN: names.EVENT_POLICY_TIGHTENED,
    QUARANTINE_POD: names.EVENT_POD_QUARANTINED,
    QUARANTINE_WORKLOAD: names.EVENT_POD_QUARANTINED,
    RELAX: names.EVENT_POLICY_RELAXED,
    LIFT_QUARANTINE: names.EVENT_QUARANTINE_LIFTED,
    ROLLBACK: names.EVENT_POLICY_ROLLED_BACK,
    ALERT_ONLY: names.EVENT_GUARD_RAIL,
}


@dataclass(frozen=True)
class Decision:
    """One action for one workload (or some of its pod instances), with everything to carry it out."""

    action: Action
    identity: str
    namespace: str
    time: float
    mode: str
    effect: Effect
    reason: str
    score: float
    step_before: str
    step_after: str
    #: Pod instances (and their pod names) the action targets; empty for the whole workload.
    instances: tuple[str, ...] = ()
    pods: tuple[str, ...] = ()
    #: Policies to write: the workload's own and/or per-pod quarantine policies.
    intents: tuple[PolicyIntent, ...] = ()
    #: Per-pod quarantine policies to delete (by instance).
    remove_instances: tuple[str, ...] = ()
    expires_at: float | None = None
    evidence: tuple[Deviation, ...] = ()
    what_if: WhatIf | None = None
    #: Escalation level this decision answers (used to report alert-only once per level).
    level: int = LEVEL_NONE
    #: Pods an automatic quarantine puts under isolation (counted by the blast radius).
    blast_pods: int = 0
    automatic: bool = True

    @property
    def event_reason(self) -> str:
        if self.effect == EFFECT_PENDING:
            return names.EVENT_CHANGE_PENDING
        if self.effect == EFFECT_RECORD and self.action != ALERT_ONLY:
            return names.EVENT_DRY_RUN
        return _EVENT_REASONS.get(self.action, "")

    @property
    def writes(self) -> bool:
        return self.effect == EFFECT_WRITE

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "identity": self.identity,
            "namespace": self.namespace,
            "time": self.time,
            "mode": self.mode,
            "effect": self.effect,
            "reason": self.reason,
            "score": round(self.score, 3),
            "step_before": self.step_before,
            "step_after": self.step_after,
            "instances": list(self.instances),
            "pods": list(self.pods),
            "expires_at": self.expires_at,
            "event_reason": self.event_reason,
            "evidence": [e.to_dict() for e in self.evidence],
            "what_if_dropped": len(self.what_if.dropped_flows) if self.what_if else None,
        }


@dataclass(frozen=True)
class QuarantinedPod:
    instance: str
    pod: str | None
    since: float
    expires_at: float
    #: Read back from the cluster after a restart: the evidence died with the old process, so only
    #: the expiry (not a decayed score) ends it.
    restored: bool = False


@dataclass
class WorkloadState:
    """Where one workload's policy stands and what it would go back to."""

    identity: str
    namespace: str
    #: The workload's declared/admission baseline: the most a relax ever opens.
    base_intent: PolicyIntent
    #: What the workload's own policy holds now (or would, in dry-run).
    intent: PolicyIntent
    step: str = names.STEP_BASELINE
    step_since: float = 0.0
    expires_at: float | None = None
    #: True while the current step was reached automatically (rollback applies only then).
    automatic: bool = False
    #: Intents before each automatic change, newest last (what a rollback restores).
    before: deque[PolicyIntent] = field(default_factory=lambda: deque(maxlen=10))
    quarantined: dict[str, QuarantinedPod] = field(default_factory=dict)
    pending: tuple[Decision, ...] = ()
    alerted_level: int = LEVEL_NONE
    cooldown_until: float = float("-inf")
    changed_at: float | None = None
    #: pod -> (ready, restarts), latest known.
    health: dict[str, tuple[bool, int]] = field(default_factory=dict)
    #: Health when the last automatic tightening was applied.
    health_snapshot: dict[str, tuple[bool, int]] | None = None
    last_decision: Decision | None = None
    #: The step was read back from the cluster after a restart: only its expiry relaxes it.
    restored: bool = False

    @classmethod
    def new(cls, identity: str, namespace: str, base_intent: PolicyIntent | None = None, max_history: int = 10) -> "WorkloadState":
        base = base_intent if base_intent is not None else PolicyIntent(namespace, identity, step=names.STEP_LEARNING, enforcing=False)
        return cls(identity, namespace, base, base, step=names.STEP_BASELINE, before=deque(maxlen=max_history))


@dataclass
class DecideContext:
    """What `decide` needs besides state, risk and guard rails."""

    config: CoreConfig
    baseline: Baseline | None = None
    recent: RecentFlows | None = None
    replicas: tuple[PodRef, ...] = ()
    total_pods: int = 0
    is_allowed: IsAllowed = DEFAULT_IS_ALLOWED
    #: Rules still allowed into a quarantined pod (parsed from config.quarantine_exceptions).
    exceptions: tuple[Rule, ...] = ()


def mode_effect(mode: str, action: str) -> str:
    if mode == names.MODE_LEARN or action == NONE:
        return EFFECT_NONE
    if action == ALERT_ONLY or mode == names.MODE_DRY_RUN:
        return EFFECT_RECORD
    if mode == names.MODE_APPROVE and action != ROLLBACK:
        return EFFECT_PENDING
    return EFFECT_WRITE
