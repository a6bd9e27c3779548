"""What the webhook's reviews share in a worker: config, API clients, the facts a review needs from the
cluster (namespace, verified owner chain, DNS target; each cached), the baseline writer, metrics and
readiness.

Failure behaviour, on purpose:
* a namespace lookup that fails raises NamespaceLookupError: the review answers HTTP 500, so the API
  server applies the webhook's failurePolicy (Ignore: admitted unlabelled, the reconciler backfills;
  Fail: refused);
* an owner the API cannot vouch for (failure, or the review's deadline) is reported as not verified,
  never as another workload's identity (`verified_owners`' complete flag).
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
import threading
import time
from typing import Any, Callable, Mapping

from cachetools import TTLCache

from netwarden.model.errors import NetwardenError
from netwarden.model.identity import OwnerRef, Parents, verify_owners
from netwarden.model.labels import NamespaceFacts
from netwarden.model.policy import DnsTarget
from netwarden.platform.config import NetwardenConfig
from netwarden.platform.kube import KubeClient, RetryPolicy
from netwarden.platform.logs import log_json
from netwarden.platform.tls import certificate_file_problem
from netwarden.webhook.admission import AdmissionSettings, pod_origin
from netwarden.webhook.baseline_writer import BaselineWriter
from netwarden.webhook.metrics import make_metrics

log = logging.getLogger("netwarden.webhook")

DNS_RETRY_SECONDS = 60.0
EVENT_DNS_TARGET = "dns_target"


class NamespaceLookupError(NetwardenError, RuntimeError):
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
        self.baselines = BaselineWriter(config, self.kube, self.metrics, clock)
        self._lock = threading.Lock()
        self._namespaces: TTLCache[str, NamespaceFacts] = TTLCache(4096, hook.namespace_cache_seconds, timer=clock)
        self._owners: TTLCache[tuple[str, str, str, str], list[OwnerRef]] = TTLCache(
            16384, hook.owner_cache_seconds, timer=clock)
        #: Owners the API said do not exist (or we may not read): remembered briefly, so a pod that
        #: claims a bogus owner does not cost an API call per review.
        self._missing_owners: TTLCache[tuple[str, str, str, str], bool] = TTLCache(
            4096, hook.namespace_cache_seconds, timer=clock)
        self._dns: DnsTarget = DnsTarget()
        self._dns_checked_at: float | None = None
        self._dns_final = kube is None
        self._ready_cache: TTLCache[str, tuple[bool, str]] = TTLCache(4, max(hook.ready_probe_seconds, 0.001), timer=clock)
        self.settings = AdmissionSettings(config.cluster.default_mode, DnsTarget(), frozenset(hook.trusted_usernames),
                                          frozenset(hook.policy_writers), config.cluster.creators())
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
            self.metrics.cache_hit("namespace")
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
            self.metrics.cache_hit("owner")
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

