"""Workload identity resolution from trusted sources."""

from __future__ import annotations

import json

from hypothesis import given, strategies as st

from netwarden.model.identity import OwnerRef, PodOrigin, Workload, guess_workload, namespace_of_identity, resolve_workload
from netwarden.model.labelvalues import is_valid_label_value
from tests.support.data import PAYLOADS

DATA = PAYLOADS / "admission"

RS = OwnerRef("apps/v1", "ReplicaSet", "api-7d9f8b6c5d", "rs-uid", controller=True)
DEPLOY = OwnerRef("apps/v1", "Deployment", "api", "deploy-uid", controller=True)


def test_replicaset_owner_fetched_from_api_resolves_to_deployment_with_verified_owner() -> None:
    pod = PodOrigin("shop", "", "api-7d9f8b6c5d-", {"pod-template-hash": "7d9f8b6c5d"}, (RS,))
    workload = resolve_workload(pod, {("ReplicaSet", RS.name): [DEPLOY]})
    assert workload == Workload("shop", "Deployment", "api", DEPLOY)
    assert workload.identity == "shop.deploy.api"


def test_an_unverified_replicaset_gives_the_pod_its_own_bare_identity_never_the_deployments() -> None:
    # the forged-owner finding: a ReplicaSet reference nobody verified (absent, wrong uid, API down)
    # plus a pod-template-hash label used to yield shop.deploy.api
    pod = PodOrigin("shop", "", "api-7d9f8b6c5d-", {"pod-template-hash": "7d9f8b6c5d"}, (RS,))
    for parents in ({("ReplicaSet", RS.name): None}, {}):
        workload = resolve_workload(pod, parents)
        assert workload == Workload("shop", "Pod", "api-7d9f8b6c5d")
        assert workload.identity == "shop.pod.api-7d9f8b6c5d"


def test_a_forged_deployment_reference_on_a_bare_pod_gives_its_own_identity() -> None:
    pod = PodOrigin("shop", "evil", "", {}, (DEPLOY,))
    # even if an adapter claimed to have verified it: a Deployment never owns pods directly
    assert resolve_workload(pod, {("Deployment", "api"): []}) == Workload("shop", "Pod", "evil")
    odd = OwnerRef("example.com/v1", "Odd~Kind", "x", "u", controller=True)
    assert resolve_workload(PodOrigin("shop", "p", "", {}, (odd,)), {("Odd~Kind", "x"): []}).identity == "shop.pod.p"


def test_a_deployment_above_a_verified_replicaset_counts_unless_reported_unverified() -> None:
    pod = PodOrigin("shop", "", "api-7d9f8b6c5d-", {}, (RS,))
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
    pod = PodOrigin("ops", "", "backup-28912345-", {}, (job,))
    assert resolve_workload(pod, {("Job", job.name): [cron]}) == Workload("ops", "CronJob", "backup", cron)
    assert resolve_workload(pod, {("Job", job.name): []}) == Workload("ops", "Job", job.name, job)


def test_statefulset_and_daemonset_are_their_own_workloads() -> None:
    for kind in ("StatefulSet", "DaemonSet"):
        ref = OwnerRef("apps/v1", kind, "db", "uid", controller=True)
        pod = PodOrigin("shop", "db-0", "", {}, (ref,))
        assert resolve_workload(pod, {(kind, "db"): []}) == Workload("shop", kind, "db", ref)
        assert resolve_workload(pod, {}) == Workload("shop", "Pod", "db-0")


def test_bare_pod_is_named_by_its_generate_name_stem_before_and_after_the_name_is_generated() -> None:
    assert resolve_workload(PodOrigin("ns", "", "debug-")).name == "debug"
    assert resolve_workload(PodOrigin("ns", "debug-x7k2p", "debug-")).name == "debug"
    assert resolve_workload(PodOrigin("ns", "nginx")).identity == "ns.pod.nginx"


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
