from __future__ import annotations

from dataclasses import replace

import pytest
from msgspec.structs import replace as replace_view

from netwarden.model.policy import Peer, PolicyIntent, PortSpec, Rule
from netwarden.reconciler.core.behaviour import EGRESS, INGRESS, PEER_IDENTITY, PEER_WORLD, FlowView
from netwarden.reconciler.core.whatif import RecentFlows, netpol_is_allowed, what_if
from tests.core.corekit import API, CACHE, DB

EVALUATORS = [pytest.param(netpol_is_allowed(), id="netpol-eval")]


def view(direction: str = EGRESS, peer: str = DB, port: int = 5432, **kw: object) -> FlowView:
    base = FlowView(API, "shop", "inst-api-a", "api-a", direction, PEER_IDENTITY, peer, peer.split(".")[0], port, "TCP", 1.0, False, "10.0.0.1")
    return replace_view(base, **kw)  # type: ignore[arg-type]


TIGHT = PolicyIntent(
    "shop", API, step="tightened",
    ingress=(Rule((Peer("purpose", "frontend"),), (PortSpec("TCP", 8080),)),),
    egress=(Rule((Peer("identity", DB, "shop"),), (PortSpec("TCP", 5432),)), Rule((Peer("cidr", "203.0.113.0/24"),), (PortSpec("TCP", 443),))),
)


@pytest.mark.parametrize("is_allowed", EVALUATORS)
def test_both_evaluators_agree_on_what_the_tightened_policy_allows(is_allowed) -> None:
    assert is_allowed(TIGHT, view())
    assert not is_allowed(TIGHT, view(port=22))
    assert not is_allowed(TIGHT, view(peer=CACHE, port=6379, peer_namespace="cache"))
    assert is_allowed(TIGHT, view(port=53, protocol="UDP", peer="kube-system.deploy.coredns", peer_namespace="kube-system"))
    world = view(peer="203.0.113.7", port=443, peer_kind=PEER_WORLD, peer_namespace=None, peer_ip="203.0.113.7")
    assert is_allowed(TIGHT, world)
    assert not is_allowed(TIGHT, replace_view(world, peer_ip="198.51.100.1", peer_value="198.51.100.1"))
    frontend = view(INGRESS, peer="shop.deploy.web", port=8080, peer_purpose="frontend")
    assert is_allowed(TIGHT, frontend)
    assert not is_allowed(TIGHT, replace_view(frontend, peer_purpose="batch"))


@pytest.mark.parametrize("is_allowed", EVALUATORS)
def test_a_pod_the_intent_does_not_select_is_unaffected(is_allowed) -> None:
    excluded = replace(TIGHT, excluded_instances=("inst-api-a",))
    assert is_allowed(excluded, view(port=22))
    assert not is_allowed(excluded, view(port=22, instance="inst-api-b"))


def test_what_if_separates_baseline_flows_from_the_rest() -> None:
    recent = RecentFlows(16)
    learned, novel = view(port=5432), view(port=22)
    odd_learned = view(peer=CACHE, port=6379, peer_namespace="cache")
    for v in (learned, novel, odd_learned, replace_view(novel, port=23, dropped=True)):
        recent.add(v)
    result = what_if(TIGHT, recent, netpol_is_allowed(), {learned.edge, odd_learned.edge})
    assert [v.port for v in result.dropped_flows] == [22, 6379]
    assert [v.port for v in result.dropped_baseline_flows] == [6379]
    assert result.checked == 3 and not result.safe


def test_recent_flows_keep_distinct_edges_up_to_maxlen() -> None:
    recent = RecentFlows(3)
    for t, port in ((0, 1), (1, 2), (100, 1), (101, 3), (102, 4)):
        recent.add(view(port=port, time=float(t)))
    assert [v.port for v in recent.views()] == [1, 3, 4]  # port 1 was used again later than port 2
    assert recent.count(view(port=1).edge) == 2 and len(recent) == 3
