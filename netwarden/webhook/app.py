"""The webhook's HTTP adapter: Flask routes around the pure core in netwarden/webhook/admission.py.

The I/O lives here and only here: namespace lookups (cached briefly), owner-chain verification
(cached), the one baseline-policy write per workload (a cache of known workloads; 409 counts as
success), the Event on a created policy (recorded by a thread of the worker, so the pod does not
wait for it), the DNS Service lookup at start-up, metrics, and one JSON
log line per review.

Failure behaviour, on purpose:
* a failed policy write never blocks the pod: it is admitted with its labels, the failure is logged
  and counted, and the reconciler backfills the policy;
* dryRun requests are mutated (so `kubectl --dry-run=server` shows the labels) but nothing is written;
* a namespace lookup that fails answers HTTP 500, so the API server applies the webhook's
  failurePolicy (Ignore: admitted unlabelled, the reconciler backfills; Fail: refused);
* all API work of one review shares one deadline, below the API server's own timeout for the call
  (`?timeout=` on the request): an owner that cannot be verified in time leaves the pod its own
  workload (outcome `degraded`, no baseline written), never another workload's identity.

Metrics: with PROMETHEUS_MULTIPROC_DIR set (the `netwarden webhook` command sets it) every gunicorn
worker writes its samples to that directory and /metrics aggregates all workers, whichever worker
answers the scrape. Without it (tests, `flask run`) each app keeps a private registry.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import queue
import re
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import parse_qsl

import orjson
from cachetools import TTLCache
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from netwarden.model import names
from netwarden.platform.config import NetwardenConfig, load_config
from netwarden.model.identity import OwnerRef, Parents, verify_owners
from netwarden.platform.kube import KubeClient, RetryPolicy, load_api_client
from netwarden.model.labels import NamespaceFacts
from netwarden.model.admission import is_enforcing
from netwarden.model.policy import DnsTarget, admission_guard_policy
from netwarden.webhook.admission import (
    OUTCOME_DEGRADED,
    OUTCOME_LABELLED,
    OUTCOME_MALFORMED,
    AdmissionDecision,
    AdmissionSettings,
    MalformedReview,
    build_response,
    decide_admission,
    decide_create,
    decide_update,
    malformed_decision,
    pod_origin,
    read_review,
    request_namespace,
)
from netwarden.platform.logs import log_json
from netwarden.platform.tls import certificate_file_problem

log = logging.getLogger("netwarden.webhook")

#: The API server's default webhook timeout, when a review arrives without `?timeout=`.
DEFAULT_REVIEW_TIMEOUT_SECONDS = 10.0
#: Part of the API server's timeout kept free for answering (and for the last call to give up).
REVIEW_MARGIN_FRACTION = 0.2
REVIEW_MARGIN_MIN_SECONDS = 1.0
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DNS_RETRY_SECONDS = 60.0

# Policy write results: the `result` label of METRIC_POLICY_WRITES and the `policy` log field.
WRITE_CREATED = "created"
WRITE_EXISTS = "exists"
WRITE_ERROR = "error"
#: Not API writes (not counted in METRIC_POLICY_WRITES), only logged.
WRITE_CACHED = "cached"
WRITE_DRY_RUN = "dry-run"
#: The owner could not be verified in the review's budget: the reconciler writes the baseline later.
WRITE_SKIPPED_DEGRADED = "skipped-degraded"
#: webhook.baseline_write async: handed to the worker's background thread, written just after the answer.
WRITE_QUEUED = "queued"

EVENT_REVIEW = "admission_review"
EVENT_REVIEW_FAILED = "admission_review_failed"
EVENT_POLICY_WRITE_FAILED = "policy_write_failed"
EVENT_DNS_TARGET = "dns_target"
EVENT_EVENT_DROPPED = "kubernetes_event_dropped"
EVENT_ADMISSION_GUARD = "admission_guard"
#: Jobs (Kubernetes Events, async baseline writes) a worker holds for its background thread; past it an
#: Event is dropped and a baseline written inside the review instead.
MAX_PENDING_EVENTS = 1024


# --- metrics ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookMetrics:
    reviews: Counter
    latency: Histogram
    policy_writes: Counter
    cache_hits: Counter
    #: The registry to expose on /metrics (built per scrape in multiprocess mode).
    scrape_registry: Callable[[], CollectorRegistry]


def make_metrics() -> WebhookMetrics:
    """Per-app metrics; aggregated across gunicorn workers when PROMETHEUS_MULTIPROC_DIR is set."""
    multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiproc_dir:
        from prometheus_client import multiprocess, values

        # prometheus_client picks its value class at import time; the variable may have been set after.
        values.ValueClass = values.get_value_class()
        registry: CollectorRegistry | None = None

        def scrape() -> CollectorRegistry:
            aggregate = CollectorRegistry()
            multiprocess.MultiProcessCollector(aggregate, path=multiproc_dir)
            return aggregate
    else:
        registry = CollectorRegistry()

        def scrape() -> CollectorRegistry:
            assert registry is not None
            return registry

    return WebhookMetrics(
        reviews=Counter(names.METRIC_REVIEWS, "AdmissionReviews answered, by webhook and outcome",
                        ["webhook", "outcome"], registry=registry),
        latency=Histogram(names.METRIC_REVIEW_LATENCY, "Time to answer an AdmissionReview, seconds",
                          ["webhook"], buckets=LATENCY_BUCKETS, registry=registry),
        policy_writes=Counter(names.METRIC_POLICY_WRITES, "Baseline NetworkPolicy creates at admission, by result",
                              ["result"], registry=registry),
        cache_hits=Counter(names.METRIC_CACHE_HITS, "Admission lookups answered from a cache, by cache",
                           ["cache"], registry=registry),
        scrape_registry=scrape,
    )


# --- the runtime (caches + I/O) -------------------------------------------------------------------


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


class NamespaceLookupError(RuntimeError):
    """The namespace could not be read: answer 500 so the API server applies the failurePolicy."""


class WebhookRuntime:
    """Everything the routes share: config, API clients, caches, metrics. Thread-safe (gthread workers)."""

    def __init__(self, config: NetwardenConfig, kube: KubeClient | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        hook = config.webhook
        self.clock = clock
        # Inside a review the API budget is small: the API server is waiting (timeoutSeconds).
        self.kube = None if kube is None else KubeClient(
            kube.api_client,
            RetryPolicy(attempts=hook.api_attempts, base_delay=0.05, max_delay=0.5,
                        request_timeout=hook.api_timeout_seconds),
        )
        self.probe_kube = None if kube is None else KubeClient(
            kube.api_client, RetryPolicy(attempts=1, request_timeout=min(2.0, hook.api_timeout_seconds)))
        self.metrics = make_metrics()
        self._lock = threading.Lock()
        self._namespaces: TTLCache[str, NamespaceFacts] = TTLCache(4096, hook.namespace_cache_seconds, timer=clock)
        self._owners: TTLCache[tuple[str, str, str, str], list[OwnerRef]] = TTLCache(
            16384, hook.owner_cache_seconds, timer=clock)
        # A remembered baseline must not outlive the policy: the reconciler removes it cleanup_grace_seconds
        # after the workload's last pod, and the garbage collector at once with its owner (hence the owner's uid
        # in the key: a workload deleted and re-created under the same name is a new workload).
        self._workloads: TTLCache[tuple[str, str, str], str] = TTLCache(
            hook.workload_cache_size, min(hook.workload_cache_seconds, config.reconciler.cleanup_grace_seconds / 2),
            timer=clock)
        #: Owners the API said do not exist (or we may not read): remembered briefly, so a pod that
        #: claims a bogus owner does not cost an API call per review.
        self._missing_owners: TTLCache[tuple[str, str, str, str], bool] = TTLCache(
            4096, hook.namespace_cache_seconds, timer=clock)
        self._write_locks: dict[tuple[str, str, str], threading.Lock] = {}
        self.async_baseline = hook.baseline_write == "async"
        #: Namespaces whose admission guard was written (or found) by this worker; as long-lived as a
        #: remembered workload (the reconciler never removes a guard; a cluster admin may).
        self._guards: TTLCache[str, str] = TTLCache(
            hook.workload_cache_size, min(hook.workload_cache_seconds, config.reconciler.cleanup_grace_seconds / 2),
            timer=clock)
        self._dns: DnsTarget = DnsTarget()
        self._dns_checked_at: float | None = None
        self._dns_final = kube is None
        self._ready_cache: TTLCache[str, tuple[bool, str]] = TTLCache(4, max(hook.ready_probe_seconds, 0.001), timer=clock)
        self.settings = AdmissionSettings(config.cluster.default_mode, DnsTarget(), frozenset(hook.trusted_usernames),
                                          config.cluster.creators())
        self._review_counters: dict[tuple[str, str], Any] = {}
        self._cache_hit_counters: dict[str, Any] = {}
        self._jobs: queue.Queue[Callable[[], None]] = queue.Queue(MAX_PENDING_EVENTS)
        self._jobs_thread: threading.Thread | None = None
        self._latency_histograms: dict[str, Any] = {}
        if kube is not None:
            self.dns_target()

    # -- DNS --------------------------------------------------------------------------------------
    def dns_target(self) -> DnsTarget:
        """The DNS Service's selector, looked up at start-up; retried later only if the API failed."""
        if self._dns_final:
            return self._dns
        now = self.clock()
        with self._lock:
            if self._dns_final or (self._dns_checked_at is not None and now - self._dns_checked_at < DNS_RETRY_SECONDS):
                return self._dns
            self._dns_checked_at = now
        namespace, _, name = self.config.cluster.dns_service.partition("/")
        assert self.kube is not None
        try:
            service = self.kube.get_service(namespace, name)
        except Exception as exc:  # noqa: BLE001 - keep the safe default, try again later
            log_json(EVENT_DNS_TARGET, level="warning", service=self.config.cluster.dns_service, found=False,
                     error=str(exc), rule="port 53 to any destination (retrying)")
            return self._dns
        target = DnsTarget.of_service(namespace, service)
        selector = dict(target.pod_labels)
        with self._lock:
            self._dns, self._dns_final = target, True
            self.settings = dataclasses.replace(self.settings, dns=target)
        log_json(EVENT_DNS_TARGET, service=self.config.cluster.dns_service, found=bool(selector),
                 namespace=target.namespace, selector=dict(target.pod_labels),
                 rule="DNS pods" if selector else "port 53 to any destination (Service absent or has no selector)")
        return target

    # -- lookups ----------------------------------------------------------------------------------
    def namespace_facts(self, name: str, kube: KubeClient | None = None) -> NamespaceFacts:
        kube = kube or self.kube
        if kube is None:
            return NamespaceFacts(name)
        with self._lock:
            cached = self._namespaces.get(name)
        if cached is not None:
            self._cache_hit("namespace")
            return cached
        try:
            obj = kube.get_namespace(name)
        except Exception as exc:  # noqa: BLE001 - becomes a 500 the failurePolicy handles
            raise NamespaceLookupError(f"netwarden could not read namespace {name!r}: {exc}") from exc
        meta = (obj or {}).get("metadata") or {}
        facts = NamespaceFacts(name, dict(meta.get("labels") or {}), dict(meta.get("annotations") or {}))
        with self._lock:
            self._namespaces[name] = facts
        return facts

    def verified_owners(self, req: Mapping[str, Any], namespace: str,
                        kube: KubeClient | None = None) -> tuple[Parents, bool]:
        """The pod's controller and the owner above it, each fetched and its uid compared with the reference
        (`verify_owners`: only a claim its creator may make is fetched).

        Returns (parents for `resolve_workload`, complete): complete is False when an API failure or
        the review's deadline left an owner unverified (not the same as refuted: it may exist).
        """
        kube = kube or self.kube
        if kube is None:
            return {}, False
        definitive = True

        def fetch(ref: OwnerRef) -> list[OwnerRef] | None:
            nonlocal definitive
            refs, answered = self._verify_owner(kube, namespace, ref)
            definitive = definitive and answered
            return refs

        parents = verify_owners(pod_origin(req, namespace), self.settings.pod_creators, fetch)
        return parents, definitive

    def _verify_owner(self, kube: KubeClient, namespace: str, ref: OwnerRef) -> tuple[list[OwnerRef] | None, bool]:
        """(the owner's ownerReferences, or None if unverified; whether that answer is definitive)."""
        if not ref.uid:
            return None, True  # a reference without a uid names nothing the API can vouch for
        key = (namespace, ref.kind, ref.name, ref.uid)
        with self._lock:
            cached = self._owners.get(key)
            missing = key in self._missing_owners
        if cached is not None or missing:
            self._cache_hit("owner")
            return cached, True
        try:
            refs = kube.get_owner_refs(namespace, ref.kind, ref.name, ref.uid)
        except Exception as exc:  # noqa: BLE001 - unverified for this review; a transient failure is not remembered
            log.warning("owner %s/%s %s not verified: %s", namespace, ref.name, ref.kind, exc)
            return None, False
        with self._lock:
            if refs is None:
                self._missing_owners[key] = True
            else:
                self._owners[key] = refs
        return refs, True

    # -- the one write per workload -------------------------------------------------------------
    @staticmethod
    def _workload_key(manifest: dict[str, Any]) -> tuple[str, str, str]:
        meta = manifest["metadata"]
        owners = meta.get("ownerReferences") or [{}]
        return meta["namespace"], meta["name"], str(owners[0].get("uid", ""))

    def _known_workload(self, key: tuple[str, str, str]) -> bool:
        """Whether the workload's baseline was written, found or queued (call with self._lock held)."""
        if key in self._workloads:
            self._cache_hit("workload")
            return True
        return False

    def ensure_policy(self, manifest: dict[str, Any], kube: KubeClient | None = None) -> str:
        """Create the workload's baseline once; concurrent reviews of one workload share the write."""
        key = self._workload_key(manifest)
        with self._lock:
            if self._known_workload(key):
                return WRITE_CACHED
            key_lock = self._write_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if self._known_workload(key):
                    return WRITE_CACHED
            result = self._create_policy(manifest, kube or self.kube)
            with self._lock:
                if result != WRITE_ERROR:
                    self._workloads[key] = result
                self._write_locks.pop(key, None)
        return result

    def ensure_policy_after_answer(self, manifest: dict[str, Any], kube: KubeClient, enforcing: bool) -> str:
        """webhook.baseline_write async: the baseline is written by this worker's background thread just
        after the answer, so the pod's create does not wait for it.

        Contained from its first packet all the same: in an enforcing namespace the namespace's
        admission guard (deny-all for every netwarden-labelled pod, `admission_guard_policy`) is made
        sure of first, inside this review, so until the baseline lands the pod is selected by the
        guard alone; a guard that cannot be written makes this review write the baseline itself, as
        sync does. In learn and dry-run namespaces the baseline allows everything: no policy yet
        means the same. A failed write is forgotten (the next pod of the workload tries again) and
        the reconciler backfills it meanwhile."""
        key = self._workload_key(manifest)
        with self._lock:
            if self._known_workload(key):
                return WRITE_CACHED
        if enforcing and not self._ensure_guard(key[0], kube):
            return self.ensure_policy(manifest, kube)
        with self._lock:
            if self._known_workload(key):  # another review of the workload got here first
                return WRITE_CACHED
            self._workloads[key] = WRITE_QUEUED

        def write() -> None:
            result = self._create_policy(manifest, self.kube)
            if result == WRITE_ERROR:
                with self._lock:
                    self._workloads.pop(key, None)

        if not self._run_after_answer(write):
            with self._lock:
                self._workloads.pop(key, None)
            return self.ensure_policy(manifest, kube)
        return WRITE_QUEUED

    def _ensure_guard(self, namespace: str, kube: KubeClient) -> bool:
        """Whether the namespace's admission guard exists (created now, found, or remembered)."""
        with self._lock:
            if namespace in self._guards:
                self._cache_hit("guard")
                return True
        manifest = admission_guard_policy(namespace)
        try:
            result, _ = kube.create_policy(manifest)
        except Exception as exc:  # noqa: BLE001 - the review then writes the baseline itself
            log_json(EVENT_POLICY_WRITE_FAILED, level="warning", namespace=namespace,
                     policy=manifest["metadata"]["name"], error=str(exc)[:500])
            return False
        self.metrics.policy_writes.labels(result).inc()
        if result == WRITE_CREATED:
            log_json(EVENT_ADMISSION_GUARD, namespace=namespace, policy=manifest["metadata"]["name"])
        with self._lock:
            self._guards[namespace] = result
        return True

    def _create_policy(self, manifest: dict[str, Any], kube: KubeClient | None) -> str:
        assert kube is not None
        meta = manifest["metadata"]
        try:
            result, created = kube.create_policy(manifest)
        except Exception as exc:  # noqa: BLE001 - never block the pod; the reconciler backfills
            self.metrics.policy_writes.labels(WRITE_ERROR).inc()
            log_json(EVENT_POLICY_WRITE_FAILED, level="warning", namespace=meta["namespace"], policy=meta["name"],
                     error=str(exc)[:500])
            return WRITE_ERROR
        self.metrics.policy_writes.labels(result).inc()
        if result == WRITE_CREATED and created is not None:
            involved = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", **created}
            self._record_event(involved, names.EVENT_POLICY_CREATED,
                               f"baseline NetworkPolicy created at admission for workload "
                               f"{meta['labels'][names.LABEL_IDENTITY]}")
        return result

    def _record_event(self, involved: dict[str, Any], reason: str, message: str) -> None:
        """Queue an Event for this worker's background thread: the pod's admission does not wait for an
        audit record's API write (one more etcd commit per new workload). Past MAX_PENDING_EVENTS
        queued the Event is dropped and logged, so a slow API cannot pile them up behind admissions."""
        assert self.kube is not None
        kube = self.kube
        if not self._run_after_answer(lambda: kube.emit_event(involved, reason, message)):  # it logs its failures
            log_json(EVENT_EVENT_DROPPED, level="warning", reason=reason,
                     name=(involved.get("metadata") or {}).get("name"), pending=MAX_PENDING_EVENTS)

    def _run_after_answer(self, job: Callable[[], None]) -> bool:
        """Hand `job` to this worker's background thread, in order; False when MAX_PENDING_EVENTS wait."""
        with self._lock:
            if self._jobs_thread is None:  # started in the worker that needs it (gunicorn forks workers)
                self._jobs_thread = threading.Thread(target=self._background, name="netwarden-after-answer",
                                                     daemon=True)
                self._jobs_thread.start()
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            return False
        return True

    def _background(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except Exception:  # noqa: BLE001 - a job logs its own failures; the thread must live on
                log.exception("background job failed")

    # -- metrics ------------------------------------------------------------------------------------
    def _cache_hit(self, cache: str) -> None:
        child = self._cache_hit_counters.get(cache)
        if child is None:
            child = self._cache_hit_counters.setdefault(cache, self.metrics.cache_hits.labels(cache))
        child.inc()

    def count_review(self, webhook: str, outcome: str, seconds: float) -> None:
        """Count one answered review (the labelled children are looked up once, not per review)."""
        key = (webhook, outcome)
        counter = self._review_counters.get(key)
        if counter is None:
            counter = self._review_counters.setdefault(key, self.metrics.reviews.labels(webhook, outcome))
        latency = self._latency_histograms.get(webhook)
        if latency is None:
            latency = self._latency_histograms.setdefault(webhook, self.metrics.latency.labels(webhook))
        counter.inc()
        latency.observe(seconds)

    # -- readiness --------------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, dict[str, str]]:
        cert_ok, cert_detail = self._cached("certificate", self._check_certificate)
        api_ok, api_detail = self._cached("api", self._check_api)
        return cert_ok and api_ok, {"certificate": cert_detail, "api": api_detail}

    def _cached(self, key: str, check: Callable[[], tuple[bool, str]]) -> tuple[bool, str]:
        with self._lock:
            hit = self._ready_cache.get(key)
        if hit is not None:
            return hit
        result = check()
        with self._lock:
            self._ready_cache[key] = result
        return result

    def _check_certificate(self) -> tuple[bool, str]:
        cert, key = self.config.webhook.cert, self.config.webhook.key
        if not cert or not key:
            return True, "not configured (TLS terminated elsewhere)"
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
            problem = certificate_file_problem(cert)
        except (OSError, ssl.SSLError, ValueError) as exc:
            return False, f"cannot load {cert} / {key}: {exc}"
        return (False, problem) if problem else (True, "loaded")

    def _check_api(self) -> tuple[bool, str]:
        if self.probe_kube is None:
            return True, "no API configured"
        namespace = self.config.cluster.dns_service.partition("/")[0]
        try:
            self.probe_kube.get_namespace(namespace)  # 404 is still an answer: the API is reachable
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return False, f"unreachable: {str(exc)[:200]}"
        return True, "reachable"


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
    runtime.count_review(webhook, fields["outcome"], elapsed)
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
        elif runtime.async_baseline:
            mode = decision.policy_manifest["metadata"]["annotations"][names.ANNOTATION_POLICY_MODE]
            fields["policy"] = runtime.ensure_policy_after_answer(decision.policy_manifest, kube, is_enforcing(mode))
        else:
            fields["policy"] = runtime.ensure_policy(decision.policy_manifest, kube)
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
