"""Workload identity resolution from trusted sources."""

from __future__ import annotations

import json

from hypothesis import given, strategies as st

import pytest

from netwarden.model.identity import (
    DEFAULT_POD_CREATORS,
    OwnerRef,
    PodCreators,
    PodOrigin,
    Workload,
    guess_workload,
    namespace_of_identity,
    resolve_workload,
    verify_owners,
)
from netwarden.model.labelvalues import is_valid_label_value
from tests.support.data import PAYLOADS

DATA = PAYLOADS / "admission"

RS = OwnerRef("apps/v1", "ReplicaSet", "api-7d9f8b6c5d", "rs-uid", controller=True)
DEPLOY = OwnerRef("apps/v1", "Deployment", "api", "deploy-uid", controller=True)
#: The users upstream kube-controller-manager (--use-service-account-credentials) creates pods as.
RS_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"
CREATORS = {"ReplicaSet": RS_CONTROLLER, "Job": "system:serviceaccount:kube-system:job-controller",
            "StatefulSet": "system:serviceaccount:kube-system:statefulset-controller",
            "DaemonSet": "system:serviceaccount:kube-system:daemon-set-controller"}


def made_by(kind: str, namespace: str, name: str, generate_name: str, labels: dict[str, str],
            refs: tuple[OwnerRef, ...]) -> PodOrigin:
    """A pod as that kind's controller creates it."""
    return PodOrigin(namespace, name, generate_name, labels, refs, creator=CREATORS.get(kind))


def test_replicaset_owner_fetched_from_api_resolves_to_deployment_with_verified_owner() -> None:
    pod = made_by("ReplicaSet", "shop", "", "api-7d9f8b6c5d-", {"pod-template-hash": "7d9f8b6c5d"}, (RS,))
    workload = resolve_workload(pod, {("ReplicaSet", RS.name): [DEPLOY]})
    assert workload == Workload("shop", "Deployment", "api", DEPLOY)
    assert workload.identity == "shop.deploy.api"


def test_an_unverified_replicaset_gives_the_pod_its_own_bare_identity_never_the_deployments() -> None:
    # the forged-owner finding: a ReplicaSet reference nobody verified (absent, wrong uid, API down)
    # plus a pod-template-hash label used to yield shop.deploy.api
    pod = made_by("ReplicaSet", "shop", "api-7d9f8b6c5d-x1", "", {"pod-template-hash": "7d9f8b6c5d"}, (RS,))
    for parents in ({("ReplicaSet", RS.name): None}, {}):
        workload = resolve_workload(pod, parents)
        assert workload == Workload("shop", "Pod", "api-7d9f8b6c5d-x1")
        assert workload.identity == "shop.pod.api-7d9f8b6c5d-x1"


def test_a_forged_deployment_reference_on_a_bare_pod_gives_its_own_identity() -> None:
    pod = PodOrigin("shop", "evil", "", {}, (DEPLOY,))
    # even if an adapter claimed to have verified it: a Deployment never owns pods directly
    assert resolve_workload(pod, {("Deployment", "api"): []}) == Workload("shop", "Pod", "evil")
    odd = OwnerRef("example.com/v1", "Odd~Kind", "x", "u", controller=True)
    assert resolve_workload(PodOrigin("shop", "p", "", {}, (odd,)), {("Odd~Kind", "x"): []}).identity == "shop.pod.p"


def test_a_deployment_above_a_verified_replicaset_counts_unless_reported_unverified() -> None:
    pod = made_by("ReplicaSet", "shop", "", "api-7d9f8b6c5d-", {}, (RS,))
    verified = {("ReplicaSet", RS.name): [DEPLOY], ("Deployment", "api"): []}
    assert resolve_workload(pod, verified) == Workload("shop", "Deployment", "api", DEPLOY)
    refuted = {("ReplicaSet", RS.name): [DEPLOY], ("Deployment", "api"): None}
    assert resolve_workload(pod, refuted) == Workload("shop", "ReplicaSet", RS.name, RS)


def test_offline_guess_uses_names_only_for_replay() -> None:
    pod = PodOrigin("shop", "", "api-7d9f8b6c5d-", {"pod-template-hash": "7d9f8b6c5d"}, (RS,))
    assert guess_workload(pod) == Workload("shop", "Deployment", "api")


def test_job_created_by_cronjob_resolves_to_cronjob() -> None:
    job = OwnerRef("batch/v1", "Job", "backup-28912345", "job-uid", controller=True)
    cron = OwnerRef("batch/v1", "CronJob", "backup", "cron-uid", controller=True)
    pod = made_by("Job", "ops", "", "backup-28912345-", {}, (job,))
    assert resolve_workload(pod, {("Job", job.name): [cron]}) == Workload("ops", "CronJob", "backup", cron)
    assert resolve_workload(pod, {("Job", job.name): []}) == Workload("ops", "Job", job.name, job)


def test_statefulset_and_daemonset_are_their_own_workloads() -> None:
    for kind in ("StatefulSet", "DaemonSet"):
        ref = OwnerRef("apps/v1", kind, "db", "uid", controller=True)
        pod = made_by(kind, "shop", "db-0", "", {}, (ref,))
        assert resolve_workload(pod, {(kind, "db"): []}) == Workload("shop", kind, "db", ref)
        assert resolve_workload(pod, {}) == Workload("shop", "Pod", "db-0")


def test_a_generate_name_bare_pod_is_named_by_stem_and_instance_before_and_after_the_name_is_generated() -> None:
    instance = "2d17dd5a-6757-4248-b1ae-1074c267529c"
    before = resolve_workload(PodOrigin("ns", "", "debug-", instance=instance))
    after = resolve_workload(PodOrigin("ns", "debug-x7k2p", "debug-", instance=instance))
    assert before == after and before.identity == "ns.pod.debug_1074c267529c"
    assert resolve_workload(PodOrigin("ns", "nginx")).identity == "ns.pod.nginx"


def test_two_generate_name_bare_pods_never_share_an_identity_nor_one_with_a_named_pod() -> None:
    # the stem alone made every `web-` pod, and a pod named `web`, one workload: one baseline
    # (whoever came first wrote it), one risk score, one workload quarantine
    first = resolve_workload(PodOrigin("ns", "", "web-", instance="2d17dd5a-6757-4248-b1ae-1074c267529c"))
    second = resolve_workload(PodOrigin("ns", "", "web-", instance="9b2e0c4f-1a3d-4e5f-8a6b-7c8d9e0f1a2b"))
    named = {resolve_workload(PodOrigin("ns", name)).identity
             for name in ("web", "web-1074c267529c", "web.1074c267529c", first.name.replace("_", "-"))}
    assert first.identity != second.identity
    assert first.identity not in named and second.identity not in named
    assert is_valid_label_value(first.identity)


@pytest.mark.parametrize("kind", ["ReplicaSet", "Job", "StatefulSet", "DaemonSet"])
def test_a_controller_owner_counts_only_when_its_controller_created_the_pod(kind: str) -> None:
    # a uid is no secret: whoever can get the ReplicaSet can name it exactly, and the API server
    # lets any pod creator write that reference (OwnerReferencesPermissionEnforcement, off by
    # default, only guards blockOwnerDeletion). Only the controller's own request is believed.
    ref = OwnerRef("apps/v1", kind, "db", "the-right-uid", controller=True)
    parents = {(kind, "db"): []}
    for creator in ("alice", "system:serviceaccount:shop:default", "system:admin", None,
                    "system:serviceaccount:kube-system:other-controller"):
        pod = PodOrigin("shop", "evil", "", {}, (ref,), creator=creator)
        assert resolve_workload(pod, parents) == Workload("shop", "Pod", "evil"), creator
    by_controller = PodOrigin("shop", "db-0", "", {}, (ref,), creator=CREATORS[kind])
    assert resolve_workload(by_controller, parents).kind == kind
    # kube-controller-manager without --use-service-account-credentials acts as itself for all kinds
    by_manager = PodOrigin("shop", "db-0", "", {}, (ref,), creator="system:kube-controller-manager")
    assert resolve_workload(by_manager, parents).kind == kind
    # another kind's controller is not this kind's
    other = next(user for k, user in CREATORS.items() if k != kind)
    assert resolve_workload(PodOrigin("shop", "db-0", "", {}, (ref,), creator=other), parents).kind == "Pod"


def test_owners_are_fetched_only_for_a_claim_that_can_count_and_both_levels_are_verified() -> None:
    fetched: list[OwnerRef] = []

    def fetch(ref: OwnerRef) -> list[OwnerRef] | None:
        fetched.append(ref)
        return [DEPLOY] if ref == RS else None

    forged = PodOrigin("shop", "evil", "", {}, (RS,), creator="alice")
    assert verify_owners(forged, PodCreators.parse(DEFAULT_POD_CREATORS), fetch) == {} and fetched == []
    real = made_by("ReplicaSet", "shop", "", "api-7d9f8b6c5d-", {}, (RS,))
    parents = verify_owners(real, PodCreators.parse(DEFAULT_POD_CREATORS), fetch)
    assert fetched == [RS, DEPLOY]
    assert parents == {("ReplicaSet", RS.name): [DEPLOY], ("Deployment", "api"): None}
    assert resolve_workload(real, parents) == Workload("shop", "ReplicaSet", RS.name, RS)
    # a creator already judged at admission (the pod wears netwarden's identity label) skips the rule
    checked = PodOrigin("shop", "api-1", "", {}, (RS,), creator=None, creator_checked=True)
    assert set(verify_owners(checked, PodCreators(), fetch)) == {("ReplicaSet", RS.name), ("Deployment", "api")}


def test_pod_creators_are_configurable_and_bad_entries_are_named() -> None:
    creators = PodCreators.parse(["ReplicaSet=my-rs-operator", "*=system:kube-controller-manager"])
    assert creators.may_create_for("ReplicaSet", "my-rs-operator")
    assert not creators.may_create_for("Job", "my-rs-operator")
    assert creators.may_create_for("Job", "system:kube-controller-manager")
    assert not creators.may_create_for("ReplicaSet", None)
    for bad in ("ReplicaSet", "Deployment=x", "ReplicaSet="):
        with pytest.raises(ValueError, match="Kind=username"):
            PodCreators.parse([bad])


def test_non_controller_owner_reference_is_ignored() -> None:
    ref = OwnerRef("apps/v1", "ReplicaSet", "x", "uid", controller=False)
    assert resolve_workload(PodOrigin("ns", "p", "", {}, (ref,))).kind == "Pod"


def test_long_names_are_hashed_deterministically_and_keep_the_namespace() -> None:
    long_name = "a" * 120
    first = Workload("shop", "Deployment", long_name).identity
    assert first == Workload("shop", "Deployment", long_name).identity
    assert first != Workload("shop", "Deployment", long_name + "b").identity
    assert is_valid_label_value(first) and namespace_of_identity(first) == "shop"


@given(
    st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True),
    st.sampled_from(["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"]),
    st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,250}[a-z0-9])?", fullmatch=True),
)
def test_identity_is_always_a_valid_label_value(namespace: str, kind: str, name: str) -> None:
    assert is_valid_label_value(Workload(namespace, kind, name).identity)


def test_real_replicaset_controller_payload_guesses_its_deployment_name_offline() -> None:
    review = json.loads((DATA / "v1_pod-create_replicaset-controller_k8s-2025.json").read_text())
    request = review["request"]
    meta = request["object"]["metadata"]
    pod = PodOrigin(
        request["namespace"], meta.get("name", ""), meta.get("generateName", ""), meta.get("labels", {}),
        tuple(OwnerRef.from_dict(r) for r in meta["ownerReferences"]),
    )
    assert resolve_workload(pod).kind == "Pod"  # nothing verified: no workload identity from names
    workload = guess_workload(pod)
    rs_name = meta["ownerReferences"][0]["name"]
    assert workload.kind == "Deployment"
    assert rs_name == f"{workload.name}-{meta['labels']['pod-template-hash']}"
