"""In-process parts of netwarden.webhook.serving: the certificate reloader and the body limit."""

from __future__ import annotations

import io
import json
import socket
import ssl
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from netwarden.certs import pki, store
from netwarden.platform import tls as reloading
from netwarden.webhook import serving

NOW = datetime.now(timezone.utc)
DAY = timedelta(days=1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def ca() -> pki.KeyPair:
    return pki.generate_ca("unit-ca", now=NOW, valid_for=10 * DAY)


def issue(ca: pki.KeyPair) -> pki.KeyPair:
    return pki.issue_certificate(ca, "localhost", now=NOW, valid_for=DAY, dns_names=["localhost"])


def served_serial(context: ssl.SSLContext, ca: pki.KeyPair) -> int:
    """Handshake against `context` over a socketpair and return the serial the server presented."""
    server_sock, client_sock = socket.socketpair()
    client_ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
    result: dict[str, Any] = {}

    def server() -> None:
        try:
            with context.wrap_socket(server_sock, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError) as exc:  # client closing is fine
            result["server_error"] = exc

    thread = threading.Thread(target=server)
    thread.start()
    with client_ctx.wrap_socket(client_sock, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
        tls.sendall(b"x")
    thread.join(5)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_reloader_swaps_in_a_rotated_pair_only_after_the_interval(tmp_path: Path, ca: pki.KeyPair,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    first, second = issue(ca), issue(ca)
    store.write_tls(tmp_path, ca_bundle_pem=ca.cert_pem, serving=first)
    clock = FakeClock()
    reloader = reloading.CertificateReloader(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"),
                                             check_interval=10, clock=clock)
    old_context = reloader.context()
    store.write_tls(tmp_path, ca_bundle_pem=ca.cert_pem, serving=second)
    assert reloader.context() is old_context  # not yet checked
    clock.now = 11
    new_context = reloader.context()
    assert new_context is not old_context
    assert served_serial(new_context, ca) == second.serial
    assert reloader.serial == format(second.serial, "x")
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [e["event"] for e in events] == [reloading.EVENT_CERT_LOADED, reloading.EVENT_CERT_LOADED]
    assert events[1]["previous_serial"] == format(first.serial, "x")


def test_handshake_on_a_stale_context_is_moved_to_the_newest_pair_by_sni_callback(tmp_path: Path,
                                                                                 ca: pki.KeyPair) -> None:
    first, second = issue(ca), issue(ca)
    store.write_tls(tmp_path, ca_bundle_pem=ca.cert_pem, serving=first)
    clock = FakeClock()
    reloader = reloading.CertificateReloader(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"),
                                             check_interval=1, clock=clock)
    stale = reloader.context()  # e.g. a worker class that built one context at start
    store.write_tls(tmp_path, ca_bundle_pem=ca.cert_pem, serving=second)
    clock.now = 2
    assert served_serial(stale, ca) == second.serial


def test_mismatched_pair_keeps_the_old_context_and_logs_one_error(tmp_path: Path, ca: pki.KeyPair,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    first, other = issue(ca), issue(ca)
    store.write_tls(tmp_path, ca_bundle_pem=ca.cert_pem, serving=first)
    clock = FakeClock()
    reloader = reloading.CertificateReloader(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"),
                                             check_interval=1, clock=clock, retry_delay=0)
    good = reloader.context()
    store.atomic_write(tmp_path / "tls.key", other.key_pem, store.PRIVATE_MODE)
    for step in range(2, 5):
        clock.now = step
        assert reloader.context() is good
    assert served_serial(good, ca) == first.serial
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    failures = [e for e in events if e["event"] == reloading.EVENT_CERT_RELOAD_FAILED]
    assert len(failures) == 1 and failures[0]["level"] == "error"
    assert failures[0]["kept_serial"] == format(first.serial, "x")
    # Completing the rotation (matching cert arrives) is picked up.
    store.atomic_write(tmp_path / "tls.crt", other.cert_pem, store.PUBLIC_MODE)
    clock.now = 10
    assert served_serial(reloader.context(), ca) == other.serial


def test_reloader_refuses_to_start_on_a_mismatched_pair(tmp_path: Path, ca: pki.KeyPair) -> None:
    first, other = issue(ca), issue(ca)
    store.write_tls(tmp_path, ca_bundle_pem=ca.cert_pem, serving=first)
    store.atomic_write(tmp_path / "tls.key", other.key_pem, store.PRIVATE_MODE)
    with pytest.raises(ssl.SSLError):
        reloading.CertificateReloader(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"), retry_delay=0)


def test_contexts_refuse_tls_below_1_2(tmp_path: Path, ca: pki.KeyPair) -> None:
    store.write_tls(tmp_path, ca_bundle_pem=ca.cert_pem, serving=issue(ca))
    reloader = reloading.CertificateReloader(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"))
    assert reloader.context().minimum_version == ssl.TLSVersion.TLSv1_2


def call(app: Any, environ: dict[str, Any]) -> tuple[str, bytes]:
    captured: list[str] = []
    body = b"".join(app(environ, lambda status, headers: captured.append(status)))
    return captured[0], body


def echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [])
    return [data]


def test_body_limit_rejects_declared_length_over_the_limit_without_reading() -> None:
    limited = serving.BodyLimit(echo, max_bytes=10)
    unread = io.BytesIO(b"x" * 11)
    assert call(limited, {"CONTENT_LENGTH": "11", "wsgi.input": unread})[0].startswith("413")
    assert unread.tell() == 0
    assert call(limited, {"CONTENT_LENGTH": "10", "wsgi.input": io.BytesIO(b"y" * 10)}) == ("200 OK", b"y" * 10)


def test_body_limit_buffers_chunked_bodies_and_rejects_oversized_ones() -> None:
    limited = serving.BodyLimit(echo, max_bytes=10)
    chunked = {"HTTP_TRANSFER_ENCODING": "chunked"}
    assert call(limited, {**chunked, "wsgi.input": io.BytesIO(b"z" * 10)}) == ("200 OK", b"z" * 10)
    assert call(limited, {**chunked, "wsgi.input": io.BytesIO(b"z" * 11)})[0].startswith("413")


def test_extra_ca_verifies_client_certificates_when_presented_but_does_not_require_them(
        tmp_path: Path, ca: pki.KeyPair) -> None:
    store.write_tls(tmp_path, ca_bundle_pem=ca.cert_pem, serving=issue(ca))
    clients_ca = pki.generate_ca("clients", now=NOW, valid_for=DAY)
    (tmp_path / "clients.crt").write_bytes(clients_ca.cert_pem)
    reloader = reloading.CertificateReloader(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"),
                                             extra_ca=str(tmp_path / "clients.crt"))
    context = reloader.context()
    assert context.verify_mode == ssl.CERT_OPTIONAL
    assert served_serial(context, ca)  # no client certificate: still served

    stranger_ca = pki.generate_ca("stranger", now=NOW, valid_for=DAY)
    stranger = pki.issue_certificate(stranger_ca, "apiserver", now=NOW, valid_for=DAY, server=False, client=True)
    (tmp_path / "client.crt").write_bytes(stranger.cert_pem)
    (tmp_path / "client.key").write_bytes(stranger.key_pem)
    server_sock, client_sock = socket.socketpair()
    client_ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
    client_ctx.load_cert_chain(str(tmp_path / "client.crt"), str(tmp_path / "client.key"))
    errors: list[Exception] = []

    def server() -> None:
        try:
            with context.wrap_socket(server_sock, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=server)
    thread.start()
    try:
        with client_ctx.wrap_socket(client_sock, server_hostname="localhost") as tls:
            tls.sendall(b"x")
            tls.recv(1)
    except (ssl.SSLError, OSError):
        pass
    thread.join(5)
    assert errors and isinstance(errors[0], ssl.SSLError)  # an untrusted client certificate is refused


def test_a_request_is_handed_to_a_thread_only_once_its_head_and_sized_body_are_in() -> None:
    head = b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
    assert serving._bytes_needed(bytearray(head[:-2]), 100) is None  # head still coming
    assert serving._bytes_needed(bytearray(head + b"ab"), 100) == len(head) + 5  # body still coming
    assert serving._bytes_needed(bytearray(head.replace(b"5", b"500")), 100) == 0  # over the limit: 413 at once
    chunked = b"POST /mutate HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert serving._bytes_needed(bytearray(chunked), 100) == 0  # a thread reads it, under the deadline
    assert serving._bytes_needed(bytearray(b"G" * (serving._MAX_HEAD + 1)), 100) == 0  # the parser refuses it


def test_the_cached_date_header_is_the_current_second() -> None:
    import email.utils
    import time

    from gunicorn import util

    serving._cache_http_date()
    before = int(time.time())
    header = util.http_date()
    after = int(time.time())
    assert header in {email.utils.formatdate(t, usegmt=True) for t in range(before, after + 1)}
    assert util.http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"  # an explicit time is formatted as asked
