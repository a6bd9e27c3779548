"""Serve a WSGI app with gunicorn (gthread) over TLS 1.2+, reloading the certificate from disk live.

Why live reload: restarting workers would drop the API server's in-flight admission calls. Each
worker keeps a `CertificateReloader` (netwarden/platform/tls.py, shared with the reconciler's receiver);
gunicorn asks it for an SSLContext per accepted connection (the `ssl_context` server hook).
"""

from __future__ import annotations

import argparse
import errno
import re
import select
import socket
import ssl
import sys
import time
from io import BytesIO
from typing import Any, Callable, Iterable

from netwarden.platform.config import WebhookConfig
from netwarden.platform.logs import JsonLogFormatter, log_json
from netwarden.platform.startup import run_command
from netwarden.platform.tls import DEFAULT_RELOAD_INTERVAL, CertificateReloader, load_serving_certificate

# The configured options' defaults have one home, netwarden/platform/config.py (WebhookConfig); these name them here.
_CONFIGURED = WebhookConfig()
DEFAULT_BIND = f"{_CONFIGURED.host}:{_CONFIGURED.port}"
DEFAULT_KEEPALIVE = _CONFIGURED.keepalive
DEFAULT_TIMEOUT = _CONFIGURED.timeout
DEFAULT_WORKERS = _CONFIGURED.workers
DEFAULT_THREADS = _CONFIGURED.threads
DEFAULT_MAX_REQUEST_BODY = _CONFIGURED.max_request_body
#: The API server finishes a handshake in milliseconds; a client that takes longer is closed.
DEFAULT_HANDSHAKE_TIMEOUT = 5.0
#: One request's head and body must arrive within this (under the API server's 10 s default webhook timeout).
DEFAULT_REQUEST_TIMEOUT = 10.0
#: Open connections per worker (waiting ones cost a file descriptor, not a thread); past it a worker stops accepting.
DEFAULT_WORKER_CONNECTIONS = 4096
#: How often a worker tells the arbiter it is alive and checks its parent (gunicorn does both on every
#: turn of its loop, two syscalls per request); far under `timeout`, after which the arbiter kills it.
HEARTBEAT_SECONDS = 0.5
#: How long a worker thread that just answered waits for the same connection's next request (only while
#: no other connection waits for a thread) before handing the connection back to the poller.
NEXT_REQUEST_WAIT_SECONDS = 0.002

# Log event names (one JSON object per line).
EVENT_BODY_TOO_LARGE = "request_body_too_large"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


# --- certificate reloading: netwarden/platform/tls.py (the reconciler's receiver serves with it too) ---------


class _ReloadingContextHook:
    """gunicorn's `ssl_context` server hook: the newest good context, per accepted connection.

    The reloader is built in the master before workers fork, so every worker (including one
    restarted while a bad pair sits on disk) starts from a context that already worked, instead of
    failing its first handshakes.
    """

    def __init__(self, reloader: CertificateReloader) -> None:
        self.reloader = reloader

    def __call__(self, _config: Any, _default_ssl_context_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return self.reloader.context()


# --- slow and idle clients --------------------------------------------------------------------


class _DeadlineSSLSocket(ssl.SSLSocket):
    """A TLS socket whose reads for one request share one deadline (slowloris: a head or body sent a
    byte at a time), and whose writes each get `write_timeout`.

    gthread calls `setblocking(True)` each time a worker thread takes the connection for a request;
    that starts the request's deadline. A read past it raises ECONNRESET, which gunicorn drops quietly.
    """

    request_timeout: float = 10.0
    write_timeout: float = 10.0
    _deadline: float | None = None

    def setblocking(self, flag: bool) -> None:
        if flag:
            self._deadline = time.monotonic() + self.request_timeout
            self.settimeout(self.request_timeout)
        else:
            self._deadline = None
            super().setblocking(False)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:  # noqa: A002 - ssl.SSLSocket's signature
        if self._deadline is not None:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionResetError(errno.ECONNRESET, "request not received within its deadline")
            self.settimeout(remaining)
            try:
                return super().read(len, buffer)
            except TimeoutError:
                raise ConnectionResetError(errno.ECONNRESET, "request not received within its deadline") from None
        return super().read(len, buffer)

    def sendall(self, data: Any, flags: int = 0) -> None:
        held = self._held
        if held is not None:
            held += data
            if len(held) <= _MAX_HELD:
                return
            self._held = None  # a large answer goes out as it is written
            data = held
        if self._deadline is not None:
            self.settimeout(self.write_timeout)
        super().sendall(data, flags)

    #: While not None, an answer's writes gather here and leave in one TLS record (`answer_in_one_write`).
    _held: bytearray | None = None

    def hold_writes(self) -> None:
        self._held = bytearray()

    def drop_writes(self) -> None:
        self._held = None

    def flush_writes(self) -> None:
        held, self._held = self._held, None
        if held:
            self.sendall(held)


#: An answer is written in one piece up to this size (gunicorn writes its head and its body apart).
_MAX_HELD = 256 * 1024

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]{1,12})[ \t]*\r\n", re.IGNORECASE)
#: Largest request head buffered before gunicorn's own parser sees it (and refuses it past its limits).
_MAX_HEAD = 128 * 1024


def _bytes_needed(buffered: bytearray, max_body: int) -> int | None:
    """How many bytes make the whole request in `buffered`: None until its head is complete, 0 to hand it
    over as it is (a head too long, a chunked body, or a body over the limit: the parser and BodyLimit
    answer those), else head plus sized body."""
    end = buffered.find(b"\r\n\r\n")
    if end < 0:
        return 0 if len(buffered) > _MAX_HEAD else None
    match = _CONTENT_LENGTH.search(buffered, 0, end + 2)
    if match is None:
        return 0  # no sized body (chunked bodies are read by a thread, under the request deadline)
    length = int(match.group(1))
    return 0 if length > max_body else end + 4 + length


def _readable(sock: socket.socket, timeout: float) -> bool:
    """Whether `sock` has something to read (data, or the peer's close) within `timeout` seconds."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def guarded_worker_class(handshake_timeout: float, request_timeout: float, max_body: int) -> type:
    """gunicorn's gthread worker, changed so a slow or idle client never holds a thread while it waits.

    gthread hands a new connection to a thread that waits up to 5 s for its first bytes and then
    does a blocking TLS handshake without a timeout: 16 clients that stop halfway held every thread.
    Here a thread only ever does what is already possible: a connection with nothing to read goes
    straight back to the poller; the handshake runs in non-blocking steps, each one deferred to the
    poller until the client sends more, and is abandoned after `handshake_timeout`; a request's head
    and (sized) body are gathered the same way, without a thread, until complete or `request_timeout`
    passes, and only then handed to gunicorn's parser; a chunked body is read by the thread under the
    same deadline (_DeadlineSSLSocket). Idle keep-alive connections wait in the poller for
    `keepalive` seconds, as before. Built on gunicorn 27's gthread (its deferral to the
    poller); pyproject pins that major version.
    """
    from gunicorn import http as gunicorn_http
    from gunicorn import sock as gunicorn_sock
    from gunicorn.workers import gthread

    _cache_http_date()

    _DeadlineSSLSocket.request_timeout = request_timeout

    class HandshakenConn(gthread.TConn):  # type: ignore[misc, name-defined]
        """A connection whose TLS handshake the worker runs in steps, due within `handshake_timeout` of accept."""

        handshaken = False

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.handshake_deadline = time.monotonic() + handshake_timeout
            self.buffered = bytearray()
            self.needed: int | None = None
            self.request_deadline: float | None = None

        def gather(self) -> bool | None:
            """Read what the client sent so far without blocking: True when the request is complete,
            None while more is to come, False when the client closed or ran out of time."""
            if self.parser is not None and self.parser.unreader.buf.getvalue():
                return True  # gunicorn read ahead into this request already
            self.sock.setblocking(False)
            while True:
                try:
                    chunk = self.sock.recv(65536)
                except (ssl.SSLWantReadError, BlockingIOError):
                    break
                except (ssl.SSLError, OSError):
                    return False
                if not chunk:
                    return False
                if self.request_deadline is None:
                    self.request_deadline = time.monotonic() + request_timeout
                self.buffered += chunk
                if self.needed is None:
                    self.needed = _bytes_needed(self.buffered, max_body)
                if self.needed is not None and len(self.buffered) >= self.needed:
                    return True
            if self.request_deadline is not None and time.monotonic() > self.request_deadline:
                return False
            return None

        def hand_over(self) -> None:
            """Give the gathered bytes to gunicorn's parser, as if it had read them itself."""
            self.init()
            if self.buffered:
                self.parser.unreader.unread(bytes(self.buffered))
            self.buffered = bytearray()
            self.needed = None
            self.request_deadline = None

        def init(self) -> None:
            if self.initialized:
                return
            if isinstance(self.sock, ssl.SSLSocket):  # the worker finished the handshake already
                self.initialized = True
                self.sock.setblocking(True)
                self.parser = gunicorn_http.get_parser(self.cfg, self.sock, self.client)
                return
            super().init()

        def has_data(self) -> bool:
            """Bytes to act on now (the TLS layer may hold some the socket no longer shows)."""
            if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
                return True
            self.data_ready = False
            return bool(self.wait_for_data(0))

    class GuardedThreadWorker(gthread.ThreadWorker):  # type: ignore[misc, name-defined]
        _notified_at = -HEARTBEAT_SECONDS
        _parent_checked_at = -HEARTBEAT_SECONDS

        def notify(self) -> None:
            """The heartbeat (a utime on the worker's temp file), at most every HEARTBEAT_SECONDS."""
            now = time.monotonic()
            if now - self._notified_at >= HEARTBEAT_SECONDS:
                self._notified_at = now
                super().notify()

        def is_parent_alive(self) -> bool:
            now = time.monotonic()
            if now - self._parent_checked_at < HEARTBEAT_SECONDS:
                return True
            self._parent_checked_at = now
            return bool(super().is_parent_alive())

        def accept(self, listener: socket.socket) -> None:
            try:
                client, address = listener.accept()
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                    raise
                return
            self.nr_conns += 1
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.enqueue_req(HandshakenConn(self.cfg, client, address, listener.getsockname()))

        def handle(self, conn: Any) -> Any:
            """One request, then, while no other connection waits for a thread, the next one on this
            connection if it comes within NEXT_REQUEST_WAIT_SECONDS (a client's next review usually does).

            The wait is in poll(), without the GIL or CPU; it saves the round through the poller (the
            main thread woken twice, two thread switches, the socket unregistered and registered again)
            that costs a review about a fifth of its CPU. A connection with nothing more goes back to the
            poller as before, and so does one that sends part of a request (its deadline applies)."""
            result = self._handle_one(conn)
            while result is True and self.alive and self.tpool._work_queue.empty():  # noqa: SLF001 - no public size
                sock = conn.sock
                read_ahead = conn.parser is not None and conn.parser.unreader.buf.getvalue()
                if not read_ahead and not (isinstance(sock, ssl.SSLSocket) and sock.pending()) \
                        and not _readable(sock, NEXT_REQUEST_WAIT_SECONDS):
                    break
                conn.data_ready = True
                result = self._handle_one(conn)
            return result

        def _handle_one(self, conn: Any) -> Any:
            if not conn.initialized:
                if not conn.data_ready and not conn.has_data():
                    return gthread._DEFER  # nothing sent yet: wait in the poller, not in a thread
                if self.cfg.is_ssl and not conn.handshaken:
                    step = self._handshake_step(conn)
                    if step is not True:
                        return step
            complete = conn.gather()
            if complete is None:
                conn.data_ready = False
                return gthread._DEFER  # part of a request: wait for the rest in the poller
            if complete is False:
                return False
            conn.hand_over()
            conn.data_ready = True
            return super().handle(conn)

        def handle_request(self, req: Any, conn: Any) -> Any:
            """gunicorn's, with the answer's head and body in one write (one TLS record, one segment)."""
            sock = conn.sock
            if not isinstance(sock, _DeadlineSSLSocket):
                return super().handle_request(req, conn)
            sock.hold_writes()
            try:
                keep_alive = super().handle_request(req, conn)
            except BaseException:
                sock.drop_writes()  # gunicorn closes the connection or answers the error itself
                raise
            sock.flush_writes()
            return keep_alive

        def _handshake_step(self, conn: Any) -> Any:
            """Advance the TLS handshake with what the client has sent; True when done."""
            try:
                if not isinstance(conn.sock, ssl.SSLSocket):
                    context = gunicorn_sock.ssl_context(self.cfg)
                    context.sslsocket_class = _DeadlineSSLSocket
                    conn.sock = context.wrap_socket(conn.sock, server_side=True, do_handshake_on_connect=False,
                                                    suppress_ragged_eofs=self.cfg.suppress_ragged_eofs)
                conn.sock.setblocking(False)
                conn.sock.do_handshake()
            except ssl.SSLWantReadError:
                if time.monotonic() > conn.handshake_deadline:
                    return False  # closed: a handshake that did not finish in time
                conn.data_ready = False
                return gthread._DEFER
            except (ssl.SSLError, OSError):
                return False
            conn.handshaken = True
            return True

        def murder_pending(self) -> None:
            """gthread closes waiting connections after `keepalive`; a handshake gets `handshake_timeout`,
            a request begun `request_timeout`."""
            super().murder_pending()
            now = time.monotonic()
            for conn in [c for c in self.pending_conns if (not c.handshaken and c.handshake_deadline < now)
                         or (c.request_deadline is not None and c.request_deadline < now)]:
                self.pending_conns.remove(conn)
                try:
                    self.poller.unregister(conn.sock)
                except (OSError, KeyError, ValueError):
                    pass
                self.nr_conns -= 1
                conn.close()

    return GuardedThreadWorker


# --- request body limit ------------------------------------------------------------------------


class BodyLimit:
    """WSGI middleware: 413 for bodies over `max_bytes` (gunicorn limits only the request line and headers).

    Chunked bodies (no Content-Length) are read up to the limit into memory and handed on as a
    sized body, so the app never reads past the limit either way.
    """

    def __init__(self, app: WSGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = environ.get("CONTENT_LENGTH") or ""
        if length:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                return self._reject(start_response, "400 Bad Request", b"invalid Content-Length\n")
            if declared > self.max_bytes:
                log_json(EVENT_BODY_TOO_LARGE, level="warning", declared=declared, limit=self.max_bytes,
                         path=environ.get("PATH_INFO", ""))
                return self._too_large(start_response)
        elif "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            body = environ["wsgi.input"].read(self.max_bytes + 1)
            if len(body) > self.max_bytes:
                log_json(EVENT_BODY_TOO_LARGE, level="warning", declared=None, limit=self.max_bytes,
                         path=environ.get("PATH_INFO", ""))
                return self._too_large(start_response)
            environ["wsgi.input"] = BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)

    def _too_large(self, start_response: Callable[..., Any]) -> Iterable[bytes]:
        return self._reject(
            start_response, "413 Content Too Large", f"request body exceeds {self.max_bytes} bytes\n".encode()
        )

    @staticmethod
    def _reject(start_response: Callable[..., Any], status: str, body: bytes) -> Iterable[bytes]:
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]


# --- gunicorn application ----------------------------------------------------------------------


def _gunicorn_logconfig() -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLogFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {
            "gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "INFO"},
    }


def _cache_http_date() -> None:
    """gunicorn formats every response's Date header with `email.utils`; once a second is enough
    (the header has one-second resolution). Patched into gunicorn.util, which every response uses."""
    from gunicorn import util

    if getattr(util.http_date, "netwarden_cached", False):
        return
    original = util.http_date
    last: list[tuple[int, str]] = [(-1, "")]  # (second, its header), replaced as one object

    def http_date(timestamp: float | None = None) -> str:
        if timestamp is not None:
            return str(original(timestamp))
        second = int(time.time())
        cached = last[0]
        if cached[0] != second:
            cached = last[0] = (second, str(original(second)))
        return cached[1]

    http_date.netwarden_cached = True  # type: ignore[attr-defined]
    util.http_date = http_date


def _logger_class() -> type:
    """gunicorn's logger without the access log.

    gunicorn turns its access log on whenever `logconfig_dict` is set, whatever `accesslog` says;
    netwarden logs one JSON line per review itself, so the access log only doubled the lines (and
    cost a fifth of a review's time). Errors still go through `logconfig_dict`'s JSON handler.
    """
    from gunicorn.glogging import Logger

    class NoAccessLogger(Logger):  # type: ignore[misc]
        access_log_enabled = False

        def access(self, *args: Any, **kwargs: Any) -> None:
            return None

    return NoAccessLogger


def _load_app(app_uri_or_factory: str) -> WSGIApp:
    from gunicorn.util import import_app

    return import_app(app_uri_or_factory)  # "module:app" or "module:create_app()"


def serve(
    app_uri_or_factory: str,
    *,
    cert: str,
    key: str,
    bind: str = DEFAULT_BIND,
    workers: int,
    threads: int,
    timeout: int,
    keepalive: int,
    max_request_body: int,
    reload_interval: float,
    extra_ca: str | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    worker_connections: int = DEFAULT_WORKER_CONNECTIONS,
) -> None:
    """Run gunicorn in this process until it is told to stop (SIGTERM drains gracefully)."""
    from gunicorn.app.base import BaseApplication

    # Refuse to start on a bad pair rather than failing every handshake later.
    hook = _ReloadingContextHook(load_serving_certificate(
        cert, key, flags="--cert FILE --key FILE", extra_ca=extra_ca, check_interval=reload_interval))
    options: dict[str, Any] = {
        "bind": bind,
        "workers": workers,
        "worker_class": guarded_worker_class(handshake_timeout, request_timeout, max_request_body),
        "worker_connections": worker_connections,
        "threads": threads,
        "timeout": timeout,
        "graceful_timeout": timeout,
        "keepalive": keepalive,
        "certfile": cert,  # makes gunicorn treat the listener as TLS; the hook builds the context
        "keyfile": key,
        "ssl_context": hook,
        "limit_request_line": 8190,
        "limit_request_fields": 100,
        "limit_request_field_size": 8190,
        # gunicorn_h1c (picohttpparser) reads the request head instead of gunicorn's Python parser, under
        # the same limits; a dependency of netwarden, so "fast" (fail at start if it is missing).
        "http_parser": "fast",
        "logconfig_dict": _gunicorn_logconfig(),
        "accesslog": None,
        "logger_class": _logger_class(),
        "proc_name": "netwarden-webhook",
    }

    class _Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for name, value in options.items():
                self.cfg.set(name, value)
            if "control_socket_disable" in self.cfg.settings:
                # Newer gunicorn opens a control socket at a fixed per-user path; several servers
                # (tests, sidecars) would fight over it and netwarden does not use it.
                self.cfg.set("control_socket_disable", True)

        def load(self) -> WSGIApp:
            return BodyLimit(_load_app(app_uri_or_factory), max_request_body)

    _Application().run()


def main(argv: list[str] | None = None) -> int:
    """`python -m netwarden.webhook.serving APP --cert ... --key ...` (the netwarden CLI wires its own command)."""
    parser = argparse.ArgumentParser(prog="python -m netwarden.webhook.serving", description=__doc__.split("\n")[0])
    parser.add_argument("app", help='WSGI app "module:app" or factory "module:create_app()"')
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--bind", default=DEFAULT_BIND)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT)
    parser.add_argument("--keepalive", type=int, default=DEFAULT_KEEPALIVE)
    parser.add_argument("--max-request-body", type=int, default=DEFAULT_MAX_REQUEST_BODY)
    parser.add_argument("--reload-interval", type=float, default=DEFAULT_RELOAD_INTERVAL)
    parser.add_argument("--extra-ca", default=None, help="CA bundle to verify client certificates with, when presented")
    parser.add_argument("--handshake-timeout", type=float, default=DEFAULT_HANDSHAKE_TIMEOUT)
    parser.add_argument("--request-timeout", type=float, default=DEFAULT_REQUEST_TIMEOUT)
    args = parser.parse_args(argv)
    return run_command("netwarden.webhook.serving", lambda: serve(
        args.app,
        cert=args.cert,
        key=args.key,
        bind=args.bind,
        workers=args.workers,
        threads=args.threads,
        timeout=args.timeout,
        keepalive=args.keepalive,
        max_request_body=args.max_request_body,
        reload_interval=args.reload_interval,
        extra_ca=args.extra_ca,
        handshake_timeout=args.handshake_timeout,
        request_timeout=args.request_timeout,
    ))


if __name__ == "__main__":
    sys.exit(main())
