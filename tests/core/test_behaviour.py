from __future__ import annotations

from msgspec.structs import replace

from netwarden.reconciler.core.behaviour import (
    EGRESS,
    INGRESS,
    PEER_ADDRESS,
    PEER_IDENTITY,
    PEER_NAMESPACE,
    PEER_WORLD,
    Baseline,
    FlowView,
    PodIndex,
    observe,
    resolve_flow,
)
from netwarden.reconciler.core.risk import NEW_NAMESPACE, NEW_PEER, POLICY_DROPS, RATE_SPIKE, WORLD_EGRESS
from netwarden.reconciler.core.types import Endpoint, Flow
from tests.core.corekit import API, CACHE, DB, FAST, flow, ip, pod_ref, with_config


def index() -> PodIndex:
    idx = PodIndex()
    for ref in (pod_ref(API, 0), pod_ref(API, 1), pod_ref(DB), pod_ref(CACHE)):
        idx.add(ref)
    return idx


def view(direction: str = EGRESS, peer: str = DB, port: int = 5432, t: float = 0.0, **kw: object) -> FlowView:
    base = FlowView(API, "shop", "inst-api-a", "api-7d9f-a", direction, PEER_IDENTITY, peer, peer.split(".")[0], port, "TCP", t, False)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_a_flow_between_two_workloads_gives_an_egress_and_an_ingress_view() -> None:
    views = resolve_flow(flow(1.0, ip(API), ip(DB)), index())
    assert [(v.identity, v.direction, v.peer_value, v.port) for v in views] == [
        (API, EGRESS, DB, 5432),
        (DB, INGRESS, API, 5432),
    ]
    assert views[0].instance == "inst-api-a" and views[1].peer_purpose == "backend"


def test_replies_are_ignored_and_unknown_flows_give_no_view() -> None:
    assert resolve_flow(flow(1.0, ip(DB), ip(API), reply=True), index()) == []
    assert resolve_flow(flow(1.0, "192.0.2.1", "192.0.2.2"), index()) == []


def test_pods_are_found_by_namespace_and_name_before_ip() -> None:
    f = Flow(1.0, Endpoint(None, "shop", "api-7d9f-b"), Endpoint("10.0.2.10"), 5432, "tcp")
    (egress, _) = resolve_flow(f, index())
    assert egress.instance == "inst-api-b" and egress.protocol == "TCP"


def test_outside_peers_are_world_unknown_address_or_namespace() -> None:
    idx = index()
    world = resolve_flow(flow(1.0, ip(API), "203.0.113.9", 443, world=True), idx)[0]
    unknown = resolve_flow(flow(1.0, ip(API), "10.99.0.1", 443), idx)[0]
    other_ns = resolve_flow(Flow(1.0, Endpoint(ip(API)), Endpoint("10.5.0.1", "monitoring", "prom-0"), 9090, "TCP"), idx)[0]
    assert (world.peer_kind, world.peer_value) == (PEER_WORLD, "203.0.113.9")
    assert (unknown.peer_kind, unknown.peer_value) == (PEER_ADDRESS, "10.99.0.1")
    assert (other_ns.peer_kind, other_ns.peer_value) == (PEER_NAMESPACE, "monitoring")


def test_learning_records_edges_and_reports_nothing() -> None:
    b = Baseline(API, "shop", 0.0, FAST)
    for t in range(50):
        _, devs = observe(b, view(t=float(t)), float(t))
        assert devs == []
    _, devs = observe(b, view(peer=CACHE, port=6379, t=60.0), 60.0)
    assert devs == []
    assert len(b.edges) == 2 and "cache" in b.namespaces and b.is_learning(60.0)


def test_learning_ends_after_the_window_or_after_enough_flows() -> None:
    by_time = Baseline(API, "shop", 0.0, FAST)
    assert by_time.is_learning(99.0) and not by_time.is_learning(100.0)
    by_count = Baseline(API, "shop", 0.0, with_config(learning_max_flows=10))
    for t in range(10):
        observe(by_count, view(t=float(t)), float(t))
    _, devs = observe(by_count, view(peer=CACHE, port=6379, t=11.0), 11.0)
    assert [d.kind for d in devs] == [NEW_PEER, NEW_NAMESPACE]


def test_a_new_peer_after_learning_is_reported_once_with_evidence() -> None:
    b = Baseline(API, "shop", 0.0, FAST)
    observe(b, view(t=1.0), 1.0)
    _, devs = observe(b, view(port=22, t=200.0), 200.0)
    assert [d.kind for d in devs] == [NEW_PEER]
    dev = devs[0]
    assert (dev.peer, dev.port, dev.protocol, dev.direction, dev.instance) == (DB, 22, "TCP", EGRESS, "inst-api-a")
    assert "22/TCP" in dev.summary and dev.details["flow_time"] == 200.0
    _, again = observe(b, view(port=22, t=201.0), 201.0)
    assert again == []
    assert (EGRESS, PEER_IDENTITY, DB, "shop", 22, "TCP") not in b.edges  # not learned: tightening keeps it out


def test_a_new_namespace_crossed_is_its_own_deviation() -> None:
    b = Baseline(API, "shop", 0.0, FAST)
    observe(b, view(t=1.0), 1.0)
    _, devs = observe(b, view(peer=CACHE, port=6379, t=200.0), 200.0)
    assert [d.kind for d in devs] == [NEW_PEER, NEW_NAMESPACE]
    assert "cache" in devs[1].summary


def test_egress_to_the_world_after_learning_is_world_egress() -> None:
    b = Baseline(API, "shop", 0.0, FAST)
    observe(b, view(t=1.0), 1.0)
    world = view(peer="203.0.113.9", port=443, t=200.0, peer_kind=PEER_WORLD, peer_namespace=None, peer_ip="203.0.113.9")
    _, devs = observe(b, world, 200.0)
    assert [d.kind for d in devs] == [WORLD_EGRESS]
    unknown = replace(world, peer_kind=PEER_ADDRESS, peer_value="10.99.0.1", peer_ip="10.99.0.1")
    _, devs = observe(b, unknown, 201.0)
    assert [d.kind for d in devs] == [WORLD_EGRESS]


def test_ingress_from_the_world_is_a_new_peer_not_world_egress() -> None:
    b = Baseline(API, "shop", 0.0, FAST)
    observe(b, view(t=1.0), 1.0)
    inbound = view(direction=INGRESS, peer="203.0.113.9", port=8080, t=200.0, peer_kind=PEER_WORLD, peer_namespace=None)
    _, devs = observe(b, inbound, 200.0)
    assert [d.kind for d in devs] == [NEW_PEER]


def test_a_rate_spike_is_reported_once_per_bucket() -> None:
    b = Baseline(API, "shop", 0.0, FAST)
    for second in range(300):  # 10 flows per 10 s bucket, steady
        observe(b, view(t=float(second)), float(second))
    spikes = []
    for n in range(200):  # 200 flows in one bucket
        _, devs = observe(b, view(t=305.0), 305.0)
        spikes += devs
    assert [d.kind for d in spikes] == [RATE_SPIKE]
    assert spikes[0].instance is None  # workload-level evidence
    assert spikes[0].details["count"] > spikes[0].details["mean"]


def test_a_sustained_spike_is_one_episode_and_a_later_one_is_another() -> None:
    b = Baseline(API, "shop", 0.0, FAST)
    for second in range(300):  # 10 flows per 10 s bucket, steady
        observe(b, view(t=float(second)), float(second))
    spikes = []
    for t in (305.0, 315.0, 325.0):  # three consecutive 10 s buckets of 200 flows each
        for _ in range(200):
            spikes += observe(b, view(t=t), t)[1]
    assert [d.kind for d in spikes] == [RATE_SPIKE]
    for second in range(335, 400):  # back to normal
        observe(b, view(t=float(second)), float(second))
    later = []
    for _ in range(400):
        later += observe(b, view(t=405.0), 405.0)[1]
    assert [d.kind for d in later] == [RATE_SPIKE]


def test_a_spike_that_dips_for_a_bucket_or_two_is_still_one_episode() -> None:
    """Flows arrive in batches (and late, on a loaded node): a dip inside one sustained spike is no new anomaly;
    the same workload spiking again after rate_spike_gap_buckets is."""
    b = Baseline(API, "shop", 0.0, FAST)
    for second in range(300):  # 10 flows per 10 s bucket, steady
        observe(b, view(t=float(second)), float(second))
    spikes = []
    for t, flows in ((305.0, 200), (315.0, 0), (325.0, 0), (335.0, 3000)):  # the backlog lands two buckets late
        for _ in range(flows):
            spikes += observe(b, view(t=t), t)[1]
    assert [d.kind for d in spikes] == [RATE_SPIKE]
    quiet = 335.0 + 10 * (FAST.rate_spike_gap_buckets + 1)
    for second in range(336, int(quiet)):
        observe(b, view(t=float(second)), float(second))
    later = []
    for _ in range(6000):
        later += observe(b, view(t=quiet + 5), quiet + 5)[1]
    assert [d.kind for d in later] == [RATE_SPIKE]


def test_a_steady_rate_is_no_spike() -> None:
    b = Baseline(API, "shop", 0.0, FAST)
    found = []
    for n in range(6000):
        t = n * 0.1
        found += observe(b, view(t=t), t)[1]
    assert found == []


def test_a_burst_of_policy_drops_is_reported_and_drops_are_not_learned() -> None:
    b = Baseline(API, "shop", 0.0, FAST)
    observe(b, view(t=1.0), 1.0)
    found = []
    for n in range(FAST.drop_burst_flows + 5):
        found += observe(b, view(port=3306, t=200.0 + n * 0.1, dropped=True), 200.0 + n * 0.1)[1]
    assert [d.kind for d in found] == [POLICY_DROPS]
    assert found[0].details["count"] == FAST.drop_burst_flows
    assert len(b.edges) == 1


def test_policy_drops_during_learning_are_not_reported() -> None:
    b = Baseline(API, "shop", 0.0, FAST)
    found = []
    for n in range(50):
        found += observe(b, view(port=3306, t=n * 0.1, dropped=True), n * 0.1)[1]
    assert found == [] and len(b.edges) == 0


def test_distinct_peers_are_capped_and_evictions_counted() -> None:
    b = Baseline(API, "shop", 0.0, with_config(max_peers_per_workload=8, learning_max_flows=10_000))
    for port in range(100):
        observe(b, view(port=port, t=1.0), 1.0)
    assert len(b.edges) == 8 and b.evicted_edges == 92
    assert (EGRESS, PEER_IDENTITY, DB, "shop", 99, "TCP") in b.edges  # the most recent survive


def test_learning_and_rate_history_start_at_the_first_flow_not_when_tracking_began() -> None:
    """Regression: a workload tracked early (pod readiness, policy history) and silent for a while used
    to start with its learning window closed and a zero-rate history, so its first traffic deviated."""
    b = Baseline(API, "shop", 0.0, FAST)  # tracked at t=0
    found = []
    for n in range(100):  # first traffic an hour later, steady
        t = 3600.0 + n
        found += observe(b, view(t=t), t)[1]
    assert found == []
    assert b.learning_until == 3600.0 + FAST.learning_seconds


def test_the_rate_bucket_opens_where_the_floor_division_says_even_at_its_edges() -> None:
    b = Baseline(API, "shop", 0.0, with_config())
    size = b.config.rate_bucket_seconds
    edges = [size - 2e-15, size, size + 1e-12, 3 * size - 1e-13, 3 * size, 1.7e9 - 1e-6, 1.7e9, 1.7e9 + size]
    for t in edges:
        observe(b, view(t=t), t)
        assert type(b.bucket) is int and b.bucket == int(t // size)
