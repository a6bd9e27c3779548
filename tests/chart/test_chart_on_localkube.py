"""The chart and the code agree: the rendered release, applied to the local API server, runs.

Every object of a default render is applied (hooks in Helm's order: the pre-install Job creates
the certificate Secrets, the post-install Job fills caBundle), then the webhook and the reconciler
start with exactly the args and env of their rendered Deployments, their config.yaml, TLS pair and
signal token read from the ConfigMap and Secrets the chart made. The rendered webhook
configurations reach the webhook through the rendered Service. Only the listening ports are set
(two processes share this host); everything else is the chart's defaults.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("helm_python", reason="pip install helm-python-sdk")

from kubernetes import client  # noqa: E402

from netwarden.platform import config as netwarden_config  # noqa: E402
from netwarden.model import names  # noqa: E402
from tests.chart.chartkit import NAMESPACE, of_kind, render  # noqa: E402
from tests.chart.install import ADMIN_TOKEN, Release, eventually, hook_phases, local_port_values, pod_template, start_release  # noqa: E402

from tests.support.data import PAYLOADS

DATA = PAYLOADS
#: NETWARDEN_* variables the code reads besides the config options (netwarden/platform/config.py).
CODE_ENV = {"NETWARDEN_CONFIG", "NETWARDEN_POD_NAME", "NETWARDEN_POD_IP"}


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    installed = start_release(tmp_path_factory.mktemp("release"), local_port_values())
    try:
        core = client.CoreV1Api(installed.kube.api_client(ADMIN_TOKEN))
        core.create_namespaced_service("kube-system", {
            "metadata": {"name": "kube-dns", "labels": {"k8s-app": "kube-dns"}},
            "spec": {"selector": {"k8s-app": "kube-dns"}, "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}})
        installed.install(installed.docs)
        installed.start_deployment("-webhook")
        installed.start_deployment("-reconciler")
        yield installed
    finally:
        installed.stop()
        installed.kube.stop()


def test_every_rendered_object_is_one_the_local_api_server_stores(release: Release) -> None:
    for doc in release.docs:
        if "test" in hook_phases(doc):
            continue  # created by `helm test` only (tests/chart/test_helm_lifecycle.py runs it), never by an install
        stored = release.get(doc["apiVersion"], doc["kind"], doc["metadata"]["name"],
                             doc["metadata"].get("namespace", NAMESPACE))
        assert stored is not None, f"{doc['kind']} {doc['metadata']['name']}"


def test_the_hooks_made_the_secrets_the_pods_mount_and_filled_both_caBundles(release: Release) -> None:
    ca = release.ca_pem()
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        (doc,) = of_kind(release.docs, kind)
        stored = release.get(doc["apiVersion"], kind, doc["metadata"]["name"])
        assert stored is not None
        for webhook in stored["webhooks"]:
            assert base64.b64decode(webhook["clientConfig"]["caBundle"]) == ca, webhook["name"]


def test_every_netwarden_variable_the_chart_sets_is_one_the_code_reads() -> None:
    known = {opt.env for section in netwarden_config.SECTIONS for opt in netwarden_config.section_options(section)}
    for values in ({}, {"reconciler": {"tls": {"enabled": False}}}):
        for deployment in of_kind(render(values), "Deployment"):
            for item in pod_template(deployment)["containers"][0].get("env") or []:
                if item["name"].startswith("NETWARDEN_"):
                    assert item["name"] in known | CODE_ENV, f"{deployment['metadata']['name']}: {item['name']}"


def test_a_pod_in_an_opted_in_namespace_is_labelled_and_gets_a_baseline_policy(release: Release) -> None:
    api = release.kube.api_client(ADMIN_TOKEN)
    core, net = client.CoreV1Api(api), client.NetworkingV1Api(api)
    core.create_namespace({"metadata": {"name": "shop", "labels": {names.LABEL_INJECT: names.INJECT_ENABLED}}})
    pod = core.create_namespaced_pod("shop", {
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 8080}]}]}})
    labels = pod.metadata.labels
    assert labels[names.LABEL_IDENTITY] and labels[names.LABEL_INSTANCE], labels
    policies = eventually(lambda: net.list_namespaced_network_policy("shop").items, "the baseline policy")
    (policy,) = policies
    assert policy.metadata.labels[names.LABEL_IDENTITY] == labels[names.LABEL_IDENTITY]
    # The validating webhook (rendered, through the Service) refuses a spoofed identity on UPDATE.
    with pytest.raises(client.ApiException) as refused:
        core.patch_namespaced_pod("web", "shop", {"metadata": {"labels": {names.LABEL_IDENTITY: "shop.deploy.x"}}})
    assert refused.value.status in (400, 403)


def test_a_namespace_without_the_opt_in_label_is_left_alone(release: Release) -> None:
    core = client.CoreV1Api(release.kube.api_client(ADMIN_TOKEN))
    core.create_namespace({"metadata": {"name": "other"}})
    pod = core.create_namespaced_pod("other", {"metadata": {"name": "web"},
                                               "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}})
    assert not any(key.startswith(names.PREFIX) for key in (pod.metadata.labels or {}))


def test_a_signal_posted_with_the_rendered_token_is_accepted_and_one_without_is_not(release: Release) -> None:
    (token_secret,) = [d for d in of_kind(release.docs, "Secret") if d["metadata"]["name"].endswith("-signal-token")]
    token = release.secret_data(token_secret["metadata"]["name"])["token"].decode()
    alert = (DATA / "falco/falcosidekick_webhook-post-body_terminal-shell_2024.json").read_bytes()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    status, body = release.request("-reconciler", "POST", "/signals/falco", alert, headers)
    assert status == 200, body
    assert json.loads(body)["accepted"] == 1
    status, _ = release.request("-reconciler", "POST", "/signals/falco", alert, {"Content-Type": "application/json"})
    assert status == 401


def test_the_reconciler_holds_the_rendered_lease(release: Release) -> None:
    deployment = release.deployment("-reconciler")
    env = {e["name"]: e.get("value") for e in pod_template(deployment)["containers"][0]["env"]}
    lease = eventually(lambda: release.get("coordination.k8s.io/v1", "Lease", env["NETWARDEN_RECONCILER_LEASE_NAME"]),
                       "the leader Lease")
    assert re.fullmatch(rf"{deployment['metadata']['name']}-0", lease["spec"]["holderIdentity"])
