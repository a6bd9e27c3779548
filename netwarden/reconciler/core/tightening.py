"""Tightening, pure: a workload's learned baseline as the rules of its tightened policy.

Each learned edge becomes one narrow rule (a peer and a port); nothing wider than the workload's
declared baseline, asked through the one NetworkPolicy evaluator; and a baseline learned from too
little traffic is refused with the reason (`thin_baseline`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from netwarden.model import names
from netwarden.model.policy import Peer, PolicyIntent, PortSpec, Rule, normalise_rules
from netwarden.reconciler.core.behaviour import EGRESS, PEER_ADDRESS, PEER_IDENTITY, PEER_NAMESPACE, PEER_WORLD, Baseline, Edge, FlowView
from netwarden.reconciler.core.config import CoreConfig
from netwarden.reconciler.core.whatif import DEFAULT_IS_ALLOWED, PORT_PROTOCOLS, RecentFlows

if TYPE_CHECKING:
    from netwarden.reconciler.core.decision import WorkloadState


def edge_rule(edge: Edge) -> tuple[str, Rule] | None:
    """A learned edge as a (direction, Rule); None for what a NetworkPolicy cannot express narrowly."""
    direction, kind, value, namespace, port, protocol = edge
    if protocol not in PORT_PROTOCOLS:
        return None  # ICMP & co: a port-less rule would open every port to the peer
    if kind == PEER_IDENTITY:
        peer = Peer("identity", value, namespace)
    elif kind == PEER_NAMESPACE:
        peer = Peer("namespace", value)
    elif kind in (PEER_WORLD, PEER_ADDRESS):
        if value == "unknown":
            return None
        cidr = value if "/" in value else (f"{value}/128" if ":" in value else f"{value}/32")
        peer = Peer("cidr", cidr)
    else:
        return None
    return direction, Rule((peer,), (PortSpec(protocol, port),))


def _edge_view(state: "WorkloadState", edge: Edge, recent: RecentFlows | None) -> FlowView:
    seen = recent.latest(edge) if recent is not None else None
    if seen is not None:
        return msgspec.structs.replace(seen, instance=None, dropped=False)
    direction, kind, value, namespace, port, protocol = edge
    ip = value.split("/")[0] if kind in (PEER_WORLD, PEER_ADDRESS) else None
    return FlowView(state.identity, state.namespace, None, None, direction, kind, value, namespace, port, protocol, 0.0, False, ip)


def tightened_intent(state: "WorkloadState", baseline: Baseline | None, recent: RecentFlows | None = None) -> PolicyIntent:
    """The learned baseline as rules, intersected with the declared baseline (never wider than it)."""
    ingress: list[Rule] = []
    egress: list[Rule] = []
    for edge in baseline.learned_edges() if baseline is not None else ():
        converted = edge_rule(edge)
        if converted is None:
            continue
        if not DEFAULT_IS_ALLOWED(state.base_intent, _edge_view(state, edge, recent)):
            continue  # allowed by some other policy, not by this workload's own: do not widen
        direction, rule = converted
        (egress if direction == EGRESS else ingress).append(rule)
    return PolicyIntent(
        namespace=state.namespace,
        identity=state.identity,
        step=names.STEP_TIGHTENED,
        ingress=normalise_rules(ingress),
        egress=normalise_rules(egress),
        excluded_instances=tuple(sorted(state.quarantined)),
        include_dns=state.base_intent.include_dns,
    )


def thin_baseline(baseline: Baseline | None, now: float, config: CoreConfig) -> str | None:
    """Why a learned baseline is too little to tighten to (None when it is enough): nothing learned,
    or learned for less than the learning window (a flow cap that ended learning early is enough)."""
    if baseline is None or baseline.flows_seen == 0:
        return "no traffic learned yet (empty baseline)"
    if baseline.is_learning(now):
        return (f"baseline learned for only {max(0.0, now - baseline.first_seen):.0f}s of the "
                f"{config.learning_seconds:g}s learning window ({baseline.flows_seen} flows)")
    if not baseline.learned_edges():
        return "the learned baseline is empty"
    return None
