"""Opt-in and the labels netwarden gives a pod."""

from __future__ import annotations

from hypothesis import given, strategies as st

from netwarden.model import names
from netwarden.model.identity import Workload
from netwarden.model.labels import NamespaceFacts, derive_pod_labels, environment_of, is_opted_in, namespace_mode, spoofed_label_keys
from netwarden.model.labelvalues import is_valid_label_value

NS_IN = NamespaceFacts("shop", {names.LABEL_INJECT: "enabled", "environment": "production"})
NS_OUT = NamespaceFacts("other")
API = Workload("shop", "Deployment", "api")


def test_opt_in_by_namespace_label_namespace_annotation_or_pod_annotation() -> None:
    assert is_opted_in(NS_IN, {}, {})
    assert is_opted_in(NamespaceFacts("a", {}, {names.ANNOTATION_INJECT: "enabled"}), {}, {})
    assert is_opted_in(NS_OUT, {}, {names.ANNOTATION_INJECT: "enabled"})
    assert not is_opted_in(NS_OUT, {}, {})


def test_pod_opt_out_by_label_or_annotation_wins_over_namespace_opt_in() -> None:
    assert not is_opted_in(NS_IN, {}, {names.ANNOTATION_INJECT: "disabled"})
    assert not is_opted_in(NS_IN, {names.LABEL_INJECT: "disabled"}, {})


def test_derived_labels_come_from_trusted_sources() -> None:
    decision = derive_pod_labels(API, NS_IN, "api-sa", {"app.kubernetes.io/component": "backend"}, {}, "i-1")
    assert decision.labels == {
        names.LABEL_IDENTITY: "shop.deploy.api",
        names.LABEL_WORKLOAD_KIND: "deployment",
        names.LABEL_WORKLOAD: "api",
        names.LABEL_SERVICE_ACCOUNT: "api-sa",
        names.LABEL_PURPOSE: "backend",
        names.LABEL_ENVIRONMENT: "production",
        names.LABEL_INSTANCE: "i-1",
    }
    assert decision.warnings == ()


def test_purpose_annotation_beats_component_label_and_invalid_one_warns() -> None:
    ok = derive_pod_labels(API, NS_IN, "sa", {"app.kubernetes.io/component": "x"}, {names.ANNOTATION_PURPOSE: "database"}, "i")
    assert ok.labels[names.LABEL_PURPOSE] == "database"
    bad = derive_pod_labels(API, NS_IN, "sa", {}, {names.ANNOTATION_PURPOSE: "not valid!"}, "i")
    assert bad.labels[names.LABEL_PURPOSE] == "unspecified" and len(bad.warnings) == 1


def test_spoofed_identity_label_is_overwritten_and_warned_about() -> None:
    claimed = {names.LABEL_IDENTITY: "payments.deploy.gateway", names.LABEL_PURPOSE: "frontend", "netwarden.io/admin": "yes"}
    decision = derive_pod_labels(API, NS_IN, "sa", claimed, {}, "i")
    assert decision.labels[names.LABEL_IDENTITY] == "shop.deploy.api"
    assert len(decision.warnings) == 3
    assert spoofed_label_keys(claimed) == ["netwarden.io/admin"]
    assert spoofed_label_keys({names.LABEL_INJECT: "disabled"}) == []


def test_environment_sources_in_order_and_mode_defaults() -> None:
    assert environment_of(NamespaceFacts("a", {names.ANNOTATION_ENVIRONMENT: "staging", "environment": "prod"})) == "staging"
    assert environment_of(NamespaceFacts("a", {}, {"environment": "dev"})) == "dev"
    assert environment_of(NamespaceFacts("a")) == "unspecified"
    assert namespace_mode(NamespaceFacts("a", {}, {names.ANNOTATION_MODE: "enforce"}), "dry-run") == "enforce"
    assert namespace_mode(NamespaceFacts("a", {}, {names.ANNOTATION_MODE: "yolo"}), "dry-run") == "dry-run"


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=80), max_size=5),
       st.dictionaries(st.text(max_size=20), st.text(max_size=80), max_size=5), st.text(max_size=300))
def test_derived_label_values_are_always_valid(labels: dict, annotations: dict, sa: str) -> None:
    decision = derive_pod_labels(API, NamespaceFacts("shop", labels, annotations), sa, labels, annotations, "i-1")
    assert all(is_valid_label_value(v) for v in decision.labels.values())


def test_object_names_are_always_dns_subdomains_even_from_names_with_empty_parts() -> None:
    import re

    from netwarden.model.labelvalues import fit_object_name

    # upstream's IsDNS1123Subdomain, written here independently of labelvalues.py
    subdomain = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

    # found by the fuzzed property: a pod named "0..0" gave the baseline name "netwarden-pod-0..0"
    for raw in ("netwarden-pod-0..0", "netwarden-pod-a.-b", "netwarden-pod-x.", "Netwarden-Pod-API", "a" * 300):
        fitted = fit_object_name(raw)
        assert subdomain.fullmatch(fitted) and len(fitted) <= 253, (raw, fitted)
    assert fit_object_name("netwarden-deploy-web") == "netwarden-deploy-web"
    assert fit_object_name("netwarden-pod-0..0") != fit_object_name("netwarden-pod-0.0")
