"""The pure admission core: real AdmissionReviews in, labels patch / baseline / verdict out."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from netwarden.model import names, patches
from netwarden.model.admission import AdmissionSettings, container_ports
from netwarden.model.identity import OwnerRef
from netwarden.model.labels import NamespaceFacts, is_reserved_label
from netwarden.model.labelvalues import is_valid_label_value
from netwarden.model.policy import DnsTarget
from netwarden.webhook.admission import (
    OUTCOME_DEGRADED,
    OUTCOME_LABELLED,
    OUTCOME_MALFORMED,
    OUTCOME_REFUSED,
    OUTCOME_SKIPPED,
    MalformedReview,
    build_response,
    decide_admission,
    decide_create,
    decide_update,
    label_patch,
    read_review,
)
from tests.support.data import PAYLOADS

DATA = PAYLOADS / "admission"
V1_FILES = sorted(p.name for p in DATA.glob("v1_pod-create_*.json"))
OPTED_IN = {names.LABEL_INJECT: names.INJECT_ENABLED}
SETTINGS = AdmissionSettings(dns=DnsTarget("kube-system", (("k8s-app", "kube-dns"),)),
                             trusted_usernames=frozenset({"system:serviceaccount:netwarden:netwarden-reconciler"}))
SHOP = NamespaceFacts("shop", OPTED_IN)


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


def apply_patch(obj: dict[str, Any], ops: Any) -> dict[str, Any]:
    return patches.apply(obj, ops)


def netwarden_labels(pod: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in (pod["metadata"].get("labels") or {}).items() if k.startswith(names.PREFIX + "/")}


def pod_request(
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owner: dict[str, Any] | None = None,
    name: str = "p-1",
    namespace: str = "shop",
    ports: list[dict[str, Any]] | None = None,
    service_account: str = "api-sa",
    user: str | None = None,
) -> dict[str, Any]:
    """A pod CREATE; one with an owner is made by that kind's upstream controller unless `user` says who."""
    meta: dict[str, Any] = {"name": name}
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    if owner is not None:
        meta["ownerReferences"] = [owner]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
           "spec": {"serviceAccountName": service_account,
                    "containers": [{"name": "c", "image": "x", **({"ports": ports} if ports else {})}]}}
    return {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": namespace,
            "operation": "CREATE", "userInfo": {"username": user or controller_user(owner)}, "object": pod,
            "dryRun": False}


def controller_user(owner: dict[str, Any] | None) -> str:
    """Who upstream kube-controller-manager creates a pod of this owner kind as ("tester" for a bare pod)."""
    if owner is None:
        return "tester"
    token = {"ReplicaSet": "replicaset", "Job": "job", "StatefulSet": "statefulset", "DaemonSet": "daemon-set"}
    return f"system:serviceaccount:kube-system:{token[owner['kind']]}-controller"


def ref(kind: str, name: str, uid: str = "uid-x", api_version: str = "apps/v1") -> OwnerRef:
    return OwnerRef(api_version, kind, name, uid, controller=True)


def owner_dict(kind: str, name: str, uid: str = "uid-x", api_version: str = "apps/v1") -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": True,
            "blockOwnerDeletion": True}


# --- real payloads ------------------------------------------------------------------------------


@pytest.mark.parametrize("filename", V1_FILES)
def test_real_v1_pod_create_is_labelled_and_patch_yields_exactly_the_derived_labels(filename: str) -> None:
    api_version, req = read_review(load(filename))
    assert api_version == "admission.k8s.io/v1"
    facts = NamespaceFacts(req["namespace"], OPTED_IN)
    decision = decide_admission(req, facts, {}, "inst-1", SETTINGS)
    assert decision.allowed and decision.outcome == OUTCOME_LABELLED
    patched = apply_patch(req["object"], decision.patch)
    assert netwarden_labels(patched) == dict(decision.labels)
    # Labels the pod had that are not netwarden's survive untouched.
    before = {k: v for k, v in (req["object"]["metadata"].get("labels") or {}).items() if not is_reserved_label(k)}
    assert {k: v for k, v in patched["metadata"]["labels"].items() if not is_reserved_label(k)} == before
    assert decision.labels[names.LABEL_INSTANCE] == "inst-1"
    response = build_response(api_version, req["uid"], decision)
    assert response["apiVersion"] == "admission.k8s.io/v1" and response["kind"] == "AdmissionReview"
    assert response["response"]["uid"] == req["uid"] and response["response"]["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["response"]["patch"])) == list(decision.patch)


def test_pod_without_object_namespace_takes_the_namespace_from_the_request() -> None:
    _, req = read_review(load("v1_pod-create_kubectl-run_no-object-namespace.json"))
    assert "namespace" not in req["object"]["metadata"]
    decision = decide_admission(req, NamespaceFacts("default", OPTED_IN), {}, "i", SETTINGS)
    assert decision.labels[names.LABEL_IDENTITY] == "default.pod.nginx"
    assert decision.policy_manifest is not None and decision.policy_manifest["metadata"]["namespace"] == "default"


def test_kubectl_apply_pod_without_labels_gets_one_add_of_the_whole_label_map() -> None:
    _, req = read_review(load("v1_pod-create_kubectl-apply_c7n-server-log.json"))
    assert "labels" not in req["object"]["metadata"]
    decision = decide_admission(req, NamespaceFacts("default", OPTED_IN), {}, "i", SETTINGS)
    assert [op["path"] for op in decision.patch] == ["/metadata/labels"]
    assert apply_patch(req["object"], decision.patch)["metadata"]["labels"] == dict(decision.labels)


def test_real_replicaset_pod_with_verified_owner_chain_belongs_to_its_deployment_which_owns_the_policy() -> None:
    _, req = read_review(load("v1_pod-create_replicaset-controller_k8s-2025.json"))
    deployment = ref("Deployment", "demo-crd-resource", "dep-uid")
    parents = {("ReplicaSet", "demo-crd-resource-76bf5f8695"): [deployment]}
    decision = decide_admission(req, NamespaceFacts("demo", OPTED_IN), parents, "i", SETTINGS)
    assert decision.labels[names.LABEL_IDENTITY] == "demo.deploy.demo-crd-resource"
    assert decision.labels[names.LABEL_WORKLOAD_KIND] == "deployment"
    manifest = decision.policy_manifest
    assert manifest is not None
    assert manifest["metadata"]["name"] == "netwarden-deploy-demo-crd-resource"
    assert manifest["metadata"]["ownerReferences"] == [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "demo-crd-resource", "uid": "dep-uid"}
    ]
    assert manifest["metadata"]["annotations"][names.ANNOTATION_REASON] == names.REASON_CREATED_AT_ADMISSION


def test_unverified_replicaset_owner_makes_the_pod_its_own_workload_with_a_warning_and_no_gc_owner() -> None:
    _, req = read_review(load("v1_pod-create_replicaset-controller_k8s-2025.json"))
    decision = decide_admission(req, NamespaceFacts("demo", OPTED_IN), {}, "i", SETTINGS)
    # generateName demo-crd-resource-76bf5f8695-: the pod is named by its stem and instance, never as the Deployment
    assert decision.labels[names.LABEL_IDENTITY] == "demo.pod.demo-crd-resource-76bf5f8695_i"
    assert decision.policy_manifest is not None
    assert decision.policy_manifest["metadata"]["name"] == "netwarden-pod-demo-crd-resource-76bf5f8695-i"
    assert "ownerReferences" not in decision.policy_manifest["metadata"]
    assert any("could not be verified" in w and "ReplicaSet" in w for w in decision.warnings)


def test_v1beta1_review_is_answered_in_v1beta1() -> None:
    body = load("v1beta1_pod-create_replicaset-controller_k8s-2018.json")
    api_version, req = read_review(body)
    assert api_version == "admission.k8s.io/v1beta1"
    parents = {("ReplicaSet", "nginx-deployment-75675f5897"): [ref("Deployment", "nginx-deployment", "d-uid")]}
    decision = decide_admission(req, NamespaceFacts("foo", OPTED_IN), parents, "i", SETTINGS)
    response = build_response(api_version, req["uid"], decision)
    assert response["apiVersion"] == "admission.k8s.io/v1beta1"
    assert response["response"]["uid"] == "9e9322a0-85f0-11e8-b78d-080027d242b4"
    assert decision.labels[names.LABEL_IDENTITY] == "foo.deploy.nginx-deployment"
    # The 2018 object has no kind/apiVersion; the patch still applies and the port is read.
    assert netwarden_labels(apply_patch(req["object"], decision.patch)) == dict(decision.labels)
    assert decision.policy_manifest is not None
    assert decision.policy_manifest["spec"]["podSelector"]["matchLabels"] == {names.LABEL_IDENTITY: "foo.deploy.nginx-deployment"}


def test_request_only_body_without_envelope_is_rejected_without_a_uid_so_it_becomes_http_400() -> None:
    with pytest.raises(MalformedReview) as caught:
        read_review(load("v1_pod-update_kubectl-apply_label-change_request-only.json"))
    assert caught.value.uid is None
    assert "without its envelope" in caught.value.message


def test_real_update_changing_only_user_labels_is_allowed() -> None:
    req = load("v1_pod-update_kubectl-apply_label-change_request-only.json")
    decision = decide_update(req, SETTINGS)
    assert decision.allowed


def test_real_update_that_spoofs_a_netwarden_label_is_refused_with_a_clear_message() -> None:
    req = copy.deepcopy(load("v1_pod-update_kubectl-apply_label-change_request-only.json"))
    req["object"]["metadata"]["labels"][names.LABEL_IDENTITY] = "default.deploy.payments"
    decision = decide_update(req, SETTINGS)
    assert not decision.allowed and decision.outcome == OUTCOME_REFUSED and decision.code == 403
    assert names.LABEL_IDENTITY in decision.message and "kubernetes-admin" in decision.message
    review = build_response("admission.k8s.io/v1", req["uid"], decision)["response"]
    assert review["allowed"] is False and review["status"]["code"] == 403
    assert review["status"]["message"] == decision.message


# --- malformed input ----------------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, [], "x", {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"},
                                  {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"operation": "CREATE"}}])
def test_bodies_without_a_request_uid_are_malformed_with_no_uid(body: Any) -> None:
    with pytest.raises(MalformedReview) as caught:
        read_review(body)
    assert caught.value.uid is None and caught.value.message


def test_review_with_a_uid_but_unsupported_version_is_refused_in_a_well_formed_review() -> None:
    with pytest.raises(MalformedReview) as caught:
        read_review({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v2", "request": {"uid": "abc", "operation": "CREATE"}})
    assert caught.value.uid == "abc" and "admission.k8s.io/v2" in caught.value.message


def test_pod_create_without_object_is_refused_as_malformed() -> None:
    req = pod_request()
    del req["object"]
    decision = decide_admission(req, SHOP, {}, "i", SETTINGS)
    assert not decision.allowed and decision.outcome == OUTCOME_MALFORMED and decision.code == 400


# --- identity per workload kind -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("owner", "parents", "identity", "owner_kind"),
    [
        (owner_dict("ReplicaSet", "api-5d9c", "rs-uid"), {("ReplicaSet", "api-5d9c"): [ref("Deployment", "api", "d")]},
         "shop.deploy.api", "Deployment"),
        (owner_dict("StatefulSet", "db", "s"), {("StatefulSet", "db"): []}, "shop.sts.db", "StatefulSet"),
        (owner_dict("DaemonSet", "agent", "s"), {("DaemonSet", "agent"): []}, "shop.ds.agent", "DaemonSet"),
        (owner_dict("Job", "once", "j", "batch/v1"), {("Job", "once"): []}, "shop.job.once", "Job"),
        (owner_dict("Job", "nightly-28000", "j", "batch/v1"),
         {("Job", "nightly-28000"): [ref("CronJob", "nightly", "cj", "batch/v1")]}, "shop.cronjob.nightly", "CronJob"),
        (None, {}, "shop.pod.p-1", None),
    ],
)
def test_identity_and_policy_owner_per_workload_kind(owner: Any, parents: Any, identity: str, owner_kind: str | None) -> None:
    decision = decide_admission(pod_request(owner=owner), SHOP, parents, "i", SETTINGS)
    assert decision.labels[names.LABEL_IDENTITY] == identity
    manifest = decision.policy_manifest
    assert manifest is not None
    refs = manifest["metadata"].get("ownerReferences")
    if owner_kind is None:
        assert refs is None
    else:
        assert [r["kind"] for r in refs] == [owner_kind]
        assert "blockOwnerDeletion" not in refs[0]


def test_long_workload_names_are_hashed_into_valid_labels_and_policy_names() -> None:
    long_name = "a" * 200
    owner = owner_dict("StatefulSet", long_name, "s")
    decision = decide_admission(pod_request(owner=owner), SHOP, {("StatefulSet", long_name): []}, "i", SETTINGS)
    for value in decision.labels.values():
        assert is_valid_label_value(value)
    assert decision.labels[names.LABEL_IDENTITY].startswith("shop.sts.")
    assert decision.policy_manifest is not None and len(decision.policy_manifest["metadata"]["name"]) <= 253


# --- spoofing, opt-in and sources --------------------------------------------------------------


def test_spoofed_identity_label_is_overwritten_and_unknown_reserved_label_removed_with_warnings() -> None:
    labels = {names.LABEL_IDENTITY: "shop.deploy.payments", f"{names.PREFIX}/admin": "true", "app": "api"}
    decision = decide_admission(pod_request(labels=labels), SHOP, {}, "i", SETTINGS)
    patched = apply_patch(pod_request(labels=labels)["object"], decision.patch)
    assert patched["metadata"]["labels"][names.LABEL_IDENTITY] == "shop.pod.p-1"
    assert f"{names.PREFIX}/admin" not in patched["metadata"]["labels"]
    assert patched["metadata"]["labels"]["app"] == "api"
    assert any(names.LABEL_IDENTITY in w for w in decision.warnings)
    assert any(f"{names.PREFIX}/admin" in w for w in decision.warnings)


def test_pod_opt_out_wins_over_namespace_opt_in_and_the_pod_is_untouched() -> None:
    for labels, annotations in (({names.LABEL_INJECT: "disabled"}, {}), ({}, {names.ANNOTATION_INJECT: "disabled"})):
        decision = decide_admission(pod_request(labels=labels, annotations=annotations), SHOP, {}, "i", SETTINGS)
        assert decision.allowed and decision.outcome == OUTCOME_SKIPPED
        assert decision.patch == () and decision.policy_manifest is None


def test_pod_in_namespace_not_opted_in_is_untouched_unless_the_pod_opts_in() -> None:
    plain = NamespaceFacts("shop")
    assert decide_admission(pod_request(labels={"app": "x"}), plain, {}, "i", SETTINGS).patch == ()
    opted = decide_admission(pod_request(annotations={names.ANNOTATION_INJECT: "enabled"}), plain, {}, "i", SETTINGS)
    assert opted.outcome == OUTCOME_LABELLED


def test_pod_not_opted_in_may_not_wear_netwarden_labels() -> None:
    req = pod_request(labels={names.LABEL_IDENTITY: "shop.deploy.payments", "app": "x"})
    decision = decide_admission(req, NamespaceFacts("shop"), {}, "i", SETTINGS)
    assert decision.allowed and decision.policy_manifest is None
    assert apply_patch(req["object"], decision.patch)["metadata"]["labels"] == {"app": "x"}
    assert decision.warnings


def test_purpose_from_annotation_then_component_label_and_environment_from_namespace() -> None:
    ns = NamespaceFacts("shop", {**OPTED_IN, "environment": "production"})
    by_annotation = decide_admission(
        pod_request(labels={names.LABEL_APP_COMPONENT: "web"}, annotations={names.ANNOTATION_PURPOSE: "backend"}), ns, {}, "i", SETTINGS)
    assert by_annotation.labels[names.LABEL_PURPOSE] == "backend"
    by_label = decide_admission(pod_request(labels={names.LABEL_APP_COMPONENT: "web"}), ns, {}, "i", SETTINGS)
    assert by_label.labels[names.LABEL_PURPOSE] == "web"
    assert by_label.labels[names.LABEL_ENVIRONMENT] == "production"
    neither = decide_admission(pod_request(), SHOP, {}, "i", SETTINGS)
    assert neither.labels[names.LABEL_PURPOSE] == "unspecified" and neither.labels[names.LABEL_ENVIRONMENT] == "unspecified"


def test_service_account_label_comes_from_the_pod_spec() -> None:
    decision = decide_admission(pod_request(service_account="payments-sa"), SHOP, {}, "i", SETTINGS)
    assert decision.labels[names.LABEL_SERVICE_ACCOUNT] == "payments-sa"


# --- the baseline ------------------------------------------------------------------------------


def test_baseline_allows_declared_peers_on_container_ports_and_bad_entries_become_warnings() -> None:
    annotations = {
        names.ANNOTATION_ALLOW_FROM: "purpose=frontend, bogus",
        names.ANNOTATION_ALLOW_TO: "purpose=database:5432, cidr=10.0.0.0/33",
    }
    ports = [{"containerPort": 8080}, {"containerPort": 9000, "protocol": "UDP"}]
    decision = decide_admission(pod_request(annotations=annotations, ports=ports), SHOP, {}, "i", SETTINGS)
    spec = decision.policy_manifest["spec"]  # type: ignore[index]
    assert spec["ingress"] == [{
        "from": [{"podSelector": {"matchLabels": {names.LABEL_PURPOSE: "frontend"}}}],
        "ports": [{"protocol": "TCP", "port": 8080}, {"protocol": "UDP", "port": 9000}],
    }]
    assert spec["egress"][0] == {"to": [{"podSelector": {"matchLabels": {names.LABEL_PURPOSE: "database"}}}],
                                 "ports": [{"protocol": "TCP", "port": 5432}]}
    assert spec["egress"][-1]["to"] == [{"namespaceSelector": {"matchLabels": {names.LABEL_NAMESPACE_NAME: "kube-system"}},
                                         "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    assert len(decision.warnings) == 2
    assert any("bogus" in w and names.ANNOTATION_ALLOW_FROM in w for w in decision.warnings)
    assert any("10.0.0.0/33" in w and names.ANNOTATION_ALLOW_TO in w for w in decision.warnings)


def test_container_ports_include_protocol_and_sidecar_init_containers_only() -> None:
    pod = {"spec": {"containers": [{"ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]}],
                    "initContainers": [{"ports": [{"containerPort": 1}]},
                                       {"restartPolicy": "Always", "ports": [{"containerPort": 15001}]}]}}
    assert [(p.protocol, p.port) for p in container_ports(pod)] == [("TCP", 80), ("TCP", 15001), ("UDP", 53)]


def test_learn_mode_namespace_gets_a_policy_that_selects_the_workload_but_allows_everything() -> None:
    ns = NamespaceFacts("shop", OPTED_IN, {names.ANNOTATION_MODE: names.MODE_LEARN})
    decision = decide_admission(pod_request(annotations={names.ANNOTATION_ALLOW_FROM: "purpose=web"}), ns, {}, "i", SETTINGS)
    manifest = decision.policy_manifest
    assert manifest is not None
    assert manifest["spec"]["ingress"] == [{}] and manifest["spec"]["egress"] == [{}]
    assert manifest["metadata"]["annotations"][names.ANNOTATION_STEP] == names.STEP_LEARNING
    assert manifest["metadata"]["annotations"][names.ANNOTATION_POLICY_MODE] == names.MODE_LEARN


def test_default_mode_applies_when_the_namespace_names_none() -> None:
    learn = AdmissionSettings(default_mode=names.MODE_LEARN)
    decision = decide_admission(pod_request(), SHOP, {}, "i", learn)
    assert decision.policy_manifest["spec"]["ingress"] == [{}]  # type: ignore[index]


def test_non_pod_and_non_create_requests_pass_through_unchanged() -> None:
    req = pod_request()
    req["operation"] = "DELETE"
    assert decide_admission(req, SHOP, {}, "i", SETTINGS).patch == ()
    req = pod_request()
    req["kind"] = {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert decide_admission(req, SHOP, {}, "i", SETTINGS).outcome == OUTCOME_SKIPPED


# --- UPDATE guard ------------------------------------------------------------------------------


def update_request(old_labels: dict[str, str], new_labels: dict[str, str], user: str = "alice") -> dict[str, Any]:
    req = pod_request(labels=new_labels)
    req["operation"] = "UPDATE"
    req["oldObject"] = pod_request(labels=old_labels)["object"]
    req["userInfo"] = {"username": user}
    return req


def test_update_removing_or_changing_netwarden_labels_is_refused_for_users() -> None:
    old = {names.LABEL_IDENTITY: "shop.deploy.api", names.LABEL_INSTANCE: "i-1"}
    assert not decide_update(update_request(old, {names.LABEL_IDENTITY: "shop.deploy.api"}), SETTINGS).allowed
    assert not decide_update(update_request(old, {**old, names.LABEL_IDENTITY: "shop.deploy.db"}), SETTINGS).allowed
    assert not decide_update(update_request(old, {**old, f"{names.PREFIX}/new": "x"}), SETTINGS).allowed


def test_update_by_netwarden_service_account_or_of_the_opt_in_switch_is_allowed() -> None:
    old = {names.LABEL_IDENTITY: "shop.deploy.api"}
    trusted = "system:serviceaccount:netwarden:netwarden-reconciler"
    assert decide_update(update_request(old, {names.LABEL_IDENTITY: "shop.deploy.db"}, trusted), SETTINGS).allowed
    assert decide_update(update_request(old, {**old, names.LABEL_INJECT: "disabled"}), SETTINGS).allowed
    assert decide_update(update_request(old, {**old, "team": "x"}), SETTINGS).allowed


# --- JSONPatch ---------------------------------------------------------------------------------


def test_pointer_tokens_escape_tilde_then_slash() -> None:
    assert patches.pointer("metadata", "labels", "netwarden.io/identity") == "/metadata/labels/netwarden.io~1identity"
    assert patches.pointer("a~/b", 0) == "/a~0~1b/0"


def test_label_patch_adds_metadata_when_absent_and_skips_unchanged_values() -> None:
    assert label_patch({}, {"k/x": "v"}, []) == ({"op": "add", "path": "/metadata", "value": {"labels": {"k/x": "v"}}},)
    assert label_patch({"metadata": {"labels": {"k/x": "v"}}}, {"k/x": "v"}, []) == ()


label_keys = st.one_of(
    st.sampled_from(list(names.POD_LABELS) + [names.LABEL_INJECT, f"{names.PREFIX}/other", "app", "a/b", "x~y/z"]),
    st.from_regex(r"\A[a-z]{1,8}(\.[a-z]{1,5})?/[a-z]{1,8}\Z"),
)
label_values = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=80)
names_st = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,200}[a-z0-9])?\Z")


@settings(max_examples=150, deadline=None)
@given(
    labels=st.one_of(st.none(), st.dictionaries(label_keys, label_values, max_size=6)),
    annotations=st.dictionaries(st.sampled_from([names.ANNOTATION_PURPOSE, names.ANNOTATION_ALLOW_FROM, "x"]),
                                label_values, max_size=3),
    workload_name=names_st,
    kind=st.sampled_from(["StatefulSet", "DaemonSet", "Job", None]),
    service_account=names_st,
    instance=st.uuids().map(str),
)
def test_derived_label_values_are_always_valid_and_the_patch_yields_exactly_them(
    labels: dict[str, str] | None, annotations: dict[str, str], workload_name: str, kind: str | None,
    service_account: str, instance: str,
) -> None:
    owner = owner_dict(kind, workload_name, "u") if kind else None
    parents = {(kind, workload_name): []} if kind else {}
    req = pod_request(labels=labels, annotations=annotations, owner=owner, service_account=service_account)
    decision = decide_admission(req, SHOP, parents, instance, SETTINGS)
    assert decision.outcome == OUTCOME_LABELLED or (labels or {}).get(names.LABEL_INJECT) == "disabled"
    if decision.outcome != OUTCOME_LABELLED:
        return
    assert all(is_valid_label_value(v) for v in decision.labels.values())
    patched = apply_patch(req["object"], decision.patch)
    result = patched["metadata"]["labels"]
    assert {k: v for k, v in result.items() if is_reserved_label(k)} == dict(decision.labels)
    assert {k: v for k, v in result.items() if not is_reserved_label(k)} == {
        k: v for k, v in (labels or {}).items() if not is_reserved_label(k)}


# --- CREATE guard (the validating webhook judges the final object) ------------------------------


def admitted(req: dict[str, Any], parents: Any = None, instance: str = "2d17dd5a-6757-4248-b1ae-1074c267529c") -> dict[str, Any]:
    """The pod as netwarden's mutating webhook leaves it."""
    decision = decide_admission(req, SHOP, parents or {}, instance, SETTINGS)
    final = copy.deepcopy(req)
    final["object"] = apply_patch(req["object"], decision.patch)
    return final


def test_create_guard_allows_exactly_netwardens_own_labels_and_refuses_any_change() -> None:
    owner = owner_dict("StatefulSet", "db")
    parents = {("StatefulSet", "db"): []}
    final = admitted(pod_request(owner=owner), parents)
    assert decide_create(final, SHOP, parents, SETTINGS).allowed
    for key, value in ((names.LABEL_IDENTITY, "payments.deploy.gateway"), (names.LABEL_PURPOSE, "database"),
                       (f"{names.PREFIX}/extra", "x"), (names.LABEL_INSTANCE, "not-a-uuid")):
        changed = copy.deepcopy(final)
        changed["object"]["metadata"]["labels"][key] = value
        verdict = decide_create(changed, SHOP, parents, SETTINGS)
        assert not verdict.allowed and verdict.code == 403 and key in verdict.message, key


def test_create_guard_accepts_the_unverified_fallback_and_an_unlabelled_pod_but_refuses_labels_when_not_opted_in() -> None:
    owner = owner_dict("StatefulSet", "db")
    degraded = admitted(pod_request(owner=owner), {("StatefulSet", "db"): None})  # mutating ran out of time
    assert degraded["object"]["metadata"]["labels"][names.LABEL_IDENTITY] == "shop.pod.p-1"
    assert decide_create(degraded, SHOP, {("StatefulSet", "db"): []}, SETTINGS).allowed
    unlabelled = pod_request(owner=owner)  # the mutating webhook did not run (failurePolicy Ignore)
    assert decide_create(unlabelled, SHOP, {}, SETTINGS).outcome == OUTCOME_DEGRADED
    plain = NamespaceFacts("shop")
    spoofed = pod_request(labels={names.LABEL_IDENTITY: "shop.deploy.api"})
    assert not decide_create(spoofed, plain, {}, SETTINGS).allowed
    assert decide_create(pod_request(labels={"app": "x"}), plain, {}, SETTINGS).allowed
