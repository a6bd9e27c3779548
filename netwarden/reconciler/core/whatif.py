"""What-if: which recent flows of a workload a proposed policy would drop.

One evaluator: `netpol_is_allowed` renders the proposed intent to its NetworkPolicy and asks
`netwarden.model.netpol_eval` (the evaluator the containment checks and the demo use too), so a
what-if answers with the semantics the cluster enforces. Recent traffic is kept per workload as a
bounded LRU of distinct edges: the question is "which edges would break", not "which packets".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Container, Iterable

from netwarden.model import names
from netwarden.model.netpol_eval import ContainerPort, ExternalIP, NamespaceInfo, PodInfo, PolicySet
from netwarden.model.policy import DnsTarget, PolicyIntent, PolicyMeta, render_network_policy
from netwarden.reconciler.core.behaviour import EGRESS, PEER_IDENTITY, PEER_NAMESPACE, Edge, FlowView

#: Would `intent` allow this flow view? (True when the intent does not select the view's pod.)
IsAllowed = Callable[[PolicyIntent, FlowView], bool]

PORT_PROTOCOLS = ("TCP", "UDP", "SCTP")
#: Seconds within which re-seeing an edge does not refresh its recency (keeps the per-flow cost flat).
RECENCY_GRAIN = 30.0


@dataclass(frozen=True)
class WhatIf:
    """Recent flows a proposed intent would drop; those in the learned baseline are the dangerous ones."""

    dropped_flows: tuple[FlowView, ...]
    dropped_baseline_flows: tuple[FlowView, ...]
    checked: int = 0

    @property
    def safe(self) -> bool:
        return not self.dropped_baseline_flows


class RecentFlows:
    """The `maxlen` most recently used distinct edges of a workload, with the latest view and a count of each."""

    __slots__ = ("maxlen", "_edges")

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        #: Edge -> [latest view, count], least recently used first (a plain dict in insertion order).
        self._edges: dict[Edge, list] = {}

    def add(self, view: FlowView, count: int = 1) -> None:
        edge = view.key or view.edge
        edges = self._edges
        entry = edges.get(edge)
        if entry is not None:
            # Recency is refreshed at most every RECENCY_GRAIN seconds per edge: LRU eviction
            # without a move (pop and re-insert) on every flow.
            if view.time - entry[0].time > RECENCY_GRAIN:
                del edges[edge]
                edges[edge] = entry
            entry[0] = view
            entry[1] += count
            return
        edges[edge] = [view, count]
        if len(edges) > self.maxlen:
            del edges[next(iter(edges))]

    def views(self, now: float | None = None, horizon: float | None = None) -> tuple[FlowView, ...]:
        """Latest view of each recent edge (within `horizon` seconds of `now` when given)."""
        if now is None or horizon is None:
            return tuple(entry[0] for entry in self._edges.values())
        cutoff = now - horizon
        return tuple(entry[0] for entry in self._edges.values() if entry[0].time >= cutoff)

    def latest(self, edge: Edge) -> FlowView | None:
        entry = self._edges.get(edge)
        return entry[0] if entry else None

    def count(self, edge: Edge) -> int:
        entry = self._edges.get(edge)
        return entry[1] if entry else 0

    def __len__(self) -> int:
        return len(self._edges)


def what_if(
    intent: PolicyIntent,
    recent: RecentFlows | tuple[FlowView, ...] | list[FlowView],
    is_allowed: IsAllowed,
    baseline_edges: Container[Edge] = (),
) -> WhatIf:
    """Which recent (non-dropped) flows `intent` would drop, and which of them the baseline holds."""
    views = recent.views() if isinstance(recent, RecentFlows) else tuple(recent)
    dropped: list[FlowView] = []
    dropped_baseline: list[FlowView] = []
    checked = 0
    for view in views:
        if view.dropped:
            continue
        checked += 1
        if not is_allowed(intent, view):
            dropped.append(view)
            if view.edge in baseline_edges:
                dropped_baseline.append(view)
    return WhatIf(tuple(dropped), tuple(dropped_baseline), checked)


# --- the NetworkPolicy semantics evaluator (netwarden.model.netpol_eval) --------------------------------


def selects(intent: PolicyIntent, view: FlowView) -> bool:
    """Does the intent's policy select the pod this view belongs to?"""
    if view.identity != intent.identity or view.namespace != intent.namespace:
        return False
    if intent.instance is not None:
        return view.instance == intent.instance
    return view.instance is None or view.instance not in intent.excluded_instances


def netpol_is_allowed(
    dns: DnsTarget | None = None,
    namespaces: Iterable[NamespaceInfo] = (),
    *,
    ipblock_matches_pods: bool = False,
) -> IsAllowed:
    """An `IsAllowed` that renders the intent to its NetworkPolicy and asks `netpol_eval.PolicySet`.

    Only the proposed policy is in the set, so the answer is that policy's effect on the workload's
    own side of each flow (the far side's policies are not what a tightening changes).
    """
    target = dns if dns is not None else DnsTarget()
    known_namespaces = tuple(namespaces)
    cache: dict[PolicyIntent, PolicySet] = {}

    def policy_set(intent: PolicyIntent) -> PolicySet:
        found = cache.get(intent)
        if found is None:
            if len(cache) > 64:
                cache.clear()
            manifest = render_network_policy(intent, PolicyMeta(name="what-if", reason="what-if"), target)
            found = cache[intent] = PolicySet([manifest], known_namespaces, ipblock_matches_pods=ipblock_matches_pods)
        return found

    def local_pod(view: FlowView, intent: PolicyIntent) -> PodInfo:
        labels = {names.LABEL_IDENTITY: view.identity}
        if view.instance is not None:
            labels[names.LABEL_INSTANCE] = view.instance
        ports = tuple(ContainerPort(number, name, protocol) for name, protocol, number in intent.port_names)
        return PodInfo(view.namespace, view.pod or view.instance or "local", labels, container_ports=ports)

    def far_end(view: FlowView) -> PodInfo | ExternalIP:
        if view.peer_kind == PEER_IDENTITY:
            labels = {names.LABEL_IDENTITY: view.peer_value}
            if view.peer_purpose:
                labels[names.LABEL_PURPOSE] = view.peer_purpose
            return PodInfo(view.peer_namespace or view.namespace, f"peer-of-{view.peer_value}", labels, view.peer_ip)
        if view.peer_kind == PEER_NAMESPACE:
            return PodInfo(view.peer_value, "unknown-pod", {}, view.peer_ip)
        return ExternalIP(view.peer_ip or "")

    def is_allowed(intent: PolicyIntent, view: FlowView) -> bool:
        if not selects(intent, view):
            return True
        here, there = local_pod(view, intent), far_end(view)
        src, dst = (here, there) if view.direction == EGRESS else (there, here)
        return policy_set(intent).is_allowed(src, dst, view.port, view.protocol)

    return is_allowed


#: The evaluator with the default DNS target (the engine builds its own from the configured one).
DEFAULT_IS_ALLOWED = netpol_is_allowed()
