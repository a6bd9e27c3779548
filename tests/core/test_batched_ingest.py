"""`DecisionEngine.ingest_flows` (a POST body / file chunk at once) against `ingest_flow` one by one:
the same decisions, counters, baselines, risk and explain output (hypothesis), across the
learning window's end, its flow budget, rate buckets and drop-burst windows, with endpoints shared
between flows (as parsers share them) and pods changing between batches."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netwarden.reconciler.core.pods import PodRef
from netwarden.reconciler.core.types import Endpoint, Flow
from tests.core.corekit import API, DB, PODS, engine, with_config

IPS = [p[2] for pods in PODS.values() for p in pods] + ["203.0.113.5", "10.99.0.1"]
#: Shared Endpoint objects, as the Hubble parser reuses one per wire endpoint.
SHARED = [Endpoint(a) for a in IPS] + [Endpoint("203.0.113.5", world=True), Endpoint(None, "shop", "db-0")]
LATE_POD = PodRef("shop.deploy.late", "shop", "late-0", "inst-late", "10.99.0.1")
CONFIG = with_config(learning_seconds=40.0, learning_max_flows=60, rate_bucket_seconds=5.0, rate_min_buckets=2,
                     drop_burst_flows=4, drop_burst_window_seconds=10.0, blast_max_pod_fraction=1.0)

ends = st.one_of(st.sampled_from(SHARED), st.builds(Endpoint, st.sampled_from(IPS)))
flows = st.tuples(st.floats(0.0, 3.0), ends, ends, st.sampled_from([53, 443, 5432, 8080]), st.sampled_from(["TCP", "udp"]),
                  st.sampled_from(["forwarded", "dropped", "unknown"]), st.booleans(), st.booleans())
#: Batches of flows; between two batches a pod may appear (the pod index changes).
batches = st.lists(st.tuples(st.lists(flows, max_size=40), st.booleans()), min_size=1, max_size=8)


def build(batches_) -> list[tuple[list[Flow], bool]]:
    t, out = 0.0, []
    for raw, add_pod in batches_:
        chunk = []
        for gap, src, dst, port, proto, verdict, policy, reply in raw:
            t += gap
            chunk.append(Flow(t, src, dst, port, proto, verdict=verdict, policy_dropped=policy and verdict == "dropped", reply=reply))
        out.append((chunk, add_pod))
    return out


def state(e, end: float) -> object:
    identities = sorted({r.identity for r in e.status(end)} | {API, DB, LATE_POD.identity})
    return (vars(e.counters), [r.to_dict() for r in e.status(end)],
            {i: (e.snapshot(i, end), e.explain(i, end)) for i in identities})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches, st.booleans())
def test_batched_ingestion_is_one_by_one_ingestion(batches_, own_time) -> None:
    stream = build(batches_)
    one, batched = engine(CONFIG), engine(CONFIG)
    by_one, by_batch = [], []
    end = 0.0
    for chunk, add_pod in stream:
        if add_pod:
            one.upsert_pod(LATE_POD)
            batched.upsert_pod(LATE_POD)
        now = None if own_time else (chunk[-1].time if chunk else end)
        for f in chunk:
            by_one += [d.to_dict() for d in one.ingest_flow(f, f.time if now is None else now)]
        by_batch += [d.to_dict() for d in batched.ingest_flows(chunk, now)]
        end = max(end, chunk[-1].time if chunk else end)
    assert by_batch == by_one
    assert state(batched, end + 1) == state(one, end + 1)


def test_a_batch_learns_then_reports_like_flows_one_by_one() -> None:
    """A fixed example that crosses the learning window: the new peer after it is decided alike."""
    shared_src, shared_dst = Endpoint(PODS[API][0][2]), Endpoint(PODS[DB][0][2])
    chunk = [Flow(float(t), shared_src, shared_dst, 5432, "TCP") for t in range(60)]
    chunk += [Flow(60.0 + t, shared_src, Endpoint("203.0.113.5", world=True), 443, "TCP") for t in range(3)]
    one, batched = engine(CONFIG), engine(CONFIG)
    expected = [d for f in chunk for d in one.ingest_flow(f, f.time)]
    got = batched.ingest_flows(chunk)
    assert one.counters.deviations > 0  # the world egress after learning was reported
    assert [d.to_dict() for d in got] == [d.to_dict() for d in expected]
    assert state(batched, 100.0) == state(one, 100.0)


def test_an_endpoint_pair_is_attributed_again_after_a_pod_change() -> None:
    """The engine remembers each endpoint pair's attribution between batches; a pod change (the IP
    taken by another workload's pod, the pod gone) is seen by the next batch, with the same Endpoints."""
    ip = PODS[DB][0][2]
    src, dst = Endpoint(PODS[API][0][2]), Endpoint(ip)
    e = engine(CONFIG)
    e.ingest_flows([Flow(1.0, src, dst, 5432, "TCP")], 1.0)
    assert e.baseline_of(DB) is not None and e.baseline_of(DB).flows_seen == 1
    e.upsert_pod(PodRef("shop.deploy.other", "shop", "db-0", "inst-db-0", ip))  # same pod name, other workload
    e.ingest_flows([Flow(2.0, src, dst, 5432, "TCP")], 2.0)
    assert e.baseline_of(DB).flows_seen == 1
    assert e.baseline_of("shop.deploy.other").flows_seen == 1
    e.index.remove("shop", "db-0")
    e.ingest_flows([Flow(3.0, src, dst, 5432, "TCP")], 3.0)
    assert e.baseline_of("shop.deploy.other").flows_seen == 1  # the pod is gone: only the egress view counts
    assert e.baseline_of(API).flows_seen == 3
