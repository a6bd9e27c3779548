"""netwarden's own NetworkPolicies are written by netwarden only: the marks it trusts on them (the
managed-by label, its spec hash, a proposal it replays, the history a rollback returns to) cannot be
forged by whoever else may write NetworkPolicies in the namespace."""

from __future__ import annotations

import copy
from typing import Any

from netwarden.model import names
from netwarden.model.admission import AdmissionSettings
from netwarden.webhook.admission import decide_update

RECONCILER = "system:serviceaccount:netwarden:netwarden-reconciler"
SETTINGS = AdmissionSettings(trusted_usernames=frozenset({RECONCILER}), policy_writers=frozenset({"ops@example.com"}))
OURS: dict[str, Any] = {
    "metadata": {"name": "netwarden-deploy-web", "namespace": "shop",
                 "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE, names.LABEL_IDENTITY: "shop.deploy.web",
                            names.LABEL_POLICY_ROLE: names.ROLE_BASELINE},
                 "annotations": {names.ANNOTATION_SPEC_HASH: "0" * 32, names.ANNOTATION_REVISION: "2",
                                 names.ANNOTATION_PENDING: '{"manifests": [], "deletes": []}'}},
    "spec": {"podSelector": {"matchLabels": {names.LABEL_IDENTITY: "shop.deploy.web"}}, "policyTypes": ["Ingress"]}}


def review(new: dict[str, Any], old: dict[str, Any] | None, user: str) -> dict[str, Any]:
    return {"uid": "u1", "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy"},
            "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "networkpolicies"},
            "operation": "UPDATE" if old is not None else "CREATE", "namespace": "shop",
            "name": new["metadata"]["name"], "object": new, "oldObject": old, "userInfo": {"username": user}}


def edited(change: Any) -> dict[str, Any]:
    policy = copy.deepcopy(OURS)
    change(policy["metadata"]["labels"], policy["metadata"]["annotations"], policy)
    return policy


def test_only_netwarden_and_the_listed_operators_create_a_policy_labelled_as_netwardens() -> None:
    refused = decide_update(review(OURS, None, "alice"), SETTINGS)
    assert not refused.allowed and refused.code == 403
    assert names.LABEL_MANAGED_BY in refused.message and "alice" in refused.message
    assert decide_update(review(OURS, None, RECONCILER), SETTINGS).allowed
    assert decide_update(review(OURS, None, "ops@example.com"), SETTINGS).allowed


def test_forging_a_mark_netwarden_trusts_is_refused_naming_it() -> None:
    forgeries = {
        f"annotation {names.ANNOTATION_SPEC_HASH}": lambda labels, notes, p: notes.update({names.ANNOTATION_SPEC_HASH: "f" * 32}),
        f"annotation {names.ANNOTATION_PENDING}": lambda labels, notes, p: notes.update(
            {names.ANNOTATION_PENDING: '{"manifests": [], "deletes": [["shop", "netwarden-quarantine-web"]]}'}),
        f"annotation {names.ANNOTATION_HISTORY}": lambda labels, notes, p: notes.update({names.ANNOTATION_HISTORY: "{}"}),
        f"label {names.LABEL_IDENTITY}": lambda labels, notes, p: labels.update({names.LABEL_IDENTITY: "bank.deploy.vault"}),
        f"label {names.LABEL_MANAGED_BY}": lambda labels, notes, p: labels.pop(names.LABEL_MANAGED_BY),
        f"annotation {names.ANNOTATION_REVISION}": lambda labels, notes, p: notes.pop(names.ANNOTATION_REVISION),
    }
    for mark, change in forgeries.items():
        decision = decide_update(review(edited(change), OURS, "alice"), SETTINGS)
        assert not decision.allowed and decision.code == 403, mark
        assert mark in decision.message, decision.message
        assert decide_update(review(edited(change), OURS, RECONCILER), SETTINGS).allowed, mark


def test_a_users_own_policy_may_not_take_netwardens_label() -> None:
    mine = {"metadata": {"name": "mine", "namespace": "shop", "labels": {}}, "spec": {"podSelector": {}, "ingress": [{}]}}
    claimed = copy.deepcopy(mine)
    claimed["metadata"]["labels"][names.LABEL_MANAGED_BY] = names.MANAGED_BY_VALUE
    assert not decide_update(review(claimed, mine, "alice"), SETTINGS).allowed


def test_approving_rejecting_adopting_and_editing_the_spec_stay_the_users() -> None:
    allowed = [
        lambda labels, notes, p: notes.update({names.ANNOTATION_APPROVE: "true"}),
        lambda labels, notes, p: notes.pop(names.ANNOTATION_PENDING),  # a rejection takes the proposal off
        lambda labels, notes, p: notes.update({names.ANNOTATION_ADOPTED: "true"}),
        lambda labels, notes, p: p["spec"].update({"ingress": [{}]}),  # restored by netwarden unless adopted
        lambda labels, notes, p: labels.update({"team": "payments"}),
    ]
    for change in allowed:
        assert decide_update(review(edited(change), OURS, "alice"), SETTINGS).allowed


def test_a_malformed_managed_policy_gets_a_well_formed_refusal() -> None:
    broken = copy.deepcopy(OURS)
    broken["metadata"]["annotations"] = ["not", "a", "map"]
    decision = decide_update(review(broken, OURS, "alice"), SETTINGS)
    assert not decision.allowed and decision.code == 400
