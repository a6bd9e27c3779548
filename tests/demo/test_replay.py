"""`netwarden replay`: offline, dry-run, streaming over a recorded Hubble export and a pod snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netwarden.cli import main
from netwarden.tools.traffic import PodEnd, WorldEnd, hubble_flow, steady_flows

START = 1_700_000_000.0
API = PodEnd("shop", "api-7d9f-1", "10.244.0.5", {"app": "api"})
DB = PodEnd("shop", "db-0", "10.244.0.6", {"app": "db"})
WEB = PodEnd("shop", "web-5c4b-1", "10.244.0.7", {"app": "web"})


def owner(kind: str, name: str) -> list[dict]:
    return [{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": f"uid-{name}", "controller": True}]


@pytest.fixture()
def recording(tmp_path: Path) -> dict[str, Path]:
    pods = {"apiVersion": "v1", "kind": "List", "items": [
        {"metadata": {"name": API.name, "namespace": "shop", "labels": {"pod-template-hash": "7d9f"},
                      "ownerReferences": owner("ReplicaSet", "api-7d9f")}, "status": {"podIP": API.ip}},
        {"metadata": {"name": DB.name, "namespace": "shop", "ownerReferences": owner("StatefulSet", "db")},
         "status": {"podIP": DB.ip}},
        {"metadata": {"name": WEB.name, "namespace": "shop", "labels": {"pod-template-hash": "5c4b"},
                      "ownerReferences": owner("ReplicaSet", "web-5c4b")}, "status": {"podIP": WEB.ip}},
    ]}
    flows = tmp_path / "flows.jsonl"
    with flows.open("w") as handle:
        for record in steady_flows([(WEB, API, 8080, "TCP", "FORWARDED"), (API, DB, 5432, "TCP", "FORWARDED")],
                                   start=START, seconds=600, rate=20):
            handle.write(json.dumps(record) + "\n")
        handle.write("{not json\n")
        for i, port in enumerate((22, 3306, 6379)):
            handle.write(json.dumps(hubble_flow(API, DB, port, "TCP", START + 700 + i)) + "\n")
        handle.write(json.dumps(hubble_flow(API, WorldEnd("203.0.113.9"), 443, "TCP", START + 705)) + "\n")
    falco = tmp_path / "falco.jsonl"
    falco.write_text(json.dumps({
        "output": "shell", "priority": "Critical", "rule": "Terminal shell in container", "time": "2023-11-14T22:25:10.000000000Z",
        "output_fields": {"k8s.ns.name": "shop", "k8s.pod.name": API.name}}) + "\n")
    path = tmp_path / "pods.json"
    path.write_text(json.dumps(pods))
    return {"flows": flows, "pods": path, "falco": falco}


def test_replay_reports_what_it_would_do_and_why(recording: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay", "--flows", str(recording["flows"]), "--pods", str(recording["pods"]),
                 "--falco", str(recording["falco"]), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    tighten = [line for line in out.splitlines() if " tighten " in line and "shop.deploy.api" in line]
    assert tighten, out
    assert "new peer after learning" in out
    assert "dry-run: nothing was written" in out
    assert "records rejected: 1" in out  # the malformed line is counted, not fatal
    assert "12,004 flows" in out


def test_replay_without_pod_snapshot_says_the_flows_could_not_be_attributed(
        recording: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--flows", str(recording["flows"]), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "learned baselines (0 workloads)" in out
    assert "flows not attributed to any workload: 12,004 (give --pods" in out


def test_replay_accounts_for_every_alert_it_could_not_attribute(
        recording: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Real k8s_audit alerts (none names a pod of the snapshot) and a real `deployment`-labelled
    Alertmanager body, plus the same body relabelled to the snapshot's Deployment `api` (attributed)."""
    from tests.support.data import PAYLOADS

    body = json.loads((PAYLOADS / "alertmanager/am_eric-pm-kube-state-metrics_deployment-label_resolved_2022.json")
                      .read_text())
    ours = json.loads(json.dumps(body))
    ours["alerts"][0]["labels"].update(namespace="shop", deployment="api")
    alertmanager = tmp_path / "alertmanager.jsonl"
    alertmanager.write_text(json.dumps(body) + "\n" + json.dumps(ours) + "\n")
    assert main(["replay", "--flows", str(recording["flows"]), "--pods", str(recording["pods"]), "--quiet",
                 "--falco", str(PAYLOADS / "falco/falco-k8saudit-ovh_mks-audit-logs_blog-2025.jsonl"),
                 "--alertmanager", str(alertmanager)]) == 0
    out = capsys.readouterr().out
    assert ("alerts not attributed to any workload: 5 (not-a-workload x3, unknown-pod x1, unknown-workload x1)"
            in out), out
    assert "falco 'Attach/Exec Pod': unknown-pod: names pod hello-app/nginx-676b6c5bbc-4xc6t" in out
    assert ("alertmanager 'Deployment': unknown-workload: names deployments eric-eo-cm-ci406/eric-log-transformer"
            in out)


def test_replay_attributes_calico_flows_aggregated_by_pod_prefix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.data import PAYLOADS

    pods = {"apiVersion": "v1", "kind": "List", "items": [
        {"metadata": {"name": name, "namespace": "storefront", "labels": {"pod-template-hash": rs.rsplit("-", 1)[1]},
                      "ownerReferences": owner("ReplicaSet", rs)}, "status": {"podIP": ip}}
        for name, rs, ip in (("scraper-655c844475-x2x9k", "scraper-655c844475", "10.244.1.5"),
                             ("web-574ff6d9fd-a1b2c", "web-574ff6d9fd", "10.244.1.6"))]}
    (tmp_path / "pods.json").write_text(json.dumps(pods))
    flows = PAYLOADS / "calico/calico-3.32.2_whisker-flows_aggregated_3records.jsonl"
    assert main(["replay", "--flows", str(flows), "--pods", str(tmp_path / "pods.json"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "storefront.deploy.scraper" in out and "storefront.deploy.web" in out, out
    # 3 records: scraper->web (both ends known), shopper->payments (neither), scraper->coredns (one end)
    assert "flows not attributed to any workload: 1" in out
    assert "records rejected: 0" in out
