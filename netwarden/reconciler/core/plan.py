"""Decide, plan, execute: the API changes a decision takes, as plain data, in a safe order. Pure.

A plan is the ordered steps that carry out one decision, each with what must hold before it (the
effect of the steps before it). The adapter (netwarden/reconciler/quarantine.py) executes the steps
in order and stops at the first that fails, so a later step never runs without its precondition; it
retries the whole plan (every step is idempotent).

Planned so far: a pod's quarantine and its release, where the order is the safety property.
NetworkPolicies add up, so a pod carved out of its workload's policy and selected by no quarantine
is selected by nothing: unrestricted. Every state on the way in must let the pod do no more than
the state before it, and every state on the way out no more than the end state; `exposures`
replays a plan over that model so a test can say so. (The other decisions are still carried out
step by step by netwarden/reconciler/decisions.py.)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


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


class Fact(StrEnum):
    """What the cluster holds about one pod instance, as far as a plan is concerned."""

    QUARANTINE_HELD = "quarantine-held"
    CARVED_OUT = "carved-out"


@dataclass(frozen=True)
class Step:
    op: Op
    namespace: str
    identity: str
    instance: str
    #: Facts that must hold (True) or not hold (False) before this step is taken.
    requires: tuple[tuple[Fact, bool], ...] = ()


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


class Exposure(IntEnum):
    """What a pod may do, ordered: a quarantine alone < its workload's policy (plus a quarantine's
    exceptions, allowed by design) < nothing selects it."""

    ISOLATED = 0
    WORKLOAD = 1
    OPEN = 2


class PlanError(ValueError):
    """A step taken without its precondition."""


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
        for fact, wanted in step.requires:
            if facts[fact] != wanted:
                raise PlanError(f"{step.op} of {step.instance} needs {fact} to be {wanted}")
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
