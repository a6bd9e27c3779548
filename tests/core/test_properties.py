"""Invariants of the core under random signal streams (hypothesis)."""

from __future__ import annotations


from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netwarden.model import names
from netwarden.model.policy import Peer, PolicyIntent, PortSpec, Rule
from netwarden.reconciler.core import decision as D
from netwarden.reconciler.core.behaviour import EGRESS, INGRESS, PEER_IDENTITY, PEER_NAMESPACE, PEER_WORLD, Baseline, FlowView, observe
from netwarden.reconciler.core.pods import PodRef
from netwarden.model.history import PolicyHistory
from netwarden.reconciler.core.types import Endpoint, Flow, MetricAlert, SecurityAlert
from netwarden.reconciler.core.whatif import DEFAULT_IS_ALLOWED
from tests.core.corekit import API, DB, PODS, engine, health, ip, with_config

PROTECTED = "kube-system.deploy.metrics"
PROTECTED_POD = PodRef(PROTECTED, "kube-system", "metrics-0", "inst-m", "10.0.8.1")
IPS = [p[2] for pods in PODS.values() for p in pods] + [PROTECTED_POD.ip, "203.0.113.5", "198.51.100.9", "10.99.0.1"]
POD_NAMES = [("shop", "api-7d9f-a"), ("shop", "api-7d9f-b"), ("shop", "db-0"), ("kube-system", "metrics-0")]
PRIORITIES = ["emergency", "alert", "critical", "error", "warning", "notice"]

flows = st.builds(
    lambda src, dst, port, proto, dropped, world: ("flow", src, dst, port, proto, dropped, world),
    st.sampled_from(IPS), st.sampled_from(IPS), st.sampled_from([22, 53, 80, 443, 5432, 6379, 8080]),
    st.sampled_from(["TCP", "UDP"]), st.booleans(), st.booleans(),
)
alerts = st.builds(lambda pod, prio: ("falco", pod, prio), st.sampled_from(POD_NAMES), st.sampled_from(PRIORITIES))
metric = st.builds(lambda pod, firing: ("metric", pod, firing), st.sampled_from(POD_NAMES), st.booleans())
healths = st.builds(lambda pod, ready, restarts: ("health", pod, ready, restarts), st.sampled_from(POD_NAMES), st.booleans(), st.integers(0, 3))
ticks = st.just(("tick",))
events = st.lists(st.tuples(st.floats(0.1, 400.0), st.one_of(flows, flows, flows, alerts, metric, healths, ticks)), max_size=60)

DECLARED = PolicyIntent(
    "shop", API,
    ingress=(Rule((Peer("purpose", "frontend"), Peer("identity", PROTECTED, "kube-system")), (PortSpec("TCP", 8080),)),),
    egress=(Rule((Peer("identity", DB, "shop"),), (PortSpec("TCP", 5432),)), Rule((Peer("cidr", "203.0.113.0/24"),), (PortSpec("TCP", 443),))),
)


def drive(e, stream, start: float = 0.0, learn: bool = True):
    """Feed a random stream from `start`, after a learning phase unless `learn` is False; returns every decision made."""
    out = []
    for n in range(120 if learn else 0):  # learning: the api talks to the db, metrics to the api
        out += e.ingest_flow(Flow(start + n, Endpoint(ip(API)), Endpoint(ip(DB)), 5432, "TCP"), start + n)
        out += e.ingest_flow(Flow(start + n, Endpoint(PROTECTED_POD.ip), Endpoint(ip(API)), 8080, "TCP"), start + n)
    t = start + (120.0 if learn else 0.0)
    for gap, event in stream:
        t += gap
        kind = event[0]
        if kind == "flow":
            _, src, dst, port, proto, dropped, world = event
            f = Flow(t, Endpoint(src), Endpoint(dst, world=world), port, proto, policy_dropped=dropped,
                     verdict="dropped" if dropped else "forwarded")
            out += e.ingest_flow(f, t)
        elif kind == "falco":
            (ns, pod), prio = event[1], event[2]
            out += e.ingest_alert(SecurityAlert(t, ns, pod, "rule", prio), t)
        elif kind == "metric":
            (ns, pod), firing = event[1], event[2]
            out += e.ingest_metric_alert(MetricAlert(t, firing, "A", "critical", ns, pod, fingerprint=pod), t)
        elif kind == "health":
            (ns, pod), ready, restarts = event[1], event[2], event[3]
            out += e.ingest_health(health(t, pod, ready, restarts, ns), t)
        else:
            out += e.tick(t)
    return out


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(events, st.sampled_from(names.MODES))
def test_a_protected_namespace_is_never_tightened_or_quarantined(stream, mode) -> None:
    e = engine(with_config(default_mode=mode, blast_max_pod_fraction=1.0, blast_max_workloads=10))
    e.upsert_pod(PROTECTED_POD)
    decisions = drive(e, stream)
    protected = [d for d in decisions if d.namespace == "kube-system"]
    assert all(d.action == D.ALERT_ONLY for d in protected)
    state = e.state_of(PROTECTED)
    assert state is None or (state.step == names.STEP_BASELINE and not state.quarantined and not state.pending)


def probes() -> list[FlowView]:
    out = []
    peers = [(PEER_IDENTITY, DB, "shop", "database", ip(DB)), (PEER_IDENTITY, "shop.deploy.web", "shop", "frontend", "10.0.1.50"),
             (PEER_IDENTITY, PROTECTED, "kube-system", None, PROTECTED_POD.ip), (PEER_NAMESPACE, "cache", "cache", None, "10.0.3.10"),
             (PEER_WORLD, "203.0.113.5", None, None, "203.0.113.5"), (PEER_WORLD, "198.51.100.9", None, None, "198.51.100.9")]
    for direction in (EGRESS, INGRESS):
        for kind, value, ns, purpose, peer_ip in peers:
            for port in (22, 53, 443, 5432, 8080):
                for proto in ("TCP", "UDP"):
                    out.append(FlowView(API, "shop", None, None, direction, kind, value, ns, port, proto, 0.0, False, peer_ip, purpose))
    return out


PROBES = probes()


@SETTINGS
@given(events)
def test_relaxing_never_opens_more_than_the_declared_baseline(stream) -> None:
    e = engine(with_config(blast_max_pod_fraction=1.0, blast_max_workloads=10, half_life_seconds=60.0,
                           tighten_expiry_seconds=120.0, quarantine_expiry_seconds=120.0))
    e.upsert_pod(PROTECTED_POD)
    e.set_base_intent(API, DECLARED)
    decisions = drive(e, stream)
    for namespace, pod in POD_NAMES:  # firing alerts hold their weight: resolve them, then let time pass
        decisions += e.ingest_metric_alert(MetricAlert(9_000.0, False, "A", "critical", namespace, pod, fingerprint=pod), 9_000.0)
    decisions += e.tick(10_000.0)
    decisions += e.tick(20_000.0)
    decisions += e.tick(30_000.0)
    for decision in decisions:
        if decision.identity != API or decision.action not in (D.RELAX, D.LIFT_QUARANTINE, D.TIGHTEN, D.ROLLBACK):
            continue
        for intent in decision.intents:
            for probe in PROBES:
                if DEFAULT_IS_ALLOWED(intent, probe):
                    assert DEFAULT_IS_ALLOWED(DECLARED, probe), (decision.action, probe.describe())
    assert e.state_of(API).step == names.STEP_BASELINE and e.state_of(API).intent == DECLARED


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 400), st.sampled_from(["tighten", "relax", "rollback"])), max_size=60),
       st.integers(1, 12), st.integers(2_000, 30_000))
def test_history_stays_within_its_entry_and_byte_bounds(pushes, max_entries, max_bytes) -> None:
    history = PolicyHistory(max_entries=max_entries, max_bytes=max_bytes)
    for size, reason in pushes:
        spec = {"ingress": [{"from": [{"ipBlock": {"cidr": f"10.0.{i % 256}.0/24"}} for i in range(size)]}]}
        history = history.pop() if reason == "rollback" else history.push(spec, "baseline", reason, float(size))
        assert len(history.entries) <= max_entries
        assert len(history.to_annotation().encode()) <= max_bytes
        revisions = history.revisions()
        assert list(revisions) == sorted(set(revisions)) and all(r < history.current_revision for r in revisions)
    assert PolicyHistory.from_annotation(history.to_annotation(), max_entries=max_entries, max_bytes=max_bytes).entries == history.entries


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 60), st.sampled_from([EGRESS, INGRESS]), st.booleans()),
                min_size=1, max_size=400))
def test_memory_per_workload_is_capped_whatever_the_flow_stream(stream) -> None:
    config = with_config(max_peers_per_workload=16, max_namespaces_per_workload=4, max_novel_per_workload=8, learning_seconds=50.0)
    b = Baseline(API, "shop", 0.0, config)
    for n, (port, peer, direction, world) in enumerate(stream):
        kind = PEER_WORLD if world else PEER_IDENTITY
        v = FlowView(API, "shop", None, None, direction, kind, f"ns{peer}.deploy.x", None if world else f"ns{peer}", port, "TCP",
                     float(n), False)
        observe(b, v, float(n) / 2)
        assert len(b.edges) <= 16 and len(b.namespaces) <= 4 and len(b.novel) <= 8


@settings(max_examples=20, deadline=None)
@given(events)
def test_the_engine_is_deterministic(stream) -> None:
    def run():
        e = engine(with_config(blast_max_pod_fraction=1.0))
        e.upsert_pod(PROTECTED_POD)
        return [d.to_dict() for d in drive(e, stream)], [r.to_dict() for r in e.status(1e6)]

    assert run() == run()
