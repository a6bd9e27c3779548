"""The reconciler against LocalKube: backfill, drift, cleanup, garbage collection, approvals, rollback."""

from __future__ import annotations

import copy
import json
import time
from typing import Any, Iterator

import pytest
from kubernetes import client

from netwarden.model import names
from netwarden.platform.kube import KubeClient
from netwarden.model.admission import AdmissionSettings
from netwarden.model.labels import NamespaceFacts
from netwarden.model.policy import PolicyMeta, admission_guard_policy, render_network_policy
from netwarden.reconciler.controller import ControllerSettings
from netwarden.reconciler.leader import WriterGate
from netwarden.reconciler.policy_ops import (Change, Pending, PolicyWriter, approve, canonical_spec, reject, rollback, spec_hash,
                                  store_pending)
from netwarden.reconciler.runtime import ReconcilerRuntime, RuntimeSettings
from netwarden.reconciler.runtime import base_intent_of
from netwarden.reconciler.core.pods import PodRef
from netwarden.reconciler.watch import Backoff
from netwarden.webhook.admission import decide_admission

from .conftest import make_deployment, make_namespace, make_pod, wait_until

GRACE = 0.3


def start_runtime(kube: KubeClient, grace: float = GRACE) -> ReconcilerRuntime:
    settings = RuntimeSettings(ControllerSettings(cleanup_grace_seconds=grace, default_mode=names.MODE_ENFORCE,
                                                  write_rate_per_second=100, write_burst=100),
                               tick_seconds=0.2, sync_timeout_seconds=10)
    return ReconcilerRuntime(kube, settings, backoff=Backoff(0.01, 0.1)).start()


@pytest.fixture
def runtime(kube: KubeClient) -> Iterator[ReconcilerRuntime]:
    rt = start_runtime(kube)
    yield rt
    rt.stop()


def policy(net: client.NetworkingV1Api, namespace: str, name: str) -> dict | None:
    try:
        return net.api_client.sanitize_for_serialization(net.read_namespaced_network_policy(name, namespace))
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def events(core: client.CoreV1Api, namespace: str, reason: str) -> list:
    return [e for e in core.list_namespaced_event(namespace).items if e.reason == reason]


def admitted_pod(core: client.CoreV1Api, namespace: str, name: str, **kwargs) -> dict:
    """A pod as the webhook would have labelled it, plus the baseline it would have written."""
    return make_pod(core, namespace, name, labels={names.LABEL_IDENTITY: f"{namespace}.pod.{name}",
                                                   names.LABEL_INSTANCE: f"inst-{name}"}, **kwargs)


def baseline_manifest(namespace: str, name: str, sidecar_ports: tuple[int, ...] = (),
                      annotations: dict[str, str] | None = None) -> dict:
    pod = {"metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
           "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 8080, "protocol": "TCP"}]}],
                    "initContainers": [{"name": "proxy", "restartPolicy": "Always",
                                        "ports": [{"containerPort": p} for p in sidecar_ports]}]}}
    request = {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
               "namespace": namespace, "object": pod}
    facts = NamespaceFacts(namespace, {names.LABEL_INJECT: names.INJECT_ENABLED})
    return decide_admission(request, facts, {}, "inst", AdmissionSettings()).policy_manifest


def test_pod_admitted_without_the_webhook_is_labelled_and_gets_the_webhooks_baseline(
        runtime, core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    make_namespace(core, "shop")
    make_pod(core, "shop", "web")
    labelled = wait_until(lambda: (core.read_namespaced_pod("web", "shop").metadata.labels or {})
                          .get(names.LABEL_IDENTITY))
    assert labelled == "shop.pod.web"
    labels = core.read_namespaced_pod("web", "shop").metadata.labels
    assert labels[names.LABEL_INSTANCE] and labels[names.LABEL_PURPOSE] == "unspecified"
    written = wait_until(lambda: policy(net, "shop", "netwarden-pod-web"))
    assert written["spec"] == canonical_spec(baseline_manifest("shop", "web")["spec"])  # as stored (omitempty)
    assert written["metadata"]["annotations"][names.ANNOTATION_REASON] == names.REASON_BACKFILL
    wait_until(lambda: events(core, "shop", names.EVENT_LABELS_BACKFILLED))


def test_backfilled_baseline_keeps_native_sidecar_ports_as_the_webhooks_does(
        runtime, core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    make_namespace(core, "mesh")
    make_pod(core, "mesh", "web", sidecar_ports=(15001,), annotations={names.ANNOTATION_ALLOW_FROM: "purpose=frontend"})
    written = wait_until(lambda: policy(net, "mesh", "netwarden-pod-web"))
    assert [p["port"] for p in written["spec"]["ingress"][0]["ports"]] == [8080, 15001]
    expected = baseline_manifest("mesh", "web", sidecar_ports=(15001,),
                                 annotations={names.ANNOTATION_ALLOW_FROM: "purpose=frontend"})
    assert written["spec"] == canonical_spec(expected["spec"])


def test_runtimes_declared_baseline_equals_the_admission_one_for_a_pod_with_a_native_sidecar() -> None:
    annotations = {names.ANNOTATION_ALLOW_FROM: "purpose=frontend"}
    pod = {"metadata": {"name": "web", "namespace": "mesh", "annotations": annotations},
           "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 8080}]}],
                    "initContainers": [{"name": "proxy", "restartPolicy": "Always", "ports": [{"containerPort": 15001}]},
                                       {"name": "migrate", "ports": [{"containerPort": 7070}]}]}}
    request = {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
               "namespace": "mesh", "object": pod}
    facts = NamespaceFacts("mesh", {names.LABEL_INJECT: names.INJECT_ENABLED})
    manifest = decide_admission(request, facts, {}, "inst", AdmissionSettings()).policy_manifest
    labelled = {**pod, "metadata": {**pod["metadata"], "labels": {names.LABEL_IDENTITY: "mesh.pod.web"}}}
    intent = base_intent_of(PodRef.from_obj(labelled), names.MODE_ENFORCE)
    meta = PolicyMeta(name=manifest["metadata"]["name"], reason=names.REASON_CREATED_AT_ADMISSION,
                      mode=names.MODE_ENFORCE)
    assert render_network_policy(intent, meta, AdmissionSettings().dns)["spec"] == manifest["spec"]
    assert [p["port"] for p in manifest["spec"]["ingress"][0]["ports"]] == [8080, 15001]


class LeadershipDuringStart(WriterGate):
    """A writer gate that is won while the runtime is starting (between its first resync and ready)."""

    def __init__(self) -> None:
        self.open = False

    def is_open(self) -> bool:
        return self.open


def test_backfill_follows_admissions_one_owner_rule_an_unknown_creator_and_both_levels_verified(
        cluster: Any, runtime: ReconcilerRuntime, core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    # the backfill verified only the ReplicaSet (not the Deployment above it) and believed any creator
    make_namespace(core, "hello-app")
    apps = client.AppsV1Api(cluster.api_client())
    real = make_deployment(apps, "hello-app", "nginx", "676b6c5bbc")  # a real Deployment -> ReplicaSet chain
    # a pod the webhook never saw: nobody knows who created it, so its claim of the ReplicaSet cannot count
    make_pod(core, "hello-app", "nginx-676b6c5bbc-unseen", owner=real)
    assert wait_until(lambda: (core.read_namespaced_pod("nginx-676b6c5bbc-unseen", "hello-app").metadata.labels or {})
                      .get(names.LABEL_IDENTITY)) == "hello-app.pod.nginx-676b6c5bbc-unseen"
    assert wait_until(lambda: policy(net, "hello-app", "netwarden-pod-nginx-676b6c5bbc-unseen"))
    assert policy(net, "hello-app", "netwarden-deploy-nginx") is None
    # a pod admission labelled (its creator judged then): its missing baseline is re-created only when
    # both levels verify; a ReplicaSet whose Deployment is gone (wrong uid) gives no Deployment baseline
    forged_top = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ghost", "uid": "not-the-uid", "controller": True}
    ghost_rs = apps.create_namespaced_replica_set("hello-app", {
        "metadata": {"name": "ghost-5f7c9d8b6", "ownerReferences": [forged_top]},
        "spec": {"selector": {"matchLabels": {"app": "ghost"}},
                 "template": {"metadata": {"labels": {"app": "ghost"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
    ghost_ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": ghost_rs.metadata.name,
                 "uid": ghost_rs.metadata.uid, "controller": True}
    make_pod(core, "hello-app", "ghost-5f7c9d8b6-x1", owner=ghost_ref,
             labels={names.LABEL_IDENTITY: "hello-app.deploy.ghost", names.LABEL_INSTANCE: "inst-ghost"})
    make_pod(core, "hello-app", "nginx-676b6c5bbc-seen", owner=real,
             labels={names.LABEL_IDENTITY: "hello-app.deploy.nginx", names.LABEL_INSTANCE: "inst-seen"})
    assert wait_until(lambda: policy(net, "hello-app", "netwarden-deploy-nginx"))
    assert policy(net, "hello-app", "netwarden-deploy-ghost") is None
    assert policy(net, "hello-app", "netwarden-rs-ghost-5f7c9d8b6") is None  # not the pod's label either


def test_leadership_won_while_starting_still_backfills_pods_that_existed_before(
        kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    """Regression: on_leadership skipped until started, so a Lease won mid-start backfilled nothing."""
    make_namespace(core, "shop")
    make_pod(core, "shop", "old")  # admitted while the webhook was down; nothing will touch it again
    gate = LeadershipDuringStart()
    settings = RuntimeSettings(ControllerSettings(cleanup_grace_seconds=GRACE, default_mode=names.MODE_ENFORCE,
                                                  write_rate_per_second=100, write_burst=100),
                               tick_seconds=0.2, sync_timeout_seconds=10)
    rt = ReconcilerRuntime(kube, settings, gate=gate, backoff=Backoff(0.01, 0.1))
    first_resync = rt.controller.resync

    def resync_then_win_the_lease() -> None:
        first_resync()  # as a follower: the backfill is looked at, and nothing may be written
        wait_until(rt.controller.queue.idle, what="the worker to handle (and, as a follower, drop) the pod's key")
        gate.open = True
        rt.on_leadership()  # the elector's callback, arriving before the runtime is ready
        rt.controller.resync = first_resync

    rt.controller.resync = resync_then_win_the_lease
    rt.start()
    try:
        assert wait_until(lambda: (core.read_namespaced_pod("old", "shop").metadata.labels or {})
                          .get(names.LABEL_IDENTITY)) == "shop.pod.old"
        assert wait_until(lambda: policy(net, "shop", "netwarden-pod-old"))
    finally:
        rt.stop()


def test_pod_in_namespace_not_opted_in_is_left_alone(runtime, core: client.CoreV1Api,
                                                    net: client.NetworkingV1Api) -> None:
    make_namespace(core, "other", opted_in=False)
    make_namespace(core, "shop")
    make_pod(core, "other", "web")
    make_pod(core, "shop", "marker")  # processed after "other"'s pod: once it is labelled, the queue moved past
    wait_until(lambda: policy(net, "shop", "netwarden-pod-marker"))
    assert not (core.read_namespaced_pod("web", "other").metadata.labels or {}).get(names.LABEL_IDENTITY)
    assert net.list_namespaced_network_policy("other").items == []


def test_hand_edited_policy_is_restored_and_adopted_one_is_left_alone(
        runtime, core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    make_namespace(core, "shop")
    make_pod(core, "shop", "web")
    original = wait_until(lambda: policy(net, "shop", "netwarden-pod-web"))
    wait_until(lambda: names.ANNOTATION_SPEC_HASH in (policy(net, "shop", "netwarden-pod-web")["metadata"]
                                                      .get("annotations") or {}))
    edited = policy(net, "shop", "netwarden-pod-web")
    edited["spec"]["ingress"] = [{}]  # someone opens it up by hand
    net.replace_namespaced_network_policy("netwarden-pod-web", "shop", edited)
    restored = wait_until(lambda: (p := policy(net, "shop", "netwarden-pod-web")) and
                          p["spec"] == original["spec"] and p)
    assert restored["metadata"]["annotations"][names.ANNOTATION_REASON] == names.REASON_RESTORED
    wait_until(lambda: events(core, "shop", names.EVENT_POLICY_RESTORED))

    adopted = policy(net, "shop", "netwarden-pod-web")
    adopted["metadata"]["annotations"][names.ANNOTATION_ADOPTED] = "true"
    adopted["spec"]["ingress"] = [{}]
    net.replace_namespaced_network_policy("netwarden-pod-web", "shop", adopted)
    make_pod(core, "shop", "marker")
    wait_until(lambda: policy(net, "shop", "netwarden-pod-marker"))
    runtime.queue.add("np:shop/netwarden-pod-web", 0)
    wait_until(lambda: len(runtime.queue) == 0 and not runtime.queue._processing)
    assert policy(net, "shop", "netwarden-pod-web")["spec"]["ingress"] == [{}]


def test_policy_deleted_by_hand_is_recreated(runtime, core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    make_namespace(core, "shop")
    make_pod(core, "shop", "web")
    original = wait_until(lambda: policy(net, "shop", "netwarden-pod-web"))
    net.delete_namespaced_network_policy("netwarden-pod-web", "shop")
    recreated = wait_until(lambda: (p := policy(net, "shop", "netwarden-pod-web")) and
                           p["metadata"]["uid"] != original["metadata"]["uid"] and p)
    assert recreated["spec"] == original["spec"]


def test_a_deleted_tightened_baseline_comes_back_tightened_not_as_a_fresh_baseline(
        runtime, kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    """Deleting a policy must not be a way to loosen it: the workloads controller re-creates it with the
    spec it last held (after verifying the pod's owners again), with its history."""
    make_namespace(core, "shop")
    make_pod(core, "shop", "web")
    wait_until(lambda: names.ANNOTATION_SPEC_HASH in (policy(net, "shop", "netwarden-pod-web") or {}).get(
        "metadata", {}).get("annotations", {}))
    tightened = copy.deepcopy(policy(net, "shop", "netwarden-pod-web"))
    tightened["spec"]["ingress"] = [{"ports": [{"port": 1111, "protocol": "TCP"}]}]
    tightened["metadata"]["annotations"][names.ANNOTATION_STEP] = names.STEP_TIGHTENED
    PolicyWriter(kube).apply(Change(tightened, names.EVENT_POLICY_TIGHTENED, "test", "tighten"))
    before = wait_until(lambda: (p := policy(net, "shop", "netwarden-pod-web"))
                        and p["spec"]["ingress"] == tightened["spec"]["ingress"] and p)
    wait_until(lambda: runtime.controller.drift._known_good.get(("shop", "netwarden-pod-web"), {}).get(
        "metadata", {}).get("resourceVersion") == before["metadata"]["resourceVersion"])
    net.delete_namespaced_network_policy("netwarden-pod-web", "shop")
    after = wait_until(lambda: (p := policy(net, "shop", "netwarden-pod-web")) and
                       p["metadata"]["uid"] != before["metadata"]["uid"] and p)
    assert after["spec"] == before["spec"]
    annotations = after["metadata"]["annotations"]
    assert annotations[names.ANNOTATION_STEP] == names.STEP_TIGHTENED
    assert annotations[names.ANNOTATION_REASON] == names.REASON_RESTORED
    assert annotations[names.ANNOTATION_HISTORY] == before["metadata"]["annotations"][names.ANNOTATION_HISTORY]
    wait_until(lambda: events(core, "shop", names.EVENT_POLICY_RESTORED))


def test_policies_are_removed_after_the_grace_period_once_the_last_pod_is_gone(
        runtime, core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    make_namespace(core, "shop")
    make_pod(core, "shop", "web")
    wait_until(lambda: policy(net, "shop", "netwarden-pod-web"))
    core.delete_namespaced_pod("web", "shop")
    wait_until(lambda: policy(net, "shop", "netwarden-pod-web") is None)
    wait_until(lambda: events(core, "shop", names.EVENT_POLICY_REMOVED))


def test_finished_job_pod_counts_as_gone(runtime, core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    from .conftest import set_pod_status

    make_namespace(core, "batch")
    make_pod(core, "batch", "job-1")
    wait_until(lambda: policy(net, "batch", "netwarden-pod-job-1"))
    set_pod_status(core, "batch", "job-1", phase="Succeeded", ready=False)
    wait_until(lambda: policy(net, "batch", "netwarden-pod-job-1") is None)


def test_start_up_collects_policies_of_workloads_that_no_longer_exist(
        kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    make_namespace(core, "shop")
    orphan = baseline_manifest("shop", "gone")
    net.create_namespaced_network_policy("shop", orphan)
    admitted_pod(core, "shop", "web")
    kept = baseline_manifest("shop", "web")
    net.create_namespaced_network_policy("shop", kept)
    net.create_namespaced_network_policy("shop", admission_guard_policy("shop"))  # no workload: the namespace's
    rt = start_runtime(kube, grace=3600)
    try:
        wait_until(lambda: policy(net, "shop", "netwarden-pod-gone") is None)
        assert policy(net, "shop", "netwarden-pod-web") is not None
        assert policy(net, "shop", names.ADMISSION_GUARD_POLICY_NAME) is not None, "a guard is never collected"
    finally:
        rt.stop()


def test_approve_applies_the_pending_spec_and_reject_drops_it(
        runtime, kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    make_namespace(core, "shop", mode="approve")
    make_pod(core, "shop", "web")
    current = wait_until(lambda: policy(net, "shop", "netwarden-pod-web"))
    writer = PolicyWriter(kube)
    proposed = copy.deepcopy(current)
    proposed["spec"]["ingress"] = [{"ports": [{"port": 9999, "protocol": "TCP"}]}]
    store_pending(writer, current, Pending((proposed,), (), "tighten", "tighten (score 12.0)", 12.0, 0.0))
    # a user approves with kubectl annotate; the reconciler applies it
    net.patch_namespaced_network_policy("netwarden-pod-web", "shop",
                                        {"metadata": {"annotations": {names.ANNOTATION_APPROVE: "true"}}})
    applied = wait_until(lambda: (p := policy(net, "shop", "netwarden-pod-web"))
                         and p["spec"].get("ingress") == proposed["spec"]["ingress"]
                         and names.ANNOTATION_PENDING not in p["metadata"]["annotations"] and p)
    assert applied["metadata"]["annotations"][names.ANNOTATION_REASON] == names.REASON_APPROVED

    current = policy(net, "shop", "netwarden-pod-web")
    second = copy.deepcopy(current)
    second["spec"]["egress"] = []
    store_pending(writer, current, Pending((second,), (), "tighten", "tighten again", 13.0, 0.0))
    reject(writer, "shop", "netwarden-pod-web", changed_by="test")
    after = policy(net, "shop", "netwarden-pod-web")
    assert names.ANNOTATION_PENDING not in after["metadata"]["annotations"]
    assert after["spec"] == current["spec"]


def approve_and_expect_warning(core: client.CoreV1Api, net: client.NetworkingV1Api, warning: str) -> None:
    """Approve shop/netwarden-pod-web's proposal as a user does (kubectl annotate); the reconciler takes it off
    the policy with a Warning Event saying `warning`."""
    net.patch_namespaced_network_policy("netwarden-pod-web", "shop",
                                        {"metadata": {"annotations": {names.ANNOTATION_APPROVE: "true"}}})
    wait_until(lambda: names.ANNOTATION_PENDING not in policy(net, "shop", "netwarden-pod-web")["metadata"]["annotations"],
               what="the proposal taken off the policy")
    assert wait_until(lambda: [e for e in core.list_namespaced_event("shop").items
                               if e.type == "Warning" and warning in (e.message or "")])


def test_an_approved_proposal_naming_another_namespace_is_refused_not_written(
        runtime, kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    """Whoever may annotate a policy may rewrite its proposal, and the reconciler writes with rights over every
    namespace: a proposal it no longer holds is replayed only within its own namespace's netwarden policies."""
    make_namespace(core, "shop", mode="approve")
    make_namespace(core, "bank")
    make_pod(core, "shop", "web")
    current = wait_until(lambda: policy(net, "shop", "netwarden-pod-web"))
    planted = baseline_manifest("bank", "vault")
    planted["spec"]["ingress"] = [{}]
    store_pending(PolicyWriter(kube), current, Pending((planted,), (), "tighten", "tighten", 12.0, 0.0))
    approve_and_expect_warning(core, net, "proposal refused")
    assert not net.list_namespaced_network_policy("bank").items
    assert policy(net, "shop", "netwarden-pod-web")["spec"] == current["spec"]


def test_an_approved_proposal_this_reconciler_did_not_make_that_deletes_is_dropped_not_replayed(
        runtime, kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    """A delete only releases containment (a quarantine lifted), and a proposal stored on the policy is whatever
    its annotators left there: one the engine does not hold is dropped with a Warning, the policies stay."""
    make_namespace(core, "shop", mode="approve")
    make_pod(core, "shop", "web")
    make_pod(core, "shop", "db")
    current = wait_until(lambda: policy(net, "shop", "netwarden-pod-web"))
    wait_until(lambda: policy(net, "shop", "netwarden-pod-db"))
    store_pending(PolicyWriter(kube), current, Pending((), (("shop", "netwarden-pod-db"),), "lift", "lift", 0.0, 0.0))
    approve_and_expect_warning(core, net, "proposal dropped: it deletes 1 policy")
    assert policy(net, "shop", "netwarden-pod-db") is not None


def propose_no_egress(kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api) -> dict:
    """shop's web baseline with a proposal pending on it (egress closed); returns the policy as it was."""
    make_namespace(core, "shop")
    net.create_namespaced_network_policy("shop", baseline_manifest("shop", "web"))
    current = policy(net, "shop", "netwarden-pod-web")
    proposed = copy.deepcopy(current)
    proposed["spec"]["egress"] = []
    store_pending(PolicyWriter(kube), current, Pending((proposed,), (), "tighten", "tighten", 11.0, 0.0))
    return current


def test_cli_approve_without_a_running_reconciler(kube: KubeClient, core: client.CoreV1Api,
                                                  net: client.NetworkingV1Api) -> None:
    propose_no_egress(kube, core, net)
    approve(PolicyWriter(kube), "shop", "netwarden-pod-web", changed_by="test")
    after = policy(net, "shop", "netwarden-pod-web")
    assert after["spec"].get("egress", []) == []  # stored without the key, as omitempty does upstream
    assert after["metadata"]["annotations"][names.ANNOTATION_REVISION] == "2"
    assert names.ANNOTATION_PENDING not in after["metadata"]["annotations"]


def test_rollback_restores_the_exact_previous_spec_and_to_revision(
        kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    make_namespace(core, "shop")
    net.create_namespaced_network_policy("shop", baseline_manifest("shop", "web"))
    writer = PolicyWriter(kube)
    specs = [policy(net, "shop", "netwarden-pod-web")["spec"]]
    for port in (1111, 2222):
        current = policy(net, "shop", "netwarden-pod-web")
        changed = copy.deepcopy(current)
        changed["spec"]["ingress"] = [{"ports": [{"port": port, "protocol": "TCP"}]}]
        writer.apply(Change(changed, names.EVENT_POLICY_TIGHTENED, "test", "tighten"))
        specs.append(policy(net, "shop", "netwarden-pod-web")["spec"])
    assert policy(net, "shop", "netwarden-pod-web")["metadata"]["annotations"][names.ANNOTATION_REVISION] == "3"

    rollback(writer, "shop", "netwarden-pod-web")
    after = policy(net, "shop", "netwarden-pod-web")
    assert after["spec"] == specs[1]
    assert after["metadata"]["annotations"][names.ANNOTATION_SPEC_HASH] == spec_hash(specs[1])
    rollback(writer, "shop", "netwarden-pod-web", to_revision=1)
    assert policy(net, "shop", "netwarden-pod-web")["spec"] == specs[0]
    assert events(core, "shop", names.EVENT_POLICY_ROLLED_BACK)
    history = json.loads(policy(net, "shop", "netwarden-pod-web")["metadata"]["annotations"][names.ANNOTATION_HISTORY])
    # revision 3 was rolled back (popped) to 4 = specs[1]; --to 1 recorded 4 before replacing it.
    assert [e["revision"] for e in history["entries"]] == [1, 4]
    assert history["entries"][1]["spec"] == specs[1]


def test_a_workload_quarantine_decided_before_its_policy_is_seen_is_kept_and_written_once_it_is(
        kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    """An alert can land between the webhook writing a baseline and the watch delivering it: the decision is
    kept and retried, not dropped while the engine counts the workload quarantined."""
    from netwarden.model.policy import DnsTarget, PolicyIntent
    from netwarden.reconciler.controller import Reconciler
    from netwarden.reconciler.core.decision import Action, Decision, Effect
    from netwarden.reconciler.watch import ClusterIndex

    make_namespace(core, "shop", mode=names.MODE_ENFORCE)
    identity = "shop.pod.web"
    net.create_namespaced_network_policy("shop", render_network_policy(
        PolicyIntent("shop", identity), PolicyMeta("netwarden-pod-web", "test"), DnsTarget()))
    index = ClusterIndex()  # the watch has delivered the workload's pod, not yet its policy
    index.put_pod({"metadata": {"name": "web", "namespace": "shop", "uid": "u-web",
                                "labels": {names.LABEL_IDENTITY: identity, names.LABEL_INSTANCE: "inst-web"}},
                   "spec": {"containers": [{"name": "app", "image": "nginx"}]},
                   "status": {"phase": "Running", "podIP": "10.0.0.5"}})
    controller = Reconciler(kube, index, ControllerSettings(default_mode=names.MODE_ENFORCE))
    try:
        controller.apply_decision(Decision(Action.QUARANTINE_WORKLOAD, identity, "shop", time.time(), names.MODE_ENFORCE,
                                           Effect.WRITE, "shell in every replica", 30.0, names.STEP_BASELINE,
                                           names.STEP_QUARANTINED,
                                           intents=(PolicyIntent("shop", identity, step=names.STEP_QUARANTINED),)))
        assert ("shop", identity) in controller.decisions.pending_workload_work()
        index.put_policy(policy(net, "shop", "netwarden-pod-web"))
        controller.decisions.retry_workload_write("shop", identity)
    finally:
        controller.stop()
    after = policy(net, "shop", "netwarden-pod-web")
    assert after["metadata"]["annotations"][names.ANNOTATION_STEP] == names.STEP_QUARANTINED
    assert not controller.decisions.pending_workload_work()


def test_an_automatic_rollback_writes_the_intent_before_the_tightening_and_records_the_spec_it_replaced(
        kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    """The engine keeps no copy of a policy's specs: its rollback decision carries the intent to return to,
    and the spec it replaces joins the policy's history annotation (the one home `netwarden rollback` reads)."""
    from netwarden.model.policy import DnsTarget, PolicyIntent, PortSpec, Rule
    from netwarden.reconciler.controller import Reconciler
    from netwarden.reconciler.core.decision import Action, Decision, Effect
    from netwarden.reconciler.policy_ops import history_of
    from netwarden.reconciler.watch import ClusterIndex

    make_namespace(core, "shop", mode=names.MODE_ENFORCE)
    identity = "shop.pod.web"
    base = PolicyIntent("shop", identity, ingress=(Rule((), (PortSpec("TCP", 8080),)),))
    tightened = PolicyIntent("shop", identity, step=names.STEP_TIGHTENED)
    net.create_namespaced_network_policy("shop", render_network_policy(base, PolicyMeta("netwarden-pod-web", "test"),
                                                                       DnsTarget()))
    writer = PolicyWriter(kube)
    tightened_manifest = render_network_policy(tightened, PolicyMeta("netwarden-pod-web", "test"), DnsTarget())
    writer.apply(Change(tightened_manifest, names.EVENT_POLICY_TIGHTENED, "test", "tighten"))
    before = policy(net, "shop", "netwarden-pod-web")
    index = ClusterIndex()
    index.put_policy(before)
    controller = Reconciler(kube, index, ControllerSettings(default_mode=names.MODE_ENFORCE))
    try:
        controller.apply_decision(Decision(Action.ROLLBACK, identity, "shop", time.time(), names.MODE_ENFORCE,
                                           Effect.WRITE, "lost readiness", 1.0, names.STEP_TIGHTENED,
                                           names.STEP_BASELINE, intents=(base,)))
    finally:
        controller.stop()
    after = policy(net, "shop", "netwarden-pod-web")
    assert canonical_spec(after["spec"]) == canonical_spec(render_network_policy(
        base, PolicyMeta("netwarden-pod-web", "test"), DnsTarget())["spec"])
    assert after["metadata"]["annotations"][names.ANNOTATION_STEP] == names.STEP_BASELINE
    entries = history_of(after).entries
    assert canonical_spec(entries[-1].spec) == canonical_spec(before["spec"])  # the tightened spec, kept
    assert int(after["metadata"]["annotations"][names.ANNOTATION_REVISION]) == int(
        before["metadata"]["annotations"][names.ANNOTATION_REVISION]) + 1
    assert events(core, "shop", names.EVENT_POLICY_ROLLED_BACK)
