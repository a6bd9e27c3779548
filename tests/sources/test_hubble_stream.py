"""The Hubble Relay client against a gRPC Observer server generated from the same protos, replaying
real exported flows: filters, field mask, TLS and mTLS, and every fault the stream meets in a cluster."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from netwarden.reconciler.signals.hubble import parse_hubble_line
from netwarden.reconciler.sources.hubble import HubbleRelaySource
from netwarden.tools.replay_server import ReplayServer, ServerTls, hubble_response
from netwarden.reconciler.sources.stream import Backoff, StreamStatsCollector, TlsFiles
from tests.sources.conftest import HUBBLE_LINES, CollectingSink, client_dir, numbered_flows, write_pki
from tests.support.waiting import wait_for

FAST = Backoff(initial=0.05, maximum=0.5)


@pytest.fixture
def server():
    started = ReplayServer().start()
    yield started
    started.stop()


def _source(address: str, sink: CollectingSink, **kwargs) -> HubbleRelaySource:
    kwargs.setdefault("since", 1.0)
    kwargs.setdefault("backoff", FAST)
    return HubbleRelaySource(address, sink, **kwargs).start()


def test_real_exports_arrive_filtered_and_masked(server: ReplayServer, sink: CollectingSink) -> None:
    server.observer.publish(hubble_response(line) for line in HUBBLE_LINES)
    source = _source(server.address, sink)
    try:
        # L7 records (event type 129) are left on the server by the blacklist; every verdict here is scored.
        expected = [parse_hubble_line(line) for line in HUBBLE_LINES if line["flow"]["event_type"]["type"] != 129]
        wait_for(lambda: sink.count() == len(expected), "the replayed flows")
        assert sorted(sink.flows, key=lambda f: f.time) == sorted(expected, key=lambda f: f.time)
        request = server.observer.requests[0]
        assert request.follow and request.since.seconds == 1
        assert "source.pod_name" in request.field_mask.paths
        assert source.stats.connected and source.stats.received == len(expected)
        assert source.stats.lag_seconds > 0  # 2021 flows: years behind
    finally:
        source.stop()


def test_stream_broken_mid_flow_resumes_without_loss_or_repeat(server: ReplayServer, sink: CollectingSink) -> None:
    flows = numbered_flows(600)
    server.observer.publish(flows[:300])
    source = _source(server.address, sink)
    try:
        wait_for(lambda: sink.count() == 300, "the first half")
        server.break_streams()
        server.observer.publish(flows[300:])
        wait_for(lambda: sink.count() == 600, "the second half after the reconnect")
        assert source.stats.reconnects >= 1
        # Resumed from the last flow's own time, not from the start or from now.
        assert server.observer.requests[-1].since.ToNanoseconds() == flows[299].flow.time.ToNanoseconds()
        assert len({f.time for f in sink.flows}) == 600
        registry = CollectorRegistry()
        registry.register(StreamStatsCollector(lambda: [source.stats]))
        text = generate_latest(registry).decode()
        assert 'netwarden_stream_flows_received_total{source="hubble-relay"} 600.0' in text
        assert 'netwarden_stream_connected{source="hubble-relay"} 1.0' in text
        assert f'netwarden_stream_reconnects_total{{source="hubble-relay"}} {float(source.stats.reconnects)}' in text
        assert 'netwarden_stream_lag_seconds{source="hubble-relay"}' in text
    finally:
        source.stop()


def test_server_restart_on_the_same_port(sink: CollectingSink) -> None:
    flows = numbered_flows(200)
    first = ReplayServer().start()
    first.observer.publish(flows[:100])
    source = _source(first.address, sink)
    try:
        wait_for(lambda: sink.count() == 100, "flows before the restart")
        first.stop()
        wait_for(lambda: not source.stats.connected, "the client to see the server gone")
        # A restarted Relay serves the agents' rings again: the old flows come back, only new ones count.
        second = ReplayServer(first.port).start()
        try:
            second.observer.publish(flows)
            wait_for(lambda: sink.count() == 200, "flows after the restart")
            assert len({f.time for f in sink.flows}) == 200
            assert source.stats.reconnects >= 1 and source.stats.connected
        finally:
            second.stop()
    finally:
        source.stop()


def test_mtls_client_certificate_required(tmp_path, sink: CollectingSink) -> None:
    files = write_pki(tmp_path / "pki", "hubble-relay", client=True)
    server = ReplayServer(tls=ServerTls(str(files["cert"]), str(files["key"]), client_ca=str(files["ca"]))).start()
    server.observer.publish(numbered_flows(50))
    without = _source(server.address, CollectingSink(), tls=TlsFiles(str(client_dir(tmp_path / "ca-only", files))))
    with_cert = _source(server.address, sink, tls=TlsFiles(str(client_dir(tmp_path / "mtls", files, mtls=True))))
    try:
        wait_for(lambda: sink.count() == 50, "flows over mTLS")
        wait_for(lambda: without.stats.reconnects >= 2, "the certificate-less client to keep retrying")
        assert without.stats.received == 0 and not without.stats.connected
    finally:
        without.stop()
        with_cert.stop()
        server.stop()


def test_certificates_rotate_on_both_sides(tmp_path, sink: CollectingSink) -> None:
    """Relay's certificates are reissued by a new CA: the client fails until its Secret has the new CA,
    then resumes where it stopped (files re-read at each connect, on both sides)."""
    old = write_pki(tmp_path / "old", "hubble-relay")
    serving = {k: tmp_path / f"serving.{k}" for k in ("cert", "key")}
    for k in serving:
        serving[k].write_bytes(old[k].read_bytes())
    server = ReplayServer(tls=ServerTls(str(serving["cert"]), str(serving["key"]))).start()
    secret = client_dir(tmp_path / "secret", old)
    flows = numbered_flows(100)
    server.observer.publish(flows[:50])
    source = _source(server.address, sink, tls=TlsFiles(str(secret)))
    try:
        wait_for(lambda: sink.count() == 50, "flows with the old certificates")
        new = write_pki(tmp_path / "new", "hubble-relay")
        for k in serving:
            serving[k].write_bytes(new[k].read_bytes())
        server.break_streams()
        server.observer.publish(flows[50:])
        wait_for(lambda: "UNAVAILABLE" in source.stats.last_error and source.stats.reconnects >= 2,
                 "the old CA to be refused")
        assert sink.count() == 50
        client_dir(secret, new)  # the rotated Secret reaches the pod's mounted folder
        wait_for(lambda: sink.count() == 100, "flows after the client's CA rotated")
        assert len({f.time for f in sink.flows}) == 100
    finally:
        source.stop()
        server.stop()


def test_slow_engine_drops_the_oldest_counts_them_and_stays_bounded(server: ReplayServer) -> None:
    sink = CollectingSink()
    sink.gate = threading.Event()
    source = _source(server.address, sink, buffer_size=100, batch_size=10)
    try:
        wait_for(lambda: source.stats.connected or server.observer.requests, "the subscription")
        flows = numbered_flows(3000)
        server.observer.publish(flows)
        wait_for(lambda: source.stats.received == 3000, "the stream to be read through")
        assert len(source.buffer) <= 100
        dropped = source.stats.dropped["buffer-full"]
        assert dropped >= 3000 - 100 - 10 * 2  # at most the buffer and the batches held by the feeder survive
        sink.gate.set()
        wait_for(lambda: source.accepted + dropped == 3000, "the kept flows to reach the engine")
        # The freshest survived: the last flow sent is among those kept.
        assert max(f.time for f in sink.flows) == pytest.approx(flows[-1].flow.time.ToNanoseconds() / 1e9)
    finally:
        sink.gate.set()
        source.stop()


def test_standby_does_not_subscribe(server: ReplayServer, sink: CollectingSink) -> None:
    leading = threading.Event()
    asked: list[bool] = []

    def active() -> bool:
        asked.append(leading.is_set())
        return leading.is_set()

    source = _source(server.address, sink, active=active)
    try:
        server.observer.publish(numbered_flows(10))
        wait_for(lambda: len(asked) >= 3, "the reader to ask for leadership a few times")
        assert not server.observer.requests and source.stats.reconnects == 0
        leading.set()
        wait_for(lambda: sink.count() == 10, "flows once leading")
    finally:
        source.stop()
