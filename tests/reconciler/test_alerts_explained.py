"""Issue 12 items 3 and 5 through the runtime and `netwarden explain`: a replayed 2019-style alert is
evidence of the past (an Event, a metric, explain), never a quarantine, however often it is sent; a
tightening to a baseline nobody learned is refused with its reason in the Event, the log and explain."""

from __future__ import annotations

import json
import logging
import time

from kubernetes import client

from netwarden.model import names
from netwarden.cli import main
from netwarden.platform.kube import KubeClient
from netwarden.platform.logs import fields_of
from netwarden.reconciler import metrics
from netwarden.reconciler.core.alerts import DUPLICATE, TOO_OLD
from netwarden.reconciler.signals.falco import parse_falco_event
from tests.support.data import PAYLOADS

from .conftest import wait_until
from .test_controller import events
from .test_quarantine_writes import IDENTITY, NS, WORKLOAD_POLICY, start_runtime
from .test_quarantine_writes import shop  # noqa: F401 - the fixture


def ignored(reason: str) -> float:
    return metrics.ALERTS_IGNORED.labels("falco", reason)._value.get()


def test_an_old_falcosidekick_body_sent_five_times_never_quarantines_and_explain_says_why(
        cluster, kube: KubeClient, core: client.CoreV1Api, shop: None, capsys) -> None:  # noqa: F811
    body = json.loads((PAYLOADS / "falco/falcosidekick_webhook-post-body_terminal-shell_2024.json").read_text())
    body["priority"] = "Critical"
    body["output_fields"].update({"k8s.ns.name": NS, "k8s.pod.name": "web"})
    alert = parse_falco_event(body)
    runtime = start_runtime(kube)
    try:
        wait_until(lambda: runtime.engine.index.by_pod.get((NS, "web")))
        # `explain` below reads the workload's policy from the API. The queue's workers write it, behind the
        # other workloads' reconciles: under load, not yet when the runtime stops (explain then returns 1).
        wait_until(lambda: kube.get_policy(NS, WORKLOAD_POLICY), what="the backfilled workload policy")
        before = (ignored(TOO_OLD), ignored(DUPLICATE))
        for _ in range(5):
            runtime.accept_alert(alert)
        assert (ignored(TOO_OLD) - before[0], ignored(DUPLICATE) - before[1]) == (1, 4)
        assert [p["metadata"]["name"] for p in kube.list_policies(NS)
                if p["metadata"]["labels"].get(names.LABEL_POLICY_ROLE) == names.ROLE_QUARANTINE] == []
        (event,) = wait_until(lambda: events(core, NS, names.EVENT_ALERT_NOT_ACTED_ON), what="the Event")
        assert event.involved_object.name == "web" and "kept as evidence of the past" in event.message
        (past,) = runtime.engine.explain(IDENTITY, time.time())["past_alerts"]
        assert past["ignored"] == TOO_OLD
    finally:
        runtime.stop()
    assert main(["explain", IDENTITY, "--kubeconfig", cluster.write_kubeconfig()]) == 0
    document = json.loads(capsys.readouterr().out)
    about_web = [e for e in document["events"] if e["object"] == "Pod/web"]
    assert [e["reason"] for e in about_web if e["reason"] != names.EVENT_POLICY_CREATED] == [
        names.EVENT_ALERT_NOT_ACTED_ON], "one Event for five sends, and no quarantine"


def test_a_tightening_to_an_empty_baseline_is_refused_with_the_reason_in_event_log_and_explain(
        cluster, kube: KubeClient, core: client.CoreV1Api, shop: None, capsys, caplog) -> None:  # noqa: F811
    body = json.loads((PAYLOADS / "falco/falcosidekick_webhook-post-body_terminal-shell_2024.json").read_text())
    body.update({"priority": "Error", "uuid": "fresh-1", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    body["output_fields"].update({"k8s.ns.name": NS, "k8s.pod.name": "web"})
    runtime = start_runtime(kube)
    caplog.set_level(logging.INFO, logger="netwarden.reconciler.audit")
    try:
        wait_until(lambda: runtime.engine.index.by_pod.get((NS, "web")))
        wait_until(lambda: runtime.controller.baseline_policy_of(IDENTITY), what="the workload policy")
        runtime.accept_alert(parse_falco_event(body))  # 15 points: tighten threshold, nothing learned
        refused = wait_until(lambda: [e for e in events(core, NS, names.EVENT_GUARD_RAIL)
                                      if e.involved_object.kind == "NetworkPolicy"], what="the guard-rail Event")
        assert "no traffic learned yet (empty baseline)" in refused[0].message
        assert any("empty baseline" in json.dumps(fields_of(r)) for r in caplog.records), "the log line says why"
        policy = runtime.controller.baseline_policy_of(IDENTITY)
        assert policy["metadata"]["annotations"][names.ANNOTATION_STEP] != names.STEP_TIGHTENED
    finally:
        runtime.stop()
    assert main(["explain", IDENTITY, "--kubeconfig", cluster.write_kubeconfig()]) == 0
    document = json.loads(capsys.readouterr().out)
    assert any(e["reason"] == names.EVENT_GUARD_RAIL and "empty baseline" in e["message"] for e in document["events"])
