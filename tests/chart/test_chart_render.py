"""The chart lints clean, renders in every supported configuration, and every object it renders
is valid Kubernetes for the oldest and newest versions kubernetes-validate knows within kubeVersion."""

from __future__ import annotations

import copy
from typing import Any

import pytest

pytest.importorskip("helm_python", reason="pip install helm-python-sdk")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")

from tests.chart.chartkit import KUBE_VERSIONS, of_kind, one, render, lint, render_files  # noqa: E402

#: Every alternative a user can choose, named for the test ids.
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "cert-manager": {"certificates": {"source": "certManager"}},
    "cert-manager-cluster-issuer": {
        "certificates": {"source": "certManager", "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}}}
    },
    "user-certs": {"certificates": {"source": "provided", "provided": {"secretName": "my-tls", "caBundle": "TFMwdExTMUNSVWRKVGlCRFJWSlVTVVpKUTBGVVJTMHRMUzB0"}}},
    "ha": {"webhook": {"replicas": 3, "priorityClassName": "system-cluster-critical"}, "reconciler": {"replicas": 2}},
    "monitoring": {"monitoring": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}}},
    "namespace-selector-all": {"webhook": {"namespaceSelectorMode": "all", "excludedNamespaces": ["istio-system"]}},
    "strict": {
        "config": {"mode": "enforce"},
        "webhook": {"failurePolicy": "Fail", "timeoutSeconds": 10, "matchConditions": [
            {"name": "not-node-users", "expression": "!request.userInfo.username.startsWith('system:node:')"}]},
        "networkPolicy": {"apiServerCIDRs": ["10.0.0.0/24", "fd00::/64"]},
    },
    "plain-http-signals": {"reconciler": {"tls": {"enabled": False}, "signalToken": {"existingSecret": "my-token"}}},
    "no-network-policy": {"networkPolicy": {"enabled": False}},
    "image-digest": {"image": {"digest": "sha256:" + "a" * 64}, "imagePullSecrets": [{"name": "regcred"}]},
}

#: Custom resources kubernetes-validate has no schema for; the checks below look at them instead.
CRD_KINDS = {"ServiceMonitor", "Certificate", "Issuer"}


def test_chart_lints_clean_in_strict_mode() -> None:
    assert lint() == []


@pytest.mark.parametrize("kube_version", [f"v{v}" for v in KUBE_VERSIONS])
def test_chart_lints_clean_against_oldest_and_newest_kubernetes(kube_version: str) -> None:
    assert lint(kube_version=kube_version) == []


def test_chart_metadata_declares_v2_versions_and_minimum_kubernetes() -> None:
    import yaml

    from tests.chart.chartkit import CHART_DIR

    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["version"], chart["appVersion"]) == ("v2", "0.1.0", "0.1.0")
    assert chart["kubeVersion"] == ">=1.27.0-0"
    assert KUBE_VERSIONS[0] == "1.27.0"


@pytest.mark.parametrize("values", CONFIGURATIONS.values(), ids=CONFIGURATIONS.keys())
def test_every_configuration_lints_clean(values: dict[str, Any]) -> None:
    assert lint(values) == []


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values", CONFIGURATIONS.values(), ids=CONFIGURATIONS.keys())
def test_every_rendered_object_is_valid_kubernetes(values: dict[str, Any], kube_version: str) -> None:
    docs = render(values)
    assert docs
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(doc, kube_version, strict=True)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_validation_is_strict_about_unknown_fields(kube_version: str) -> None:
    """A negative control: the validator used above does reject a misplaced field."""
    deployment = copy.deepcopy(one(render(), "Deployment", "-webhook"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kube_version, strict=True)


def test_custom_resources_have_the_fields_their_operators_need() -> None:
    docs = render(CONFIGURATIONS["cert-manager"]) + render(CONFIGURATIONS["monitoring"])
    for doc in docs:
        if doc["kind"] not in CRD_KINDS:
            continue
        assert doc["apiVersion"] in ("cert-manager.io/v1", "monitoring.coreos.com/v1"), doc["apiVersion"]
        assert doc["metadata"]["namespace"] == "netwarden-system"
    certificate = one(docs, "Certificate", "-webhook")
    assert certificate["spec"]["secretName"] == "nw-netwarden-webhook-tls"
    assert "nw-netwarden-webhook.netwarden-system.svc" in certificate["spec"]["dnsNames"]
    assert "nw-netwarden-reconciler.netwarden-system.svc" in certificate["spec"]["dnsNames"]
    assert certificate["spec"]["issuerRef"]["name"] == "nw-netwarden-ca"
    monitors = of_kind(docs, "ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {"nw-netwarden-webhook", "nw-netwarden-reconciler"}
    for monitor in monitors:
        endpoint = monitor["spec"]["endpoints"][0]
        assert endpoint["path"] == "/metrics" and endpoint["scheme"] == "https"
        assert endpoint["tlsConfig"]["ca"]["secret"] == {"name": "nw-netwarden-webhook-tls", "key": "ca.crt"}
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_cluster_issuer_replaces_the_chart_ca_chain() -> None:
    docs = render(CONFIGURATIONS["cert-manager-cluster-issuer"])
    assert of_kind(docs, "Issuer") == []
    assert one(docs, "Certificate")["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}


def test_certificate_source_decides_which_certificate_objects_exist() -> None:
    builtin = {d["kind"] for d in render()}
    assert {"Job", "CronJob"} <= builtin and not builtin & CRD_KINDS
    manager = {d["kind"] for d in render(CONFIGURATIONS["cert-manager"])}
    assert {"Certificate", "Issuer"} <= manager and not manager & {"Job", "CronJob"}
    provided = {d["kind"] for d in render(CONFIGURATIONS["user-certs"])}
    assert not provided & ({"Job", "CronJob"} | CRD_KINDS)


def test_long_release_names_keep_every_object_name_within_63_characters() -> None:
    name = "a-very-long-release-name-for-a-platform-team-xyz"
    assert len(name) <= 53
    for doc in render({}, name=name):
        assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]


def test_notes_name_the_opt_in_and_cleanup_commands() -> None:
    text = next(t for p, t in render_files().items() if p.endswith("NOTES.txt"))
    assert "kubectl label namespace <namespace> netwarden.io/inject=enabled" in text
    assert "kubectl delete networkpolicy -A -l app.kubernetes.io/managed-by=netwarden" in text
    all_mode = next(t for p, t in render_files(CONFIGURATIONS["namespace-selector-all"]).items() if p.endswith("NOTES.txt"))
    assert "kubectl annotate namespace <namespace> netwarden.io/inject=enabled" in all_mode
