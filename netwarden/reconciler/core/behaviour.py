"""Per-workload behaviour baselines: who a workload talks to, and how much.

A flow is first resolved into views, one per local workload it touches (an egress view for the
source, an ingress view for the destination). Each view updates that workload's `Baseline`:
during learning, edges (direction, peer, port, protocol) and crossed namespaces are learned; after
it, an unseen edge is a deviation, reported once. The flow rate is an EWMA over fixed buckets.
Memory per workload is capped (edges, namespaces, novel edges), never proportional to flows.

`observe` updates the baseline in place and returns it: at tens of thousands of flows a second,
copying a peer table per flow is not affordable. It reads no clock; `now` is passed in.
"""

from __future__ import annotations

import math
from typing import Sequence

import msgspec

from netwarden.reconciler.core.config import CoreConfig
from netwarden.reconciler.core.pods import PodIndex, PodRef
from netwarden.reconciler.core.risk import NEW_NAMESPACE, NEW_PEER, POLICY_DROPS, RATE_SPIKE, WORLD_EGRESS, Deviation
from netwarden.reconciler.core.types import Endpoint, Flow

EGRESS = "egress"
INGRESS = "ingress"

#: Peer kinds of a flow view.
PEER_IDENTITY = "identity"  # a pod whose workload identity is known
PEER_NAMESPACE = "namespace"  # a pod in a known namespace but of unknown workload
PEER_WORLD = "world"  # outside the cluster, as the flow source said
PEER_ADDRESS = "address"  # an IP nobody could resolve (not known to be outside, not a known pod)
OUTSIDE_KINDS = (PEER_WORLD, PEER_ADDRESS)

#: An edge: (direction, peer kind, peer value, peer namespace, port, protocol).
Edge = tuple[str, str, str, str | None, int | None, str]


class FlowView(msgspec.Struct, gc=False):
    """A flow as one local workload sees it. Two per flow: a msgspec Struct, cheaper to build than a
    dataclass (change one with `msgspec.structs.replace`)."""

    identity: str
    namespace: str
    instance: str | None
    pod: str | None
    direction: str
    peer_kind: str
    peer_value: str
    peer_namespace: str | None
    port: int | None
    protocol: str
    time: float
    dropped: bool
    peer_ip: str | None = None
    peer_purpose: str | None = None
    #: The edge tuple, computed once by `resolve_flow` (None: computed on demand).
    key: Edge | None = None

    @property
    def edge(self) -> Edge:
        key = self.key
        if key is None:
            key = (self.direction, self.peer_kind, self.peer_value, self.peer_namespace, self.port, self.protocol)
        return key

    def describe(self) -> str:
        arrow = "->" if self.direction == EGRESS else "<-"
        where = f"{self.peer_value}" + (f" (ns {self.peer_namespace})" if self.peer_namespace and self.peer_kind != PEER_NAMESPACE else "")
        port = f"{self.port}/{self.protocol}" if self.port is not None else self.protocol
        return f"{self.identity} {arrow} {self.peer_kind} {where} {port}"


def _peer_of(endpoint: Endpoint, ref: PodRef | None) -> tuple[str, str, str | None, str | None, str | None]:
    """(kind, value, namespace, ip, purpose) of the far end."""
    if ref is not None:
        return PEER_IDENTITY, ref.identity, ref.namespace, endpoint.ip or ref.ip, ref.purpose
    if endpoint.world:
        return PEER_WORLD, endpoint.ip or "0.0.0.0/0", None, endpoint.ip, None
    if endpoint.namespace:
        return PEER_NAMESPACE, endpoint.namespace, endpoint.namespace, endpoint.ip, None
    return PEER_ADDRESS, endpoint.ip or "unknown", None, endpoint.ip, None


#: A flow's two ends resolved against the pod index: (source ref, destination ref, the source's
#: peer (kind, value, namespace, ip, purpose), the destination's peer); a peer is None when its
#: own end is not a local workload. What `views_of` needs besides the flow's own fields.
Ends = tuple[PodRef | None, PodRef | None, tuple | None, tuple | None]


def resolve_ends(source: Endpoint, destination: Endpoint, index: PodIndex) -> Ends | None:
    """Both ends of a flow against the index, or None when neither is a local workload. Depends only
    on the two endpoints and the index, so a batch resolves each distinct pair once."""
    lookup = index.lookup
    src_ref = lookup(source)
    dst_ref = lookup(destination)
    if src_ref is None and dst_ref is None:
        return None
    return (src_ref, dst_ref,
            _peer_of(destination, dst_ref) if src_ref is not None else None,
            _peer_of(source, src_ref) if dst_ref is not None else None)


def views_of(flow: Flow, ends: Ends) -> list[FlowView]:
    """The views of a (non-reply) flow whose ends are resolved: egress for the source, ingress for the destination."""
    src_ref, dst_ref, egress_peer, ingress_peer = ends
    protocol = flow.protocol
    if not protocol.isupper():
        protocol = protocol.upper()
    dropped = flow.policy_dropped or flow.verdict == "dropped"
    port, when = flow.port, flow.time
    if src_ref is not None:
        kind, value, ns, ip, purpose = egress_peer  # type: ignore[misc]
        egress = FlowView(src_ref.identity, src_ref.namespace, src_ref.instance, src_ref.pod or None, EGRESS,
                          kind, value, ns, port, protocol, when, dropped, ip, purpose,
                          (EGRESS, kind, value, ns, port, protocol))
        if dst_ref is None:
            return [egress]
    kind, value, ns, ip, purpose = ingress_peer  # type: ignore[misc]
    ingress = FlowView(dst_ref.identity, dst_ref.namespace, dst_ref.instance, dst_ref.pod or None, INGRESS,  # type: ignore[union-attr]
                       kind, value, ns, port, protocol, when, dropped, ip, purpose,
                       (INGRESS, kind, value, ns, port, protocol))
    return [egress, ingress] if src_ref is not None else [ingress]


def resolve_flow(flow: Flow, index: PodIndex) -> list[FlowView]:
    """Views of a flow for each local workload it touches; replies are ignored (the request counted)."""
    if flow.reply:
        return []
    ends = resolve_ends(flow.source, flow.destination, index)
    return views_of(flow, ends) if ends is not None else []


class Baseline:
    """What one workload normally does. Mutable for speed; bounded in size by the config caps."""

    __slots__ = (
        "identity", "namespace", "config", "first_seen", "learning_until", "flows_seen", "learning",
        "edges", "namespaces", "novel", "evicted_edges", "evicted_novel",
        "bucket", "bucket_count", "rate_mean", "rate_var", "buckets_seen", "spike_threshold", "spiked_bucket",
        "drop_window", "drop_count", "drop_reported",
    )

    def __init__(self, identity: str, namespace: str, now: float, config: CoreConfig) -> None:
        self.identity = identity
        self.namespace = namespace
        self.config = config
        self.first_seen = now
        self.learning_until = now + config.learning_seconds
        self.flows_seen = 0
        self.learning = True
        # Plain dicts in insertion order, used as LRUs: a move to the end is a pop and a re-insert
        # (one hash fewer per flow than OrderedDict's set + move_to_end), eviction deletes the first.
        #: Learned edges -> last time seen, least recently seen first.
        self.edges: dict[Edge, float] = {}
        #: Namespaces crossed (other than its own), least recently seen first.
        self.namespaces: dict[str, float] = {}
        #: Edges first seen after learning (reported once each), oldest first.
        self.novel: dict[Edge, float] = {}
        self.evicted_edges = 0
        self.evicted_novel = 0
        self.bucket = int(now // config.rate_bucket_seconds)
        self.bucket_count = 0
        self.rate_mean = 0.0
        self.rate_var = 0.0
        self.buckets_seen = 0
        self.spike_threshold = math.inf
        self.spiked_bucket = -1
        self.drop_window = int(now // config.drop_burst_window_seconds)
        self.drop_count = 0
        self.drop_reported = False

    def is_learning(self, now: float) -> bool:
        return self.learning and now < self.learning_until and self.flows_seen < self.config.learning_max_flows

    def learned_edges(self) -> tuple[Edge, ...]:
        return tuple(self.edges)

    def rate_stddev(self) -> float:
        return math.sqrt(self.rate_var) if self.rate_var > 0 else 0.0

    def summary(self) -> dict[str, object]:
        return {
            "identity": self.identity,
            "learning_until": self.learning_until,
            "learning": self.learning,
            "flows_seen": self.flows_seen,
            "edges": len(self.edges),
            "namespaces": sorted(self.namespaces),
            "evicted_edges": self.evicted_edges,
            "rate_mean_per_bucket": round(self.rate_mean, 3),
            "rate_stddev_per_bucket": round(self.rate_stddev(), 3),
        }


def _roll_rate(b: Baseline, bucket: int) -> None:
    """Close the current bucket (and any empty ones skipped) into the EWMA, open `bucket`."""
    cfg = b.config
    alpha = cfg.rate_alpha
    gap = bucket - b.bucket
    count = float(b.bucket_count)
    # The closed bucket, then up to a bounded number of empty ones (after that the mean is ~0 anyway).
    for _ in range(min(gap, 64)):
        diff = count - b.rate_mean
        incr = alpha * diff
        b.rate_mean += incr
        b.rate_var = (1 - alpha) * (b.rate_var + diff * incr)
        b.buckets_seen += 1
        count = 0.0
    b.bucket = bucket
    b.bucket_count = 0
    sd = max(math.sqrt(b.rate_var) if b.rate_var > 0 else 0.0, cfg.rate_min_stddev_fraction * b.rate_mean)
    threshold = b.rate_mean + cfg.rate_spike_z * sd
    b.spike_threshold = max(threshold, float(cfg.rate_spike_min_flows))


def observe(b: Baseline, view: FlowView, now: float, count: int = 1) -> tuple[Baseline, list[Deviation]]:
    """Learn from one flow view, or report how it deviates from what was learned. `count` > 1 is the
    same view seen that many times at `now` (a fold of the scale-out ingest): rate, drops and the
    learning budget count each; an edge is learned or reported once, as for one view."""
    return b, list(update(b, view, now, count))


#: What `update` returns for the usual view: shared, never appended to.
NO_DEVIATIONS: tuple[Deviation, ...] = ()


def update(b: Baseline, view: FlowView, now: float, count: int = 1) -> Sequence[Deviation]:
    """`observe` without its allocations, for the engine's per-view loop: the deviations, usually
    NO_DEVIATIONS (a new list only when there are some)."""
    cfg = b.config
    if b.flows_seen == 0:
        # Learning and the rate history start with the first flow, not when the workload was first
        # tracked (a pod's readiness or a policy's history can come long before any traffic).
        b.first_seen = now
        b.learning_until = now + cfg.learning_seconds
        b.bucket = int(now // cfg.rate_bucket_seconds)
        b.drop_window = int(now // cfg.drop_burst_window_seconds)
    learning = b.learning
    if learning and (now >= b.learning_until or b.flows_seen >= cfg.learning_max_flows):
        b.learning = learning = False
    b.flows_seen += count
    deviations: Sequence[Deviation] = NO_DEVIATIONS

    # Rate: count every view, dropped or not. The floor division is whole-valued, so it compares
    # with the int bucket as its int() would (made only when a new bucket opens).
    bucket = now // cfg.rate_bucket_seconds
    if bucket > b.bucket:
        _roll_rate(b, int(bucket))
    b.bucket_count += count
    if (
        not learning
        and b.bucket_count > b.spike_threshold
        and b.spiked_bucket != b.bucket
        and b.buckets_seen >= cfg.rate_min_buckets
    ):
        # One sustained spike is one anomaly: a spike soon after a spiking bucket continues that episode.
        continuing = b.bucket - b.spiked_bucket <= cfg.rate_spike_gap_buckets
        b.spiked_bucket = b.bucket
        if not continuing:
            deviations = [_rate_spike(b, view, now)]

    if view.dropped:
        # A dropped flow never happened: it is not learned, only counted towards a burst.
        window = int(now // cfg.drop_burst_window_seconds)
        if window != b.drop_window:
            b.drop_window, b.drop_count, b.drop_reported = window, 0, False
        b.drop_count += count
        if not learning and not b.drop_reported and b.drop_count >= cfg.drop_burst_flows:
            b.drop_reported = True
            return [*deviations, _drop_burst(b, view, now)]
        return deviations

    edge = view.key or view.edge
    edges = b.edges
    if learning:
        # Recency only matters while edges can still be added (and evicted): a known edge moves
        # to the end (popped and re-inserted, so one lookup tests and removes it).
        if edges.pop(edge, None) is not None:
            edges[edge] = now
            return deviations
    elif edge in edges:
        return deviations

    peer_ns = view.peer_namespace
    crosses = peer_ns is not None and peer_ns != b.namespace
    if learning:
        edges[edge] = now
        if len(edges) > cfg.max_peers_per_workload:
            del edges[next(iter(edges))]
            b.evicted_edges += 1
        if crosses:
            _remember_namespace(b, peer_ns, now)  # type: ignore[arg-type]
        return deviations

    # After learning: an unseen edge is reported once, and not learned (tightening keeps it out).
    novel = b.novel
    if edge in novel:
        novel[edge] = now
        return deviations
    novel[edge] = now
    if len(novel) > cfg.max_novel_per_workload:
        del novel[next(iter(novel))]
        b.evicted_novel += 1
    deviations = list(deviations)
    if view.direction == EGRESS and view.peer_kind in OUTSIDE_KINDS:
        deviations.append(_edge_deviation(b, view, now, WORLD_EGRESS, "egress to an address outside the cluster"))
    else:
        deviations.append(_edge_deviation(b, view, now, NEW_PEER, "new peer after learning"))
    if crosses and peer_ns not in b.namespaces:
        _remember_namespace(b, peer_ns, now)  # type: ignore[arg-type]
        deviations.append(_edge_deviation(b, view, now, NEW_NAMESPACE, f"first traffic with namespace {peer_ns}"))
    return deviations


def _remember_namespace(b: Baseline, namespace: str, now: float) -> None:
    namespaces = b.namespaces
    namespaces.pop(namespace, None)  # to the end: least recently seen first
    namespaces[namespace] = now
    if len(namespaces) > b.config.max_namespaces_per_workload:
        del namespaces[next(iter(namespaces))]


def _view_details(view: FlowView) -> dict[str, object]:
    return {
        "flow_time": view.time,
        "direction": view.direction,
        "peer_kind": view.peer_kind,
        "peer": view.peer_value,
        "peer_namespace": view.peer_namespace,
        "peer_ip": view.peer_ip,
        "port": view.port,
        "protocol": view.protocol,
        "pod": view.pod,
    }


def _edge_deviation(b: Baseline, view: FlowView, now: float, kind: str, what: str) -> Deviation:
    return Deviation(
        kind=kind,
        weight=b.config.deviation_weights[kind],
        time=now,
        identity=b.identity,
        namespace=b.namespace,
        summary=f"{what}: {view.describe()}" + (f" from pod {view.pod}" if view.pod else ""),
        instance=view.instance,
        pod=view.pod,
        direction=view.direction,
        peer=view.peer_value,
        port=view.port,
        protocol=view.protocol,
        details=_view_details(view),
    )


def _rate_spike(b: Baseline, view: FlowView, now: float) -> Deviation:
    cfg = b.config
    return Deviation(
        kind=RATE_SPIKE,
        weight=cfg.deviation_weights[RATE_SPIKE],
        time=now,
        identity=b.identity,
        namespace=b.namespace,
        summary=(
            f"flow rate spike: over {b.spike_threshold:.0f} flows in a {cfg.rate_bucket_seconds:g}s bucket "
            f"(usual {b.rate_mean:.1f} +/- {b.rate_stddev():.1f})"
        ),
        details={
            "bucket_start": b.bucket * cfg.rate_bucket_seconds,
            "count": b.bucket_count,
            "mean": b.rate_mean,
            "stddev": b.rate_stddev(),
            "threshold": b.spike_threshold,
            "last_flow": _view_details(view),
        },
    )


def _drop_burst(b: Baseline, view: FlowView, now: float) -> Deviation:
    cfg = b.config
    return Deviation(
        kind=POLICY_DROPS,
        weight=cfg.deviation_weights[POLICY_DROPS],
        time=now,
        identity=b.identity,
        namespace=b.namespace,
        summary=f"{b.drop_count} policy-dropped flows within {cfg.drop_burst_window_seconds:g}s, last {view.describe()}",
        details={"count": b.drop_count, "window_start": b.drop_window * cfg.drop_burst_window_seconds, "last_flow": _view_details(view)},
    )
