"""The validating webhook warns about allow-all NetworkPolicies of users, and never refuses one."""

from __future__ import annotations

from typing import Any

from netwarden.model import names
from netwarden.model.admission import AdmissionSettings
from netwarden.webhook.admission import build_response, decide_update


def review(policy: dict[str, Any], operation: str = "CREATE") -> dict[str, Any]:
    return {"uid": "u1", "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy"},
            "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "networkpolicies"},
            "operation": operation, "namespace": "shop", "name": policy["metadata"]["name"], "object": policy,
            "userInfo": {"username": "alice"}}


def test_an_allow_all_policy_is_admitted_with_a_warning_naming_it_and_the_direction() -> None:
    policy = {"metadata": {"name": "open", "namespace": "shop"},
              "spec": {"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}}
    decision = decide_update(review(policy), AdmissionSettings())
    assert decision.allowed and len(decision.warnings) == 1
    assert "shop/open" in decision.warnings[0] and "all ingress for every pod" in decision.warnings[0]
    assert build_response("admission.k8s.io/v1", "u1", decision)["response"]["warnings"] == list(decision.warnings)


def test_a_narrow_or_netwarden_policy_gets_no_warning() -> None:
    narrow = {"metadata": {"name": "web", "namespace": "shop"},
              "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]}}
    ours = {"metadata": {"name": "netwarden-x", "namespace": "shop",
                         "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE}},
            "spec": {"podSelector": {}, "ingress": [{}]}}
    netwarden_writes = AdmissionSettings(trusted_usernames=frozenset({"alice"}))
    for policy in (narrow, ours):
        decision = decide_update(review(policy), netwarden_writes)
        assert decision.allowed and decision.warnings == ()
