"""The signal receivers' server over real TLS sockets: idle and slow clients cannot stall it.

Each test opens the hostile clients first, then asserts that /healthz and a real signal POST are
answered before the client's own timeout, and that the server's thread count stays bounded.
Patience is a bound (tests/support/waiting.py), never a speed claim; speed is in bench/.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator, Sequence

import pytest
from prometheus_client import CollectorRegistry

from netwarden.certs import pki
from netwarden.reconciler.core.types import Flow
from netwarden.reconciler.httpserver import ServerLimits
from netwarden.reconciler.receivers import ReceiverServer, TokenFile, create_receiver_app
from netwarden.reconciler.signals.streams import SignalCounters
from tests.reconciler.test_receivers import Sink
from tests.support.data import PAYLOADS
from tests.support.waiting import wait_for
from netwarden.platform.tls import CertificateReloader, validity_problem

TOKEN = "idle-token"
#: What a client such as the kubelet's probe waits before giving up (it is 1 s by default in Kubernetes).
CLIENT_TIMEOUT = 5.0
HOSTILE = 300
NOW = datetime.now(timezone.utc)
FLOWS = (PAYLOADS / "hubble/hubble-otel_gke-istio_2021_l3l4_10flows.jsonl").read_bytes()
ALERT = (PAYLOADS / "falco/falcosidekick_webhook-post-body_terminal-shell_2024.json").read_bytes()


class Receiver:
    def __init__(self, tmp_path: Path, limits: ServerLimits, *, now: datetime = NOW,
                 valid_for: timedelta = timedelta(days=1), sink: Sink | None = None) -> None:
        ca = pki.generate_ca("receiver-ca", now=now, valid_for=timedelta(days=10))
        leaf = pki.issue_certificate(ca, "localhost", now=now, valid_for=valid_for, ip_addresses=["127.0.0.1"])
        (tmp_path / "tls.crt").write_bytes(leaf.cert_pem)
        (tmp_path / "tls.key").write_bytes(leaf.key_pem)
        (tmp_path / "token").write_text(TOKEN)
        self.ca_pem = ca.cert_pem
        self.verify = validity_problem(leaf.certificate.not_valid_before_utc, leaf.certificate.not_valid_after_utc,
                                      now=datetime.now(timezone.utc)) is None
        self.sink = sink if sink is not None else Sink()
        self.tls = CertificateReloader(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"))
        app = create_receiver_app(self.sink, token=TokenFile(str(tmp_path / "token")), counters=SignalCounters(),
                                  registry=CollectorRegistry(), max_body_bytes=limits.max_body_bytes, tls=self.tls)
        self.server = ReceiverServer(app, "127.0.0.1", 0, tls=self.tls, limits=limits).start()
        self.port = self.server.port

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.ca_pem.decode())
        context.check_hostname = False
        if not self.verify:
            context.verify_mode = ssl.CERT_NONE  # a probe of an expired certificate, like the kubelet's
        return context

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.client_context(),
                                           timeout=CLIENT_TIMEOUT)
        try:
            conn.request(method, path, body=body, headers={"Authorization": f"Bearer {TOKEN}", **(headers or {})})
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            conn.close()

    def raw(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=CLIENT_TIMEOUT)

    def slow_tls(self, prefix: bytes) -> ssl.SSLSocket:
        """A client that finished its handshake, sent `prefix` of a request and stalls."""
        tls = self.client_context().wrap_socket(self.raw())
        tls.sendall(prefix)
        return tls


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    served = Receiver(tmp_path, ServerLimits(threads=4, max_body_bytes=64 * 1024))
    try:
        yield served
    finally:
        served.server.stop()


def server_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(("signal-receiver", "signal-app", "signal-bulk")))


def assert_still_serving(receiver: Receiver) -> None:
    assert receiver.request("GET", "/healthz") == (200, {"status": "ok"})
    status, result = receiver.request("POST", "/signals/flows", FLOWS)
    assert status == 200 and result["accepted"] == 10


def test_one_idle_socket_does_not_stall_healthz_or_a_signal(receiver: Receiver) -> None:
    with receiver.raw():  # connected, sends nothing: the handshake used to block the accept loop
        assert_still_serving(receiver)


def test_300_idle_and_slow_tls_clients_leave_it_answering_with_bounded_threads(tmp_path: Path) -> None:
    patient = ServerLimits(threads=4, handshake_timeout=120, head_timeout=120, body_timeout=120)  # none times out
    receiver = Receiver(tmp_path, patient)
    assert_still_serving(receiver)
    with ExitStack() as hostile:
        hostile.callback(receiver.server.stop)
        for n in range(HOSTILE):
            kind = n % 4
            if kind == 0:
                hostile.enter_context(receiver.raw())  # idle TCP
            elif kind == 1:
                raw = hostile.enter_context(receiver.raw())
                raw.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello's first bytes, then nothing
            elif kind == 2:
                hostile.enter_context(receiver.slow_tls(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"))  # headers stall
            else:
                hostile.enter_context(receiver.slow_tls(  # a body that never comes
                    b"POST /signals/flows HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n{\"a\""))
        wait_for(lambda: receiver.server.server.open_connections >= HOSTILE // 2,
                 "the slow TLS clients to be past their handshake", timeout=60)
        assert_still_serving(receiver)
        # The loop thread, the app pool and the bulk pool, whatever the clients do.
        assert server_threads() <= 1 + 4 + patient.bulk_threads


class StuckFlowSink(Sink):
    """Every flow batch blocks until released: flow senders hold every thread they can get."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.stuck = threading.Semaphore(0)

    def accept_flows(self, flows: Sequence[Flow]) -> None:
        self.stuck.release()
        self.release.wait(30)
        super().accept_flows(flows)


def test_an_alert_and_a_probe_never_wait_for_a_thread_behind_flow_batches(tmp_path: Path) -> None:
    sink = StuckFlowSink()
    served = Receiver(tmp_path, ServerLimits(threads=2, bulk_threads=2), sink=sink)
    senders = [threading.Thread(target=served.request, args=("POST", "/signals/flows", FLOWS))
               for _ in range(2 * (2 + 2))]  # more flow senders than threads of both pools together
    try:
        for sender in senders:
            sender.start()
        assert sink.stuck.acquire(timeout=CLIENT_TIMEOUT)  # a flow batch is being scored (and stays)
        assert served.request("GET", "/healthz") == (200, {"status": "ok"})
        status, result = served.request("POST", "/signals/falco", ALERT)
        assert status == 200 and result["accepted"] == 1 and len(sink.alerts) == 1
        sink.release.set()
        wait_for(lambda: len(sink.flows) == 10 * len(senders), "every batch scored once released, none lost")
    finally:
        sink.release.set()
        for sender in senders:
            sender.join(CLIENT_TIMEOUT)
        served.server.stop()


def test_handshake_head_body_and_keepalive_timeouts_close_stalled_connections(tmp_path: Path) -> None:
    served = Receiver(tmp_path, ServerLimits(handshake_timeout=0.5, head_timeout=0.5, body_timeout=0.5))
    try:
        silent = served.raw()
        head = served.slow_tls(b"GET /healthz HTTP/1.1\r\n")
        body = served.slow_tls(b"POST /signals/flows HTTP/1.1\r\nContent-Length: 100\r\n\r\n[")
        kept = http.client.HTTPSConnection("127.0.0.1", served.port, context=served.client_context(),
                                           timeout=CLIENT_TIMEOUT)
        kept.request("GET", "/healthz")
        response = kept.getresponse()
        assert response.status == 200 and response.getheader("Connection") == "keep-alive"
        response.read()
        for sock in (silent, head, body, kept.sock):
            assert sock.recv(100) == b"", "the server closes a connection that stalls or idles past its timeout"
            sock.close()
        wait_for(lambda: served.server.server.open_connections == 0, "stalled connections to be dropped")
    finally:
        served.server.stop()


def test_connections_past_the_bound_evict_the_oldest_waiting_one(tmp_path: Path) -> None:
    served = Receiver(tmp_path, ServerLimits(max_connections=5))
    try:
        idle = [served.slow_tls(b"") for _ in range(5)]  # past the handshake, then silent
        wait_for(lambda: served.server.server.open_connections == 5, "five idle connections")
        assert served.request("GET", "/healthz")[0] == 200  # a new client is served, not refused
        assert idle[0].recv(10) == b"", "the oldest idle connection made room"
        for sock in idle:
            sock.close()
    finally:
        served.server.stop()


def test_chunked_body_over_the_limit_gets_413_with_the_limit(receiver: Receiver) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 1024  # 100 KiB against a 64 KiB limit, no Content-Length

    conn = http.client.HTTPSConnection("127.0.0.1", receiver.port, context=receiver.client_context(),
                                       timeout=CLIENT_TIMEOUT)
    conn.request("POST", "/signals/flows", body=chunks(), encode_chunked=True,
                 headers={"Authorization": f"Bearer {TOKEN}", "Transfer-Encoding": "chunked"})
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read()) == {"error": "request body too large", "limit_bytes": 64 * 1024,
                                           "chunked": True}
    assert receiver.sink.flows == []
    conn = http.client.HTTPSConnection("127.0.0.1", receiver.port, context=receiver.client_context(),
                                       timeout=CLIENT_TIMEOUT)
    conn.request("POST", "/signals/flows", body=iter(FLOWS.splitlines(keepends=True)), encode_chunked=True,
                 headers={"Authorization": f"Bearer {TOKEN}", "Transfer-Encoding": "chunked"})
    response = conn.getresponse()
    assert response.status == 200 and json.loads(response.read())["accepted"] == 10  # under the limit: served


def test_readyz_fails_with_the_reason_while_the_certificate_is_expired(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    served = Receiver(tmp_path, ServerLimits(), now=NOW - timedelta(days=3), valid_for=timedelta(days=1))
    try:
        for _ in range(3):
            status, body = served.request("GET", "/readyz")
            assert status == 503 and body["reason"].startswith("serving certificate expired at")
        assert served.request("GET", "/healthz")[0] == 200  # liveness is not readiness
        logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
        assert [e["event"] for e in logged].count("tls_certificate_not_valid") == 1
    finally:
        served.server.stop()


def test_readyz_fails_for_a_certificate_not_yet_valid(tmp_path: Path) -> None:
    served = Receiver(tmp_path, ServerLimits(), now=NOW + timedelta(days=2))
    try:
        status, body = served.request("GET", "/readyz")
        assert status == 503 and body["reason"].startswith("serving certificate not valid before")
    finally:
        served.server.stop()
