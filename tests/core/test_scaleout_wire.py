"""Scale-out records and folding, pure: what ingest folds and produces is what decide reads back, and a
folded row weighs on the baseline as the flows it stands for."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from netwarden.reconciler.core.behaviour import resolve_flow
from netwarden.reconciler.core.types import HealthSignal, MetricAlert, SecurityAlert
from netwarden.reconciler.scaleout import wire
from netwarden.reconciler.scaleout.ingest import FoldTable
from netwarden.reconciler.scaleout.wire import WireError, partition_of
from tests.core.corekit import API, CACHE, DB, engine, flow, ip


def test_a_flow_folds_into_an_egress_row_for_its_source_and_an_ingress_row_for_its_destination() -> None:
    e = engine()
    table = FoldTable()
    for t in range(5):
        for view in resolve_flow(flow(float(t), ip(API), ip(DB)), e.index):
            table.add(view)
    drained = {identity: folds for identity, _, folds in table.drain()}
    assert set(drained) == {API, DB}
    ((egress, n_out),) = drained[API]
    ((ingress, n_in),) = drained[DB]
    assert (egress.direction, ingress.direction, n_out, n_in) == ("egress", "ingress", 5, 5)
    assert egress.time == 4.0  # the row carries its latest flow's time
    assert table.drain() == []


def test_a_full_fold_table_refuses_instead_of_growing() -> None:
    e = engine()
    table = FoldTable(max_rows=1)
    (view,) = [v for v in resolve_flow(flow(0.0, ip(API), ip(DB)), e.index) if v.identity == API]
    (other,) = [v for v in resolve_flow(flow(0.0, ip(API), ip(CACHE), 6379), e.index) if v.identity == API]
    assert table.add(view) and table.add(view) and not table.add(other)
    assert len(table.rows) == 1


def test_records_read_back_as_written() -> None:
    e = engine()
    views = [v for v in resolve_flow(flow(3.0, ip(API), ip(DB)), e.index) if v.identity == API]
    (view, count), = wire.views_of(wire.loads(wire.edges_record(API, "shop", [(views[0], 7)])))
    assert (view.edge, view.time, view.pod, count) == (views[0].edge, 3.0, views[0].pod, 7)
    alert = SecurityAlert(1.0, "shop", "db-0", "Terminal shell", "critical", tags=("shell",), alert_id="x")
    assert wire.security_alert_of(wire.loads(wire.alert_record(DB, alert))) == alert
    metric = MetricAlert(2.0, True, "HighErrors", "critical", "shop", "db-0", fingerprint="f")
    assert wire.metric_alert_of(wire.loads(wire.metric_record(DB, metric))) == metric
    health = HealthSignal(3.0, "shop", "db-0", False, 2)
    assert wire.health_of(wire.loads(wire.health_record(DB, health))) == health


def test_a_record_of_another_version_or_kind_is_refused() -> None:
    for raw in (b"{", b'{"v": 2, "k": "edges"}', b'{"v": 1, "k": "gossip"}', b"[]"):
        try:
            wire.loads(raw)
        except WireError:
            continue
        raise AssertionError(f"accepted {raw!r}")


def test_partitions_are_stable_and_spread() -> None:
    assert partition_of(API, 12) == partition_of(API, 12)
    assert len({partition_of(f"ns.deploy.app{i}", 12) for i in range(200)}) == 12


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([5432, 6379, 22]), st.integers(1, 5)), min_size=1, max_size=30))
def test_a_folded_row_teaches_the_baseline_what_its_flows_would_have(rows) -> None:
    """Per bucket, one row with count n, or the n flows one by one: the same baseline and risk after."""
    one, folded = engine(), engine()
    for t, (port, n) in enumerate(rows):
        views = [v for v in resolve_flow(flow(float(t * 20), ip(API), ip(DB), port), one.index)]
        for _ in range(n):
            one.ingest_views(views, float(t * 20))
        folded.ingest_views(views, float(t * 20), n)
    for identity in (API, DB):
        assert folded.baseline_of(identity).summary() == one.baseline_of(identity).summary()
        assert folded.risk_of(identity).score_at(1e4) == one.risk_of(identity).score_at(1e4)


def _tightening(identity: str):
    from netwarden.reconciler.core.decision import Decision

    return Decision("tighten", identity, identity.split(".")[0], 10.0, "enforce", "write", "score", 12.0,
                    "baseline", "tightened")


def test_a_decision_for_a_partition_the_engine_no_longer_owns_is_not_written() -> None:
    from netwarden.reconciler.scaleout.decide import Decider, MemorySink
    from netwarden.reconciler.scaleout.wire import Topics

    sink = MemorySink()
    decider = Decider("unused:9092", engine(), sink, Topics(partitions=12))
    p = partition_of(API, 12)
    decider.owned = {p: 5}
    decider._write(_tightening(API), (p, 4, 0))
    del decider.owned[p]  # the group took the partition away (revoked or lost)
    decider._write(_tightening(API), (p, 5, 0))
    assert [s for _, s in sink.written] == [(p, 4, 0)]
    assert (decider.counters.written, decider.counters.fenced) == (1, 1)


def test_the_sink_writes_each_workloads_sequence_once_and_only_forward() -> None:
    from netwarden.reconciler.scaleout.decide import MemorySink

    sink = MemorySink()
    assert sink.write(_tightening(API), (3, 10, 0)) and sink.write(_tightening(API), (3, 10, 1))
    assert not sink.write(_tightening(API), (3, 10, 1))  # a replay after a crash recomputes it: skipped
    assert not sink.write(_tightening(API), (3, 9, 0))
    assert sink.write(_tightening(DB), (3, 9, 0))  # another workload has its own sequence
