"""Decide, plan, execute: the API changes a decision takes, as plain data, in a safe order. Pure.

A plan is the ordered steps that carry out one decision, each with what must hold before it (the
effect of the steps before it). The adapter (netwarden/reconciler/quarantine.py) executes the steps
in order and stops at the first that fails, so a later step never runs without its precondition; it
retries the whole plan (every step is idempotent).

Planned: a pod's quarantine and its release, where the order is the safety property.
NetworkPolicies add up, so a pod carved out of its workload's policy and selected by no quarantine
is selected by nothing: unrestricted. Every state on the way in must let the pod do no more than
the state before it, and every state on the way out no more than the end state; `exposures`
replays a plan over that model so a test can say so. And a workload's quarantine (on the admin-tier
backend the Deny lands first, then the workload's own policy narrows); `reaches` replays it over
the workload's model. And a tighten or a relax: the workload's own policy at its new step, then (on
the admin-tier backend) a Deny that may be left from a quarantine lifted, never before that write.
And an automatic rollback: one write, the workload's policy back at the intent it had.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from netwarden.model import names
from netwarden.model.errors import NetwardenError


class Op(StrEnum):
    """One change to the cluster."""

    #: Create (or update) the pod's quarantine object, selecting exactly the pod's instance label.
    ENSURE_QUARANTINE = "ensure-quarantine"
    #: Patch the workload's own policy so its podSelector leaves the instance out (`NotIn`).
    CARVE_OUT = "carve-out"
    #: Patch the workload's own policy so it selects the instance again.
    END_CARVE_OUT = "end-carve-out"
    #: Delete the pod's quarantine object.
    REMOVE_QUARANTINE = "remove-quarantine"
    #: Create (or renew) the workload's admin-tier Deny, selecting its identity.
    ENSURE_WORKLOAD_DENY = "ensure-workload-deny"
    #: Write the workload's own policy at the decision's intent (carving out the quarantines held).
    WRITE_WORKLOAD_POLICY = "write-workload-policy"
    #: Remove the workload's admin-tier Deny (when netwarden knows of one).
    REMOVE_WORKLOAD_DENY = "remove-workload-deny"


class Fact(StrEnum):
    """What the cluster holds about one pod instance, as far as a plan is concerned."""

    QUARANTINE_HELD = "quarantine-held"
    CARVED_OUT = "carved-out"
    #: The workload's admin-tier Deny exists.
    DENY_HELD = "deny-held"
    #: The workload's own policy holds this plan's intent.
    POLICY_WRITTEN = "policy-written"


@dataclass(frozen=True)
class Step:
    op: Op
    namespace: str
    identity: str
    #: The pod instance a step is about; None: the workload.
    instance: str | None
    #: Facts that must hold (True) or not hold (False) before this step is taken.
    requires: tuple[tuple[Fact, bool], ...] = ()
    #: WRITE_WORKLOAD_POLICY: the step (names.STEP_*) the workload's policy is at once written.
    to_step: str | None = None


@dataclass(frozen=True)
class Plan:
    """The steps of one decision about one pod, in the order they must be taken."""

    steps: tuple[Step, ...]

    def ops(self) -> tuple[Op, ...]:
        return tuple(step.op for step in self.steps)


def pod_quarantine(namespace: str, identity: str, instance: str, *, carve_out: bool) -> Plan:
    """The quarantine first (the pod is then under its workload's policy and the quarantine, which
    allow what the workload's did), the carve-out second (the quarantine alone). `carve_out` is False
    for a backend whose quarantine no namespaced policy can widen (an admin-tier Deny)."""
    steps = [Step(Op.ENSURE_QUARANTINE, namespace, identity, instance)]
    if carve_out:
        steps.append(Step(Op.CARVE_OUT, namespace, identity, instance, ((Fact.QUARANTINE_HELD, True),)))
    return Plan(tuple(steps))


def pod_release(namespace: str, identity: str, instance: str, *, carve_out: bool) -> Plan:
    """The carve-out ends first (the workload's policy and the quarantine again), then the quarantine
    goes (the workload's policy alone)."""
    steps = []
    if carve_out:
        steps.append(Step(Op.END_CARVE_OUT, namespace, identity, instance))
    steps.append(Step(Op.REMOVE_QUARANTINE, namespace, identity, instance, ((Fact.CARVED_OUT, False),)))
    return Plan(tuple(steps))


def workload_quarantine(namespace: str, identity: str, *, deny: bool) -> Plan:
    """The workload's own policy narrows to its quarantine. On the admin-tier backend (`deny`) the Deny
    lands first: the workload is isolated whatever a namespaced policy allows, before and whether or
    not its own policy's write succeeds."""
    write = Step(Op.WRITE_WORKLOAD_POLICY, namespace, identity, None, ((Fact.DENY_HELD, True),) if deny else (),
                 to_step=names.STEP_QUARANTINED)
    return Plan((Step(Op.ENSURE_WORKLOAD_DENY, namespace, identity, None), write) if deny else (write,))


def workload_policy(namespace: str, identity: str, to_step: str, *, deny: bool) -> Plan:
    """A tighten or a relax: the workload's own policy at `to_step`; on the admin-tier backend (`deny`)
    its Deny, if one is left, goes only once that policy holds (its precondition), so the workload is
    never without both."""
    write = Step(Op.WRITE_WORKLOAD_POLICY, namespace, identity, None, to_step=to_step)
    if not deny or to_step == names.STEP_QUARANTINED:
        return Plan((write,))
    return Plan((write, Step(Op.REMOVE_WORKLOAD_DENY, namespace, identity, None, ((Fact.POLICY_WRITTEN, True),))))


def workload_rollback(namespace: str, identity: str, to_step: str) -> Plan:
    """Back to the intent before an automatic tightening: one write of the workload's own policy (no Deny
    to lift: a rollback undoes a tightening, and a quarantine ends by a relax)."""
    return Plan((Step(Op.WRITE_WORKLOAD_POLICY, namespace, identity, None, to_step=to_step),))


class Exposure(IntEnum):
    """What a pod may do, ordered: a quarantine alone < its workload's policy (plus a quarantine's
    exceptions, allowed by design) < nothing selects it."""

    ISOLATED = 0
    WORKLOAD = 1
    OPEN = 2


class PlanError(NetwardenError, ValueError):
    """A step taken without its precondition."""


def _check(step: Step, facts: dict[Fact, bool]) -> None:
    """PlanError unless every precondition of `step` holds in `facts`."""
    for fact, wanted in step.requires:
        if facts.get(fact) != wanted:
            raise PlanError(f"{step.op} of {step.instance or step.identity} needs {fact} to be {wanted}")


def exposure(held: bool, carved: bool, *, carve_out: bool) -> Exposure:
    """The pod's exposure with its quarantine `held` or not and `carved` out of its workload's policy or not."""
    if held and (carved or not carve_out):  # a carve-out-free backend's quarantine is final by itself
        return Exposure.ISOLATED
    return Exposure.OPEN if carved else Exposure.WORKLOAD


def exposures(plan: Plan, *, held: bool, carved: bool, carve_out: bool) -> list[Exposure]:
    """The pod's exposure before the plan and after each step, from the given start; PlanError when a
    step's precondition does not hold where it is taken."""
    facts = {Fact.QUARANTINE_HELD: held, Fact.CARVED_OUT: carved}
    out = [exposure(held, carved, carve_out=carve_out)]
    for step in plan.steps:
        _check(step, facts)
        if step.op == Op.ENSURE_QUARANTINE:
            facts[Fact.QUARANTINE_HELD] = True
        elif step.op == Op.REMOVE_QUARANTINE:
            facts[Fact.QUARANTINE_HELD] = False
        elif step.op == Op.CARVE_OUT:
            facts[Fact.CARVED_OUT] = True
        else:
            facts[Fact.CARVED_OUT] = False
        out.append(exposure(facts[Fact.QUARANTINE_HELD], facts[Fact.CARVED_OUT], carve_out=carve_out))
    return out


class Reach(IntEnum):
    """What a workload may do, ordered: its admin-tier Deny (final) < its own policy at the quarantine
    intent (DNS and the declared exceptions; another namespaced policy could add to it) < its learned
    baseline (tightened) < its declared baseline."""

    DENIED = 0
    QUARANTINED = 1
    TIGHTENED = 2
    BASELINE = 3


_REACH_OF_STEP = {names.STEP_QUARANTINED: Reach.QUARANTINED, names.STEP_TIGHTENED: Reach.TIGHTENED,
                  names.STEP_BASELINE: Reach.BASELINE, names.STEP_LEARNING: Reach.BASELINE}


def reach(deny_held: bool, policy_step: str) -> Reach:
    """The workload's reach with its Deny held or not and its own policy at `policy_step`."""
    return Reach.DENIED if deny_held else _REACH_OF_STEP[policy_step]


def reaches(plan: Plan, *, deny_held: bool, policy_step: str) -> list[Reach]:
    """The workload's reach before the plan and after each step, from the given start; PlanError when a
    step's precondition does not hold where it is taken."""
    facts = {Fact.DENY_HELD: deny_held, Fact.POLICY_WRITTEN: False}
    out = [reach(deny_held, policy_step)]
    for step in plan.steps:
        _check(step, facts)
        if step.op == Op.ENSURE_WORKLOAD_DENY:
            facts[Fact.DENY_HELD] = True
        elif step.op == Op.WRITE_WORKLOAD_POLICY:
            assert step.to_step is not None
            policy_step, facts[Fact.POLICY_WRITTEN] = step.to_step, True
        elif step.op == Op.REMOVE_WORKLOAD_DENY:
            facts[Fact.DENY_HELD] = False
        else:
            raise PlanError(f"{step.op} is not a step about a workload")
        out.append(reach(facts[Fact.DENY_HELD], policy_step))
    return out
