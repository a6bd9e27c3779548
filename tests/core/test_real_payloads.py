"""The core fed with real tool payloads (parsed by netwarden.reconciler.signals) from tests/data."""

from __future__ import annotations

import json
from dataclasses import replace

from msgspec.structs import replace as replace_flow


from netwarden.model import names
from netwarden.reconciler.core import decision as D
from netwarden.reconciler.core.behaviour import EGRESS, INGRESS, PEER_WORLD, resolve_flow
from netwarden.reconciler.core.pods import PodIndex, PodRef
from netwarden.reconciler.core.engine import DecisionEngine
from netwarden.reconciler.core.risk import POLICY_DROPS
from netwarden.reconciler.core.types import Endpoint, Flow
from netwarden.reconciler.signals.alertmanager import parse_alertmanager_payload
from netwarden.reconciler.signals.falco import parse_falco_event
from netwarden.reconciler.signals.hubble import parse_hubble_line
from tests.core.corekit import with_config
from tests.support.data import PAYLOADS

DATA = PAYLOADS

REVIEWS = PodRef("bookinfo.deploy.reviews-v1", "bookinfo", "reviews-v1-545db77b95-s6jb8", "inst-reviews", "10.0.2.16")
PROMETHEUS = PodRef("istio-system.deploy.prometheus", "istio-system", "prometheus-6655946b9f-hx9ln", "inst-prom", "10.0.1.4")
EXPORTER = PodRef("kube-system.deploy.event-exporter-gke", "kube-system", "event-exporter-gke-67986489c8-svnrf", "inst-ee", "10.0.2.13")


def hubble(name: str):
    return [parse_hubble_line(json.loads(line)) for line in (DATA / "hubble" / name).read_text().splitlines() if line.strip()]


def test_real_hubble_flows_resolve_to_views_and_replies_are_ignored() -> None:
    index = PodIndex()
    for ref in (REVIEWS, PROMETHEUS, EXPORTER):
        index.add(ref)
    views = [v for f in hubble("hubble-otel_gke-istio_2021_l3l4_10flows.jsonl") for v in resolve_flow(f, index)]
    summary = {(v.identity, v.direction, v.peer_value, v.port) for v in views}
    assert (REVIEWS.identity, INGRESS, PROMETHEUS.identity, 15090) in summary
    assert (PROMETHEUS.identity, EGRESS, REVIEWS.identity, 15090) in summary
    world = [v for v in views if v.peer_kind == PEER_WORLD]
    assert [(v.identity, v.direction, v.peer_value, v.port) for v in world] == [(EXPORTER.identity, EGRESS, "35.246.31.234", 443)]
    assert all(v.port not in (42044, 58698, 55574, 36804, 50908) for v in views)  # reply ports never become edges


def test_a_burst_of_real_policy_drops_is_evidence_after_learning() -> None:
    (drop,) = hubble("cilium-1.18.3_policy-drop_egress-denied-by.jsonl")
    e = DecisionEngine(with_config(default_mode=names.MODE_DRY_RUN))
    e.upsert_pod(PodRef("net-lab.deploy.traffic-generator", "net-lab", drop.source.pod or "", "inst-tg", drop.source.ip))
    e.upsert_pod(PodRef("net-lab.deploy.echo-server", "net-lab", drop.destination.pod or "", "inst-echo", drop.destination.ip))
    start = drop.time
    allowed = replace_flow(drop, verdict="forwarded", policy_dropped=False, port=8080)
    for n in range(120):
        e.ingest_flow(replace_flow(allowed, time=start + n), start + n)
    for n in range(25):
        t = start + 200 + n
        e.ingest_flow(replace_flow(drop, time=t), t)
    evidence = e.explain("net-lab.deploy.traffic-generator", start + 230)["evidence"]
    assert [row["kind"] for row in evidence] == [POLICY_DROPS]
    assert evidence[0]["details"]["last_flow"]["port"] == 80
    assert e.baseline_of("net-lab.deploy.traffic-generator").learned_edges()[0][4] == 8080  # drops never learned


def test_a_real_falcosidekick_notice_is_recorded_but_does_not_act() -> None:
    alert = parse_falco_event(json.loads((DATA / "falco/falcosidekick_webhook-post-body_terminal-shell_2024.json").read_text()))
    e = DecisionEngine(with_config())
    e.upsert_pod(PodRef("ingress-nginx.ds.ingress-nginx-controller", alert.namespace or "", alert.pod or "", "inst-nginx", "10.1.0.5"))
    assert e.ingest_alert(alert, alert.time) == []
    (row,) = e.explain("ingress-nginx.ds.ingress-nginx-controller", alert.time)["evidence"]
    assert row["pod"] == "ingress-nginx-controller-slszv" and row["details"]["priority"] == "notice"
    escalated = replace(alert, priority="critical", alert_id="another-alert")  # the same uuid would be a duplicate
    (decision,) = e.ingest_alert(escalated, alert.time + 1)
    assert decision.action == D.QUARANTINE_POD and decision.instances == ("inst-nginx",)


def test_real_alertmanager_alerts_on_every_replica_tighten_rather_than_quarantine_when_no_pod_is_hot() -> None:
    body = json.loads((DATA / "alertmanager/am_kube-prometheus_3-pods_grouped-by-namespace.json").read_text())
    alerts = parse_alertmanager_payload(body)
    e = DecisionEngine(with_config(blast_max_pod_fraction=1.0))
    namespace = alerts[0].namespace or ""
    identity = f"{namespace[:20]}.deploy.d4583"
    for n, alert in enumerate(alerts):
        e.upsert_pod(PodRef(identity, namespace, alert.pod or "", f"inst-{n}", f"10.2.0.{n + 1}"))
    # A learned baseline first (a flow well over a learning window before the alerts): without one,
    # tightening would cut everything (tests/core/test_containment.py).
    start = min(a.time for a in alerts) - e.config.learning_seconds - 60
    e.ingest_flow(Flow(start, Endpoint(ip="10.2.0.1"), Endpoint(ip="203.0.113.9", world=True), 443, "TCP"), start)
    decisions = []
    for alert in sorted(alerts, key=lambda a: a.time):
        decisions += e.ingest_metric_alert(alert, alert.time)
    assert [d.action for d in decisions] == [D.TIGHTEN]  # 3 x 12 >= 25 overall, but each pod only 12
    later = max(a.time for a in alerts) + 10_000_000
    assert e.tick(later) == []  # firing alerts do not decay
    for alert in alerts:
        e.ingest_metric_alert(replace(alert, firing=False), later)
    assert e.state_of(identity).step == names.STEP_BASELINE  # resolved: relaxed
