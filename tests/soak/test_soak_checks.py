"""The soak's oracle (bench/soak.py `intended_violations`) on hand-made snapshots: it must see each kind
of divergence, and nothing in a cluster that is as it should be, or a clean soak would prove nothing."""

from __future__ import annotations

from typing import Any

from bench.soak import Memory, Snapshot, admission_labels, intended_violations, verified_parents
from netwarden.model import names
from netwarden.model.labels import NamespaceFacts

NOW = 1_800_000_000.0
GRACE = 10.0
SHOP = {"metadata": {"name": "shop", "annotations": {names.ANNOTATION_INJECT: names.INJECT_ENABLED}}}
PLAIN = {"metadata": {"name": "plain"}}
DEPLOY_REF = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api", "uid": "d-1", "controller": True}
RS = {"metadata": {"name": "api-abc", "namespace": "shop", "uid": "r-1", "ownerReferences": [DEPLOY_REF]}}
RS_REF = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-abc", "uid": "r-1", "controller": True}


def pod(name: str, *, namespace: str = "shop", instance: str | None = None, extra: dict[str, str] | None = None,
        labelled: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": name, "namespace": namespace, "uid": f"u-{name}",
                                         "labels": {"app": "api", "pod-template-hash": "abc"},
                                         "ownerReferences": [RS_REF] if namespace == "shop" else []},
                            "spec": {"containers": [{"name": "api", "image": "x", "ports": [{"containerPort": 8080}]}]},
                            "status": {"phase": "Running", "podIP": "10.0.0.1"}}
    if labelled and namespace == "shop":
        facts = NamespaceFacts("shop", {}, dict(SHOP["metadata"]["annotations"]))
        labels, _ = admission_labels(body, facts, verified_parents(body, {("shop", "ReplicaSet", "api-abc"): RS}) or {})
        body["metadata"]["labels"].update(labels)
        body["metadata"]["labels"][names.LABEL_INSTANCE] = instance or f"i-{name}"
    body["metadata"]["labels"].update(extra or {})
    return body


def policy(name: str, identity: str, role: str = names.ROLE_BASELINE, namespace: str = "shop", created: float = NOW - 3600,
           **annotations: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "annotations": annotations,
                         "creationTimestamp": iso(created),
                         "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE, names.LABEL_IDENTITY: identity,
                                    names.LABEL_POLICY_ROLE: role}}, "spec": {}}


def check(pods: list[dict], policies: list[dict], memory: Memory | None = None) -> dict[tuple[str, str], tuple[str, float]]:
    return intended_violations(Snapshot(NOW, pods, [RS], [], [SHOP, PLAIN], policies), memory or Memory(), GRACE)


def iso(epoch: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat().replace("+00:00", "Z")


BASELINE = policy("netwarden-deploy-api", "shop.deploy.api")


def test_a_cluster_as_it_should_be_has_no_divergence() -> None:
    plain = pod("web", namespace="plain", labelled=False)
    assert check([pod("api-abc-1"), pod("api-abc-2"), plain], [BASELINE]) == {}


def test_wrong_missing_or_shared_labels_are_divergences() -> None:
    wrong = pod("api-abc-1", extra={names.LABEL_IDENTITY: "shop.deploy.database"})
    unlabelled = pod("api-abc-2", labelled=False)
    twin = pod("api-abc-3", instance="i-api-abc-4")
    spoofer = pod("web", namespace="plain", labelled=False, extra={names.LABEL_IDENTITY: "shop.deploy.api"})
    found = check([wrong, unlabelled, twin, pod("api-abc-4"), spoofer], [BASELINE])
    assert set(found) == {("labels", "shop/api-abc-1"), ("labels", "shop/api-abc-2"), ("labels", "plain/web"),
                          ("instance-duplicate", "i-api-abc-4")}


def test_a_live_workload_without_its_baseline_or_with_two_is_a_divergence() -> None:
    assert set(check([pod("api-abc-1")], [])) == {("missing-baseline", "shop.deploy.api")}
    twice = [BASELINE, policy("netwarden-deploy-api-2", "shop.deploy.api")]
    assert set(check([pod("api-abc-1")], twice)) == {("duplicate-baseline", "shop.deploy.api")}


def test_a_policy_outliving_its_workload_past_the_grace_is_due_when_the_grace_ended() -> None:
    memory = Memory(last_live={"shop.deploy.api": NOW - GRACE + 1})
    assert check([], [BASELINE], memory) == {}
    memory = Memory(last_live={"shop.deploy.api": NOW - GRACE - 5})
    found = check([], [BASELINE], memory)
    assert list(found) == [("stale-policy", "shop/netwarden-deploy-api")]
    assert found[("stale-policy", "shop/netwarden-deploy-api")][1] == NOW - 5


def test_a_policy_made_for_pods_the_snapshot_missed_is_not_stale() -> None:
    """Pods are read before policies: a baseline written in between, for pods created in between, is new."""
    memory = Memory(last_live={"shop.deploy.api": NOW - 60})
    assert check([], [policy("netwarden-deploy-api", "shop.deploy.api", created=NOW - 1)], memory) == {}


def test_quarantines_only_for_live_pods_and_until_they_expire() -> None:
    live = pod("api-abc-1")
    fine = policy("netwarden-quarantine-a", "shop.deploy.api", names.ROLE_QUARANTINE,
                  **{names.ANNOTATION_TARGET_POD: "i-api-abc-1", names.ANNOTATION_EXPIRES_AT: iso(NOW + 30)})
    assert check([live], [BASELINE, fine]) == {}
    expired = policy("netwarden-quarantine-b", "shop.deploy.api", names.ROLE_QUARANTINE,
                     **{names.ANNOTATION_TARGET_POD: "i-api-abc-1", names.ANNOTATION_EXPIRES_AT: iso(NOW - 30)})
    orphan = policy("netwarden-quarantine-c", "shop.deploy.api", names.ROLE_QUARANTINE,
                    **{names.ANNOTATION_TARGET_POD: "i-gone"})
    found = check([live], [BASELINE, expired, orphan])
    assert set(found) == {("expired-quarantine", "shop/netwarden-quarantine-b"), ("orphan-quarantine", "shop/netwarden-quarantine-c")}
    assert found[("expired-quarantine", "shop/netwarden-quarantine-b")][1] == NOW - 30


def test_an_expired_tightening_and_a_policy_where_netwarden_is_not_asked_are_divergences() -> None:
    tightened = policy("netwarden-deploy-api", "shop.deploy.api", **{names.ANNOTATION_STEP: names.STEP_TIGHTENED,
                                                                     names.ANNOTATION_EXPIRES_AT: iso(NOW - 1)})
    stray = policy("netwarden-deploy-web", "plain.deploy.web", namespace="plain")
    found = check([pod("api-abc-1")], [tightened, stray], Memory(last_live={"plain.deploy.web": NOW}))
    assert set(found) == {("expired-step", "shop/netwarden-deploy-api"), ("unexpected-policy", "plain/netwarden-deploy-web")}
    # Still expired while the workload has no pod (a scale to zero does not end it; the cleanup does).
    assert set(check([], [tightened], Memory(last_live={"shop.deploy.api": NOW}))) == {
        ("expired-step", "shop/netwarden-deploy-api")}
