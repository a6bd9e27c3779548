"""Decide, plan, execute: a decision's plan is pure data whose every step leaves the pod (or the workload) no
freer than the step before it, on the way in, or than where it ends, on the way out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netwarden.model import names
from netwarden.reconciler.core.plan import (Exposure, Fact, Op, Plan, PlanError, Reach, Step, exposures, pod_quarantine,
                                            pod_release, reaches, workload_policy, workload_quarantine,
                                            workload_rollback)

NS, IDENTITY, INSTANCE = "shop", "shop.deploy.api", "inst-api-1"
# (quarantine held, carved out, backend needs a carve-out): a carve-out exists only where the backend makes one.
starts = st.tuples(st.booleans(), st.booleans(), st.booleans()).filter(lambda s: s[2] or not s[1])


def test_a_quarantine_lands_before_its_carve_out_and_a_release_ends_the_carve_out_first() -> None:
    assert pod_quarantine(NS, IDENTITY, INSTANCE, carve_out=True).ops() == (Op.ENSURE_QUARANTINE, Op.CARVE_OUT)
    assert pod_release(NS, IDENTITY, INSTANCE, carve_out=True).ops() == (Op.END_CARVE_OUT, Op.REMOVE_QUARANTINE)
    # An admin-tier Deny is final: nothing to carve out of.
    assert pod_quarantine(NS, IDENTITY, INSTANCE, carve_out=False).ops() == (Op.ENSURE_QUARANTINE,)
    assert pod_release(NS, IDENTITY, INSTANCE, carve_out=False).ops() == (Op.REMOVE_QUARANTINE,)


@given(starts)
def test_every_state_on_the_way_to_a_quarantine_is_at_most_as_exposed_as_the_one_before(start) -> None:
    held, carved, carve_out = start
    seen = exposures(pod_quarantine(NS, IDENTITY, INSTANCE, carve_out=carve_out), held=held, carved=carved,
                     carve_out=carve_out)
    assert all(after <= before for before, after in zip(seen, seen[1:])), seen
    assert seen[-1] == Exposure.ISOLATED


@given(starts)
def test_no_state_on_the_way_out_of_a_quarantine_is_more_exposed_than_the_end(start) -> None:
    held, carved, carve_out = start
    seen = exposures(pod_release(NS, IDENTITY, INSTANCE, carve_out=carve_out), held=held, carved=carved,
                     carve_out=carve_out)
    assert all(state <= seen[-1] for state in seen[1:]), seen
    assert seen[-1] == Exposure.WORKLOAD


def test_the_wrong_order_opens_the_pod_and_a_step_without_its_precondition_is_refused() -> None:
    carve_first = Plan((Step(Op.CARVE_OUT, NS, IDENTITY, INSTANCE), Step(Op.ENSURE_QUARANTINE, NS, IDENTITY, INSTANCE)))
    assert exposures(carve_first, held=False, carved=False, carve_out=True)[1] == Exposure.OPEN
    guarded = Plan(tuple(reversed(pod_quarantine(NS, IDENTITY, INSTANCE, carve_out=True).steps)))
    with pytest.raises(PlanError, match=str(Fact.QUARANTINE_HELD)):
        exposures(guarded, held=False, carved=False, carve_out=True)
    remove_first = Plan(tuple(reversed(pod_release(NS, IDENTITY, INSTANCE, carve_out=True).steps)))
    with pytest.raises(PlanError, match=str(Fact.CARVED_OUT)):
        exposures(remove_first, held=True, carved=True, carve_out=True)


# --- a workload ----------------------------------------------------------------------------------
STEPS = [names.STEP_BASELINE, names.STEP_TIGHTENED, names.STEP_QUARANTINED]
#: (the admin-tier Deny held, the step the workload's policy is at, the backend is admin-tier): a Deny
#: exists only on that backend.
workload_starts = st.tuples(st.booleans(), st.sampled_from(STEPS), st.booleans()).filter(lambda s: s[2] or not s[0])


def test_a_workload_quarantine_on_the_admin_tier_lands_its_deny_before_its_own_policy_narrows() -> None:
    assert workload_quarantine(NS, IDENTITY, deny=True).ops() == (Op.ENSURE_WORKLOAD_DENY, Op.WRITE_WORKLOAD_POLICY)
    assert workload_quarantine(NS, IDENTITY, deny=False).ops() == (Op.WRITE_WORKLOAD_POLICY,)
    assert {s.to_step for s in workload_quarantine(NS, IDENTITY, deny=True).steps} - {None} == {names.STEP_QUARANTINED}


@given(workload_starts)
def test_every_state_on_the_way_to_a_workload_quarantine_is_at_most_as_exposed_as_the_one_before(start) -> None:
    held, step, deny = start
    seen = reaches(workload_quarantine(NS, IDENTITY, deny=deny), deny_held=held, policy_step=step)
    assert all(after <= before for before, after in zip(seen, seen[1:])), seen
    assert seen[-1] == (Reach.DENIED if deny else Reach.QUARANTINED)


def test_a_workload_policy_narrowed_before_its_deny_is_refused() -> None:
    narrow_first = Plan(tuple(reversed(workload_quarantine(NS, IDENTITY, deny=True).steps)))
    with pytest.raises(PlanError, match=str(Fact.DENY_HELD)):
        reaches(narrow_first, deny_held=False, policy_step=names.STEP_BASELINE)


def test_a_tighten_or_relax_writes_the_workload_policy_and_only_then_lifts_a_deny_left_on_the_admin_tier() -> None:
    for to_step in (names.STEP_TIGHTENED, names.STEP_BASELINE):
        assert workload_policy(NS, IDENTITY, to_step, deny=False).ops() == (Op.WRITE_WORKLOAD_POLICY,)
        assert workload_policy(NS, IDENTITY, to_step, deny=True).ops() == (Op.WRITE_WORKLOAD_POLICY,
                                                                           Op.REMOVE_WORKLOAD_DENY)


@given(workload_starts.filter(lambda s: not s[0] and s[1] != names.STEP_QUARANTINED))
def test_every_state_on_the_way_to_a_tightening_is_at_most_as_exposed_as_the_one_before(start) -> None:
    """From where the engine tightens (its declared or learned baseline, no Deny)."""
    _held, step, deny = start
    seen = reaches(workload_policy(NS, IDENTITY, names.STEP_TIGHTENED, deny=deny), deny_held=False, policy_step=step)
    assert all(after <= before for before, after in zip(seen, seen[1:])), seen
    assert seen[-1] == Reach.TIGHTENED


@given(workload_starts, st.sampled_from([names.STEP_TIGHTENED, names.STEP_BASELINE]))
def test_no_state_on_the_way_to_a_tighten_or_relax_is_more_exposed_than_where_it_starts_or_ends(start, to_step) -> None:
    """From any start, a Deny left over included: the workload never passes through more than both ends
    allow; on the way down (a relax) no state is more exposed than the end."""
    held, step, deny = start
    seen = reaches(workload_policy(NS, IDENTITY, to_step, deny=deny), deny_held=held, policy_step=step)
    assert all(state <= max(seen[0], seen[-1]) for state in seen), seen
    if seen[0] <= seen[-1]:
        assert all(state <= seen[-1] for state in seen), seen
    assert seen[-1] == (Reach.TIGHTENED if to_step == names.STEP_TIGHTENED else Reach.BASELINE)


def test_a_deny_lifted_before_the_workload_policy_is_written_is_refused() -> None:
    lift_first = Plan(tuple(reversed(workload_policy(NS, IDENTITY, names.STEP_TIGHTENED, deny=True).steps)))
    with pytest.raises(PlanError, match=str(Fact.POLICY_WRITTEN)):
        reaches(lift_first, deny_held=True, policy_step=names.STEP_QUARANTINED)


@given(workload_starts, st.sampled_from([names.STEP_TIGHTENED, names.STEP_BASELINE]))
def test_a_rollback_is_one_write_and_passes_through_nothing_more_exposed_than_its_end(start, to_step) -> None:
    held, step, _deny = start
    plan = workload_rollback(NS, IDENTITY, to_step)
    assert plan.ops() == (Op.WRITE_WORKLOAD_POLICY,)  # no Deny lifted: a rollback undoes a tightening
    seen = reaches(plan, deny_held=held, policy_step=step)
    assert all(state <= max(seen[0], seen[-1]) for state in seen), seen
