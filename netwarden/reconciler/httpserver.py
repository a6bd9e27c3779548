"""The signal receivers' HTTP/1.1 server: a slow or idle client costs a coroutine, never a thread.

Why not werkzeug's threaded server: it runs the TLS handshake in its accept loop (one idle socket
stopped every request, /healthz included) and gives each connection a thread for as long as the
client likes (300 slow clients, 309 threads). Here one asyncio loop does all socket I/O without
blocking: the TLS handshake (bounded by `handshake_timeout`), the request head (`head_timeout`,
also the keep-alive idle timeout), the body (`body_timeout`, chunked included, limited to
`max_body_bytes` on the bytes actually read: 413). Only a complete request, already in memory,
reaches the WSGI app, on a pool of `threads` threads; requests to `bulk_paths` (the flow batches) run
on a pool of their own (`bulk_threads`), so an alert or a probe never waits for a thread behind
them, however many senders post flows at once. Connections past the handshake are bounded by
`max_connections`: past it the oldest one still waiting (idle, or before its request head) is
closed to make room, so a flood of idle clients cannot lock out a probe; connections still in their
handshake cost the loop a little memory and are dropped at `handshake_timeout`.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import ssl
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable
from urllib.parse import unquote_to_bytes

from netwarden.platform.logs import log_event
from netwarden.model.errors import NetwardenError

log = logging.getLogger("netwarden.reconciler.httpserver")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class ServerLimits:
    """How long and how much any one client may hold the server."""

    handshake_timeout: float = 5.0
    #: Request line and headers, from the end of the handshake or of the previous response (keep-alive idle).
    head_timeout: float = 15.0
    body_timeout: float = 30.0
    #: Writing a response to a client that does not read.
    write_timeout: float = 15.0
    max_connections: int = 1024
    #: Threads for every request not to a bulk path (alerts, probes, metrics).
    threads: int = 8
    #: Threads for requests to the server's `bulk_paths` (flow batches): their own, never the ones above.
    bulk_threads: int = 4
    max_head_bytes: int = 64 * 1024
    max_body_bytes: int = 8 * 1024 * 1024


class HttpError(NetwardenError):
    """A request the server answers itself (the app never sees it), then closes the connection."""

    def __init__(self, status: int, reason: str, **fields: Any) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.fields = fields


_STATUS_TEXT = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
                431: "Request Header Fields Too Large", 501: "Not Implemented", 505: "HTTP Version Not Supported"}


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name]
        return ", ".join(values) if values else None

    @property
    def keep_alive(self) -> bool:
        connection = (self.header("connection") or "").lower()
        return self.version == "HTTP/1.1" and "close" not in connection


@dataclass(eq=False)
class _Connection:
    """One client, and whether it is only waiting (may be evicted) or being served."""

    writer: asyncio.StreamWriter
    opened: float = field(default_factory=time.monotonic)
    waiting: bool = True


class GuardedHttpServer:
    """Serve a WSGI app over HTTP/1.1 (TLS when `ssl_context` gives one) from a background thread."""

    def __init__(self, app: WSGIApp, host: str, port: int, *, limits: ServerLimits = ServerLimits(),
                 ssl_context: Callable[[], ssl.SSLContext] | None = None, bulk_paths: tuple[str, ...] = ()) -> None:
        """`ssl_context` gives the context to listen with (its sni_callback may move a handshake to a newer one);
        requests whose path starts with one of `bulk_paths` run on the bulk pool."""
        self.app = app
        self.host = host
        self.limits = limits
        self._ssl_context = ssl_context
        self._bulk_paths = bulk_paths
        self._pool = ThreadPoolExecutor(max_workers=limits.threads, thread_name_prefix="signal-app")
        self._bulk_pool = ThreadPoolExecutor(max_workers=limits.bulk_threads, thread_name_prefix="signal-bulk")
        self._connections: dict[_Connection, None] = {}  # insertion order: oldest first
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._socket = socket.create_server((host, port), backlog=1024, reuse_port=False)
        self.port: int = self._socket.getsockname()[1]

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "GuardedHttpServer":
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)

            async def listen() -> None:
                # The loop's TLS is non-blocking: a handshake that stalls waits on the loop, bounded by
                # ssl_handshake_timeout, and never holds the accept path or a thread.
                self._server = await asyncio.start_server(
                    self._serve, sock=self._socket, limit=self.limits.max_head_bytes,
                    ssl=self._ssl_context() if self._ssl_context is not None else None,
                    ssl_handshake_timeout=self.limits.handshake_timeout if self._ssl_context is not None else None)
                started.set()

            self._loop.run_until_complete(listen())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="signal-receiver", daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for conn in list(self._connections):
                conn.writer.transport.abort()
            # Aborted connections end their tasks on their own (cancelling them makes asyncio's stream
            # callback log each one); only a task still running the app after that is cancelled.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=2)
                for task in pending:
                    task.cancel()

        if self._thread is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._bulk_pool.shutdown(wait=False, cancel_futures=True)
        self._socket.close()

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    # --- one connection ----------------------------------------------------------------------

    def _admit(self, conn: _Connection) -> None:
        """Register a connection; past the bound, close the oldest one that is only waiting."""
        if len(self._connections) >= self.limits.max_connections:
            victim = next((c for c in self._connections if c.waiting), None)
            if victim is None:
                raise ConnectionRefusedError("every connection slot is serving a request")
            self._connections.pop(victim, None)
            victim.writer.transport.abort()
        self._connections[conn] = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Small JSON answers written in pieces stall on Nagle + delayed ACK without this.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(writer)
        try:
            self._admit(conn)
        except ConnectionRefusedError:
            writer.transport.abort()
            return
        clean = False
        try:
            while True:
                conn.waiting = True
                try:
                    request = await self._read_request(reader, writer, conn, self.limits.head_timeout)
                except HttpError as error:
                    await self._write_error(writer, error)
                    await self._linger(reader)
                    clean = True
                    return
                if request is None:
                    return
                pool = self._bulk_pool if request.target.startswith(self._bulk_paths) else self._pool
                status, headers, body = await asyncio.get_running_loop().run_in_executor(
                    pool, self._call_app, request, writer)
                keep = request.keep_alive and not any(
                    k.lower() == "connection" and "close" in v.lower() for k, v in headers)
                await self._write_response(writer, status, headers, body, keep, request.method == "HEAD")
                if not keep:
                    clean = True
                    return
        except (asyncio.TimeoutError, ConnectionError, ssl.SSLError, OSError, asyncio.IncompleteReadError):
            return  # a client that stalls, drops or fails its handshake just loses its connection
        except Exception:  # noqa: BLE001 - one connection's bug must not reach the loop
            log_event(log, "error", {"event": "http_connection_failed"}, exc_info=True)
        finally:
            self._connections.pop(conn, None)
            # close() would wait for a client that does not read to take the buffered bytes: abort instead.
            transport = writer.transport
            if transport is not None:
                transport.close() if clean else transport.abort()

    async def _linger(self, reader: asyncio.StreamReader, seconds: float = 1.0) -> None:
        """After an early answer (413), read and drop what the client still sends for a moment, so it
        reads the answer instead of a connection reset."""
        deadline = time.monotonic() + seconds
        dropped = 0
        try:
            while dropped < 4 * self.limits.max_body_bytes:
                chunk = await asyncio.wait_for(reader.read(65536), max(0.0, deadline - time.monotonic()))
                if not chunk:
                    return
                dropped += len(chunk)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            return

    async def _read_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            conn: _Connection, timeout: float) -> _Request | None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                raise HttpError(400, "connection closed inside the request head") from None
            return None  # a clean close between requests
        except asyncio.LimitOverrunError:
            raise HttpError(431, f"request head over {self.limits.max_head_bytes} bytes") from None
        except asyncio.TimeoutError:
            return None
        conn.waiting = False
        request = parse_head(head)
        request.body = await asyncio.wait_for(self._read_body(reader, writer, request), self.limits.body_timeout)
        return request

    async def _read_body(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: _Request) -> bytes:
        limit = self.limits.max_body_bytes
        encoding = request.header("transfer-encoding")
        length = request.header("content-length")
        if encoding is not None:
            if encoding.strip().lower() != "chunked":
                raise HttpError(501, f"transfer-encoding {encoding!r} is not supported (only chunked)")
            if length is not None:
                raise HttpError(400, "both Content-Length and Transfer-Encoding")
        elif length is not None:
            if not length.strip().isdigit():
                raise HttpError(400, f"invalid Content-Length {length!r}")
            if int(length) > limit:
                raise HttpError(413, "request body too large", limit_bytes=limit, declared_bytes=int(length))
        else:
            return b""
        if (request.header("expect") or "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if encoding is None:
            return await reader.readexactly(int(length or 0))
        return await read_chunked(reader, limit)

    def _call_app(self, request: _Request, writer: asyncio.StreamWriter) -> tuple[str, list[tuple[str, str]], bytes]:
        """Run the WSGI app on a pool thread with the complete request; collect the whole response."""
        environ = self._environ(request, writer)
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            started[:] = [status, headers]
            return lambda _data: None

        result = self.app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return started[0], list(started[1]), body

    def _environ(self, request: _Request, writer: asyncio.StreamWriter) -> dict[str, Any]:
        path, _, query = request.target.partition("?")
        peer = writer.get_extra_info("peername") or ("", 0)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query,
            "RAW_URI": request.target,
            "REQUEST_URI": request.target,
            "SERVER_NAME": self.host,
            "SERVER_PORT": str(self.port),
            "SERVER_PROTOCOL": request.version,
            "REMOTE_ADDR": str(peer[0]),
            "REMOTE_PORT": str(peer[1]),
            "CONTENT_LENGTH": str(len(request.body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if self._ssl_context is not None else "http",
            "wsgi.input": io.BytesIO(request.body),
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in request.headers:
            key = name.upper().replace("-", "_")
            if key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
                continue  # the body is already read and de-chunked: its real length is above
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
                continue
            key = f"HTTP_{key}"
            environ[key] = f"{environ[key]}, {value}" if key in environ else value
        return environ

    async def _write_response(self, writer: asyncio.StreamWriter, status: str, headers: list[tuple[str, str]],
                              body: bytes, keep: bool, head_only: bool) -> None:
        names = {k.lower() for k, _ in headers}
        lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers if k.lower() != "connection"]
        if "content-length" not in names:
            lines.append(f"Content-Length: {len(body)}")
        lines.append(f"Connection: {'keep-alive' if keep else 'close'}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body))
        await asyncio.wait_for(writer.drain(), self.limits.write_timeout)

    async def _write_error(self, writer: asyncio.StreamWriter, error: HttpError) -> None:
        log_event(log, "warning", {"event": "http_request_refused", "status": error.status, "reason": error.reason,
                                   **error.fields})
        body = json.dumps({"error": error.reason, **error.fields}).encode()
        await self._write_response(writer, f"{error.status} {_STATUS_TEXT.get(error.status, 'Error')}",
                                   [("Content-Type", "application/json")], body, False, False)


# --- HTTP/1.1 wire format (pure) ---------------------------------------------------------------


def parse_head(head: bytes) -> _Request:
    """Request line and headers (RFC 9112), strict: anything ambiguous is a 400."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise HttpError(400, "request head is not latin-1") from None
    lines = text[:-4].split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1]:
        raise HttpError(400, f"malformed request line {lines[0][:100]!r}")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(505, f"unsupported HTTP version {version[:20]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or line[:1] in (" ", "\t"):
            raise HttpError(400, f"malformed header line {line[:100]!r}")
        headers.append((name, value.strip(" \t")))
    lengths = {v for k, v in headers if k.lower() == "content-length"}
    if len(lengths) > 1:
        raise HttpError(400, "conflicting Content-Length headers")
    return _Request(method, target, version, headers)


async def read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    """A chunked body, de-chunked; 413 as soon as the bytes actually read pass `limit`."""
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpError(400, f"invalid chunk size {size_text[:20]!r}") from None
        if size < 0:
            raise HttpError(400, "negative chunk size")
        if size == 0:
            break
        if len(body) + size > limit:
            raise HttpError(413, "request body too large", limit_bytes=limit, chunked=True)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise HttpError(400, "chunk not terminated by CRLF")
    while (await reader.readuntil(b"\r\n")) != b"\r\n":
        pass  # trailer fields: ignored
    return bytes(body)
