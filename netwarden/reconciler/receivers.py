"""Signal receivers: HTTP endpoints (and a file/stdin ingester) that feed the decision engine.

POST /signals/flows          flows, a JSON array or JSON lines, any supported format (Hubble, Calico, generic)
POST /signals/falco          a falcosidekick webhook body (one alert), or an array / JSON lines of Falco alerts
POST /signals/alertmanager   an Alertmanager webhook body (version 4)
GET  /healthz /readyz /metrics

An alert endpoint's answer accounts for every alert: accepted ones that count against no pod or
workload are listed under `unattributed` with their index, reason and detail (still 200: they were
received; the runtime counts and logs them too), so a sender never reads a bare "accepted".

On a standby replica (leader election on, another process leads) a signal is not scored here: it is
forwarded to the leader (netwarden/reconciler/forwarding.py), or answered 503 + Retry-After when no leader can
take it.

Every signal request needs `Authorization: Bearer <token>`; the token is read from a file (re-read
when the file changes, so a rotated Secret applies without a restart) and compared in constant
time. Bodies over the limit get 413. Each bad record is rejected with its index and reason and
counted; good records in the same batch are still accepted.

The receiver runs inside the reconciler process (the engine's state lives there), served by
netwarden/reconciler/httpserver.py (slow and idle clients cannot stall it; bounded threads and connections),
with TLS from the same live-reloading certificate holder as the webhook.
"""

from __future__ import annotations

import hmac
import io
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterable, Iterator, Protocol, Sequence

import msgspec
from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from werkzeug.exceptions import RequestEntityTooLarge

from netwarden.model import names
from netwarden.platform.logs import log_event
from netwarden.reconciler import metrics
from netwarden.reconciler.core.alerts import Attribution
from netwarden.reconciler.core.types import Flow, MetricAlert, SecurityAlert, SignalError
from netwarden.reconciler.httpserver import GuardedHttpServer, ServerLimits
from netwarden.reconciler.priority import SignalPriority
from netwarden.reconciler.forwarding import RETRY_AFTER_SECONDS, ForwardError, SignalForwarder
from netwarden.reconciler.signals.alertmanager import parse_alertmanager_payload
from netwarden.reconciler.signals.falco import parse_falco_event
from netwarden.reconciler.signals.parse import Parsed, clean_text, parse_flow_array, parse_flow_lines, parse_flow_records
from netwarden.reconciler.signals.streams import (DECODE_REASONS, SignalCounters, SignalCountersCollector, decode_json,
                                        iter_json_lines, iter_lines, split_lines)
from netwarden.platform.tls import CertificateReloader

log = logging.getLogger("netwarden.reconciler.receivers")

#: The signal endpoints, /signals/<source>.
SIGNAL_SOURCES = ("flows", "falco", "alertmanager")
DEFAULT_MAX_BODY = 8 * 1024 * 1024
#: Rejected-record details returned per response (the counts are always complete).
MAX_REJECTED_LISTED = 100


class SignalSink(Protocol):
    """Where accepted signals go (the reconciler runtime: enrich, engine, apply decisions)."""

    def accept_flows(self, flows: Sequence[Flow]) -> None: ...

    def accept_alert(self, alert: SecurityAlert) -> Attribution | None:
        """Where the alert was attributed (None: the sink does not say)."""

    def accept_metric_alerts(self, alerts: Sequence[MetricAlert]) -> Sequence[Attribution | None] | None:
        """Where each alert was attributed, in order (None: the sink does not say)."""


class TokenFile:
    """A bearer token kept in a file, re-read when its mtime/size/inode change. Empty or missing: deny all."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._token: bytes = b""

    def current(self) -> bytes:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            return b""
        with self._lock:
            if stamp != self._stamp:
                try:
                    with open(self.path, "rb") as handle:
                        self._token = handle.read().strip()
                    self._stamp = stamp
                except OSError:
                    return b""
            return self._token

    def matches(self, presented: bytes) -> bool:
        expected = self.current()
        # compare_digest is constant-time for equal lengths and never short-circuits on content.
        return bool(expected) and hmac.compare_digest(presented, expected)


@dataclass
class IngestResult:
    accepted: int
    rejected: list[dict[str, Any]]
    rejected_total: int
    #: Alerts only: accepted ones attributed to no pod or workload (listed up to a bound), None for flows.
    unattributed: list[dict[str, Any]] | None = None
    unattributed_total: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"accepted": self.accepted, "rejected": self.rejected, "rejected_total": self.rejected_total}
        if self.unattributed is not None:
            out.update(attributed=self.accepted - self.unattributed_total, unattributed=self.unattributed,
                       unattributed_total=self.unattributed_total)
        return out

    def note_attribution(self, index: int, where: Attribution | None) -> None:
        """Record where alert `index` was attributed; an unattributed one is listed with its reason."""
        if self.unattributed is None:
            self.unattributed = []
        if where is None or where.reason is None:
            return
        self.unattributed_total += 1
        if len(self.unattributed) < MAX_REJECTED_LISTED:
            self.unattributed.append({"index": index, "reason": where.reason, "detail": where.detail})

    @property
    def undecodable(self) -> bool:
        """Nothing in the body could even be decoded (bad JSON or UTF-8, too deep, lone surrogates): a 400,
        unlike a batch whose decoded records are only partly usable (200, each rejection listed)."""
        return (self.accepted == 0 and self.rejected_total > 0
                and all(r["reason"] in DECODE_REASONS for r in self.rejected))


# --- body decoding ---------------------------------------------------------------------------


def iter_records(body: bytes) -> Iterator[tuple[int, Any]]:
    """(index, decoded record or SignalError) from a JSON array, one JSON object, or JSON lines.

    Index is the array position (0-based) or the line number (1-based) for JSON lines.
    """
    stripped = body.lstrip()
    if stripped[:1] == b"[":
        try:
            value = decode_json(body, "body (a JSON array)")
        except SignalError as error:
            yield 0, error
            return
        for index, item in enumerate(value):  # type: ignore[arg-type]
            if not isinstance(item, dict):
                yield index, SignalError("not-an-object", f"record {index} is a {type(item).__name__}")
            else:
                yield index, item
        return
    yield from iter_json_lines(io.BytesIO(body))


def iter_raw_records(body: bytes) -> Iterator[tuple[int, bytes | SignalError]]:
    """`iter_records` without decoding: (index, one record's JSON bytes or a SignalError), so each
    record can be decoded straight into its typed form."""
    stripped = body.lstrip()
    if stripped[:1] == b"[":
        items = None
        if clean_text(body):  # else the decoded path rejects the whole body, as it always did
            try:
                items = _RAW_ARRAY.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError):
                pass
        if items is None:
            # Not one valid JSON array: the decoded path says why, exactly as before.
            for index, record in iter_records(body):
                yield index, (record if isinstance(record, SignalError) else _RAW_ENCODE(record))
            return
        for index, item in enumerate(items):
            yield index, bytes(item)
        return
    yield from split_lines(body)


_RAW_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])
_RAW_ENCODE = msgspec.json.encode


def _rejection(index: int, error: SignalError) -> dict[str, Any]:
    return {"index": index, "reason": error.reason, "message": str(error)[:300]}


def parse_records(records: Iterable[tuple[int, Any]], parse: Callable[[Any], Any], error_format: Callable[[Any], str],
                  counters: SignalCounters) -> tuple[list[Any], list[dict[str, Any]], int]:
    """Parse a batch record by record: good ones kept, bad ones rejected with a reason (listed up to a bound) and counted."""
    parsed: list[Any] = []
    rejected: list[dict[str, Any]] = []
    total_rejected = 0
    for index, record in records:
        try:
            if isinstance(record, SignalError):
                raise record
            item = parse(record)
        except SignalError as error:
            total_rejected += 1
            counters.record_error(error_format(record), error)
            if len(rejected) < MAX_REJECTED_LISTED:
                rejected.append(_rejection(index, error))
            continue
        counters.record_ok(item.source_format)
        parsed.append(item)
    return parsed, rejected, total_rejected


def ingest_flow_body(body: bytes, sink: SignalSink, counters: SignalCounters) -> IngestResult:
    """A POSTed body of flows (a JSON array or JSON lines): a batch of Hubble flows is decoded in one
    typed call; anything else record by record."""
    if body.lstrip()[:1] == b"[":
        return ingest_parsed(parse_flow_array(body, lambda: iter_raw_records(body)), sink, counters)
    return ingest_parsed(parse_flow_lines(body), sink, counters)


def ingest_flow_records(records: Iterable[tuple[int, bytes | SignalError]], sink: SignalSink,
                        counters: SignalCounters) -> IngestResult:
    """Parse a batch of flow records (raw JSON bytes each) and hand the good ones to the sink at once."""
    return ingest_parsed(parse_flow_records(records), sink, counters)


def ingest_parsed(parsed: Parsed, sink: SignalSink, counters: SignalCounters) -> IngestResult:
    """Count what a batch held, list its rejections (up to a bound), and hand its flows to the sink at once."""
    rejected = [_rejection(index, error) for index, error, _ in parsed.rejected[:MAX_REJECTED_LISTED]]
    for _, error, fmt in parsed.rejected:
        counters.record_error(fmt, error)
    for fmt, n in parsed.formats.items():
        counters.record_ok(fmt, n)
    if parsed.flows:
        sink.accept_flows(parsed.flows)
    return IngestResult(len(parsed.flows), rejected, len(parsed.rejected))


def ingest_falco_records(records: Iterable[tuple[int, Any]], sink: SignalSink,
                         counters: SignalCounters) -> IngestResult:
    accepted_at: list[int] = []
    current = 0

    def indexed() -> Iterator[tuple[int, Any]]:
        nonlocal current
        for index, record in records:
            current = index
            yield index, record

    def parse(record: Any) -> SecurityAlert:
        alert = parse_falco_event(record)
        accepted_at.append(current)  # the index each accepted alert came from, for its attribution
        return alert

    alerts, rejected, total_rejected = parse_records(indexed(), parse, lambda _: "falco", counters)
    result = IngestResult(len(alerts), rejected, total_rejected, unattributed=[])
    for index, alert in zip(accepted_at, alerts):
        result.note_attribution(index, sink.accept_alert(alert))
    return result


# --- the app ---------------------------------------------------------------------------------


def create_receiver_app(sink: SignalSink, *, token: TokenFile | None, counters: SignalCounters | None = None,
                        max_body_bytes: int = DEFAULT_MAX_BODY, ready: Callable[[], bool] = lambda: True,
                        tls: CertificateReloader | None = None,
                        registry: CollectorRegistry | None = None,
                        sources: Iterable[str] = SIGNAL_SOURCES,
                        forwarder: SignalForwarder | None = None) -> Flask:
    """The receiver WSGI app. `token=None` disables auth (only for explicit local use).

    With a `forwarder`, a replica that is not the leader passes signals on instead of scoring them.
    With `tls`, /readyz fails while the certificate being served is expired or not yet valid.
    """
    app = Flask("netwarden-receivers")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    counters = counters if counters is not None else SignalCounters()
    app.extensions["netwarden_counters"] = counters
    registry = registry if registry is not None else metrics.REGISTRY
    if not getattr(registry, "_netwarden_signals_registered", False):
        registry.register(SignalCountersCollector(counters))
        registry._netwarden_signals_registered = True  # type: ignore[attr-defined]

    def authorised() -> bool:
        if token is None:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        return token.matches(presented.strip().encode())

    def unauthorised() -> Response:
        response = jsonify({"error": "unauthorized"})
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="netwarden-signals"'
        return response

    def body() -> bytes:
        return request.get_data(cache=False)

    def elsewhere(kind: str) -> Response | None:
        """None when this replica takes the signal; else the leader's answer (or 503 + Retry-After)."""
        if forwarder is None or forwarder.takes_locally():
            return None
        if request.headers.get(names.HEADER_FORWARDED_BY):
            result, answer = "not-leader", {"error": "forwarded to a replica that is not the leader"}
        else:
            try:
                forwarded = forwarder.forward(request.full_path.rstrip("?"), body(), request.headers)
                metrics.SIGNALS_FORWARDED.labels(kind, "forwarded").inc()
                log_event(log, "info", {"event": "signals_forwarded", "kind": kind, "status": forwarded.status})
                return Response(forwarded.body, status=forwarded.status, content_type=forwarded.content_type)
            except ForwardError as exc:
                result, answer = "leader-unavailable", {"error": f"not the leader, and the leader is unavailable: {exc}"}
        metrics.SIGNALS_FORWARDED.labels(kind, result).inc()
        log_event(log, "warning", {"event": "signals_not_taken", "kind": kind, "why": result, "detail": answer["error"]})
        response = jsonify(answer)
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc: RequestEntityTooLarge) -> tuple[Response, int]:
        return jsonify({"error": "request body too large", "limit_bytes": max_body_bytes}), 413

    enabled = frozenset(sources)
    unknown = enabled - set(SIGNAL_SOURCES)
    if unknown:
        raise ValueError(f"unknown signal source(s) {sorted(unknown)}: expected {', '.join(SIGNAL_SOURCES)}")

    def route(source: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
        """POST /signals/<source>, served only when that source is enabled (else 404, like any unknown path)."""
        def register(view: Callable[[], Any]) -> Callable[[], Any]:
            return app.post(f"/signals/{source}")(view) if source in enabled else view
        return register

    def receive(kind: str, ingest: Callable[[bytes], tuple[IngestResult, int]]) -> Any:
        """What every signal endpoint does around its own parsing: auth, forwarding, timing, the log line."""
        if not authorised():
            return unauthorised()
        passed_on = elsewhere(kind)
        if passed_on is not None:
            return passed_on
        started = time.perf_counter()
        result, status = ingest(body())
        log_signal(kind, result, started)
        if result.undecodable or status == 400:
            first = result.rejected[0] if result.rejected else {"reason": "bad-request", "message": ""}
            return jsonify({"error": f"{first['reason']}: {first['message']}", **result.to_dict()}), 400
        return jsonify(result.to_dict()), status

    # Alerts before flows (netwarden/reconciler/priority.py): an alert request holds flow batches back from its
    # start to its policy write; a flow batch waits its turn before it is even parsed, and batches from
    # many senders are parsed and scored one at a time.
    priority: SignalPriority | None = getattr(sink, "signal_priority", None)

    def first(kind: str, ingest: Callable[[bytes], tuple[IngestResult, int]]) -> Any:
        if priority is None:
            return receive(kind, ingest)
        with priority.alert():
            return receive(kind, ingest)

    def ingest_flows(raw: bytes) -> tuple[IngestResult, int]:
        if priority is None:
            return ingest_flow_body(raw, sink, counters), 200
        with priority.flow_lane():  # one batch at a time: an alert competes with one flow thread, not many
            priority.wait_turn()
            return ingest_flow_body(raw, sink, counters), 200

    @route("flows")
    def flows() -> Any:
        return receive("flows", ingest_flows)

    @route("falco")
    def falco() -> Any:
        return first("falco", lambda raw: (ingest_falco_records(iter_records(raw), sink, counters), 200))

    def ingest_alertmanager(raw: bytes) -> tuple[IngestResult, int]:
        """One payload per POST (Alertmanager's own shape), so a bad body is one rejected record and a 400."""
        try:
            alerts = parse_alertmanager_payload(decode_json(raw, "body"))
        except (SignalError, ValueError, TypeError, AttributeError) as exc:  # the parser's own faults: still a 400
            error = exc if isinstance(exc, SignalError) else SignalError("bad-field", str(exc))
            counters.record_error("alertmanager", error)
            return IngestResult(0, [_rejection(0, error)], 1), 400
        counters.record_ok("alertmanager", len(alerts))
        result = IngestResult(len(alerts), [], 0, unattributed=[])
        attributions = sink.accept_metric_alerts(alerts) if alerts else None
        for index, where in enumerate(attributions or ()):
            result.note_attribution(index, where)
        return result, 200

    @route("alertmanager")
    def alertmanager() -> Any:
        return first("alertmanager", ingest_alertmanager)

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Any:
        problem = tls.validity_problem() if tls is not None else None
        if problem is not None:
            return jsonify({"status": "not ready", "reason": problem}), 503
        if ready():
            return jsonify({"status": "ready"})
        return jsonify({"status": "not ready", "reason": "the reconciler is not ready"}), 503

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    return app


def log_signal(kind: str, result: IngestResult, started: float) -> None:
    log_event(log, "info", {
        "event": "signals_received", "kind": kind, "accepted": result.accepted,
        "rejected": result.rejected_total, "seconds": round(time.perf_counter() - started, 6),
        "reasons": sorted({r["reason"] for r in result.rejected}),
        **({"unattributed": result.unattributed_total,
            "unattributed_reasons": sorted({u["reason"] for u in result.unattributed})}
           if result.unattributed is not None else {}),
    })


# --- the stream ingester (--flows-file PATH|-) -----------------------------------------------


def ingest_flow_stream(stream: IO[str] | IO[bytes], sink: SignalSink, counters: SignalCounters, *,
                       batch_size: int = 256, stop: threading.Event | None = None) -> IngestResult:
    """Read JSON-lines flows until EOF (or `stop`), handing them to the sink in batches."""
    accepted = 0
    rejected: list[dict[str, Any]] = []
    total_rejected = 0
    batch: list[tuple[int, Any]] = []

    def flush() -> None:
        nonlocal accepted, total_rejected
        result = ingest_flow_records(batch, sink, counters)
        accepted += result.accepted
        total_rejected += result.rejected_total
        rejected.extend(result.rejected[: max(0, MAX_REJECTED_LISTED - len(rejected))])
        batch.clear()

    for lineno, record in iter_lines(stream) if _binary(stream) else _encoded_lines(stream):
        batch.append((lineno, record))
        if len(batch) >= batch_size:
            flush()
        if stop is not None and stop.is_set():
            break
    if batch:
        flush()
    return IngestResult(accepted, rejected, total_rejected)


def _binary(stream: IO[str] | IO[bytes]) -> bool:
    return not isinstance(stream, io.TextIOBase)


def _encoded_lines(stream: IO[str] | IO[bytes]) -> Iterator[tuple[int, bytes | SignalError]]:
    """A text stream's lines as UTF-8 bytes (the chunked reader takes bytes)."""
    for lineno, record in iter_json_lines(stream):  # type: ignore[arg-type]
        yield lineno, record if isinstance(record, SignalError) else _RAW_ENCODE(record)


# --- serving ---------------------------------------------------------------------------------


class ReceiverServer:
    """The receiver app on netwarden/reconciler/httpserver.py's bounded server (TLS from a live-reloading holder when given)."""

    def __init__(self, app: Flask, host: str = "0.0.0.0", port: int = 8444, *,
                 tls: CertificateReloader | None = None, limits: ServerLimits | None = None) -> None:
        self.reloader = tls
        limits = limits or ServerLimits(max_body_bytes=app.config.get("MAX_CONTENT_LENGTH") or DEFAULT_MAX_BODY)
        self.server = GuardedHttpServer(app, host, port, limits=limits, bulk_paths=("/signals/flows",),
                                        ssl_context=tls.context if tls is not None else None)
        self.port = self.server.port

    def start(self) -> "ReceiverServer":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
