"""The Goldmane client against a Flows server generated from the same protos: List backfill at
start-up, then Stream; a broken stream resumes at the newest window without repeating a flow."""

from __future__ import annotations

import time

from netwarden.reconciler.signals.goldmane import parse_goldmane_flow
from netwarden.reconciler.sources.goldmane import GoldmaneSource
from netwarden.reconciler.sources.proto import goldmane_pb2
from netwarden.tools.replay_server import ReplayServer, ServerTls
from netwarden.reconciler.sources.stream import Backoff, TlsFiles
from tests.sources.goldmane_data import as_goldmane, whisker_records
from tests.sources.conftest import CollectingSink, client_dir, write_pki
from tests.support.waiting import wait_for


def windows(count: int, first_start: int) -> list[goldmane_pb2.FlowResult]:
    """The real Calico 3.32.2 records as Goldmane results in consecutive 15 s windows."""
    originals = whisker_records()
    out = []
    for i in range(count):
        result = as_goldmane(originals[i % len(originals)], result_id=i + 1)
        result.flow.start_time = first_start + 15 * (i // len(originals))
        result.flow.end_time = result.flow.start_time + 15
        result.flow.Key.dest_port = 1000 + i  # distinct keys
        out.append(result)
    return out


def test_backfill_then_stream_over_mtls_and_resume(tmp_path) -> None:
    files = write_pki(tmp_path / "pki", "goldmane", client=True)
    server = ReplayServer(tls=ServerTls(str(files["cert"]), str(files["key"]), client_ca=str(files["ca"]))).start()
    now = int(time.time())
    past, live = windows(8, now - 40), windows(8, now + 15)
    server.goldmane.publish(past)
    sink = CollectingSink()
    source = GoldmaneSource(server.address, sink, backfill_seconds=60, backoff=Backoff(0.05, 0.5),
                            tls=TlsFiles(str(client_dir(tmp_path / "secret", files, mtls=True)))).start()
    try:
        wait_for(lambda: sink.count() == 8, "the List backfill")
        listed, streamed = server.goldmane.requests[0], server.goldmane.requests[1]
        assert isinstance(listed, goldmane_pb2.FlowListRequest) and listed.start_time_gte == -60
        assert streamed.start_time_gte == max(r.flow.start_time for r in past) and streamed.aggregation_interval == 15
        server.goldmane.publish(live[:4])
        wait_for(lambda: sink.count() == 12, "streamed windows")
        server.break_streams()
        server.goldmane.publish(live[4:])
        wait_for(lambda: sink.count() == 16, "windows after the reconnect")
        assert source.stats.reconnects >= 1
        assert sorted(f.port for f in sink.flows) == sorted(list(range(1000, 1008)) * 2)
        first = sink.flows[0]
        assert first.source_format == "goldmane" and first.bytes > 0 and first.source.pod_prefix
        expected = parse_goldmane_flow(whisker_records()[0])
        assert (first.protocol, first.verdict, first.reporter) == (expected.protocol, expected.verdict, expected.reporter)
    finally:
        source.stop()
        server.stop()
