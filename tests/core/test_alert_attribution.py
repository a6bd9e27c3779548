"""Issue 14 item 3 in the pure core: every alert counts against the pod or the workload it names, or is
accounted for as unattributed with a reason. Real payloads: Falco k8s_audit alerts (OVHcloud MKS blog,
2025), a syscall alert with no Kubernetes fields, an Alertmanager body labelled `deployment`."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from netwarden.model import names
from netwarden.reconciler.core import decision as D
from netwarden.reconciler.core.alerts import (NO_TARGET, NOT_A_WORKLOAD, UNKNOWN_POD, UNKNOWN_WORKLOAD, attribute_alert,
                                    workload_identities)
from netwarden.reconciler.core.pods import PodIndex, PodRef
from netwarden.reconciler.core.types import AlertTarget
from netwarden.reconciler.signals.alertmanager import parse_alertmanager_payload
from netwarden.reconciler.signals.falco import parse_falco_event
from tests.core.corekit import API, DB, engine, falco, learn_api_to_db, pod_ref, with_config
from tests.support.data import PAYLOADS

K8S_AUDIT = [json.loads(line) for line in
             (PAYLOADS / "falco/falco-k8saudit-ovh_mks-audit-logs_blog-2025.jsonl").read_text().splitlines()]
NO_K8S = [json.loads(line) for line in
          (PAYLOADS / "falco/falco-0.37plus_event-generator_no-k8s_2024.jsonl").read_text().splitlines()]
DEPLOYMENT_BODY = json.loads(
    (PAYLOADS / "alertmanager/am_eric-pm-kube-state-metrics_deployment-label_resolved_2022.json").read_text())
#: The exec'd pod of the k8s_audit sample, as netwarden's index holds it (a Deployment's pod).
NGINX = PodRef("hello-app.deploy.nginx", "hello-app", "nginx-676b6c5bbc-4xc6t", "inst-nginx", "10.2.0.7")


def exec_alert(**fields: Any) -> dict[str, Any]:
    """The sample's Attach/Exec Pod alert, with output_fields changed (the target, for other resources)."""
    record = json.loads(json.dumps(K8S_AUDIT[3]))
    record["output_fields"].update(fields)
    return record


def firing_deployment_alert(namespace: str, deployment: str, severity: str = "critical",
                            **labels: str) -> dict[str, Any]:
    """The real body, firing (startsAt kept, endsAt Alertmanager's zero time) and relabelled."""
    body = json.loads(json.dumps(DEPLOYMENT_BODY))
    body["status"] = "firing"
    (alert,) = body["alerts"]
    alert.update(status="firing", endsAt="0001-01-01T00:00:00Z")
    alert["labels"].update(namespace=namespace, deployment=deployment, severity=severity, **labels)
    return body


def test_k8s_audit_alerts_are_attributed_to_the_pod_they_target_or_accounted_for() -> None:
    e = engine()
    e.upsert_pod(NGINX)
    t = parse_falco_event(K8S_AUDIT[0]).time
    outcomes = []
    for record in K8S_AUDIT:
        e.ingest_alert(parse_falco_event(record), t)
        outcomes.append(e.last_alert_attribution)
    assert [o.reason for o in outcomes] == [NOT_A_WORKLOAD, NOT_A_WORKLOAD, NOT_A_WORKLOAD, None]
    assert "volumeattachments csi-6afb06dc" in outcomes[0].detail and "runs no pods" in outcomes[0].detail
    exec_ = outcomes[3]
    assert (exec_.identity, exec_.instance, exec_.pod) == (NGINX.identity, NGINX.instance, NGINX.pod)
    (evidence,) = e.risk_of(NGINX.identity).evidence()
    assert evidence.instance == NGINX.instance and "Attach/Exec Pod on pod nginx-676b6c5bbc-4xc6t" in evidence.summary
    assert e.counters.unattributed_by_reason == {NOT_A_WORKLOAD: 3} and e.counters.unattributed_alerts == 3


def test_a_k8s_audit_alert_about_a_pod_the_cluster_does_not_have_is_unknown_pod() -> None:
    e = engine()  # no hello-app pods
    e.ingest_alert(parse_falco_event(K8S_AUDIT[3]), 0.0)
    assert e.last_alert_attribution.reason == UNKNOWN_POD
    assert "hello-app/nginx-676b6c5bbc-4xc6t" in e.last_alert_attribution.detail
    assert e.workloads() == ()


def test_a_syscall_alert_with_no_kubernetes_fields_is_no_target() -> None:
    e = engine()
    for record in NO_K8S:
        e.ingest_alert(parse_falco_event(record), 0.0)
        assert e.last_alert_attribution.reason == NO_TARGET
    assert e.counters.unattributed_by_reason == {NO_TARGET: len(NO_K8S)}


@pytest.mark.parametrize("resource", ["deployments", "replicasets"])
def test_a_k8s_audit_alert_about_a_deployment_is_workload_level_evidence_and_quarantines_the_workload(
        resource: str) -> None:
    """Derived from the real exec alert: its target is the Deployment `api` (or its ReplicaSet)."""
    e = engine(with_config(blast_max_pod_fraction=1.0))
    name = "api" if resource == "deployments" else "api-7d9f"
    record = exec_alert(**{"ka.target.resource": resource, "ka.target.name": name, "ka.target.namespace": "shop",
                           "ka.target.subresource": None})
    record["priority"] = "Critical"
    alert = parse_falco_event(record)
    assert alert.pod is None and alert.target == AlertTarget(resource, name)
    (decision,) = e.ingest_alert(alert, alert.time)
    where = e.last_alert_attribution
    assert (where.identity, where.instance, where.workload) == (API, None, f"{resource} shop/{name}")
    assert decision.action == D.QUARANTINE_WORKLOAD and decision.identity == API and decision.instances == ()
    assert e.state_of(API).step == names.STEP_QUARANTINED
    assert e.workloads() == (API,), "no other workload is touched"
    (evidence,) = e.risk_of(API).evidence()
    assert evidence.instance is None and evidence.pod is None
    assert e.risk_of(API).workload_level_score(alert.time) == e.risk_of(API).score_at(alert.time)


def test_an_alertmanager_alert_naming_a_deployment_and_no_pod_is_scored_against_that_workload() -> None:
    e = engine()
    t = learn_api_to_db(e)
    (alert,) = parse_alertmanager_payload(firing_deployment_alert("shop", "api"))  # critical: 12 points
    (decision,) = e.ingest_metric_alert(alert, t)
    assert e.last_alert_attribution.identity == API and e.last_alert_attribution.instance is None
    assert (decision.action, decision.identity, decision.instances) == (D.TIGHTEN, API, ())
    assert "for deployments shop/api" in decision.evidence[0].summary
    # Re-sent every repeat interval: the same alert; resolved: it stops counting, and the step relaxes.
    assert e.ingest_metric_alert(alert, t + 60) == [] and e.last_alert_ignored == "duplicate"
    (relaxed,) = e.ingest_metric_alert(replace(alert, firing=False), t + 120)
    assert relaxed.action == D.RELAX and e.risk_of(API).score_at(t + 120) < 1.0


def test_the_exporters_own_pod_label_beside_deployment_does_not_make_it_that_pods_alert() -> None:
    """kube-prometheus alerts carried kube-state-metrics' own `pod` label beside `deployment` (2019 rules)."""
    e = engine()
    exporter = pod_ref(DB)  # some other workload's pod stands in for the exporter
    (alert,) = parse_alertmanager_payload(firing_deployment_alert("shop", "api", pod=exporter.pod))
    e.ingest_metric_alert(alert, alert.time)
    assert e.last_alert_attribution.identity == API and e.last_alert_attribution.instance is None
    assert e.risk_of(DB) is None or e.risk_of(DB).score_at(alert.time) == 0.0
    # A pod label naming one of the workload's own pods makes it that pod's alert.
    (own,) = parse_alertmanager_payload(firing_deployment_alert("shop", "api", pod=pod_ref(API, 1).pod))
    e.ingest_metric_alert(replace(own, fingerprint="other"), own.time)
    assert e.last_alert_attribution.instance == pod_ref(API, 1).instance


def test_the_real_deployment_alert_names_a_workload_this_cluster_does_not_have() -> None:
    e = engine()
    (alert,) = parse_alertmanager_payload(DEPLOYMENT_BODY)
    assert alert.target == AlertTarget("deployments", "eric-log-transformer") and alert.pod is None
    e.ingest_metric_alert(alert, alert.time)
    assert e.last_alert_attribution.reason == UNKNOWN_WORKLOAD
    assert "deployments eric-eo-cm-ci406/eric-log-transformer" in e.last_alert_attribution.detail


def test_workload_names_map_to_the_identity_netwarden_keys_the_workload_by() -> None:
    assert workload_identities("shop", "ReplicaSet", "api-7d9f") == ("shop.deploy.api", "shop.rs.api-7d9f")
    assert workload_identities("ops", "Job", "backup-29001440") == ("ops.job.backup-29001440", "ops.cronjob.backup")
    assert workload_identities("shop", "StatefulSet", "db") == ("shop.sts.db",)
    index = PodIndex()
    cron = PodRef("ops.cronjob.backup", "ops", "backup-29001440-x7k2q", "inst-b")
    index.add(cron)
    where = attribute_alert("ops", None, AlertTarget("jobs", "backup-29001440"), index, lambda i: i in index.by_identity)
    assert (where.identity, where.instance) == ("ops.cronjob.backup", None)
    no_name = attribute_alert("ops", None, AlertTarget("deployments", None), index, lambda i: True)
    assert no_name.reason == NO_TARGET


def test_an_unattributed_alert_that_turns_attributable_later_is_not_taken_for_a_duplicate() -> None:
    """The pod was not watched yet when the alert first came: the re-send counts once it is."""
    e = engine()
    alert = parse_falco_event(K8S_AUDIT[3])
    e.ingest_alert(alert, alert.time)
    assert e.last_alert_attribution.reason == UNKNOWN_POD
    e.upsert_pod(NGINX)
    e.ingest_alert(alert, alert.time + 1)
    assert e.last_alert_attribution.reason is None and e.last_alert_ignored is None
    assert len(e.risk_of(NGINX.identity).evidence()) == 1


def test_a_pod_alert_still_quarantines_only_its_pod() -> None:
    e = engine(with_config(blast_max_pod_fraction=1.0))
    (decision,) = e.ingest_alert(falco(0.0, pod_ref(API, 0).pod), 0.0)
    assert decision.action == D.QUARANTINE_POD and decision.instances == (pod_ref(API, 0).instance,)

