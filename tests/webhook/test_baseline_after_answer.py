"""webhook.baseline_write async: the baseline is written after the answer, and the pod is contained
from its first packet all the same (the namespace's admission guard is written inside the review).

No API server: a fake client records the writes in order and can hold the baseline's write back,
so the test looks at the policies that exist at the moment the API server gets its answer."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
from typing import Any

import orjson
import pytest

from netwarden.model import names
from netwarden.model.netpol_eval import ExternalIP, PodInfo, PolicySet
from netwarden.platform.config import NetwardenConfig, WebhookConfig
from netwarden.webhook.app import answer_review
from netwarden.webhook.runtime import WebhookRuntime
from tests.support.waiting import wait_for

NAMESPACE = "shop"


class FakeKube:
    """The KubeClient calls a review makes; `hold` keeps baseline writes waiting until set."""

    def __init__(self, mode: str = names.MODE_ENFORCE, guard_fails: bool = False) -> None:
        self.mode = mode
        self.guard_fails = guard_fails
        self.policies: list[dict[str, Any]] = []
        self.hold = threading.Event()
        self.lock = threading.Lock()

    def bounded(self, deadline: float) -> "FakeKube":
        return self

    def get_namespace(self, name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "annotations": {names.ANNOTATION_INJECT: names.INJECT_ENABLED,
                                                           names.ANNOTATION_MODE: self.mode}}}

    def create_policy(self, manifest: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        role = manifest["metadata"]["labels"][names.LABEL_POLICY_ROLE]
        if role == names.ROLE_ADMISSION_GUARD and self.guard_fails:
            raise ConnectionError("API down")
        if role == names.ROLE_BASELINE:
            assert self.hold.wait(10), "the test never released the baseline write"
        with self.lock:
            if any(p["metadata"]["name"] == manifest["metadata"]["name"] for p in self.policies):
                return "exists", None
            self.policies.append(manifest)
        return "created", manifest

    def emit_event(self, involved: Any, reason: str, message: str) -> None:
        pass

    def names(self) -> list[str]:
        with self.lock:
            return [p["metadata"]["name"] for p in self.policies]


def runtime_with(kube: FakeKube, baseline_write: str = "async") -> WebhookRuntime:
    config = dataclasses.replace(NetwardenConfig(), webhook=WebhookConfig(baseline_write=baseline_write))
    runtime = WebhookRuntime(config, None)
    runtime.kube = runtime.baselines.kube = kube  # type: ignore[assignment]
    return runtime


def review(pod_name: str) -> bytes:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name, "namespace": NAMESPACE},
           "spec": {"containers": [{"name": "app", "image": "nginx", "ports": [{"containerPort": 8080}]}]}}
    return orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": f"uid-{pod_name}", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": NAMESPACE,
        "operation": "CREATE", "userInfo": {"username": "alice"}, "object": pod}})


def admitted_labels(answer: bytes) -> dict[str, str]:
    response = json.loads(answer)["response"]
    assert response["allowed"] is True
    patch = json.loads(base64.b64decode(response["patch"]))
    labels = next(op["value"] for op in patch if op["path"] == "/metadata/labels")
    return labels


def contained(policies: list[dict[str, Any]], labels: dict[str, str]) -> bool:
    """Nothing reaches the pod and the pod reaches nothing (a peer pod, the world, DNS), by NetworkPolicy semantics."""
    pod = PodInfo(NAMESPACE, "web", labels, ip="10.0.0.5")
    peer = PodInfo(NAMESPACE, "client", {"app": "client"}, ip="10.0.0.6")
    evaluator = PolicySet(policies)
    return not any([
        evaluator.is_allowed(peer, pod, 8080), evaluator.is_allowed(ExternalIP("203.0.113.9"), pod, 8080),
        evaluator.is_allowed(pod, peer, 8080), evaluator.is_allowed(pod, ExternalIP("203.0.113.9"), 443),
        evaluator.is_allowed(pod, peer, 53, "UDP"),
    ])


def test_the_pod_is_contained_when_answered_and_its_baseline_lands_after() -> None:
    kube = FakeKube()
    runtime = runtime_with(kube)
    status, answer = answer_review(runtime, "mutate", review("web"), "5s")
    assert status == 200
    labels = admitted_labels(answer)
    # The API server has its answer; the baseline's write is still held back.
    assert kube.names() == [names.ADMISSION_GUARD_POLICY_NAME]
    assert contained(kube.policies, labels), "before its baseline, the guard alone must deny everything"
    kube.hold.set()
    wait_for(lambda: len(kube.names()) == 2, what="the baseline written after the answer")
    baseline = kube.policies[1]
    assert baseline["metadata"]["labels"][names.LABEL_IDENTITY] == labels[names.LABEL_IDENTITY]
    # The guard adds no allow: with the baseline, the pod has exactly what its baseline gives.
    pod = PodInfo(NAMESPACE, "web", labels, ip="10.0.0.5")
    dns = PodInfo("kube-system", "coredns", {"k8s-app": "kube-dns"}, ip="10.0.0.53")
    for policies in (kube.policies, [baseline]):
        assert PolicySet(policies).is_allowed(pod, dns, 53, "UDP")
        assert not PolicySet(policies).is_allowed(pod, ExternalIP("203.0.113.9"), 443)


def test_the_guard_is_written_once_per_namespace_and_each_workload_once() -> None:
    kube = FakeKube()
    kube.hold.set()
    runtime = runtime_with(kube)
    for name in ("a", "b", "a"):
        answer_review(runtime, "mutate", review(name), "5s")
    wait_for(lambda: len(kube.names()) == 3, what="two baselines")
    assert kube.names()[0] == names.ADMISSION_GUARD_POLICY_NAME
    assert sorted(kube.names()[1:]) == ["netwarden-pod-a", "netwarden-pod-b"]


def test_a_guard_that_cannot_be_written_makes_the_review_write_the_baseline_itself() -> None:
    kube = FakeKube(guard_fails=True)
    kube.hold.set()
    runtime = runtime_with(kube)
    policy = runtime.baselines.ensure_policy_after_answer(
        {"metadata": {"namespace": NAMESPACE, "name": "netwarden-pod-web", "labels": {
            names.LABEL_POLICY_ROLE: names.ROLE_BASELINE, names.LABEL_IDENTITY: "shop.pod.web"}}},
        kube, enforcing=True)  # type: ignore[arg-type]
    assert policy == "created" and kube.names() == ["netwarden-pod-web"], "written inside the review"


@pytest.mark.parametrize("mode", [names.MODE_LEARN, names.MODE_DRY_RUN])
def test_learn_and_dry_run_write_no_guard(mode: str) -> None:
    kube = FakeKube(mode=mode)
    runtime = runtime_with(kube)
    status, answer = answer_review(runtime, "mutate", review("web"), "5s")
    assert status == 200 and kube.names() == []  # no policy yet means what their baseline says: allow all
    kube.hold.set()
    wait_for(lambda: kube.names() == ["netwarden-pod-web"], what="the baseline written after the answer")


def test_sync_writes_the_baseline_inside_the_review_and_no_guard() -> None:
    kube = FakeKube()
    kube.hold.set()
    runtime = runtime_with(kube, "sync")
    answer_review(runtime, "mutate", review("web"), "5s")
    assert kube.names() == ["netwarden-pod-web"]
