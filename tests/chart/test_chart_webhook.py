"""What the webhook configurations tell the API server: who is sent, how failures are treated."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

pytest.importorskip("helm_python", reason="pip install helm-python-sdk")

from netwarden.model import names  # noqa: E402
from netwarden.tools.stack import webhook_configurations  # noqa: E402
from tests.chart.chartkit import NAMESPACE, of_kind, one, render  # noqa: E402


def webhooks(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    docs = render(values)
    configs = of_kind(docs, "MutatingWebhookConfiguration") + of_kind(docs, "ValidatingWebhookConfiguration")
    assert len(configs) == 2
    return [hook for config in configs for hook in config["webhooks"]]


def expression(hook: dict[str, Any], key: str) -> dict[str, Any] | None:
    return next((e for e in hook["namespaceSelector"]["matchExpressions"] if e["key"] == key), None)


@pytest.mark.parametrize("mode", ["label", "all"])
def test_webhooks_never_see_kube_system_or_their_own_namespace(mode: str) -> None:
    for hook in webhooks({"webhook": {"namespaceSelectorMode": mode, "excludedNamespaces": ["istio-system"]}}):
        excluded = expression(hook, "kubernetes.io/metadata.name")
        assert excluded is not None and excluded["operator"] == "NotIn"
        assert {"kube-system", NAMESPACE, "istio-system"} <= set(excluded["values"])


def test_own_namespace_exclusion_follows_the_release_namespace() -> None:
    docs = render({}, namespace="security")
    hook = one(docs, "MutatingWebhookConfiguration")["webhooks"][0]
    assert "security" in expression(hook, "kubernetes.io/metadata.name")["values"]


def test_label_mode_sends_only_namespaces_labelled_for_injection_to_the_mutating_webhook() -> None:
    hook = one(render(), "MutatingWebhookConfiguration")["webhooks"][0]
    assert expression(hook, "netwarden.io/inject") == {"key": "netwarden.io/inject", "operator": "In", "values": ["enabled"]}


def test_the_label_guard_sees_every_namespace_but_the_excluded_ones_in_both_modes() -> None:
    # a pod in a namespace that is not opted in must not keep netwarden.io/* labels it set itself
    for mode in ("label", "all"):
        hook = one(render({"webhook": {"namespaceSelectorMode": mode}}), "ValidatingWebhookConfiguration")["webhooks"][0]
        assert [e["key"] for e in hook["namespaceSelector"]["matchExpressions"]] == ["kubernetes.io/metadata.name"]


def test_all_mode_sends_every_namespace_but_the_excluded_ones() -> None:
    for hook in webhooks({"webhook": {"namespaceSelectorMode": "all"}}):
        assert expression(hook, "netwarden.io/inject") is None
        assert len(hook["namespaceSelector"]["matchExpressions"]) == 1


def test_failure_policy_and_timeout_are_as_configured() -> None:
    for hook in webhooks():
        assert (hook["failurePolicy"], hook["timeoutSeconds"]) == ("Ignore", 5)
    for hook in webhooks({"webhook": {"failurePolicy": "Fail", "timeoutSeconds": 12}}):
        # The NetworkPolicy warning hook only warns: it never blocks, whatever the failurePolicy value.
        expected = "Ignore" if hook["name"] == "networkpolicies.validate.netwarden.io" else "Fail"
        assert (hook["failurePolicy"], hook["timeoutSeconds"]) == (expected, 12)


def test_mutating_webhook_handles_pod_creation_with_dry_run_safe_side_effects() -> None:
    hook = one(render(), "MutatingWebhookConfiguration")["webhooks"][0]
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["sideEffects"] == "NoneOnDryRun"
    assert hook["reinvocationPolicy"] == "Never"
    assert hook["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"], "scope": "Namespaced"}]
    assert hook["clientConfig"]["service"]["path"] == "/mutate"
    # opted-out pods are sent too: their self-set netwarden.io/* labels are removed
    assert "objectSelector" not in hook


def test_validating_webhook_guards_pod_creates_updates_and_status_updates_without_an_object_selector() -> None:
    hook = one(render(), "ValidatingWebhookConfiguration")["webhooks"][0]
    assert [(r["operations"], r["resources"]) for r in hook["rules"]] == [
        (["CREATE", "UPDATE"], ["pods"]), (["UPDATE"], ["pods/status"])]
    assert hook["clientConfig"]["service"]["path"] == "/validate"
    assert hook["sideEffects"] == "None"
    assert "objectSelector" not in hook


def test_webhooks_call_the_webhook_service_on_the_port_it_exposes() -> None:
    docs = render({"webhook": {"port": 9443, "service": {"port": 8443}}})
    service = one(docs, "Service", "-webhook")
    container = one(docs, "Deployment", "-webhook")["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0] == {"name": "https", "containerPort": 9443, "protocol": "TCP"}
    assert container["args"][-2:] == ["--port", "9443"]
    assert service["spec"]["ports"][0]["targetPort"] == "https"
    for hook in webhooks({"webhook": {"port": 9443, "service": {"port": 8443}}}):
        assert hook["clientConfig"]["service"] == {
            "name": service["metadata"]["name"], "namespace": NAMESPACE, "path": hook["clientConfig"]["service"]["path"], "port": 8443}


WRITERS = [f"system:serviceaccount:{NAMESPACE}:nw-netwarden-webhook",
           f"system:serviceaccount:{NAMESPACE}:nw-netwarden-reconciler"]


def own_conditions(hook: dict[str, Any]) -> list[dict[str, str]]:
    """The guards' own matchConditions (the ones stack.webhook_configurations registers too)."""
    if hook["name"] == "managed-networkpolicies.validate.netwarden.io":
        return [names.writers_match_condition(WRITERS)]
    return [dict(names.GUARD_MATCH_CONDITION)] if hook["name"] == "pods.validate.netwarden.io" else []


def test_match_conditions_are_optional_and_passed_through() -> None:
    assert all(hook.get("matchConditions", []) == own_conditions(hook) for hook in webhooks())
    condition = {"name": "skip-nodes", "expression": "!request.userInfo.username.startsWith('system:node:')"}
    assert all(hook["matchConditions"] == own_conditions(hook) + [condition]
               for hook in webhooks({"webhook": {"matchConditions": [condition]}}))


def test_the_label_guard_is_sent_updates_only_when_they_touch_a_reserved_label_as_the_local_stack_registers_it() -> None:
    hook = one(render(), "ValidatingWebhookConfiguration")["webhooks"][0]
    _, validating = webhook_configurations("https://127.0.0.1:1", b"ca")
    assert hook["matchConditions"] == validating["webhooks"][0]["matchConditions"] == [names.GUARD_MATCH_CONDITION]


def test_ca_bundle_comes_from_the_chosen_certificate_source() -> None:
    # Built-in: offline (first install) there is no Secret to look up; the post-install Job patches it.
    assert all("caBundle" not in hook["clientConfig"] for hook in webhooks())
    provided = webhooks({"certificates": {"source": "provided", "provided": {"secretName": "mine", "caBundle": "Q0E="}}})
    assert all(hook["clientConfig"]["caBundle"] == "Q0E=" for hook in provided)
    docs = render({"certificates": {"source": "certManager"}})
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        config = one(docs, kind)
        assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/nw-netwarden-webhook"
        assert "caBundle" not in config["webhooks"][0]["clientConfig"]


def test_provided_certificates_need_a_secret_name_and_ca_bundle() -> None:
    from helm_python import HelmError

    with pytest.raises(HelmError, match="secretName is required"):
        render({"certificates": {"source": "provided", "provided": {"caBundle": "Q0E="}}})
    with pytest.raises(HelmError, match="caBundle is required"):
        render({"certificates": {"source": "provided", "provided": {"secretName": "mine"}}})


def test_validating_webhook_warns_on_user_network_policies_and_never_blocks_them() -> None:
    hook = one(render(), "ValidatingWebhookConfiguration")["webhooks"][1]
    assert hook["name"] == "networkpolicies.validate.netwarden.io"
    assert hook["rules"] == [{"apiGroups": ["networking.k8s.io"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                              "resources": ["networkpolicies"], "scope": "Namespaced"}]
    assert hook["failurePolicy"] == "Ignore" and hook["clientConfig"]["service"]["path"] == "/validate"
    assert hook["objectSelector"] == {"matchExpressions": [
        {"key": "app.kubernetes.io/managed-by", "operator": "NotIn", "values": ["netwarden"]}]}
    # Opted-in namespaces only, as the mutating webhook sees them.
    assert hook["namespaceSelector"] == one(render(), "MutatingWebhookConfiguration")["webhooks"][0]["namespaceSelector"]


def test_netwardens_own_policies_are_guarded_against_every_writer_but_netwarden_as_the_local_stack_registers_it() -> None:
    """Every managed NetworkPolicy write is sent but netwarden's own (and the listed operators'), which never
    wait on the webhook; failing as the label guard does."""
    values = {"webhook": {"failurePolicy": "Fail", "policyWriters": ["alice@example.com"]}}
    hook = one(render(values), "ValidatingWebhookConfiguration")["webhooks"][2]
    assert hook["name"] == "managed-networkpolicies.validate.netwarden.io"
    assert hook["rules"] == [{"apiGroups": ["networking.k8s.io"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                              "resources": ["networkpolicies"], "scope": "Namespaced"}]
    assert hook["objectSelector"] == {"matchLabels": {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE}}
    assert hook["failurePolicy"] == "Fail" and hook["clientConfig"]["service"]["path"] == "/validate"
    assert hook["matchConditions"] == [names.writers_match_condition(WRITERS + ["alice@example.com"])]
    config = yaml.safe_load(one(render(values), "ConfigMap", "-config")["data"]["config.yaml"])
    assert config["webhook"]["policy_writers"] == ["alice@example.com"]
    _, validating = webhook_configurations("https://127.0.0.1:1", b"ca", policy_writers=tuple(WRITERS))
    stack_hook = validating["webhooks"][1]
    assert {k: stack_hook[k] for k in ("rules", "objectSelector", "matchConditions")} == {
        "rules": hook["rules"], "objectSelector": hook["objectSelector"],
        "matchConditions": [names.writers_match_condition(WRITERS)]}
