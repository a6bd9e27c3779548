"""Identity nobody can take (issue 11), on both engines: netwarden's own local API server and the real
kube-apiserver. Each test is the audit's attack, through the official client, against the whole stack
(`netwarden.tools.stack.start_stack`: API server, webhook on gunicorn with TLS registered by caBundle,
reconciler), with the webhook configurations the chart renders.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from netwarden.model import names
from netwarden.tools.stack import Stack, start_stack
from tests.localkube.localkube_webhook import Webhook, patch_b64
from tests.localkube.localkube_webhook import webhook as webhook  # noqa: F401 - the fixture: a second, foreign webhook
from tests.support.users import JOB_CONTROLLER, REPLICASET_CONTROLLER, as_user
from tests.support.waiting import wait_for


def _engine_stack(engine: str, workdir: Path) -> Stack:
    if engine == "kube":
        from localkube.controlplane_build import ControlPlaneNotBuilt, find_binaries

        try:
            find_binaries()
        except ControlPlaneNotBuilt as exc:
            pytest.skip(f"real control plane not built ({exc})")
    return start_stack(workdir, engine=engine, progress=lambda _: None)


@pytest.fixture(scope="module", params=["local", pytest.param("kube", marks=pytest.mark.kube)])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = _engine_stack(request.param, tmp_path_factory.mktemp(f"identity-{request.param}"))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def api(stack: Stack) -> client.ApiClient:
    return stack.api_client()


def _namespace(api: client.ApiClient, annotations: dict[str, str]) -> str:
    core = client.CoreV1Api(api)
    name = f"id-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name, "annotations": annotations}})
    wait_for(lambda: core.list_namespaced_service_account(name, field_selector="metadata.name=default").items,
             f"default ServiceAccount in {name}")
    return name


@pytest.fixture
def shop(api: client.ApiClient) -> Iterator[str]:
    """An opted-in namespace (enforce mode)."""
    name = _namespace(api, {names.ANNOTATION_INJECT: names.INJECT_ENABLED, names.ANNOTATION_MODE: names.MODE_ENFORCE})
    yield name
    client.CoreV1Api(api).delete_namespace(name)


@pytest.fixture
def plain(api: client.ApiClient) -> Iterator[str]:
    """A namespace that is not opted in."""
    name = _namespace(api, {})
    yield name
    client.CoreV1Api(api).delete_namespace(name)


def pod(name: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
        owner: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels or {}, "annotations": annotations or {}}
    if owner:
        meta["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 8080}]}]}}


def owner(kind: str, name: str, uid: str, api_version: str = "apps/v1") -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": True}


def reserved(labels: dict[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (labels or {}).items() if k.startswith(names.PREFIX + "/") and k != names.LABEL_INJECT}


def policy_names(api: client.ApiClient, namespace: str) -> set[str]:
    return {p.metadata.name for p in client.NetworkingV1Api(api).list_namespaced_network_policy(namespace).items}


def deploy_api(api: client.ApiClient, namespace: str) -> tuple[Any, Any]:
    """A real Deployment `api` and the ReplicaSet its controller made, once a pod of it is labelled."""
    labels = {"app": "api"}
    deployment = client.AppsV1Api(api).create_namespaced_deployment(namespace, {
        "metadata": {"name": "api"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels, "annotations": {names.ANNOTATION_PURPOSE: "backend"}},
                              "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}})
    core = client.CoreV1Api(api)
    real = wait_for(lambda: [p for p in core.list_namespaced_pod(namespace, label_selector="app=api").items
                             if (p.metadata.labels or {}).get(names.LABEL_IDENTITY)], "the Deployment's pod")
    rs_name = real[0].metadata.owner_references[0].name
    replicaset = client.AppsV1Api(api).read_namespaced_replica_set(rs_name, namespace)
    return deployment, replicaset


# --- finding 1 and 3: forged owner references ----------------------------------------------------


def test_forged_owner_references_never_yield_the_owners_identity_or_write_its_baseline(
        api: client.ApiClient, shop: str) -> None:
    core = client.CoreV1Api(api)
    deployment, replicaset = deploy_api(api, shop)
    template_hash = replicaset.metadata.labels["pod-template-hash"]
    real = core.list_namespaced_pod(shop, label_selector="app=api").items[0]
    assert real.metadata.labels[names.LABEL_IDENTITY] == f"{shop}.deploy.api"  # the verified chain still works

    forged = {
        "by-deploy": owner("Deployment", "api", str(uuid.uuid4())),
        "by-deploy-real-uid": owner("Deployment", "api", deployment.metadata.uid),  # pods never have this owner
        "by-rs-wrong-uid": owner("ReplicaSet", replicaset.metadata.name, str(uuid.uuid4())),
        "by-rs-missing": owner("ReplicaSet", "pay-7c9d8", str(uuid.uuid4())),
        "by-odd-kind": owner("Odd~Kind", "api", str(uuid.uuid4()), "example.com/v1"),
    }
    hashes = {"by-rs-wrong-uid": template_hash, "by-rs-missing": "7c9d8"}
    for name, ref in forged.items():
        made = core.create_namespaced_pod(shop, pod(name, {"pod-template-hash": hashes.get(name, "x")}, {
            names.ANNOTATION_ALLOW_TO: "cidr=0.0.0.0/0", names.ANNOTATION_ALLOW_FROM: "namespace=*"}, ref))
        labels = made.metadata.labels
        assert labels[names.LABEL_IDENTITY] == f"{shop}.pod.{name}", name
        assert labels[names.LABEL_WORKLOAD_KIND] == "pod", name

    # finding 3: the claimed workloads' baselines are not written by the forgers
    written = policy_names(api, shop)
    assert "netwarden-deploy-pay" not in written and "netwarden-rs-pay-7c9d8" not in written
    assert {f"netwarden-pod-{name}" for name in forged} <= written
    baseline = client.NetworkingV1Api(api).read_namespaced_network_policy("netwarden-deploy-api", shop)
    assert [(o.kind, o.uid) for o in baseline.metadata.owner_references] == [("Deployment", deployment.metadata.uid)]
    # written by the Deployment's own pod: none of the forgers' declarations (egress to the world) in it
    assert not [peer for rule in baseline.spec.egress or [] for peer in rule.to or [] if peer.ip_block is not None]


def pod_creator(api: client.ApiClient, namespace: str, username: str) -> client.CoreV1Api:
    """`username` may create pods and read workloads in `namespace`, nothing else (the real engine enforces it)."""
    rbac = client.RbacAuthorizationV1Api(api)
    role = f"pod-creator-{uuid.uuid4().hex[:6]}"
    rbac.create_namespaced_role(namespace, {"metadata": {"name": role}, "rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list"]},
        {"apiGroups": ["apps", "batch"], "resources": ["replicasets", "jobs"], "verbs": ["get", "list"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": role}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": username}]})
    creator = client.CoreV1Api(as_user(api, username))
    wait_for(lambda: creator.list_namespaced_pod(namespace) is not None, "the pod creator's Role to be in effect")
    return creator


def test_a_pod_creator_naming_a_real_owner_by_its_right_uid_does_not_take_its_identity(
        api: client.ApiClient, shop: str) -> None:
    # a uid is not a secret: whoever may get the ReplicaSet reads it, and the API server lets any pod
    # creator write the reference (OwnerReferencesPermissionEnforcement only guards blockOwnerDeletion)
    _, replicaset = deploy_api(api, shop)
    job = client.BatchV1Api(api).create_namespaced_job(shop, {
        "metadata": {"name": "once"}, "spec": {"suspend": True, "template": {
            "metadata": {"labels": {"job": "once"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}}})
    claims = {"rs": owner("ReplicaSet", replicaset.metadata.name, replicaset.metadata.uid),
              "job": owner("Job", "once", job.metadata.uid, "batch/v1")}
    mallory = pod_creator(api, shop, "mallory")
    for kind, ref in claims.items():
        made = mallory.create_namespaced_pod(shop, pod(f"thief-{kind}", {"app": "thief"}, {
            names.ANNOTATION_ALLOW_TO: "cidr=0.0.0.0/0"}, ref))
        assert made.metadata.labels[names.LABEL_IDENTITY] == f"{shop}.pod.thief-{kind}", kind
        assert made.metadata.labels[names.LABEL_WORKLOAD_KIND] == "pod", kind
    assert {"netwarden-pod-thief-rs", "netwarden-pod-thief-job"} <= policy_names(api, shop)
    # the same references from the controllers' own users: the workloads' identities (the rule is who, not what)
    for kind, user, identity in (("rs", REPLICASET_CONTROLLER, f"{shop}.deploy.api"),
                                 ("job", JOB_CONTROLLER, f"{shop}.job.once")):
        made = client.CoreV1Api(as_user(api, user)).create_namespaced_pod(
            shop, pod(f"made-by-{kind}", {"app": "thief"}, {}, claims[kind]))
        assert made.metadata.labels[names.LABEL_IDENTITY] == identity, kind


# --- finding 2 and the Low one: opt-out and namespaces that are not opted in ----------------------


def test_an_opted_out_pod_does_not_keep_a_self_set_identity(api: client.ApiClient, shop: str) -> None:
    made = client.CoreV1Api(api).create_namespaced_pod(shop, pod("out", {
        names.LABEL_INJECT: names.INJECT_DISABLED, names.LABEL_IDENTITY: f"{shop}.deploy.api", "app": "x"}))
    assert made.metadata.labels == {names.LABEL_INJECT: names.INJECT_DISABLED, "app": "x"}
    assert policy_names(api, shop) == set()


def test_a_pod_in_a_namespace_that_is_not_opted_in_does_not_keep_self_set_netwarden_labels(
        api: client.ApiClient, plain: str) -> None:
    made = client.CoreV1Api(api).create_namespaced_pod(plain, pod("plain", {
        names.LABEL_IDENTITY: "shop.deploy.api", names.LABEL_PURPOSE: "frontend", "app": "x"}))
    assert made.metadata.labels == {"app": "x"}


def test_the_stacks_reconciler_backfills_labels_as_its_own_user_which_the_guard_trusts_and_admin_is_not(
        stack: Stack, api: client.ApiClient, shop: str) -> None:
    # soak finding (issue 11): every client of the stack was system:admin, so the label guard refused
    # the reconciler's backfill there; in a cluster the reconciler is its own ServiceAccount
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(shop, pod("late", {names.LABEL_INJECT: names.INJECT_DISABLED}))  # webhook skips it
    core.patch_namespaced_pod("late", shop, {"metadata": {"labels": {names.LABEL_INJECT: None}}})  # opted in now
    labelled = wait_for(lambda: reserved(core.read_namespaced_pod("late", shop).metadata.labels).get(names.LABEL_IDENTITY),
                        "the reconciler's backfill of the pod's labels")
    assert labelled == f"{shop}.pod.late"
    kubeconfig = yaml.safe_load(Path(stack.workdir, "reconciler.kubeconfig").read_text())
    assert "client-certificate-data" not in kubeconfig["users"][0]["user"]  # its own token, not the admin's
    with pytest.raises(ApiException) as refused:  # the guard still refuses everyone else, the admin too
        core.patch_namespaced_pod("late", shop, {"metadata": {"labels": {names.LABEL_IDENTITY: f"{shop}.pod.other"}}})
    assert refused.value.status == 403


# --- netwarden's own policies: written by netwarden only -------------------------------------------


def test_a_namespace_admin_cannot_forge_netwardens_policies_but_may_approve_adopt_and_edit_them(
        api: client.ApiClient, shop: str) -> None:
    """NetworkPolicy rights in a namespace are not netwarden's trust: a namespace admin may not stamp an edited
    spec as netwarden's, plant a proposal for the reconciler to replay, or create a policy labelled as its."""
    client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(shop, {
        "metadata": {"name": "alice-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]})
    client.CoreV1Api(api).create_namespaced_pod(shop, pod("web"))
    net = client.NetworkingV1Api(api)
    baseline = wait_for(lambda: next((p for p in net.list_namespaced_network_policy(shop).items
                                      if (p.metadata.labels or {}).get(names.LABEL_IDENTITY) == f"{shop}.pod.web"
                                      and names.ANNOTATION_SPEC_HASH in (p.metadata.annotations or {})), None),
                        "web's baseline, stamped by the reconciler")
    name = baseline.metadata.name
    alice = client.NetworkingV1Api(as_user(api, "alice"))

    def allowed(body: dict[str, Any]) -> bool:
        try:
            alice.patch_namespaced_network_policy(name, shop, body)
            return True
        except ApiException as exc:
            if exc.status == 403 and "denied the request" not in (exc.body or ""):  # not a webhook's refusal
                return False  # the authorizer has not seen alice's RoleBinding yet
            raise

    wait_for(lambda: allowed({"metadata": {"labels": {"team": "payments"}}}), "alice's RoleBinding in force")
    forged_proposal = json.dumps({"manifests": [], "deletes": [[shop, name]], "reason": "x", "summary": "x"})
    for mark, body in ((names.ANNOTATION_SPEC_HASH, {"metadata": {"annotations": {names.ANNOTATION_SPEC_HASH: "f" * 32}}}),
                       (names.ANNOTATION_PENDING, {"metadata": {"annotations": {names.ANNOTATION_PENDING: forged_proposal}}}),
                       (names.LABEL_MANAGED_BY, {"metadata": {"labels": {names.LABEL_MANAGED_BY: None}}})):
        with pytest.raises(ApiException) as refused:
            allowed(body)
        assert refused.value.status == 403 and mark in refused.value.body, refused.value.body
    planted = {"metadata": {"name": "netwarden-pod-planted", "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE}},
               "spec": {"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}}
    with pytest.raises(ApiException) as refused:
        alice.create_namespaced_network_policy(shop, planted)
    assert refused.value.status == 403 and "written by netwarden only" in refused.value.body
    assert name in policy_names(api, shop) and "netwarden-pod-planted" not in policy_names(api, shop)
    after = net.read_namespaced_network_policy(name, shop)
    assert after.metadata.annotations[names.ANNOTATION_SPEC_HASH] == baseline.metadata.annotations[names.ANNOTATION_SPEC_HASH]
    assert names.ANNOTATION_PENDING not in after.metadata.annotations
    assert allowed({"metadata": {"annotations": {names.ANNOTATION_ADOPTED: "true"}}})  # taking it over is theirs
    assert allowed({"spec": {"ingress": [{}]}})


# --- finding 7: the final object is judged, after every mutating webhook ---------------------------


def foreign_webhook(api: client.ApiClient, hook: Webhook, namespace: str) -> str:
    """A second product's mutating webhook, called after netwarden's (configurations run by name)."""
    name = f"zz-foreign-{uuid.uuid4().hex[:6]}"
    client.AdmissionregistrationV1Api(api).create_mutating_webhook_configuration({
        "metadata": {"name": name},
        "webhooks": [{"name": "foreign.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                      "clientConfig": {"url": hook.url, "caBundle": hook.ca_bundle}, "failurePolicy": "Fail",
                      "reinvocationPolicy": "Never",
                      "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                      "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                 "resources": ["pods"], "scope": "Namespaced"}]}]})
    return name


@pytest.mark.parametrize("opted_in", [True, False], ids=["opted-in", "not-opted-in"])
def test_a_later_mutating_webhook_cannot_give_a_pod_netwarden_labels(
        api: client.ApiClient, webhook: Webhook, opted_in: bool, request: pytest.FixtureRequest) -> None:
    namespace = request.getfixturevalue("shop" if opted_in else "plain")
    key = names.LABEL_IDENTITY.replace("/", "~1")
    webhook.decide = lambda review: {"allowed": True, "patchType": "JSONPatch", "patch": patch_b64([
        {"op": "add", "path": "/metadata/labels", "value": {**(review["request"]["object"]["metadata"].get("labels") or {})}},
        {"op": "add", "path": f"/metadata/labels/{key}", "value": "payments.deploy.gateway"}])}
    config = foreign_webhook(api, webhook, namespace)
    try:
        wait_for(lambda: _refused(api, namespace), "the foreign webhook to be in effect and netwarden to refuse")
        with pytest.raises(ApiException) as refused:
            client.CoreV1Api(api).create_namespaced_pod(namespace, pod("victim"))
        assert refused.value.status == 403
        message = json.loads(refused.value.body)["message"]
        assert 'admission webhook "labels.netwarden.io" denied the request' in message and names.LABEL_IDENTITY in message
        webhook.decide = lambda review: {"allowed": True}  # the foreign webhook stops meddling: pods are fine again
        made = client.CoreV1Api(api).create_namespaced_pod(namespace, pod("fine"))
        assert reserved(made.metadata.labels).get(names.LABEL_IDENTITY) == (f"{namespace}.pod.fine" if opted_in else None)
    finally:
        client.AdmissionregistrationV1Api(api).delete_mutating_webhook_configuration(config)


def _refused(api: client.ApiClient, namespace: str) -> bool:
    try:
        client.CoreV1Api(api).create_namespaced_pod(namespace, pod(f"probe-{uuid.uuid4().hex[:5]}"), dry_run="All")
    except ApiException as exc:
        return exc.status == 403
    return False


# --- finding 4: pods/status ------------------------------------------------------------------------


def test_a_status_patch_cannot_change_netwarden_labels(api: client.ApiClient, shop: str) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(shop, pod("target"))
    with pytest.raises(ApiException) as refused:
        core.patch_namespaced_pod_status("target", shop, {"metadata": {"labels": {
            names.LABEL_IDENTITY: f"{shop}.deploy.api", names.LABEL_PURPOSE: "database"}}})
    assert refused.value.status == 403 and "managed by netwarden" in refused.value.body
    after = core.read_namespaced_pod("target", shop).metadata.labels
    assert after[names.LABEL_IDENTITY] == f"{shop}.pod.target" and after[names.LABEL_PURPOSE] == "unspecified"
    # a status patch that leaves netwarden's labels alone still goes through
    core.patch_namespaced_pod_status("target", shop, {"metadata": {"labels": {"team": "blue"}}})
    assert core.read_namespaced_pod("target", shop).metadata.labels["team"] == "blue"


# --- finding 5: values the API refuses ----------------------------------------------------------


def test_values_with_a_trailing_newline_never_reach_a_label(api: client.ApiClient) -> None:
    namespace = _namespace(api, {names.ANNOTATION_INJECT: names.INJECT_ENABLED, names.ANNOTATION_ENVIRONMENT: "prod\n"})
    try:
        made = client.CoreV1Api(api).create_namespaced_pod(namespace, pod("nl", annotations={
            names.ANNOTATION_PURPOSE: "frontend\n"}))
        labels = made.metadata.labels
        assert labels[names.LABEL_ENVIRONMENT] == "unspecified" and labels[names.LABEL_PURPOSE] == "unspecified"
    finally:
        client.CoreV1Api(api).delete_namespace(namespace)


def test_the_ephemeral_containers_subresource_cannot_change_labels_on_the_real_server(
        stack: Stack, api: client.ApiClient, shop: str) -> None:
    # why the guard covers pods and pods/status only: upstream's ephemeralcontainers (and resize)
    # strategies keep the stored metadata, and a binding only sets annotations
    if stack.engine != "kube":
        pytest.skip("the local engine serves only the status subresource of pods")
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(shop, pod("debugged"))
    core.patch_namespaced_pod_ephemeralcontainers("debugged", shop, {
        "metadata": {"labels": {names.LABEL_IDENTITY: f"{shop}.deploy.api"}},
        "spec": {"ephemeralContainers": [{"name": "dbg", "image": "busybox:1.36"}]}})
    after = core.read_namespaced_pod("debugged", shop)
    assert [c.name for c in after.spec.ephemeral_containers] == ["dbg"]  # the patch itself went through
    assert after.metadata.labels[names.LABEL_IDENTITY] == f"{shop}.pod.debugged"
