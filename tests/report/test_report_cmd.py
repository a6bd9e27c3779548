"""`netwarden report` against the local API server: labelled pods, managed policies and Events."""

from __future__ import annotations

import json
from pathlib import Path

from kubernetes import client

from localkube.server import LocalKube
from netwarden.model import names
from netwarden.cli import main
from netwarden.model.identity import Workload
from netwarden.model.policy import DnsTarget, PolicyMeta, baseline_intent, quarantine_intent, quarantine_policy_name, render_network_policy
from netwarden.tools.traffic import PodEnd, WorldEnd, hubble_flow


def pod(name: str, identity: str, instance: str, ip: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {names.LABEL_IDENTITY: identity, names.LABEL_INSTANCE: instance,
                                                  names.LABEL_WORKLOAD: identity.rsplit(".", 1)[-1]}},
            "spec": {"containers": [{"name": "c", "image": "x"}]}}


def test_report_shows_workloads_quarantine_policies_and_events(tmp_path: Path) -> None:
    with LocalKube() as kube:
        api = kube.api_client()
        core, net = client.CoreV1Api(api), client.NetworkingV1Api(api)
        core.create_namespace({"metadata": {"name": "shop"}})
        for name, identity, instance, ip in (("api-1", "shop.deploy.api", "i-1", "10.0.0.1"),
                                             ("api-2", "shop.deploy.api", "i-2", "10.0.0.2"),
                                             ("db-0", "shop.sts.db", "i-3", "10.0.0.3")):
            core.create_namespaced_pod("shop", pod(name, identity, instance, ip))
            core.patch_namespaced_pod_status(name, "shop", {"status": {"podIP": ip, "phase": "Running"}})
        api_workload, db = Workload("shop", "Deployment", "api"), Workload("shop", "StatefulSet", "db")
        for workload in (api_workload, db):
            net.create_namespaced_network_policy("shop", render_network_policy(
                baseline_intent(workload, (), (), ()), PolicyMeta(f"netwarden-{workload.kind_token}-{workload.name}", "test"),
                DnsTarget()))
        quarantine = render_network_policy(quarantine_intent("shop", api_workload.identity, "i-1"),
                                           PolicyMeta(quarantine_policy_name("i-1"), "falco", role=names.ROLE_QUARANTINE),
                                           DnsTarget())
        created = net.create_namespaced_network_policy("shop", quarantine)
        core.create_namespaced_event("shop", {
            "metadata": {"generateName": "q.", "namespace": "shop"}, "reason": names.EVENT_POD_QUARANTINED,
            "message": "falco: Terminal shell in container", "type": "Warning",
            "involvedObject": {"kind": "NetworkPolicy", "namespace": "shop", "name": created.metadata.name},
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:01Z"})
        flows = tmp_path / "flows.jsonl"
        a = PodEnd("shop", "api-1", "10.0.0.1", {})
        b = PodEnd("shop", "db-0", "10.0.0.3", {})
        flows.write_text("\n".join(json.dumps(r) for r in (
            hubble_flow(a, b, 5432, "TCP", 1.0), hubble_flow(a, b, 5432, "TCP", 2.0),
            hubble_flow(a, WorldEnd("203.0.113.9"), 443, "TCP", 3.0))) + "\n")
        out, svg = tmp_path / "report.html", tmp_path / "map.svg"
        assert main(["report", "--kubeconfig", kube.write_kubeconfig(str(tmp_path / "kc")), "--flows", str(flows),
                     "--out", str(out), "--svg", str(svg)]) == 0
    page = out.read_text()
    assert 'data-id="shop.deploy.api"' in page and 'class="node node-quarantined"' in page
    assert 'data-id="shop.sts.db"' in page
    assert 'class="edge edge-denied" data-source="shop.deploy.api" data-target="shop.sts.db"' in page
    assert "PodQuarantined" in page and "falco: Terminal shell in container" in page
    assert page.count('class="policy"') == 3
    assert svg.read_text().startswith("<svg")
