"""The adapter takes a decision's planned steps in order (netwarden/reconciler/core/plan.py): the writes a
workload decision makes, and their order, on the NetworkPolicy backend and on the admin-tier one."""

from __future__ import annotations

from typing import Any

import pytest

from netwarden.model import names
from netwarden.model.policy import DnsTarget, PolicyIntent, workload_quarantine_intent
from netwarden.reconciler.core.decision import Action, Decision, Effect
from netwarden.reconciler.decisions import Decisions

NS, IDENTITY, HOLDER = "shop", "shop.deploy.api", "netwarden-deploy-api"


class Recorder:
    """Writer, index, quarantines, queue and admin tier in one: each write is a line in `calls`."""

    def __init__(self, *, fail_deny: bool = False) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail_deny = fail_deny
        self.holder = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                       "metadata": {"name": HOLDER, "namespace": NS, "annotations": {},
                                    "labels": {names.LABEL_IDENTITY: IDENTITY,
                                               names.LABEL_POLICY_ROLE: names.ROLE_BASELINE}},
                       "spec": {"podSelector": {}}}
        self.api = type("Api", (), {"kind": "ClusterNetworkPolicy"})()

    # index
    def policies_of(self, identity: str) -> list[dict]:
        return [self.holder] if self.holder["metadata"]["labels"][names.LABEL_IDENTITY] == identity else []

    def pod(self, namespace: str, name: str) -> None:
        return None

    def pod_by_instance(self, instance: str) -> None:
        return None

    # writer
    def apply(self, change: Any, *args: Any, **kwargs: Any) -> Any:
        if not hasattr(change, "manifest"):  # the admin tier's apply(intent, ...)
            if self.fail_deny:
                raise RuntimeError("the Deny's write failed")
            self.calls.append(("deny", change.identity, change.step))
            return {}
        metadata = change.manifest["metadata"]
        annotations = {**(metadata.get("annotations") or {}), **(change.annotations or {})}  # the writer merges them
        self.calls.append(("policy", metadata["name"], annotations[names.ANNOTATION_STEP]))
        return None

    def lift(self, namespace: str, identity: str, instance: str | None, **kwargs: Any) -> bool:
        self.calls.append(("lift", identity))
        return True

    def audit_log(self, record: dict) -> None:
        pass

    # quarantines, queue
    def exclusions_for(self, namespace: str, identity: str, **kwargs: Any) -> set[str]:
        return set()

    def align(self, manifest: dict, **kwargs: Any) -> dict:
        return manifest

    def add(self, key: str) -> None:
        pass

    def add_rate_limited(self, key: str) -> float:
        self.calls.append(("retry", key))
        return 0.1

    def forget(self, key: str) -> None:
        pass


def decisions(recorder: Recorder, *, admin: bool) -> Decisions:
    return Decisions(recorder, recorder, recorder, recorder, DnsTarget(), lambda: 100.0,  # type: ignore[arg-type]
                     lambda: recorder if admin else None)


def decision(action: Action, intent: PolicyIntent, step_before: str, step_after: str) -> Decision:
    return Decision(action, IDENTITY, NS, 100.0, names.MODE_ENFORCE, Effect.WRITE, "because", 42.0, step_before,
                    step_after, intents=(intent,), expires_at=200.0)


def quarantine_workload() -> Decision:
    return decision(Action.QUARANTINE_WORKLOAD, workload_quarantine_intent(NS, IDENTITY), names.STEP_TIGHTENED,
                    names.STEP_QUARANTINED)


@pytest.mark.parametrize("admin, expected", [
    (False, [("policy", HOLDER, names.STEP_QUARANTINED)]),
    (True, [("deny", IDENTITY, names.STEP_QUARANTINED), ("policy", HOLDER, names.STEP_QUARANTINED)]),
])
def test_a_workload_quarantine_writes_its_deny_first_on_the_admin_tier(admin: bool, expected: list) -> None:
    recorder = Recorder()
    decisions(recorder, admin=admin).apply_decision(quarantine_workload())
    assert recorder.calls == expected


def test_a_workload_quarantine_whose_deny_fails_does_not_narrow_its_policy_yet_and_is_retried_whole() -> None:
    recorder = Recorder(fail_deny=True)
    carrier = decisions(recorder, admin=True)
    carrier.apply_decision(quarantine_workload())
    assert recorder.calls == [("retry", f"wd:{NS}/{IDENTITY}")]  # nothing written; kept for the queue
    assert list(carrier.pending_workload_work()) == [(NS, IDENTITY)]
    recorder.fail_deny, recorder.calls = False, []
    carrier.retry_workload_write(NS, IDENTITY)
    assert recorder.calls == [("deny", IDENTITY, names.STEP_QUARANTINED), ("policy", HOLDER, names.STEP_QUARANTINED)]
    assert carrier.pending_workload_work() == {}


@pytest.mark.parametrize("action, to_step", [(Action.TIGHTEN, names.STEP_TIGHTENED), (Action.RELAX, names.STEP_TIGHTENED),
                                             (Action.RELAX, names.STEP_BASELINE)])
@pytest.mark.parametrize("admin", [False, True])
def test_a_tighten_or_relax_writes_the_workload_policy_then_lifts_a_deny_on_the_admin_tier(action, to_step, admin) -> None:
    recorder = Recorder()
    intent = PolicyIntent(NS, IDENTITY, step=to_step)
    decisions(recorder, admin=admin).apply_decision(decision(action, intent, names.STEP_QUARANTINED, to_step))
    assert recorder.calls == [("policy", HOLDER, to_step)] + ([("lift", IDENTITY)] if admin else [])


@pytest.mark.parametrize("admin", [False, True])
def test_an_automatic_rollback_writes_the_workload_policy_once_and_lifts_nothing(admin: bool) -> None:
    recorder = Recorder()
    rollback = decision(Action.ROLLBACK, PolicyIntent(NS, IDENTITY), names.STEP_TIGHTENED, names.STEP_BASELINE)
    decisions(recorder, admin=admin).apply_decision(rollback)
    assert recorder.calls == [("policy", HOLDER, names.STEP_BASELINE)]
    recorder.holder["metadata"]["labels"][names.LABEL_IDENTITY] = "another"  # no workload policy: nothing to write
    recorder.calls.clear()
    decisions(recorder, admin=admin).apply_decision(rollback)
    assert recorder.calls == []
