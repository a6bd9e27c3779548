"""Issue 14 item 3 end to end: real alerts POSTed to the receiver over HTTPS (token, TLS) reach the
runtime on LocalKube; each is attributed to a pod or a workload, or listed in the answer as unattributed
with its reason, counted in netwarden_alerts_unattributed_total and logged. An alert naming a Deployment
quarantines that workload (its policy steps), never a pod alone and never anything else."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from kubernetes import client

from netwarden.certs import pki
from netwarden.model import names
from netwarden.platform.kube import KubeClient
from netwarden.platform.logs import fields_of
from netwarden.reconciler import metrics
from netwarden.reconciler.controller import ControllerSettings
from netwarden.reconciler.core.alerts import NOT_A_WORKLOAD, UNKNOWN_WORKLOAD
from netwarden.reconciler.core.config import CoreConfig
from netwarden.reconciler.receivers import ReceiverServer, TokenFile, create_receiver_app
from netwarden.reconciler.runtime import ReconcilerRuntime, RuntimeSettings
from netwarden.reconciler.watch import Backoff
from tests.support.data import PAYLOADS
from netwarden.webhook.serving import CertificateReloader

from .conftest import make_deployment, make_namespace, make_pod, managed_labels, wait_until

NS = "hello-app"
IDENTITY = f"{NS}.deploy.nginx"
PODS = ("nginx-676b6c5bbc-4xc6t", "nginx-676b6c5bbc-q9wzl")
TOKEN = "alerts-token"
K8S_AUDIT = PAYLOADS / "falco/falco-k8saudit-ovh_mks-audit-logs_blog-2025.jsonl"
DEPLOYMENT_BODY = PAYLOADS / "alertmanager/am_eric-pm-kube-state-metrics_deployment-label_resolved_2022.json"


def unattributed(kind: str, reason: str) -> float:
    return metrics.ALERTS_UNATTRIBUTED.labels(kind, reason)._value.get()


class Served:
    """The runtime behind its receiver on TLS, as the reconciler process runs it."""

    def __init__(self, tmp_path: Path, kube: KubeClient) -> None:
        now = datetime.now(timezone.utc)
        ca = pki.generate_ca("alerts-ca", now=now, valid_for=timedelta(days=2))
        leaf = pki.issue_certificate(ca, "localhost", now=now, valid_for=timedelta(days=1), ip_addresses=["127.0.0.1"])
        (tmp_path / "tls.crt").write_bytes(leaf.cert_pem)
        (tmp_path / "tls.key").write_bytes(leaf.key_pem)
        (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
        (tmp_path / "token").write_text(TOKEN)
        self.ca = str(tmp_path / "ca.crt")
        settings = RuntimeSettings(ControllerSettings(cleanup_grace_seconds=3600, default_mode=names.MODE_ENFORCE,
                                                      write_rate_per_second=100, write_burst=100),
                                   tick_seconds=0.2, sync_timeout_seconds=10)
        core = CoreConfig(default_mode=names.MODE_ENFORCE, blast_max_pod_fraction=1.0)
        self.runtime = ReconcilerRuntime(kube, settings, core, backoff=Backoff(0.01, 0.1)).start()
        tls = CertificateReloader(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"))
        app = create_receiver_app(self.runtime, token=TokenFile(str(tmp_path / "token")), tls=tls,
                                  registry=metrics.REGISTRY)
        self.server = ReceiverServer(app, "127.0.0.1", 0, tls=tls).start()
        self.url = f"https://127.0.0.1:{self.server.port}"

    def post(self, source: str, body: bytes) -> requests.Response:
        return requests.post(f"{self.url}/signals/{source}", data=body, verify=self.ca, timeout=30,
                             headers={"Authorization": f"Bearer {TOKEN}"})

    def stop(self) -> None:
        self.server.stop()
        self.runtime.stop()


@pytest.fixture
def served(tmp_path: Path, cluster: Any, kube: KubeClient, core: client.CoreV1Api) -> Iterator[Served]:
    make_namespace(core, NS, mode=names.MODE_ENFORCE)
    owner = make_deployment(client.AppsV1Api(cluster.api_client()), NS, "nginx", "676b6c5bbc", replicas=len(PODS))
    for pod in PODS:  # the Deployment's pods, labelled as the webhook labels them
        make_pod(core, NS, pod, labels=managed_labels(IDENTITY), owner=owner)
    make_pod(core, NS, "other", labels=managed_labels(f"{NS}.deploy.other"))
    serving = Served(tmp_path, kube)
    try:
        for pod in PODS:
            wait_until(lambda: serving.runtime.engine.index.by_pod.get((NS, pod)), what=f"pod {pod} indexed")
        wait_until(lambda: serving.runtime.controller.baseline_policy_of(IDENTITY), what="the workload's policy")
        yield serving
    finally:
        serving.stop()


def fresh(record: dict[str, Any]) -> dict[str, Any]:
    record["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # an old alert is evidence of the past
    return record


def test_k8s_audit_alerts_are_attributed_or_listed_counted_and_logged(served: Served, caplog) -> None:
    caplog.set_level(logging.INFO, logger="netwarden.reconciler.runtime")
    before = unattributed("falco", NOT_A_WORKLOAD)
    response = served.post("falco", K8S_AUDIT.read_bytes())
    assert response.status_code == 200
    answer = response.json()
    assert (answer["accepted"], answer["attributed"], answer["unattributed_total"]) == (4, 1, 3)
    assert [(u["index"], u["reason"]) for u in answer["unattributed"]] == [
        (1, NOT_A_WORKLOAD), (2, NOT_A_WORKLOAD), (3, NOT_A_WORKLOAD)]  # JSON lines: the line number
    assert "volumeattachments" in answer["unattributed"][0]["detail"]
    assert unattributed("falco", NOT_A_WORKLOAD) - before == 3
    scraped = requests.get(f"{served.url}/metrics", verify=served.ca, timeout=30).text
    assert f'{names.METRIC_ALERTS_UNATTRIBUTED}{{kind="falco",reason="{NOT_A_WORKLOAD}"}}' in scraped
    logged = [fields_of(r) for r in caplog.records if fields_of(r).get("event") == "alert_unattributed"]
    assert [(entry["reason"], entry["alert"]) for entry in logged] == [(NOT_A_WORKLOAD, "Disallowed K8s User")] * 3
    # The attributed one (Attach/Exec Pod, 2025) is the pod's, kept as evidence of the past.
    (past,) = served.runtime.engine.explain(IDENTITY, time.time())["past_alerts"]
    assert past["pod"] == PODS[0] and past["instance"] is not None


def test_a_critical_k8s_audit_alert_about_the_deployment_quarantines_that_workload(
        served: Served, net: client.NetworkingV1Api) -> None:
    record = json.loads(K8S_AUDIT.read_text().splitlines()[3])
    record["priority"] = "Critical"
    record["output_fields"].update({"ka.target.resource": "deployments", "ka.target.name": "nginx",
                                    "ka.target.subresource": None})
    answer = served.post("falco", json.dumps(fresh(record)).encode()).json()
    assert (answer["accepted"], answer["attributed"], answer["unattributed"]) == (1, 1, [])
    decision = served.runtime.engine.state_of(IDENTITY).last_decision
    assert (decision.action, decision.instances) == ("quarantine-workload", ())
    policies = [p for p in net.list_namespaced_network_policy(NS).items]
    steps = {p.metadata.name: (p.metadata.annotations or {}).get(names.ANNOTATION_STEP) for p in policies}
    roles = {(p.metadata.labels or {}).get(names.LABEL_POLICY_ROLE) for p in policies}
    assert names.STEP_QUARANTINED in steps.values() and names.ROLE_QUARANTINE not in roles, steps
    other = served.runtime.engine.state_of(f"{NS}.deploy.other")
    assert other is None or other.step == names.STEP_BASELINE


def test_alertmanager_alerts_naming_a_deployment_are_workload_evidence_or_listed_unknown(served: Served) -> None:
    before = unattributed("alertmanager", UNKNOWN_WORKLOAD)
    as_sent = served.post("alertmanager", DEPLOYMENT_BODY.read_bytes())
    assert as_sent.status_code == 200
    assert [(u["index"], u["reason"]) for u in as_sent.json()["unattributed"]] == [(0, UNKNOWN_WORKLOAD)]
    assert unattributed("alertmanager", UNKNOWN_WORKLOAD) - before == 1
    body = json.loads(DEPLOYMENT_BODY.read_text())
    body["status"] = "firing"
    body["alerts"][0].update(status="firing", endsAt="0001-01-01T00:00:00Z")
    body["alerts"][0]["labels"].update(namespace=NS, deployment="nginx")
    answer = served.post("alertmanager", json.dumps(body).encode()).json()
    assert (answer["attributed"], answer["unattributed_total"]) == (1, 0)
    (evidence,) = served.runtime.engine.explain(IDENTITY, time.time())["evidence"]
    assert "instance" not in evidence and "pod" not in evidence and "for deployments hello-app/nginx" in evidence["summary"]
