"""The one baseline-NetworkPolicy write per workload at admission, and the worker's after-answer thread.

A review that labels a pod makes sure its workload's baseline exists: written once per workload
(a cache of known workloads; 409 counts as success), concurrent reviews of one workload sharing the
write. A failed write never blocks the pod: it is admitted with its labels, the failure is logged
and counted, and the reconciler backfills the policy. The `NetwardenPolicyCreated` Event, and with
webhook.baseline_write async the baseline itself, are written by a thread of the worker just after
the answer (AfterAnswer), so the pod's create does not wait for them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable

from cachetools import TTLCache

from netwarden.model import names
from netwarden.model.policy import admission_guard_policy
from netwarden.platform.config import NetwardenConfig
from netwarden.platform.kube import KubeClient
from netwarden.platform.logs import log_json
from netwarden.webhook.metrics import WebhookMetrics

log = logging.getLogger("netwarden.webhook")

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

EVENT_POLICY_WRITE_FAILED = "policy_write_failed"
EVENT_EVENT_DROPPED = "kubernetes_event_dropped"
EVENT_ADMISSION_GUARD = "admission_guard"
#: Jobs (Kubernetes Events, async baseline writes) a worker holds for its background thread; past it an
#: Event is dropped and a baseline written inside the review instead.
MAX_PENDING_EVENTS = 1024


class AfterAnswer:
    """This worker's background thread: jobs run in order, after the review that queued them was answered."""

    def __init__(self, limit: int = MAX_PENDING_EVENTS) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.Queue[Callable[[], None]] = queue.Queue(limit)
        self._thread: threading.Thread | None = None

    def run(self, job: Callable[[], None]) -> bool:
        """Hand `job` to the background thread; False when the queue is full."""
        with self._lock:
            if self._thread is None:  # started in the worker that needs it (gunicorn forks workers)
                self._thread = threading.Thread(target=self._background, name="netwarden-after-answer",
                                                daemon=True)
                self._thread.start()
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


class BaselineWriter:
    """Writes each workload's baseline once (and, async, each enforcing namespace's admission guard).
    Thread-safe (gthread workers).

    `kube` is the worker's own client, for writes after the answer; a review passes its client bounded
    by the review's deadline for writes inside the review."""

    def __init__(self, config: NetwardenConfig, kube: KubeClient | None, metrics: WebhookMetrics,
                 clock: Callable[[], float] = time.monotonic) -> None:
        hook = config.webhook
        self.kube = kube
        self.metrics = metrics
        self.after_answer = hook.baseline_write == "async"
        self._lock = threading.Lock()
        # A remembered baseline must not outlive the policy: the reconciler removes it cleanup_grace_seconds
        # after the workload's last pod, and the garbage collector at once with its owner (hence the owner's uid
        # in the key: a workload deleted and re-created under the same name is a new workload).
        remembered_seconds = min(hook.workload_cache_seconds, config.reconciler.cleanup_grace_seconds / 2)
        self._workloads: TTLCache[tuple[str, str, str], str] = TTLCache(
            hook.workload_cache_size, remembered_seconds, timer=clock)
        self._write_locks: dict[tuple[str, str, str], threading.Lock] = {}
        #: Namespaces whose admission guard was written (or found) by this worker; as long-lived as a
        #: remembered workload (the reconciler never removes a guard; a cluster admin may).
        self._guards: TTLCache[str, str] = TTLCache(hook.workload_cache_size, remembered_seconds, timer=clock)
        self._jobs = AfterAnswer()

    @staticmethod
    def _workload_key(manifest: dict[str, Any]) -> tuple[str, str, str]:
        meta = manifest["metadata"]
        owners = meta.get("ownerReferences") or [{}]
        return meta["namespace"], meta["name"], str(owners[0].get("uid", ""))

    def _known_workload(self, key: tuple[str, str, str]) -> bool:
        """Whether the workload's baseline was written, found or queued (call with self._lock held)."""
        if key in self._workloads:
            self.metrics.cache_hit("workload")
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

        if not self._jobs.run(write):
            with self._lock:
                self._workloads.pop(key, None)
            return self.ensure_policy(manifest, kube)
        return WRITE_QUEUED

    def _ensure_guard(self, namespace: str, kube: KubeClient) -> bool:
        """Whether the namespace's admission guard exists (created now, found, or remembered)."""
        with self._lock:
            if namespace in self._guards:
                self.metrics.cache_hit("guard")
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
        if not self._jobs.run(lambda: kube.emit_event(involved, reason, message)):  # it logs its failures
            log_json(EVENT_EVENT_DROPPED, level="warning", reason=reason,
                     name=(involved.get("metadata") or {}).get("name"), pending=MAX_PENDING_EVENTS)
