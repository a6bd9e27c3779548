"""Dynamic admission against a real HTTPS webhook with a throwaway CA."""

from __future__ import annotations

import glob
import json
from typing import Any

import pytest
import requests
from kubernetes import client

from localkube_webhook import Webhook, patch_b64
from localkube import LocalKube
from tests.support.data import PAYLOADS

POD = {"metadata": {"name": "p", "labels": {"app": "web"}},
       "spec": {"containers": [{"name": "c", "image": "nginx"}]}}


def register(kube: LocalKube, hook: Webhook, mutating: bool, name: str = "hook.netwarden.io",
             **extra: Any) -> None:
    adm = client.AdmissionregistrationV1Api(kube.api_client())
    spec = {"name": name, "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"url": hook.url, "caBundle": hook.ca_bundle},
            "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"]}], **extra}
    body = {"metadata": {"name": name}, "webhooks": [spec]}
    if mutating:
        adm.create_mutating_webhook_configuration(body)
    else:
        adm.create_validating_webhook_configuration(body)


def test_mutating_webhook_patch_is_applied_and_review_is_v1(kube: LocalKube, core: client.CoreV1Api,
                                                            webhook: Webhook) -> None:
    webhook.decide = lambda r: {"allowed": True, "patchType": "JSONPatch",
                                "patch": patch_b64([{"op": "add", "path": "/metadata/labels/injected", "value": "yes"}])}
    register(kube, webhook, mutating=True)
    pod = core.create_namespaced_pod("default", POD)
    assert pod.metadata.labels == {"app": "web", "injected": "yes"}
    req = webhook.seen[0]["request"]
    assert webhook.seen[0]["apiVersion"] == "admission.k8s.io/v1"
    assert req["operation"] == "CREATE" and req["namespace"] == "default" and req["name"] == "p"
    assert req["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert req["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert req["userInfo"]["username"] == "system:admin" and req["dryRun"] is False
    assert req["options"]["kind"] == "CreateOptions" and req["oldObject"] is None


def test_validating_denial_uses_upstream_message_and_code(kube: LocalKube, core: client.CoreV1Api,
                                                          webhook: Webhook) -> None:
    webhook.decide = lambda r: {"allowed": False, "status": {"code": 403, "message": "no labels, no entry"}}
    register(kube, webhook, mutating=False, name="deny.netwarden.io")
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_pod("default", POD)
    body = json.loads(err.value.body)
    assert err.value.status == 403
    assert body["message"] == 'admission webhook "deny.netwarden.io" denied the request: no labels, no entry'


def test_update_sends_old_object(kube: LocalKube, core: client.CoreV1Api, webhook: Webhook) -> None:
    core.create_namespaced_pod("default", POD)
    register(kube, webhook, mutating=False)
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"app": "api"}}})
    req = webhook.seen[-1]["request"]
    assert req["operation"] == "UPDATE"
    assert req["oldObject"]["metadata"]["labels"] == {"app": "web"}
    assert req["object"]["metadata"]["labels"] == {"app": "api"}


def test_unreachable_webhook_fail_policy_is_500_and_ignore_passes(kube: LocalKube, core: client.CoreV1Api,
                                                                 webhook: Webhook) -> None:
    webhook.port = 1  # nothing listens there
    register(kube, webhook, mutating=False, name="down.netwarden.io", failurePolicy="Fail")
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_pod("default", POD)
    body = json.loads(err.value.body)
    assert err.value.status == 500 and body["reason"] == "InternalError"
    assert body["message"].startswith('Internal error occurred: failed calling webhook "down.netwarden.io": '
                                      'failed to call webhook: Post "https://127.0.0.1:1/admit?timeout=10s"')
    client.AdmissionregistrationV1Api(kube.api_client()).delete_validating_webhook_configuration(
        "down.netwarden.io")
    register(kube, webhook, mutating=False, name="down-ignored.netwarden.io", failurePolicy="Ignore")
    assert core.create_namespaced_pod("default", POD).metadata.name == "p"


def test_untrusted_ca_counts_as_call_failure(kube: LocalKube, core: client.CoreV1Api, webhook: Webhook) -> None:
    from localkube.tls import make_serving_cert
    import base64
    webhook.ca_bundle = base64.b64encode(make_serving_cert().ca_pem).decode()
    register(kube, webhook, mutating=False)
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_pod("default", POD)
    assert err.value.status == 500 and not webhook.seen


def test_namespace_and_object_selectors_limit_calls(kube: LocalKube, core: client.CoreV1Api,
                                                    webhook: Webhook) -> None:
    core.create_namespace({"metadata": {"name": "opted", "labels": {"netwarden.io/inject": "enabled"}}})
    register(kube, webhook, mutating=True,
             namespaceSelector={"matchLabels": {"netwarden.io/inject": "enabled"}},
             objectSelector={"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]})
    core.create_namespaced_pod("default", POD)
    assert webhook.seen == []
    skipped = {**POD, "metadata": {"name": "s", "labels": {"skip": "1"}}}
    core.create_namespaced_pod("opted", skipped)
    assert webhook.seen == []
    core.create_namespaced_pod("opted", POD)
    assert [r["request"]["namespace"] for r in webhook.seen] == ["opted"]


def test_rules_match_operations_and_subresources(kube: LocalKube, core: client.CoreV1Api,
                                                 webhook: Webhook) -> None:
    register(kube, webhook, mutating=False, rules=[{"operations": ["UPDATE"], "apiGroups": [""],
                                                    "apiVersions": ["v1"], "resources": ["pods/status"]}])
    core.create_namespaced_pod("default", POD)
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"x": "y"}}})
    assert webhook.seen == []
    core.patch_namespaced_pod_status("p", "default", {"status": {"phase": "Running"}})
    assert [r["request"].get("subResource") for r in webhook.seen] == ["status"]


def test_dry_run_refused_for_webhooks_with_side_effects(kube: LocalKube, core: client.CoreV1Api,
                                                        webhook: Webhook) -> None:
    register(kube, webhook, mutating=False, sideEffects="Unknown")
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_pod("default", POD, dry_run="All")
    assert err.value.status == 400
    assert json.loads(err.value.body)["message"] == 'admission webhook "hook.netwarden.io" does not support dry run'


def test_dry_run_still_runs_side_effect_free_admission(kube: LocalKube, core: client.CoreV1Api,
                                                       webhook: Webhook) -> None:
    register(kube, webhook, mutating=False)
    core.create_namespaced_pod("default", POD, dry_run="All")
    assert webhook.seen[0]["request"]["dryRun"] is True
    with pytest.raises(client.ApiException):
        core.read_namespaced_pod("p", "default")


def test_warnings_come_back_as_warning_headers(kube: LocalKube, webhook: Webhook) -> None:
    webhook.decide = lambda r: {"allowed": True, "warnings": ["image has no digest"]}
    register(kube, webhook, mutating=False)
    resp = requests.post(f"{kube.url}/api/v1/namespaces/default/pods", json=POD, timeout=10)
    assert resp.status_code == 201
    assert resp.headers["Warning"] == '299 - "image has no digest"'


def test_service_client_config_resolves_through_service_addresses(webhook: Webhook) -> None:
    with LocalKube(service_addresses={("default", "hook", 443): f"127.0.0.1:{webhook.port}"}) as kube:
        adm = client.AdmissionregistrationV1Api(kube.api_client())
        adm.create_mutating_webhook_configuration({"metadata": {"name": "svc"}, "webhooks": [{
            "name": "svc.netwarden.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"service": {"namespace": "default", "name": "hook", "path": "/admit"},
                             "caBundle": webhook.ca_bundle},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["configmaps"]}]}]})
        client.CoreV1Api(kube.api_client()).create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    assert webhook.seen[0]["request"]["resource"]["resource"] == "configmaps"


def test_bearer_token_names_the_user_in_the_review(webhook: Webhook) -> None:
    with LocalKube(tokens={"t0k3n": "alice"}) as kube:
        register(kube, webhook, mutating=False)
        client.CoreV1Api(kube.api_client()).create_namespaced_pod("default", POD)
        assert requests.get(f"{kube.url}/api/v1/pods", timeout=5).status_code == 401
    assert webhook.seen[0]["request"]["userInfo"]["username"] == "alice"


@pytest.mark.parametrize("path", sorted(glob.glob(str(PAYLOADS / "admission" / "v1*_pod-create_*.json"))))
def test_real_admission_payload_pods_create_in_their_namespace(kube: LocalKube, core: client.CoreV1Api,
                                                               webhook: Webhook, path: str) -> None:
    review = json.load(open(path))
    request = review["request"]
    namespace = request.get("namespace") or request["object"]["metadata"].get("namespace") or "default"
    if namespace not in [n.metadata.name for n in core.list_namespace().items]:
        core.create_namespace({"metadata": {"name": namespace}})
    register(kube, webhook, mutating=True)
    pod = dict(request["object"])
    pod.setdefault("apiVersion", "v1")
    pod.setdefault("kind", "Pod")
    meta = pod["metadata"] = {k: v for k, v in pod["metadata"].items()
                              if k not in ("uid", "resourceVersion", "creationTimestamp", "ownerReferences",
                                           "managedFields")}
    made = core.create_namespaced_pod(namespace, pod)
    assert made.metadata.namespace == namespace and made.metadata.name == (meta.get("name") or made.metadata.name)
    sent = webhook.seen[0]["request"]["object"]
    assert sent["spec"]["containers"][0]["image"] == pod["spec"]["containers"][0]["image"]
    assert made.status.phase == "Pending"
