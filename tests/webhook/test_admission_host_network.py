"""Issue 12 item 4 at admission: a hostNetwork pod is labelled (it is still a workload's pod) and warned,
but no baseline is written for it: NetworkPolicy does not apply to it (netwarden.model.reach, shared with the
reconciler)."""

from __future__ import annotations

from netwarden.model import names
from netwarden.model.labels import NamespaceFacts
from netwarden.model.reach import HOST_NETWORK_REASON, outside_policy_reach
from netwarden.model.admission import AdmissionSettings
from netwarden.webhook.admission import OUTCOME_LABELLED, decide_admission

SHOP = NamespaceFacts("shop", {names.LABEL_INJECT: names.INJECT_ENABLED})


def request(host_network: bool | None) -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "x"}]}
    if host_network is not None:
        spec["hostNetwork"] = host_network
    return {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "shop",
            "operation": "CREATE", "userInfo": {"username": "tester"}, "dryRun": False,
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent"}, "spec": spec}}


def test_a_host_network_pod_is_labelled_and_warned_and_gets_no_baseline() -> None:
    decision = decide_admission(request(True), SHOP, {}, "inst-1", AdmissionSettings())
    assert decision.outcome == OUTCOME_LABELLED and decision.labels[names.LABEL_IDENTITY] == "shop.pod.agent"
    assert decision.policy_manifest is None
    assert f"netwarden: {HOST_NETWORK_REASON}" in decision.warnings


def test_other_pods_still_get_their_baseline_and_no_such_warning() -> None:
    for host_network in (False, None):
        decision = decide_admission(request(host_network), SHOP, {}, "inst-1", AdmissionSettings())
        assert decision.policy_manifest is not None
        assert not any("hostNetwork" in w for w in decision.warnings)


def test_the_predicate_tolerates_malformed_pods() -> None:
    for pod in ({}, {"spec": None}, {"spec": []}, {"spec": {"hostNetwork": "true"}}):
        assert outside_policy_reach(pod) is None
