"""What netwarden's own pods may do: RBAC exactly as listed, hardened containers, locked-down network."""

from __future__ import annotations

import pytest

pytest.importorskip("helm_python", reason="pip install helm-python-sdk")

from tests.chart.chartkit import CHART_DIR, granted_rbac, of_kind, one, pod_specs, render  # noqa: E402
from netwarden.platform import kube as netwarden_kube  # noqa: E402
from tests.chart.expected_rbac import EXPECTED_RBAC, RECONCILER_ADMIN_POLICIES  # noqa: E402

ALL_PODS = {"monitoring": {"monitoring": {"serviceMonitor": {"enabled": True}}}}


def test_rendered_rbac_is_exactly_the_expected_list() -> None:
    assert granted_rbac(render()) == {key: set(triples) for key, triples in EXPECTED_RBAC.items()}


def test_without_builtin_certificates_no_certificate_job_rbac_is_granted() -> None:
    granted = granted_rbac(render({"certificates": {"source": "certManager"}}))
    assert set(granted) == {"webhook", "reconciler"}


def test_no_rbac_rule_uses_wildcards() -> None:
    for doc in render():
        for rule in doc.get("rules", []) if doc["kind"] in ("Role", "ClusterRole") else []:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), (doc["metadata"]["name"], rule)
            assert all("*" not in resource for resource in rule["resources"])


def test_certificate_jobs_may_touch_only_netwarden_secrets_and_webhooks_by_name() -> None:
    for doc in render():
        if doc["kind"] not in ("Role", "ClusterRole") or "-certs" not in doc["metadata"]["name"]:
            continue
        for rule in doc["rules"]:
            if rule["verbs"] == ["create"]:
                assert rule["resources"] == ["secrets"]
            else:
                assert rule.get("resourceNames"), rule
                assert all(name.startswith("nw-netwarden-") for name in rule["resourceNames"])


def test_lease_access_is_namespaced_to_the_release() -> None:
    role = one(render(), "Role", "-reconciler-lease")
    assert role["metadata"]["namespace"] == "netwarden-system"
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]
    assert not any("leases" in r["resources"] for d in of_kind(render(), "ClusterRole") for r in d["rules"])


def test_learned_state_secrets_are_read_and_updated_by_name_never_created() -> None:
    role = one(render({"reconciler": {"stateShards": 3}}), "Role", "-reconciler-state")
    assert role["metadata"]["namespace"] == "netwarden-system"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "update"],
                              "resourceNames": ["netwarden-state-0", "netwarden-state-1", "netwarden-state-2"]}]
    secrets = [d["metadata"]["name"] for d in render({"reconciler": {"stateShards": 3}}) if d["kind"] == "Secret"]
    assert {"netwarden-state-0", "netwarden-state-1", "netwarden-state-2"} <= set(secrets)
    off = render({"reconciler": {"stateShards": 0}})
    assert not [d for d in off if d["metadata"]["name"].startswith("netwarden-state-") or d["metadata"]["name"].endswith("-state")]


def test_rbac_rules_live_only_in_the_values_free_rules_template() -> None:
    templates = CHART_DIR / "templates"
    for path in templates.glob("*.yaml"):
        assert "verbs:" not in path.read_text(), f"{path.name} declares RBAC rules outside _rbac-rules.tpl"
    assert ".Values" not in (templates / "_rbac-rules.tpl").read_text()


@pytest.mark.parametrize("values", [{}, {"reconciler": {"tls": {"enabled": False}}}])
def test_every_container_is_hardened(values: dict) -> None:
    specs = list(pod_specs(render(values)))
    assert {name for name, _ in specs} >= {"nw-netwarden-webhook", "nw-netwarden-reconciler", "nw-netwarden-certs-rotate"}
    for name, spec in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in spec["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: /tmp must be a writable emptyDir"


def test_service_account_tokens_are_mounted_only_where_explicitly_asked() -> None:
    docs = render()
    for account in of_kind(docs, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False, account["metadata"]["name"]
    for name, spec in pod_specs(docs):
        assert spec["automountServiceAccountToken"] is True, name
        assert spec["serviceAccountName"].startswith("nw-netwarden-"), name


def test_webhook_runs_replicated_with_disruption_budget_and_spread() -> None:
    docs = render()
    deployment = one(docs, "Deployment", "-webhook")
    assert deployment["spec"]["replicas"] == 2
    assert one(docs, "PodDisruptionBudget", "-webhook")["spec"]["minAvailable"] == 1
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
    assert spread["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert not [d for d in of_kind(docs, "PodDisruptionBudget") if d["metadata"]["name"].endswith("-reconciler")]


def test_ha_reconciler_gets_a_disruption_budget_and_priority_class() -> None:
    docs = render({"reconciler": {"replicas": 2, "priorityClassName": "high"}, "webhook": {"replicas": 1}})
    assert one(docs, "Deployment", "-reconciler")["spec"]["replicas"] == 2
    assert one(docs, "Deployment", "-reconciler")["spec"]["template"]["spec"]["priorityClassName"] == "high"
    assert one(docs, "PodDisruptionBudget", "-reconciler")["spec"]["minAvailable"] == 1
    assert not [d for d in of_kind(docs, "PodDisruptionBudget") if d["metadata"]["name"].endswith("-webhook")]


def test_probes_use_the_health_endpoints_over_the_served_scheme() -> None:
    for values, scheme in (({}, "HTTPS"), ({"reconciler": {"tls": {"enabled": False}}}, "HTTP")):
        docs = render(values)
        for suffix, expected in (("-webhook", "HTTPS"), ("-reconciler", scheme)):
            container = one(docs, "Deployment", suffix)["spec"]["template"]["spec"]["containers"][0]
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["readinessProbe"]["httpGet"]["scheme"] == expected


def test_webhook_port_admits_only_the_api_server_cidrs_and_metrics_scrapers() -> None:
    policy = one(render({"networkPolicy": {"apiServerCIDRs": ["10.0.0.0/24"]}}), "NetworkPolicy", "-webhook")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "https", "protocol": "TCP"}]
    assert rule["from"][0] == {"ipBlock": {"cidr": "10.0.0.0/24"}}
    assert rule["from"][1:] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def test_signal_port_admits_only_the_other_replicas_and_configured_sources() -> None:
    source = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "falcosidekick"}}, "namespaceSelector": {}}
    policy = one(render({"networkPolicy": {"signalSources": [source], "metricsSources": []}}), "NetworkPolicy", "-reconciler")
    # A standby forwards signals to the leader: replicas reach each other (same namespace, same selector).
    replicas = {"ports": [{"port": "signals", "protocol": "TCP"}], "from": [{"podSelector": policy["spec"]["podSelector"]}]}
    assert policy["spec"]["ingress"] == [replicas, {"ports": [{"port": "signals", "protocol": "TCP"}], "from": [source]}]
    closed = one(render({"networkPolicy": {"signalSources": [], "metricsSources": []}}), "NetworkPolicy", "-reconciler")
    assert closed["spec"]["ingress"] == [replicas]


@pytest.mark.parametrize("backend, resource", [("auto", None), ("networkpolicy", None),
                                               ("adminnetworkpolicy", "adminnetworkpolicies"),
                                               ("clusternetworkpolicy", "clusternetworkpolicies")])
def test_admin_tier_policy_rbac_is_granted_only_when_that_backend_is_on(backend: str, resource: str | None) -> None:
    """Offline, "auto" sees no policy.networking.k8s.io served (as a cluster without the CRDs): nothing extra."""
    granted = granted_rbac(render({"config": {"quarantine": {"backend": backend}}}))
    extra = RECONCILER_ADMIN_POLICIES[resource] if resource else frozenset()
    assert granted == {key: set(triples) | (set(extra) if key == "reconciler" else set())
                       for key, triples in EXPECTED_RBAC.items()}
    if resource is not None:
        assert netwarden_kube.admin_policy_api_calls(resource) == extra
