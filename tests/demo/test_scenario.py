"""Scenario files: the built-in story parses; broken files fail with a message that says where."""

from __future__ import annotations

import pytest

from netwarden.tools.demo import load_scenario
from netwarden.tools.scenario import Endpoint, ScenarioError, parse_endpoint, parse_scenario
from netwarden.tools.traffic import PodEnd, WorldEnd, hubble_flow, steady_flows
from netwarden.reconciler.signals.hubble import parse_hubble_line

BASE = {
    "namespaces": [{"name": "shop"}],
    "workloads": [{"namespace": "shop", "name": "api", "ports": [8080]}],
}


def test_builtin_shop_story_parses_and_covers_the_whole_product() -> None:
    scenario = load_scenario(None)
    kinds = [s.kind for s in scenario.steps]
    for needed in ("deploy", "traffic", "falco", "set_ready", "delete_namespace", "expect"):
        assert needed in kinds
    assert {w.namespace for w in scenario.workloads} == {"shop", "payments"}


def test_endpoints_are_workloads_pods_or_ips() -> None:
    assert parse_endpoint("shop/api#1") == Endpoint(workload="shop/api", pod=1)
    assert parse_endpoint("shop/api") == Endpoint(workload="shop/api")
    assert parse_endpoint("203.0.113.5") == Endpoint(ip="203.0.113.5")
    with pytest.raises(ScenarioError):
        parse_endpoint("api")


@pytest.mark.parametrize(
    "steps, message",
    [
        ([], "at least one step"),
        ([{"deploy": {}, "wait": 1}], "exactly one of"),
        ([{"traffic": {"edges": [{"from": "shop/nope", "to": "shop/api", "port": 1}]}}], "unknown workload 'shop/nope'"),
        ([{"falco": {"pod": 0}}], "missing target"),
        ([{"expect": {"checks": [{"colour": 1}]}}], "each check is one of"),
        ([{"wait": "soon"}], "wait takes a number"),
    ],
)
def test_broken_scenarios_say_what_is_wrong(steps: list, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario({**BASE, "steps": steps})


def test_workload_in_an_undeclared_namespace_is_refused() -> None:
    with pytest.raises(ScenarioError, match="not declared"):
        parse_scenario({"namespaces": [], "workloads": [{"namespace": "x", "name": "a"}], "steps": [{"wait": 1}]})


def test_generated_hubble_flows_parse_as_real_hubble_records() -> None:
    api = PodEnd("shop", "api-abc", "10.244.0.5", {"app": "api"})
    db = PodEnd("shop", "db-0", "10.244.0.6", {"app": "db"})
    flows = list(steady_flows([(api, db, 5432, "TCP", "FORWARDED"), (api, WorldEnd("203.0.113.9"), 443, "TCP", "FORWARDED")],
                              start=1_700_000_000.0, seconds=2, rate=50))
    assert len(flows) == 100
    parsed = [parse_hubble_line(f) for f in flows]
    assert parsed[0].source.pod == "api-abc" and parsed[0].destination.namespace == "shop" and parsed[0].port == 5432
    assert parsed[1].destination.world and parsed[1].port == 443
    assert all(1_700_000_000.0 <= f.time <= 1_700_000_002.0 for f in parsed)
    dropped = parse_hubble_line(hubble_flow(api, db, 22, "TCP", 1_700_000_000.0, verdict="DROPPED"))
    assert dropped.policy_dropped and dropped.verdict == "dropped"
