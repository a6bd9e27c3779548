"""The reconcile loop: watch events become queue keys, worker threads hand each key to its controller.

Keys on the work queue say what to look at (netwarden/reconciler/queue.py names the prefixes):

* `wl:<identity>`       a workload: backfill its baseline, clean up after its last pod (with grace)
* `pod:<ns>/<name>`     a pod admitted without netwarden's labels (webhook down): backfill it
* `np:<ns>/<name>`      a managed policy: drift (restore unless adopted), approve/reject, re-create if deleted
* `qr:<ns>/<instance>`  a quarantine step that failed: retry it
* `cc:<ns>`             a namespace where containment changed: report user policies that weaken it

Watch events only enqueue keys; the work happens in worker threads, one key at a time (the queue
never hands one key to two workers). Every write passes the writer gate (leader only) and the
write budget. The work itself is done by small controllers, one module each: workloads and garbage
collection (netwarden/reconciler/workloads.py), backfill (netwarden/reconciler/backfill.py), drift and approvals
(netwarden/reconciler/drift.py), and decisions from the engine with their quarantine steps (netwarden/reconciler/decisions.py).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from netwarden.model import names
from netwarden.model.admission import AdmissionSettings
from netwarden.platform.kube import KubeClient
from netwarden.platform.logs import log_event
from netwarden.model.policy import DnsTarget
from netwarden.reconciler import metrics
from netwarden.reconciler.admin_backend import AdminQuarantines
from netwarden.reconciler.backfill import Backfill
from netwarden.reconciler.containment_report import ContainmentReporter
from netwarden.reconciler.core.decision import Decision
from netwarden.reconciler.core.guard import WriteBudget
from netwarden.reconciler.core.types import HealthSignal
from netwarden.reconciler.declaration_events import DeclarationEvents
from netwarden.reconciler.decisions import Decisions, baseline_policy_of
from netwarden.reconciler.drift import Drift, Proposals
from netwarden.reconciler.leader import AlwaysOpen, NotLeader, WriterGate
from netwarden.reconciler.policy_ops import Change, PolicyWriter, labels_of
from netwarden.reconciler.quarantine import NetworkPolicyBackend, QuarantineBackend, PodQuarantine, QuarantineWork, QuarantineWriter
from netwarden.reconciler.queue import CC, NP, POD, QR, WD, WL, WorkQueue
from netwarden.reconciler.core.pods import PodRef
from netwarden.reconciler.watch import DELETED, ClusterIndex, obj_key
from netwarden.reconciler.workloads import Workloads

log = logging.getLogger("netwarden.reconciler.controller")

Obj = dict[str, Any]


@dataclass(frozen=True)
class ControllerSettings:
    #: Seconds after a workload's last pod is gone (or its Job finished) before its policies are removed.
    cleanup_grace_seconds: float = 300.0
    dns: DnsTarget = field(default_factory=DnsTarget)
    default_mode: str = names.DEFAULT_MODE
    write_rate_per_second: float = 5.0
    write_burst: int = 20
    #: Rollbacks, relaxations, quarantine releases and cleanups: their own budget, never behind tightenings.
    safety_write_rate_per_second: float = 5.0
    safety_write_burst: int = 20
    max_history: int = 10
    history_max_bytes: int = 64 * 1024
    workers: int = 2
    #: auto | networkpolicy | adminnetworkpolicy | clusternetworkpolicy (netwarden.model.admin_policy.choose_backend)
    quarantine_backend: str = "auto"
    admin_policy_priority: int = 10




class Reconciler:
    """Owns the work queue, the workers and the write budget, and wires the small controllers.
    Feed it watch events (`on_change`) and Decisions (`apply_decision`)."""

    def __init__(self, kube: KubeClient, index: ClusterIndex, settings: ControllerSettings = ControllerSettings(),
                 *, gate: WriterGate | None = None, queue: WorkQueue | None = None,
                 clock: Callable[[], float] = time.time, on_health: Callable[[HealthSignal], None] | None = None,
                 proposals: Proposals | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 quarantine_backend: QuarantineBackend | None = None) -> None:
        self.kube = kube
        self.index = index
        self.settings = settings
        self.gate = gate or AlwaysOpen()
        self.queue = queue if queue is not None else WorkQueue()
        self.clock = clock
        self.on_health = on_health
        self.monotonic = monotonic
        self._budget = WriteBudget(settings.write_rate_per_second, settings.write_burst, monotonic())
        self._safety_budget = WriteBudget(settings.safety_write_rate_per_second, settings.safety_write_burst,
                                          monotonic())
        self._budget_lock = threading.Lock()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._stop = threading.Event()
        self.stats: dict[str, int] = {}
        self.writer = PolicyWriter(kube, guard=self._before_write, clock=clock, max_history=settings.max_history,
                                   history_max_bytes=settings.history_max_bytes, may_emit=self.gate.is_open)
        backend = quarantine_backend or NetworkPolicyBackend(kube, self.writer)
        self.quarantines = QuarantineWriter(kube, self.writer, backend, self._holder_name)
        #: Weak containment (user policies widening contained pods, allow-alls): Events and a metric.
        self.containment = ContainmentReporter(kube, index, self.writer.event,
                                               lambda: self.admin.known() if self.admin is not None else [])
        #: Pods admitted without the webhook: labels and baselines through pod admission's own function.
        admission = AdmissionSettings(default_mode=settings.default_mode, dns=settings.dns)
        self.backfill = Backfill(kube, index, self.writer, admission, self.gate, self._count,
                                 lambda namespace, baseline: self.check_containment(namespace, baseline=baseline))
        #: Bad allow-from/allow-to entries as Warning Events on the workload, once each.
        self.declarations = DeclarationEvents(kube, self.writer.event, self.gate.is_open)
        #: Engine Decisions by mode effect; quarantine steps not yet fully written (retried as `qr:` keys).
        self.decisions = Decisions(index, self.writer, self.quarantines, self.queue, settings.dns, clock,
                                   lambda: self.workloads.admin)
        #: Baselines present, cleanup with grace, garbage collection, the quarantine backend's discovery.
        self.workloads = Workloads(kube, index, self.writer, settings, backfill=self.backfill,
                                   declarations=self.declarations, quarantines=self.quarantines, queue=self.queue,
                                   clock=clock, count=self._count, before_write=self._before_write,
                                   settle_carve_outs=self.decisions.settle_carve_outs,
                                   backend_injected=quarantine_backend is not None)
        #: Managed policies edited or deleted outside netwarden, proposals approved or rejected.
        self.drift = Drift(index, self.writer, self._count, self.check_containment, proposals,
                           lambda: self.admin is not None, on_baseline_deleted=self.backfill.note_deleted)

    # -- the quarantine backend (discovered by the workloads controller) ------------------------
    @property
    def admin(self) -> AdminQuarantines | None:
        """The admin-tier quarantine objects when that backend is in use; None: NetworkPolicy."""
        return self.workloads.admin

    @property
    def backend_reason(self) -> str:
        return self.workloads.backend_reason

    def detect_backend(self) -> None:
        self.workloads.detect_backend()

    # -- writes pass here ---------------------------------------------------------------------
    def _before_write(self, safety: bool = False) -> None:
        self.gate.check()
        while True:
            wait = self.write_token_wait(safety)
            if wait == 0.0:
                break
            if self._stop.wait(min(wait, 1.0)):
                raise NotLeader("reconciler stopping")
            self.gate.check()

    def write_token_wait(self, safety: bool) -> float:
        """Take a write token (0.0) or say how long until one is due. Safety writes (rollback, relax,
        release, cleanup) have their own bucket, so a busy minute of tightenings never delays them."""
        budget = self._safety_budget if safety else self._budget
        with self._budget_lock:
            now = self.monotonic()
            if budget.try_take(now):
                return 0.0
            return max(0.01, (1.0 - budget.available(now)) / budget.rate)

    def _count(self, what: str) -> None:
        with self._lock:
            self.stats[what] = self.stats.get(what, 0) + 1

    # -- events in ----------------------------------------------------------------------------
    def on_change(self, resource: str, kind: str, obj: Obj, old: Obj | None) -> None:
        """Informer callback: turn a change into queue keys (and health signals)."""
        if resource == "pods":
            self._on_pod(kind, obj, old)
        elif resource == "networkpolicies":
            namespace, name = obj_key(obj)
            self.drift.note(kind, obj, old)
            self.queue.add(f"{NP}{namespace}/{name}")
            identity = labels_of(obj).get(names.LABEL_IDENTITY)
            if identity:
                # A workload or quarantine policy changed (a hand edit, a CLI rollback to an older spec, a
                # deleted quarantine): its carve-outs are checked against the quarantines that exist.
                self.queue.add(WL + identity)
        elif resource == "namespaces" and kind != DELETED:
            for pod in self.index.pods():
                if pod.namespace == obj_key(obj)[1] and not pod.identity:
                    self.queue.add(f"{POD}{pod.namespace}/{pod.pod}")

    def _on_pod(self, kind: str, obj: Obj, old: Obj | None) -> None:
        view = PodRef.from_obj(obj)
        if view.identity:
            self.queue.add(WL + view.identity)
        if old is not None:
            previous = PodRef.from_obj(old)
            if previous.identity and previous.identity != view.identity:
                self.queue.add(WL + previous.identity)
        if kind != DELETED and not view.identity and view.live:
            self.queue.add(f"{POD}{view.namespace}/{view.pod}")
        if self.on_health is not None and kind != DELETED and old is not None:
            before = PodRef.from_obj(old)
            if (before.ready, before.restarts) != (view.ready, view.restarts):
                self.on_health(HealthSignal(self.clock(), view.namespace, view.pod, view.ready, view.restarts))

    def resync(self) -> None:
        """Queue everything (on gaining leadership, after start-up)."""
        for identity in self.index.identities():
            self.queue.add(WL + identity)
        for policy in self.index.policies():
            namespace, name = obj_key(policy)
            self.queue.add(f"{NP}{namespace}/{name}")
            identity = labels_of(policy).get(names.LABEL_IDENTITY)
            if identity:
                self.queue.add(WL + identity)
        for pod in self.index.pods():
            if not pod.identity and pod.live:
                self.queue.add(f"{POD}{pod.namespace}/{pod.pod}")

    # -- workers ------------------------------------------------------------------------------
    def start(self, workers: int | None = None) -> "Reconciler":
        for number in range(workers or self.settings.workers):
            thread = threading.Thread(target=self._work, name=f"reconcile-{number}", daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        self.queue.shutdown()
        for thread in self._workers:
            thread.join(5)

    def _work(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get()
            if key is None:
                return
            try:
                requeue_after = self.process(key)
                self.queue.forget(key)
                metrics.RECONCILES.labels("ok").inc()
                if requeue_after is not None:
                    self.queue.add(key, requeue_after)
            except NotLeader:
                metrics.RECONCILES.labels("not-leader").inc()  # the new leader resyncs everything
            except Exception as exc:  # noqa: BLE001 - retry with backoff, never kill the worker
                metrics.RECONCILES.labels("error").inc()
                delay = self.queue.add_rate_limited(key)
                log_event(log, "warning", {"event": "reconcile_failed", "key": key, "error": f"{type(exc).__name__}: {exc}",
                                           "retry_in": round(delay, 3)})
            finally:
                self.queue.done(key)

    def process(self, key: str) -> float | None:
        """Reconcile one key; returns seconds until it should be looked at again (or None)."""
        if not self.gate.is_open():
            return None
        self._count(key.split(":", 1)[0])
        if key.startswith(WL):
            return self.reconcile_workload(key[len(WL):])
        if key.startswith(CC):
            self.check_containment(key[len(CC):])
            return None
        namespace, _, name = key.split(":", 1)[1].partition("/")
        if key.startswith(POD):
            self.backfill_pod(namespace, name)
            return None
        if key.startswith(NP):
            self.reconcile_policy(namespace, name)
        if key.startswith(QR):
            self.decisions.retry_quarantine(namespace, name)
        if key.startswith(WD):
            self.decisions.retry_workload_write(namespace, name)
        return None

    # -- the controllers' entry points ---------------------------------------------------------
    def reconcile_workload(self, identity: str) -> float | None:
        return self.workloads.reconcile_workload(identity)

    def collect_garbage(self) -> int:
        """Start-up: remove managed policies whose workload no longer exists (no pods, owner gone)."""
        return self.workloads.collect_garbage()

    def backfill_pod(self, namespace: str, name: str) -> None:
        self.backfill.backfill_pod(namespace, name)

    def reconcile_policy(self, namespace: str, name: str) -> None:
        self.drift.reconcile_policy(namespace, name)

    def apply_decision(self, decision: Decision) -> None:
        """Carry out one engine Decision according to its mode effect."""
        self.decisions.apply_decision(decision)

    def submit_quarantine(self, work: QuarantineWork) -> bool:
        return self.decisions.submit_quarantine(work)

    def pending_quarantine_work(self) -> dict[tuple[str, str], QuarantineWork]:
        return self.decisions.pending_quarantine_work()

    def pod_quarantines(self, decision: Decision, pods: Sequence[PodRef],
                         evidence: list[dict[str, Any]]) -> list[PodQuarantine]:
        return self.decisions.pod_quarantines(decision, pods, evidence)

    def changes_for(self, decision: Decision, holder: Obj | None, pods: Sequence[PodRef],
                    evidence: list[dict[str, Any]]) -> tuple[list[Change], list[tuple[str, str]]]:
        return self.decisions.changes_for(decision, holder, pods, evidence)

    def baseline_policy_of(self, identity: str) -> Obj | None:
        return baseline_policy_of(self.index, identity)

    def _holder_name(self, identity: str) -> str | None:
        holder = baseline_policy_of(self.index, identity)
        return obj_key(holder)[1] if holder is not None else None

    # -- weak containment (netwarden/reconciler/containment_report.py) ------------------------------------
    def check_containment(self, namespace: str, *, baseline: Obj | None = None) -> None:
        """Report user policies that weaken containment in a namespace; never fails the caller's work."""
        try:
            self.gate.check()
            self.containment.check(namespace, baseline=baseline)
        except NotLeader:
            return
        except Exception as exc:  # noqa: BLE001 - reporting must not undo or block the write it follows
            log_event(log, "warning", {"event": "containment_check_failed", "namespace": namespace,
                                       "error": f"{type(exc).__name__}: {exc}"})

    def recheck_containment(self) -> None:
        """Periodic: namespaces with contained pods (a user may add a widening policy at any time)."""
        for namespace in sorted(self.containment.namespaces_to_recheck()):
            self.check_containment(namespace)
