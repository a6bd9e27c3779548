"""`netwarden status`, `explain` and `report` say when containment is weak, from cluster state alone."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from kubernetes import client

from netwarden.model import names
from netwarden.model.admin_policy import CNP_V1BETA1, admin_quarantine_name, render_admin_quarantine
from netwarden.cli import main
from netwarden.model.policy import DnsTarget, PolicyMeta, quarantine_intent, quarantine_policy_name, render_network_policy

from .conftest import make_namespace, make_pod

CRDS = Path(__file__).resolve().parents[1] / "data" / "crds"
USER_ALLOW = {"metadata": {"name": "allow-web"},
              "spec": {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"],
                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 8080}]}]}}


def shop(core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    make_namespace(core, "shop")
    make_pod(core, "shop", "web", labels={"app": "web"})
    make_pod(core, "shop", "api", labels={"app": "api", names.LABEL_IDENTITY: "shop.pod.api",
                                         names.LABEL_INSTANCE: "inst-api"})
    net.create_namespaced_network_policy("shop", USER_ALLOW)
    net.create_namespaced_network_policy("shop", {"metadata": {"name": "open-egress"},
                                                  "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}})


def test_status_explain_and_report_name_the_policy_that_reopens_a_network_policy_quarantine(
        cluster, core: client.CoreV1Api, net: client.NetworkingV1Api, capsys, tmp_path: Path) -> None:
    kubeconfig = cluster.write_kubeconfig()
    shop(core, net)
    meta = PolicyMeta(quarantine_policy_name("inst-api"), names.REASON_QUARANTINE, role=names.ROLE_QUARANTINE)
    net.create_namespaced_network_policy("shop", render_network_policy(
        quarantine_intent("shop", "shop.pod.api", "inst-api"), meta, DnsTarget()))

    assert main(["status", "--kubeconfig", kubeconfig, "-o", "json"]) == 0
    rows = {r["policy"]: r for r in json.loads(capsys.readouterr().out)}
    weak = rows["netwarden-quarantine-inst-api"]["weak_containment"]
    assert any("shop/allow-web" in m and "shop/web -> shop/api :8080/TCP" in m for m in weak)
    assert any("shop/open-egress" in m and "allows all egress" in m for m in weak)  # opted-in namespace

    assert main(["status", "--kubeconfig", kubeconfig]) == 0
    assert "WARNING: containment is weak: NetworkPolicy shop/allow-web" in capsys.readouterr().out

    assert main(["explain", "shop.pod.api", "--kubeconfig", kubeconfig]) == 0
    document = json.loads(capsys.readouterr().out)
    assert {(f["kind"], f["policy"]) for f in document["weak_containment"]} >= {
        ("widens-quarantine", "shop/allow-web"), ("allow-all", "shop/open-egress")}

    out = tmp_path / "report.html"
    assert main(["report", "--kubeconfig", kubeconfig, "--out", str(out)]) == 0
    page = out.read_text()
    assert 'id="weak-containment"' in page and "shop/allow-web" in page


def test_status_lists_admin_tier_quarantines_and_they_hold_against_the_users_policy(
        cluster, core: client.CoreV1Api, net: client.NetworkingV1Api, capsys) -> None:
    kubeconfig = cluster.write_kubeconfig()
    api = cluster.api_client()
    client.ApiextensionsV1Api(api).create_custom_resource_definition(
        yaml.safe_load((CRDS / "clusternetworkpolicies-v0.3.0-standard.yaml").read_text()))
    shop(core, net)
    name = admin_quarantine_name("shop", "inst-api", "shop.pod.api")
    manifest = render_admin_quarantine(quarantine_intent("shop", "shop.pod.api", "inst-api"),
                                       PolicyMeta(name, names.REASON_QUARANTINE), DnsTarget(), CNP_V1BETA1)
    client.CustomObjectsApi(api).create_cluster_custom_object("policy.networking.k8s.io", "v1beta1",
                                                              "clusternetworkpolicies", manifest)
    assert main(["status", "--kubeconfig", kubeconfig, "-o", "json"]) == 0
    rows = {r["policy"]: r for r in json.loads(capsys.readouterr().out)}
    row = rows[f"ClusterNetworkPolicy/{name}"]
    assert (row["namespace"], row["role"], row["step"]) == ("shop", names.ROLE_QUARANTINE, names.STEP_QUARANTINED)
    # The admin Deny holds against pods: allow-web reopens nothing; only the allow-all is still said.
    assert not any("allow-web" in m for m in row["weak_containment"])
    assert main(["explain", "shop.pod.api", "--kubeconfig", kubeconfig]) == 0
    assert json.loads(capsys.readouterr().out)["policies"][0]["policy"] == f"ClusterNetworkPolicy/{name}"
