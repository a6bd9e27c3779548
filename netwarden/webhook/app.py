"""The webhook's HTTP wire: the review routes and the probes, around the pure core in
netwarden/webhook/admission.py.

A review is decoded here, decided by the core with the facts WebhookRuntime looks up
(netwarden/webhook/runtime.py: namespace, verified owner chain), its workload's baseline made sure
of by the BaselineWriter (netwarden/webhook/baseline_writer.py), answered, counted, and logged as
one JSON line.

Failure behaviour, on purpose:
* dryRun requests are mutated (so `kubectl --dry-run=server` shows the labels) but nothing is written;
* a namespace lookup that fails answers HTTP 500, so the API server applies the webhook's
  failurePolicy;
* all API work of one review shares one deadline, below the API server's own timeout for the call
  (`?timeout=` on the request): an owner that cannot be verified in time leaves the pod its own
  workload (outcome `degraded`, no baseline written), never another workload's identity.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
import uuid
from typing import Any, Callable, Mapping
from urllib.parse import parse_qsl

import orjson
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from netwarden.model import names
from netwarden.model.admission import is_enforcing
from netwarden.model.labels import NamespaceFacts
from netwarden.platform.config import NetwardenConfig, load_config
from netwarden.platform.kube import KubeClient, load_api_client
from netwarden.platform.logs import log_json
from netwarden.webhook.admission import (
    OUTCOME_DEGRADED,
    OUTCOME_LABELLED,
    OUTCOME_MALFORMED,
    AdmissionDecision,
    MalformedReview,
    build_response,
    decide_admission,
    decide_create,
    decide_update,
    malformed_decision,
    read_review,
    request_namespace,
)
from netwarden.webhook.baseline_writer import WRITE_DRY_RUN, WRITE_SKIPPED_DEGRADED
from netwarden.webhook.runtime import NamespaceLookupError, WebhookRuntime

log = logging.getLogger("netwarden.webhook")

#: The API server's default webhook timeout, when a review arrives without `?timeout=`.
DEFAULT_REVIEW_TIMEOUT_SECONDS = 10.0
#: Part of the API server's timeout kept free for answering (and for the last call to give up).
REVIEW_MARGIN_FRACTION = 0.2
REVIEW_MARGIN_MIN_SECONDS = 1.0
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}

EVENT_REVIEW = "admission_review"
EVENT_REVIEW_FAILED = "admission_review_failed"


# --- the review's deadline --------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)  # the API server sends the same `?timeout=` on every review of a webhook
def parse_go_duration(text: str | None) -> float | None:
    """Seconds in a Go duration ("5s", "1m30s", "500ms"), as the API server writes `?timeout=`; None if unreadable."""
    if not text:
        return None
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _GO_UNITS[unit] for number, unit in parts)


def review_budget(timeout_seconds: float | None) -> float:
    """Seconds of API work one review may spend: the API server's timeout minus a margin to answer in."""
    timeout = timeout_seconds if timeout_seconds and timeout_seconds > 0 else DEFAULT_REVIEW_TIMEOUT_SECONDS
    return max(0.1, timeout - max(REVIEW_MARGIN_MIN_SECONDS, REVIEW_MARGIN_FRACTION * timeout))


# --- the reviews ------------------------------------------------------------------------------------


def _json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status=status, mimetype="application/json")


def _pod_name(req: Mapping[str, Any]) -> str:
    obj = req.get("object")
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    generated = meta.get("generateName")
    return str(meta.get("name") or req.get("name") or (f"{generated}*" if generated else ""))


#: JSON escapes of UTF-16 surrogates; only a body with one needs the full lone-surrogate check.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def decode_review_body(data: bytes) -> Any:
    """The JSON body, or MalformedReview (no uid: HTTP 400) for anything the API server never sends:
    not JSON, nested past the parser's depth, or a lone UTF-16 surrogate (not encodable as UTF-8).

    orjson reads what the API server sends (valid UTF-8, no lone surrogates, bounded depth) several
    times faster than `json`; anything it refuses goes through `json` and the checks below, so the
    verdict and the error on odd input are `json`'s."""
    try:
        return orjson.loads(data or b"null")
    except orjson.JSONDecodeError:
        pass
    try:
        body = json.loads(data or b"null")
    except RecursionError:
        raise MalformedReview("body is nested too deeply") from None
    except ValueError as exc:
        raise MalformedReview(f"body is not JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(data or b""):
        try:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except (UnicodeEncodeError, RecursionError):
            request_ = body.get("request") if isinstance(body, dict) else None
            uid = request_.get("uid") if isinstance(request_, dict) else None
            uid = uid if isinstance(uid, str) and uid and uid.isascii() else None
            raise MalformedReview("body holds a lone UTF-16 surrogate (not valid Unicode)", uid) from None
    return body


def answer_review(runtime: WebhookRuntime, webhook: str, data: bytes, timeout: str | None) -> tuple[int, bytes]:
    """(HTTP status, JSON body) answering one AdmissionReview on `webhook` ("mutate" or "validate"),
    given the request body and its `?timeout=`; always one log line."""
    started = runtime.clock()
    fields: dict[str, Any] = {"webhook": webhook, "uid": None, "namespace": None, "pod": None, "operation": None,
                              "workload": None, "policy": None}
    status = 200
    try:
        api_version, req = read_review(decode_review_body(data))
        fields.update(uid=req["uid"], namespace=request_namespace(req), pod=_pod_name(req),
                      operation=req.get("operation"), subresource=req.get("subResource") or None,
                      dry_run=bool(req.get("dryRun")), user=(req.get("userInfo") or {}).get("username"))
        budget = review_budget(parse_go_duration(timeout))
        kube = None if runtime.kube is None else runtime.kube.bounded(started + budget)
        if webhook == "mutate":
            decision = _mutate(runtime, kube, req, fields)
        else:
            decision = _validate(runtime, kube, req)
        payload: Any = build_response(api_version, req["uid"], decision)
        fields.update(outcome=decision.outcome, allowed=decision.allowed, warnings=len(decision.warnings))
        if not decision.allowed:
            fields["message"] = decision.message
    except MalformedReview as exc:
        fields.update(outcome=OUTCOME_MALFORMED, error=exc.message, uid=exc.uid)
        if exc.uid is not None:
            payload = build_response(exc.api_version, exc.uid, malformed_decision(exc.message))
        else:
            status, payload = 400, {"error": exc.message}
    except NamespaceLookupError as exc:
        status, payload = 500, {"error": str(exc)}
        fields.update(outcome="error", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug must not crash the worker; 500 lets failurePolicy decide
        log.exception("admission review failed")
        status, payload = 500, {"error": f"netwarden webhook internal error: {exc!r}"[:1000]}
        fields.update(outcome="error", error=repr(exc)[:1000])
    elapsed = runtime.clock() - started
    runtime.metrics.count_review(webhook, fields["outcome"], elapsed)
    level = "info" if status == 200 else "error"
    log_json(EVENT_REVIEW_FAILED if status != 200 else EVENT_REVIEW, level=level, status=status,
             latency_ms=round(elapsed * 1000, 3), **fields)
    return status, orjson.dumps(payload)


#: The review routes, answered by ReviewRoutes without Flask's request machinery.
REVIEW_PATHS = {"/mutate": "mutate", "/validate": "validate"}
_STATUS_LINES = {200: "200 OK", 400: "400 Bad Request", 500: "500 Internal Server Error"}


def query_value(query: str, name: str) -> str | None:
    """The first `name=` value of a query string, as werkzeug's `request.args.get` reads it."""
    if name not in query:
        return None
    return next((value for key, value in parse_qsl(query, keep_blank_values=True) if key == name), None)


def request_body(environ: Mapping[str, Any]) -> bytes:
    """The request body as Flask's `request.get_data()` reads it (sized; BodyLimit sized chunked ones)."""
    length = environ.get("CONTENT_LENGTH") or ""
    stream = environ["wsgi.input"]
    if length:
        return stream.read(int(length)) if int(length) > 0 else b""
    return stream.read() if environ.get("wsgi.input_terminated") else b""


class ReviewRoutes:
    """WSGI middleware in front of the Flask app (`app.wsgi_app`): POST /mutate and /validate go straight
    to `answer_review`, everything else (probes, metrics, other methods) through Flask.

    Why: a review is the webhook's hot path, on every pod create. Flask's request context, URL
    matching and Response object cost about a third of a review's time in the app and add nothing to
    these two routes (one method, a bytes body, a JSON answer); they stay Flask routes too, so the
    app's URL map and its answers to other methods (405) are unchanged.
    """

    def __init__(self, flask_wsgi_app: Callable[..., Any], runtime: WebhookRuntime) -> None:
        self.flask_wsgi_app = flask_wsgi_app
        self.runtime = runtime

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        webhook = REVIEW_PATHS.get(environ.get("PATH_INFO", ""))
        if webhook is None or environ.get("REQUEST_METHOD") != "POST":
            return self.flask_wsgi_app(environ, start_response)
        try:
            data = request_body(environ)
        except (OSError, ValueError) as exc:  # a client gone mid-body, or a Content-Length BodyLimit did not see
            status, body = 400, orjson.dumps({"error": f"request body not read: {exc}"[:500]})
        else:
            status, body = answer_review(self.runtime, webhook, data, query_value(environ.get("QUERY_STRING", ""),
                                                                                "timeout"))
        start_response(_STATUS_LINES.get(status, f"{status} Error"),
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def review(runtime: WebhookRuntime, webhook: str) -> Response:
    """The Flask route's answer (the same as ReviewRoutes gives)."""
    status, body = answer_review(runtime, webhook, request.get_data(), request.args.get("timeout"))
    return Response(body, status=status, mimetype="application/json")


def _is_pod_create(req: Mapping[str, Any]) -> bool:
    kind = req.get("kind") or {}
    return req.get("operation") == "CREATE" and kind.get("kind") == "Pod" and kind.get("group", "") == ""


def _mutate(runtime: WebhookRuntime, kube: KubeClient | None, req: Mapping[str, Any],
            fields: dict[str, Any]) -> AdmissionDecision:
    if runtime.kube is not None:
        runtime.dns_target()  # retries a failed start-up lookup, at most once a minute
    if not _is_pod_create(req):
        return decide_admission(req, NamespaceFacts(request_namespace(req)), {}, "", runtime.settings)
    namespace = request_namespace(req)
    facts = runtime.namespace_facts(namespace, kube)
    parents, complete = runtime.verified_owners(req, namespace, kube)
    decision = decide_admission(req, facts, parents, str(uuid.uuid4()), runtime.settings)
    if decision.workload is not None:
        fields["workload"] = decision.workload.identity
    degraded = decision.outcome == OUTCOME_LABELLED and not complete and kube is not None
    if degraded:
        decision = dataclasses.replace(decision, outcome=OUTCOME_DEGRADED)
    if decision.policy_manifest is not None:
        if req.get("dryRun"):
            fields["policy"] = WRITE_DRY_RUN
        elif kube is None:
            fields["policy"] = "no-api"
        elif degraded:
            fields["policy"] = WRITE_SKIPPED_DEGRADED
        elif runtime.baselines.after_answer:
            mode = decision.policy_manifest["metadata"]["annotations"][names.ANNOTATION_POLICY_MODE]
            fields["policy"] = runtime.baselines.ensure_policy_after_answer(decision.policy_manifest, kube,
                                                                            is_enforcing(mode))
        else:
            fields["policy"] = runtime.baselines.ensure_policy(decision.policy_manifest, kube)
    return decision


def _validate(runtime: WebhookRuntime, kube: KubeClient | None, req: Mapping[str, Any]) -> AdmissionDecision:
    """CREATE: the final labels must be netwarden's own decision; UPDATE (pods, pods/status): only netwarden changes them."""
    if not _is_pod_create(req):
        return decide_update(req, runtime.settings)
    namespace = request_namespace(req)
    facts = runtime.namespace_facts(namespace, kube)
    parents, complete = runtime.verified_owners(req, namespace, kube)
    return decide_create(req, facts, parents, runtime.settings, owners_checked=complete)


# --- the app ------------------------------------------------------------------------------------------


def create_app(config: NetwardenConfig, kube: KubeClient | None) -> Flask:
    """The webhook's WSGI app. `kube` None: no lookups or writes (namespace facts empty, owners unverified)."""
    app = Flask("netwarden.webhook")
    runtime = WebhookRuntime(config, kube)
    app.extensions["netwarden"] = runtime
    app.wsgi_app = ReviewRoutes(app.wsgi_app, runtime)  # type: ignore[method-assign]

    @app.post("/mutate")
    def mutate() -> Response:
        return review(runtime, "mutate")

    @app.post("/validate")
    def validate() -> Response:
        return review(runtime, "validate")

    @app.get("/healthz")
    def healthz() -> Response:
        return _json_response({"ok": True})

    @app.get("/readyz")
    def readyz() -> Response:
        ready, details = runtime.readiness()
        return _json_response({"ready": ready, **details}, 200 if ready else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(runtime.metrics.scrape_registry()), content_type=CONTENT_TYPE_LATEST)

    return app


def create_app_from_environment() -> Flask:
    """gunicorn's factory ("netwarden.webhook.app:create_app_from_environment()"): NETWARDEN_* / NETWARDEN_CONFIG."""
    config = load_config()
    kube = KubeClient(load_api_client(config.cluster.kubeconfig))
    return create_app(config, kube)
