"""gunicorn over TLS in a subprocess: rotation without failed requests, 413, bad pairs.

Waits are bounded liveness waits ("eventually, within 60 s"), never assertions about speed.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from netwarden.certs import cli, pki, store
from netwarden.tools.stack import free_port, stop_group
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MAX_BODY = 1024
HOSTNAME = "netwarden.netwarden-system.svc"
PATIENCE = 60.0
ROTATIONS = 5


@dataclass
class Server:
    port: int
    certs: Path
    log: Path
    process: subprocess.Popen[bytes]

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certs / store.CA_CERT_FILE))

    def connection(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context(), timeout=30)

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


def peer_serial(conn: http.client.HTTPSConnection) -> int:
    assert isinstance(conn.sock, ssl.SSLSocket)
    der = conn.sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def new_connection_serial(server: Server) -> int:
    conn = server.connection()
    try:
        conn.request("GET", "/ping")
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        return peer_serial(conn)
    finally:
        conn.close()


def rotate_now(directory: Path) -> None:
    assert cli.run_rotate(directory, now=datetime.now(timezone.utc), window=timedelta(days=30), force=True) == 0


@pytest.fixture()
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    extra: list[str] = getattr(request, "param", [])
    certs = tmp_path / "certs"
    assert cli.run_generate(certs, service="netwarden", namespace="netwarden-system",
                            now=datetime.now(timezone.utc), ips=("127.0.0.1",)) == 0
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)])}
    command = [sys.executable, "-m", "netwarden.webhook.serving", "tiny_wsgi_app:create_app()",
               "--cert", str(certs / "tls.crt"), "--key", str(certs / "tls.key"),
               "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4", "--timeout", "30",
               "--keepalive", "30", "--max-request-body", str(MAX_BODY), "--reload-interval", "0.2", *extra]
    with log.open("wb") as log_handle:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log_handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    running = Server(port, certs, log, process)
    try:
        def answers() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                new_connection_serial(running)
                return True
            except OSError:
                return False

        wait_for(answers, "server to answer over TLS")
        yield running
    finally:
        stop_group(process, timeout=20)


@dataclass
class Traffic:
    """Client threads that count every failure; one opens a connection per request, one keeps one alive."""

    server: Server
    stop: threading.Event = field(default_factory=threading.Event)
    failures: list[str] = field(default_factory=list)
    new_connection_serials: list[int] = field(default_factory=list)
    keepalive_serials: list[int] = field(default_factory=list)
    keepalive_sockets: set[int] = field(default_factory=set)
    keepalive_requests: int = 0
    limit: int = 20000  # requests per thread: the loops stop on their own

    def _post(self, conn: http.client.HTTPSConnection, body: bytes) -> None:
        conn.request("POST", "/review", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
        if response.status != 200 or json.loads(payload)["received"] != len(body):
            raise AssertionError(f"bad response {response.status} {payload!r}")

    def new_connections(self) -> None:
        for _ in range(self.limit):
            if self.stop.is_set():
                return
            conn = self.server.connection()
            try:
                self._post(conn, b'{"kind":"AdmissionReview"}')
                self.new_connection_serials.append(peer_serial(conn))
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                self.failures.append(f"new connection: {exc!r}")
            finally:
                conn.close()

    def keep_alive(self) -> None:
        conn = self.server.connection()
        try:
            for _ in range(self.limit):
                if self.stop.is_set():
                    return
                try:
                    self._post(conn, b"x" * 200)
                    self.keepalive_sockets.add(id(conn.sock))
                    self.keepalive_serials.append(peer_serial(conn))
                    self.keepalive_requests += 1
                except Exception as exc:  # noqa: BLE001
                    self.failures.append(f"keep-alive: {exc!r}")
                    return
        finally:
            conn.close()


def test_rotations_on_disk_reach_new_handshakes_without_failing_a_request(server: Server) -> None:
    old_serial = store.read_tls(server.certs).serving.serial
    traffic = Traffic(server)
    threads = [threading.Thread(target=traffic.new_connections), threading.Thread(target=traffic.keep_alive),
               threading.Thread(target=traffic.new_connections)]
    for thread in threads:
        thread.start()
    served: list[int] = []
    try:
        wait_for(lambda: len(traffic.new_connection_serials) >= 20 and traffic.keepalive_requests >= 20,
                   "traffic before rotation")
        for _ in range(ROTATIONS):
            rotate_now(server.certs)
            new_serial = store.read_tls(server.certs).serving.serial
            assert new_serial not in served + [old_serial]
            served.append(new_serial)
            keepalive_before = traffic.keepalive_requests
            wait_for(lambda: traffic.new_connection_serials[-20:] == [new_serial] * 20,
                       "20 consecutive new handshakes to present the new certificate")
            wait_for(lambda: traffic.keepalive_requests >= keepalive_before + 20, "keep-alive traffic")
    finally:
        traffic.stop.set()
        for thread in threads:
            thread.join(60)
    print(f"{ROTATIONS} rotations; requests: {len(traffic.new_connection_serials)} on new connections, "
          f"{traffic.keepalive_requests} on one keep-alive connection, failures: {len(traffic.failures)}")
    assert traffic.failures == []
    # Every rotated certificate was presented to new handshakes, in order.
    presented = list(dict.fromkeys(traffic.new_connection_serials))
    assert presented[0] == old_serial and presented[-1] == served[-1]
    assert [serial for serial in presented if serial in served] == served
    # The long-lived connection was never dropped and kept the session it negotiated.
    assert len(traffic.keepalive_sockets) == 1
    assert set(traffic.keepalive_serials) == {old_serial}
    reloads = [e for e in server.events() if e.get("event") == "tls_certificate_loaded" and e.get("initial") is False]
    assert {e["serial"] for e in reloads} <= {format(serial, "x") for serial in served}
    assert format(served[-1], "x") in {e["serial"] for e in reloads}


def test_oversized_bodies_get_413_and_small_ones_are_served(server: Server) -> None:
    def post(body: bytes, chunked: bool = False) -> int:
        conn = server.connection()
        try:
            if chunked:
                conn.request("POST", "/review", body=iter([body[:MAX_BODY], body[MAX_BODY:]]), encode_chunked=True)
            else:
                conn.request("POST", "/review", body=body)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    assert post(b"a" * MAX_BODY) == 200
    assert post(b"a" * (MAX_BODY + 1)) == 413
    assert post(b"a" * (MAX_BODY * 64)) == 413
    assert post(b"a" * (MAX_BODY + 1), chunked=True) == 413
    assert post(b"a" * 10, chunked=True) == 200


def test_a_bad_pair_on_disk_keeps_serving_the_old_certificate_until_a_good_one_arrives(server: Server) -> None:
    old_serial = store.read_tls(server.certs).serving.serial
    stray = pki.generate_ca("stray", now=datetime.now(timezone.utc), valid_for=timedelta(days=1))
    store.atomic_write(server.certs / store.KEY_FILE, stray.key_pem, store.PRIVATE_MODE)

    def failure_logged() -> bool:
        new_connection_serial(server)  # a handshake makes workers look at the files
        return any(e.get("event") == "tls_certificate_reload_failed" for e in server.events())

    wait_for(failure_logged, "the bad pair to be noticed")
    assert {new_connection_serial(server) for _ in range(20)} == {old_serial}
    rotate_now(server.certs)
    new_serial = store.read_tls(server.certs).serving.serial
    serials: list[int] = []
    wait_for(lambda: (serials.append(new_connection_serial(server)) or serials[-10:] == [new_serial] * 10),
               "the repaired pair to be served")


def test_every_server_log_line_is_a_json_object(server: Server) -> None:
    new_connection_serial(server)
    events = server.events()  # raises if a line is not JSON
    assert any(e.get("event") == "tls_certificate_loaded" for e in events)
    assert all(isinstance(e, dict) for e in events)


def test_requests_write_no_access_log_lines(server: Server) -> None:
    """gunicorn's access log stays off although logconfig_dict is set (which would turn it on)."""
    conn = server.connection()
    for _ in range(5):
        conn.request("GET", "/")
        conn.getresponse().read()
    conn.close()
    new_connection_serial(server)
    assert [e for e in server.events() if e.get("logger") == "gunicorn.access"] == []


def issuer_of(directory: Path) -> x509.Certificate:
    """The CA in the directory's bundle that issued its serving certificate."""
    stored = store.read_tls(directory)
    (issuer,) = [ca for ca in pki.load_certificates(stored.ca_bundle_pem)
                 if pki.is_issued_by(stored.serving.cert_pem, ca.public_bytes(serialization.Encoding.PEM))]
    return issuer


def test_ca_rollover_serves_a_cert_from_the_new_ca_that_bundle_holders_trust(server: Server) -> None:
    before_bundle = (server.certs / store.CA_CERT_FILE).read_bytes()
    keepalive = server.connection()
    try:
        keepalive.request("GET", "/before")
        keepalive.getresponse().read()
        # Step 1: a window longer than the CA's remaining life makes rotate add a new CA to the
        # bundle; the serving certificate stays on the old CA.
        assert cli.run_rotate(server.certs, now=datetime.now(timezone.utc), window=timedelta(days=4000)) == 0
        bundle = (server.certs / store.CA_CERT_FILE).read_bytes()
        old_ca, new_ca = pki.load_certificates(bundle)
        assert bundle.startswith(before_bundle)
        assert issuer_of(server.certs) == old_ca
        # Step 2, later (no overlap required here): the serving certificate moves to the new CA.
        assert cli.run_rotate(server.certs, now=datetime.now(timezone.utc), window=timedelta(days=30),
                              min_overlap=timedelta(0)) == 0
        assert pki.load_certificates((server.certs / store.CA_CERT_FILE).read_bytes()) == [old_ca, new_ca]
        assert issuer_of(server.certs) == new_ca
        new_serial = store.read_tls(server.certs).serving.serial
        serials: list[int] = []
        wait_for(lambda: (serials.append(new_connection_serial(server)) or serials[-10:] == [new_serial] * 10),
                   "the certificate from the new CA to be served")
        # The connection opened under the old CA is still usable.
        keepalive.request("GET", "/after")
        response = keepalive.getresponse()
        response.read()
        assert response.status == 200
    finally:
        keepalive.close()
    # A client that still trusts only the old CA cannot verify new handshakes: the caBundle must be
    # propagated to the API server before (or as) the serving cert switches.
    old_only = ssl.create_default_context(cadata=before_bundle.decode())
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=old_only, timeout=30)
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("GET", "/ping")
    conn.close()


SLOW_CLIENTS = 64
#: The API server gives a webhook `timeoutSeconds` (the chart: 5 s) to answer; a probe waits about as long.
CLIENT_TIMEOUT = 5.0


def test_slow_and_idle_tls_clients_do_not_stall_a_review(server: Server) -> None:
    """64 clients hold connections the ways an attacker would: silent TCP, a ClientHello cut short, a request
    head that never ends, a body that never comes. Reviews are still answered before the client gives up."""
    with ExitStack() as hostile:
        for n in range(SLOW_CLIENTS):
            raw = hostile.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT))
            kind = n % 4
            if kind == 1:
                raw.sendall(b"\x16\x03\x01\x02\x00\x01")  # the first bytes of a ClientHello, then nothing
            elif kind >= 2:
                tls = hostile.enter_context(server.context().wrap_socket(raw, server_hostname=HOSTNAME))
                tls.sendall(b"POST /review HTTP/1.1\r\nHost: x\r\n" if kind == 2 else
                            b"POST /review HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{")
        for _ in range(3):
            conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=server.context(),
                                               timeout=CLIENT_TIMEOUT)
            try:
                conn.request("POST", "/review", body=b'{"kind":"AdmissionReview"}')
                response = conn.getresponse()
                assert response.status == 200 and json.loads(response.read())["received"] == 26
            finally:
                conn.close()


@pytest.mark.parametrize("server", [["--handshake-timeout", "0.5", "--request-timeout", "0.5"]], indirect=True)
def test_stalled_handshakes_heads_and_bodies_are_closed_at_their_timeouts(server: Server) -> None:
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)
    hello = socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)
    hello.sendall(b"\x16\x03\x01\x02\x00\x01")
    head = server.context().wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE),
                                        server_hostname=HOSTNAME)
    head.sendall(b"POST /review HTTP/1.1\r\nHost: x\r\n")
    body = server.context().wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE),
                                        server_hostname=HOSTNAME)
    body.sendall(b"POST /review HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    for sock in (silent, hello, head, body):
        with sock:
            assert sock.recv(100) == b"", "closed by the server once its timeout passed"
    assert new_connection_serial(server)  # and still serving
