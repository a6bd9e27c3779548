"""Calico aggregates flows by pod prefix (`source_name: "-"`, `source_name_aggr: "frontend-*"`, or
Whisker's `scraper-655c844475-*`): such a flow is attributed to the workload that owns the pods
with that prefix, at workload level (no pod, no instance)."""

from __future__ import annotations

import json

from netwarden.reconciler.core.behaviour import EGRESS, INGRESS, resolve_flow
from netwarden.reconciler.core.pods import PodIndex, PodRef
from netwarden.reconciler.core.engine import DecisionEngine
from netwarden.reconciler.core.types import Endpoint
from netwarden.reconciler.signals.calico import parse_calico_record
from netwarden.reconciler.signals.parse import parse_flow_any
from tests.support.data import PAYLOADS

SCRAPER = "storefront.deploy.scraper"
WEB = "storefront.deploy.web"


def storefront() -> PodIndex:
    index = PodIndex()
    for identity, pod in ((SCRAPER, "scraper-655c844475-x2x9k"), (SCRAPER, "scraper-655c844475-q8w7e"),
                          (WEB, "web-574ff6d9fd-a1b2c"), ("storefront.deploy.web-admin", "web-admin-6c8d-zz9x1")):
        index.add(PodRef(identity, "storefront", pod, f"inst-{pod}", None))
    return index


def test_whisker_aggregated_flow_is_attributed_to_both_workloads() -> None:
    line = (PAYLOADS / "calico/calico-3.32.2_whisker-flows_aggregated_3records.jsonl").read_text().splitlines()[0]
    views = resolve_flow(parse_flow_any(json.loads(line)), storefront())
    assert [(v.identity, v.direction, v.pod, v.instance, v.peer_value) for v in views] == [
        (SCRAPER, EGRESS, None, None, WEB), (WEB, INGRESS, None, None, SCRAPER)]


def test_generate_name_prefix_wins_over_a_longer_sibling_name() -> None:
    index = storefront()
    # "web-*" matches web-574ff6d9fd-a1b2c and web-admin-6c8d-zz9x1 as plain prefixes; neither is a
    # pod that generateName "web-" would make, so two workloads: not attributed.
    assert index.owner_of_prefix("storefront", "web-*") is None
    assert index.owner_of_prefix("storefront", "web-574ff6d9fd-*").identity == WEB  # type: ignore[union-attr]
    assert index.owner_of_prefix("storefront", "web-admin-*").identity == "storefront.deploy.web-admin"  # type: ignore[union-attr]
    assert index.owner_of_prefix("payments", "web-574ff6d9fd-*") is None


def test_prefix_answers_follow_pod_changes() -> None:
    index = storefront()
    assert index.owner_of_prefix("storefront", "cart-*") is None
    index.add(PodRef("storefront.deploy.cart", "storefront", "cart-7f6d5c-k2j3h", "i", None))
    assert index.lookup(Endpoint(namespace="storefront", pod_prefix="cart-7f6d5c-*")).identity == "storefront.deploy.cart"  # type: ignore[union-attr]
    index.remove("storefront", "cart-7f6d5c-k2j3h")
    assert index.lookup(Endpoint(namespace="storefront", pod_prefix="cart-7f6d5c-*")) is None


def test_calico_flow_log_aggregated_by_prefix_teaches_the_engine() -> None:
    record = json.loads((PAYLOADS / "calico/calico-enterprise-docs_flow-aggregation_allow_2020.jsonl").read_text().splitlines()[0])
    flow = parse_calico_record(record)
    prefixed = [end for end in (flow.source, flow.destination) if end.pod_prefix]
    assert prefixed, "the real record has an aggregated end"
    engine = DecisionEngine()
    for end in prefixed:
        stem = end.pod_prefix.rstrip("*")  # type: ignore[union-attr]
        engine.upsert_pod(PodRef(f"{end.namespace}.deploy.agg", end.namespace or "", stem + "abcde", "inst", None))
    engine.ingest_flow(flow, flow.time)
    assert engine.counters.unresolved_flows == 0
    assert engine.baseline_of(f"{prefixed[0].namespace}.deploy.agg") is not None
