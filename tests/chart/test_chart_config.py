"""The chart's config.yaml and environment load with the real netwarden loaders; the signal token
survives upgrades; the values schema rejects mistakes at install time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("helm_python", reason="pip install helm-python-sdk")

from helm_python import HelmError  # noqa: E402

from tests.chart.chartkit import CHART_DIR, NAMESPACE, one, render  # noqa: E402


def config_yaml(values: dict[str, Any] | None = None) -> str:
    return one(render(values), "ConfigMap", "-config")["data"]["config.yaml"]


def container_env(docs: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    container = one(docs, "Deployment", suffix)["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_webhook_config_loads_with_netwarden_config(tmp_path: Path) -> None:
    from netwarden.platform.config import load_config

    docs = render({"config": {"mode": "approve"}, "dnsService": "kube-system/coredns", "webhook": {"workers": 3, "threads": 6}})
    path = tmp_path / "config.yaml"
    path.write_text(one(docs, "ConfigMap", "-config")["data"]["config.yaml"])
    env = {k: v for k, v in container_env(docs, "-webhook").items() if isinstance(v, str)}
    env["NETWARDEN_CONFIG"] = str(path)
    config = load_config(env)
    assert config.cluster.default_mode == "approve"
    assert config.cluster.dns_service == "kube-system/coredns"
    assert (config.webhook.workers, config.webhook.threads) == (3, 6)
    assert config.webhook.trusted_usernames == (
        f"system:serviceaccount:{NAMESPACE}:nw-netwarden-webhook",
        f"system:serviceaccount:{NAMESPACE}:nw-netwarden-reconciler",
    )


def test_trusted_usernames_are_the_service_accounts_the_pods_run_as() -> None:
    docs = render({"webhook": {"labelWriters": ["system:serviceaccount:ops:fixer"]}})
    writers = yaml.safe_load(one(docs, "ConfigMap", "-config")["data"]["config.yaml"])["webhook"]["trusted_usernames"]
    for suffix in ("-webhook", "-reconciler"):
        account = one(docs, "Deployment", suffix)["spec"]["template"]["spec"]["serviceAccountName"]
        assert f"system:serviceaccount:{NAMESPACE}:{account}" in writers
    assert writers[-1] == "system:serviceaccount:ops:fixer"


def test_pod_creators_reach_both_components_and_load_as_the_identity_rule(tmp_path: Path) -> None:
    from netwarden.model.identity import UPSTREAM_POD_CREATORS
    from netwarden.platform.config import load_config

    def loaded(values: dict[str, Any]) -> Any:
        path = tmp_path / "config.yaml"
        path.write_text(config_yaml(values))
        return load_config({"NETWARDEN_CONFIG": str(path)}).cluster.creators()

    assert loaded({}) == UPSTREAM_POD_CREATORS  # unset: upstream kube-controller-manager's users
    creators = loaded({"podCreators": ["ReplicaSet=system:serviceaccount:kube-system:my-rs-controller"]})
    assert creators.may_create_for("ReplicaSet", "system:serviceaccount:kube-system:my-rs-controller")
    assert not creators.may_create_for("ReplicaSet", "system:serviceaccount:kube-system:replicaset-controller")
    with pytest.raises(HelmError, match="podCreators"):
        render({"podCreators": ["Deployment=someone"]})  # not a kind whose pods netwarden verifies


def test_core_section_loads_with_the_reconciler_core_config() -> None:
    from netwarden.reconciler.core.config import CoreConfig

    core = yaml.safe_load(config_yaml({"config": {
        "thresholds": {"tighten": 12, "quarantine": 30}, "blastRadius": {"maxPercent": 25},
        "core": {"half_life_seconds": 600}}}))["core"]
    config = CoreConfig.from_mapping(core)
    assert (config.tighten_threshold, config.quarantine_threshold) == (12.0, 30.0)
    assert config.blast_max_pod_fraction == 0.25
    assert config.half_life_seconds == 600.0
    assert config.default_mode == "dry-run"
    assert NAMESPACE in config.protected_namespaces and "kube-system" in config.protected_namespaces


def test_default_mode_is_dry_run_everywhere() -> None:
    config = yaml.safe_load(config_yaml())
    assert config["cluster"]["default_mode"] == config["core"]["default_mode"] == "dry-run"
    assert config["reconciler"] == {"cleanup_grace_seconds": 300, "signal_sources": ["flows", "falco", "alertmanager"],
                                    "quarantine_backend": "auto", "admin_policy_priority": 10, "state_shards": 16,
                                    "stream_buffer": 10000}


def test_quarantine_threshold_below_tighten_threshold_fails_the_install() -> None:
    with pytest.raises(HelmError, match="quarantine must be at least"):
        render({"config": {"thresholds": {"tighten": 30, "quarantine": 20}}})


def test_reconciler_gets_its_lease_pod_name_pod_ip_and_token_file() -> None:
    docs = render()
    env = container_env(docs, "-reconciler")
    assert env["NETWARDEN_RECONCILER_LEASE_NAME"] == "nw-netwarden-reconciler"
    assert env["NETWARDEN_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["NETWARDEN_POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}  # advertised to the other replicas
    assert env["NETWARDEN_RECONCILER_LEASE_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["NETWARDEN_RECONCILER_TOKEN_FILE"] == "/etc/netwarden/signal-token/token"
    spec = one(docs, "Deployment", "-reconciler")["spec"]["template"]["spec"]
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == "/etc/netwarden/signal-token")
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == one(docs, "Secret", "-signal-token")["metadata"]["name"]


def test_signal_token_is_looked_up_before_one_is_generated() -> None:
    source = (CHART_DIR / "templates" / "reconciler-signal-token-secret.yaml").read_text()
    lookup = source.index('lookup "v1" "Secret" .Release.Namespace $name')
    assert lookup < source.index("randAlphaNum"), "an existing token must be reused before a new one is made"


def test_generated_signal_token_is_long_and_random_and_a_given_one_is_used() -> None:
    import base64

    tokens = {base64.b64decode(one(render(), "Secret", "-signal-token")["data"]["token"]).decode() for _ in range(2)}
    assert len(tokens) == 2 and all(len(t) == 48 and t.isalnum() for t in tokens)
    given = one(render({"reconciler": {"signalToken": {"value": "s3cret"}}}), "Secret", "-signal-token")
    assert base64.b64decode(given["data"]["token"]) == b"s3cret"
    existing = render({"reconciler": {"signalToken": {"existingSecret": "mine"}}})
    assert not [d for d in existing if d["kind"] == "Secret" and not d["metadata"]["name"].startswith("netwarden-state-")]
    volume = next(v for v in one(existing, "Deployment", "-reconciler")["spec"]["template"]["spec"]["volumes"] if v["name"] == "signal-token")
    assert volume["secret"]["secretName"] == "mine"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"webhook": {"replicas": "two"}}, "/webhook/replicas"),
        ({"webhook": {"timeoutSeconds": 31}}, "/webhook/timeoutSeconds"),
        ({"webhook": {"failurePolicy": "Maybe"}}, "/webhook/failurePolicy"),
        ({"config": {"mode": "yolo"}}, "/config/mode"),
        ({"webhok": {}}, "webhok"),
        ({"webhook": {"replica": 2}}, "replica"),
        ({"config": {"thresholds": {"tighten": 1, "quarantine": 2, "lift": 3}}}, "lift"),
        ({"networkPolicy": {"signalSources": [{"podSelectr": {}}]}}, "podSelectr"),
        ({"certificates": {"source": "vault"}}, "/certificates/source"),
    ],
)
def test_schema_rejects_wrong_types_and_unknown_keys(values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmError, match=message):
        render(values)


def test_schema_closes_every_object_it_describes() -> None:
    import json

    schema = json.loads((CHART_DIR / "values.schema.json").read_text())

    def walk(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, path
        for key, child in node.get("properties", {}).items():
            walk(child, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(schema, "values")


def uncommented_settings(text: str) -> list[str]:
    """Leaf keys of a values file with no comment directly above them or above any enclosing key."""
    lines = text.splitlines()
    missing = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        below = next((l for l in lines[index + 1:] if l.strip() and not l.strip().startswith("#")), "")
        if stripped.endswith(":") and len(below) - len(below.lstrip()) > indent:
            continue  # a section: its settings carry the comments
        documented, level, position = False, indent, index
        while position >= 0:
            if position > 0 and lines[position - 1].strip().startswith("#"):
                documented = True
                break
            if level == 0:
                break
            position = next(i for i in range(position - 1, -1, -1)
                            if lines[i].strip() and not lines[i].strip().startswith(("#", "-"))
                            and len(lines[i]) - len(lines[i].lstrip()) < level)
            level = len(lines[position]) - len(lines[position].lstrip())
        if not documented:
            missing.append(f"line {index + 1}: {stripped}")
    return missing


def test_every_default_value_is_commented() -> None:
    assert uncommented_settings((CHART_DIR / "values.yaml").read_text()) == []


def test_the_comment_check_finds_an_undocumented_setting() -> None:
    assert uncommented_settings("image:\n  # -- Repository.\n  repository: x\n  tag: y\n") == ["line 4: tag: y"]


def test_flow_sources_reach_the_reconciler_config_and_mount_their_secrets(tmp_path: Path) -> None:
    from netwarden.platform.config import load_config

    docs = render({"reconciler": {"flowSources": {
        "hubbleRelay": {"address": "hubble-relay.kube-system.svc:443",
                        "tls": {"enabled": True, "secretName": "hubble-relay-client-certs"}},
        "goldmane": {"address": "goldmane.calico-system.svc:7443",
                     "tls": {"enabled": True, "secretName": "goldmane-client", "serverName": "goldmane"}},
        "buffer": 5000}}})
    path = tmp_path / "config.yaml"
    path.write_text(one(docs, "ConfigMap", "-config")["data"]["config.yaml"])
    rc = load_config({"NETWARDEN_CONFIG": str(path)}).reconciler
    assert (rc.hubble_relay_address, rc.hubble_relay_tls_dir) == ("hubble-relay.kube-system.svc:443",
                                                                  "/etc/netwarden/hubbleRelay-tls")
    assert rc.hubble_relay_server_name == "netwarden.hubble-relay.cilium.io"
    assert (rc.goldmane_address, rc.goldmane_tls_dir, rc.goldmane_server_name) == (
        "goldmane.calico-system.svc:7443", "/etc/netwarden/goldmane-tls", "goldmane")
    assert rc.stream_buffer == 5000
    pod = one(docs, "Deployment", "-reconciler")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets[mounts["/etc/netwarden/hubbleRelay-tls"]] == "hubble-relay-client-certs"
    assert secrets[mounts["/etc/netwarden/goldmane-tls"]] == "goldmane-client"


def test_flow_sources_are_off_by_default_and_tls_needs_a_secret() -> None:
    config = yaml.safe_load(config_yaml())["reconciler"]
    assert "hubble_relay_address" not in config and "goldmane_address" not in config
    with pytest.raises(HelmError, match="tls.secretName"):
        render({"reconciler": {"flowSources": {"hubbleRelay": {"address": "hubble-relay.kube-system.svc:443",
                                                               "tls": {"enabled": True}}}}})
    with pytest.raises(HelmError):
        render({"reconciler": {"flowSources": {"hubbleRelay": {"address": "no port"}}}})
