"""The reconcile loop: backfill, drift, cleanup, garbage collection, approvals, and applying Decisions.

Keys on the work queue say what to look at:

* `wl:<identity>`       a workload: backfill its baseline, clean up after its last pod (with grace)
* `pod:<ns>/<name>`     a pod admitted without netwarden's labels (webhook down): backfill it
* `np:<ns>/<name>`      a managed policy: drift (restore unless adopted), approve/reject, re-create if deleted
* `cc:<ns>`             a namespace where containment changed: report user policies that weaken it

Watch events only enqueue keys; the work happens in worker threads, one key at a time (the queue
never hands one key to two workers). Every write passes the writer gate (leader only) and the
write budget. Decisions from the engine are applied by their mode effect: write (enforce), Event
and log only (dry-run), or stored as a proposal on the workload's policy (approve).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence



from netwarden import names
from netwarden.admin_policy import BackendChoice
from netwarden.admission import AdmissionSettings
from netwarden.errors import Forbidden
from netwarden.identity import OwnerRef
from netwarden.kube import KubeClient
from netwarden.logs import log_event
from netwarden.policy import DnsTarget, PolicyMeta, quarantine_policy_name, render_network_policy
from reconciler import metrics
from reconciler.admin_backend import AdminPolicyBackend, AdminQuarantines, Target, detect_backend
from reconciler.backfill import Backfill
from reconciler.containment_report import ContainmentReporter
from reconciler.core.actions import ESCALATIONS, SAFETY_ACTIONS, Action, Decision, Effect
from reconciler.core.guard import WriteBudget
from reconciler.core.types import HealthSignal
from reconciler.declaration_events import DeclarationEvents
from reconciler.leader import AlwaysOpen, NotLeader, WriterGate
from reconciler.policy_ops import (
    Change,
    Pending,
    PolicyOpError,
    PolicyWriter,
    annotations_of,
    approve,
    clean_for_create,
    has_drifted,
    is_adopted,
    iso_time,
    labels_of,
    pods_stub,
    reject,
    rollback,
    spec_hash,
    store_pending,
)
from reconciler.quarantine import (
    NetworkPolicyBackend,
    QuarantineBackend,
    QuarantinePlan,
    QuarantineRelease,
    QuarantineWork,
    QuarantineWriter,
    carved_out,
    with_carve_outs,
)
from reconciler.queue import WorkQueue
from reconciler.watch import DELETED, ClusterIndex, PodView, obj_key

log = logging.getLogger("netwarden.reconciler.controller")

Obj = dict[str, Any]
WL, POD, NP, QR, CC = "wl:", "pod:", "np:", "qr:", "cc:"

EVIDENCE_SUMMARY_ITEMS = 5


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
    #: auto | networkpolicy | adminnetworkpolicy | clusternetworkpolicy (netwarden.admin_policy.choose_backend)
    quarantine_backend: str = "auto"
    admin_policy_priority: int = 10


def evidence_summary(evidence: Iterable[Any], limit: int = EVIDENCE_SUMMARY_ITEMS) -> list[dict[str, Any]]:
    """The strongest evidence, trimmed to what `netwarden explain` prints."""
    items = []
    for item in evidence:
        data = item.to_dict() if hasattr(item, "to_dict") else dict(item)
        items.append({k: data.get(k) for k in ("kind", "weight", "summary", "time", "pod", "peer", "port") if
                      data.get(k) is not None})
    items.sort(key=lambda e: -float(e.get("weight") or 0.0))
    return items[:limit]


class Reconciler:
    """Owns the work queue and the write path. Feed it watch events (`on_change`) and Decisions."""

    def __init__(self, kube: KubeClient, index: ClusterIndex, settings: ControllerSettings = ControllerSettings(),
                 *, gate: WriterGate | None = None, queue: WorkQueue | None = None,
                 clock: Callable[[], float] = time.time, on_health: Callable[[HealthSignal], None] | None = None,
                 on_pending_resolved: Callable[[str, bool], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 quarantine_backend: QuarantineBackend | None = None) -> None:
        self.kube = kube
        self.index = index
        self.settings = settings
        self.gate = gate or AlwaysOpen()
        self.queue = queue if queue is not None else WorkQueue()
        self.clock = clock
        self.on_health = on_health
        self.on_pending_resolved = on_pending_resolved
        self.monotonic = monotonic
        self._budget = WriteBudget(settings.write_rate_per_second, settings.write_burst, monotonic())
        self._safety_budget = WriteBudget(settings.safety_write_rate_per_second, settings.safety_write_burst,
                                          monotonic())
        self._budget_lock = threading.Lock()
        self.writer = PolicyWriter(kube, guard=self._before_write, clock=clock, max_history=settings.max_history,
                                   history_max_bytes=settings.history_max_bytes, may_emit=self.gate.is_open)
        backend = quarantine_backend or NetworkPolicyBackend(kube, self.writer)
        self.quarantines = QuarantineWriter(kube, self.writer, backend, self._holder_name)
        #: An injected backend is kept; otherwise discovery decides (detect_backend, at start and on leadership).
        self._backend_injected = quarantine_backend is not None
        #: The admin-tier quarantine objects when that backend is in use; None: NetworkPolicy.
        self.admin: AdminQuarantines | None = None
        self.backend_reason = "not detected yet"
        #: Weak containment (user policies widening contained pods, allow-alls): Events and a metric.
        self.containment = ContainmentReporter(kube, index, self.writer.event,
                                               lambda: self.admin.known() if self.admin is not None else [])
        #: Pods admitted without the webhook: labels and baselines through pod admission's own function.
        admission = AdmissionSettings(default_mode=settings.default_mode, dns=settings.dns)
        self.backfill = Backfill(kube, index, self.writer, admission, self.gate, self._count,
                                 lambda namespace, baseline: self.check_containment(namespace, baseline=baseline))
        #: Bad allow-from/allow-to entries as Warning Events on the workload, once each.
        self.declarations = DeclarationEvents(kube, self.writer.event, self.gate.is_open)
        #: Quarantine plans and releases not yet fully written, by (namespace, instance): retried from
        #: the queue (key `qr:<namespace>/<instance>`) with backoff until every step holds.
        self._quarantine_work: dict[tuple[str, str], QuarantinePlan | tuple[str, str, str]] = {}
        #: Serialises quarantine steps with every other write of a workload policy (no interleaving).
        self._write_lock = threading.RLock()
        #: First time a workload was seen with no live pod (cleanup grace starts there).
        self._gone_since: dict[str, float] = {}
        #: Last spec seen matching its recorded hash, per policy: what a drifted policy is restored to.
        self._known_good: dict[tuple[str, str], Obj] = {}
        #: Last object seen per managed policy (a deleted one is re-created from it).
        self._last_seen: dict[tuple[str, str], Obj] = {}
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._stop = threading.Event()
        self.stats: dict[str, int] = {}

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
            if kind == DELETED:
                self._last_seen[(namespace, name)] = old or obj
            else:
                self._last_seen[(namespace, name)] = obj
                if not has_drifted(obj) and annotations_of(obj).get(names.ANNOTATION_SPEC_HASH):
                    self._known_good[(namespace, name)] = obj
            self.queue.add(f"{NP}{namespace}/{name}")
            identity = labels_of(obj).get(names.LABEL_IDENTITY)
            if identity:
                # A workload or quarantine policy changed (a hand edit, a CLI rollback to an older spec, a
                # deleted quarantine): its carve-outs are checked against the quarantines that exist.
                self.queue.add(WL + identity)
        elif resource == "namespaces" and kind != DELETED:
            for pod in self.index.pods():
                if pod.namespace == obj_key(obj)[1] and not pod.identity:
                    self.queue.add(f"{POD}{pod.namespace}/{pod.name}")

    def _on_pod(self, kind: str, obj: Obj, old: Obj | None) -> None:
        view = PodView.from_obj(obj)
        if view.identity:
            self.queue.add(WL + view.identity)
        if old is not None:
            previous = PodView.from_obj(old)
            if previous.identity and previous.identity != view.identity:
                self.queue.add(WL + previous.identity)
        if kind != DELETED and not view.identity and view.live:
            self.queue.add(f"{POD}{view.namespace}/{view.name}")
        if self.on_health is not None and kind != DELETED and old is not None:
            before = PodView.from_obj(old)
            if (before.ready, before.restarts) != (view.ready, view.restarts):
                self.on_health(HealthSignal(self.clock(), view.namespace, view.name, view.ready, view.restarts))

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
                self.queue.add(f"{POD}{pod.namespace}/{pod.name}")

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
            self._retry_quarantine(namespace, name)
        return None

    # -- workloads: baseline presence and cleanup ---------------------------------------------
    def reconcile_workload(self, identity: str) -> float | None:
        pods = self.index.pods_of(identity)
        live = [p for p in pods if p.live]
        policies = self.index.policies_of(identity)
        now = self.clock()
        if live:
            self._gone_since.pop(identity, None)
            reachable = [p for p in live if not self.backfill.note_unreachable(p)]
            if reachable and not any(labels_of(p).get(names.LABEL_POLICY_ROLE) == names.ROLE_BASELINE
                                     for p in policies):
                namespace = self.index.namespace(reachable[0].namespace)
                if namespace is not None and namespace.opted_in:
                    self.backfill.create_baseline(reachable[0])
            holder = self.baseline_policy_of(identity)
            if holder is not None:  # the Event goes on the policy's owner: wait for the policy to be seen
                self.declarations.note(identity, holder, [p.raw for p in live])
            self._collect_orphan_quarantines(policies)
            self._settle_carve_outs(identity, live)
            return None
        if self.admin is not None:  # cluster-scoped: nothing owns them, so netwarden removes them
            self.admin.remove_gone(self._target_live, self._gone_why)
        if not policies:
            self._gone_since.pop(identity, None)
            return None
        since = self._gone_since.setdefault(identity, now)
        remaining = since + self.settings.cleanup_grace_seconds - now
        if remaining > 0:
            return remaining
        self._remove_policies(policies, pods, f"workload {identity} has no running pod for "
                                              f"{self.settings.cleanup_grace_seconds:g}s")
        self._gone_since.pop(identity, None)
        return None

    def _remove_policies(self, policies: Sequence[Obj], pods: Sequence[PodView], why: str) -> None:
        for policy in policies:
            if is_adopted(policy):
                continue
            self.writer.delete(policy, event_reason=names.EVENT_POLICY_REMOVED, message=f"removed: {why}",
                               reason="cleanup", pods=pods_stub(pods))
            self._count("removed")

    def _collect_orphan_quarantines(self, policies: Sequence[Obj]) -> None:
        """Quarantine policies whose pod is gone (its ownerReference lets the API GC them too)."""
        if self.admin is not None:  # cluster-scoped: nothing owns them, so netwarden removes them
            self.admin.remove_gone(self._target_live, self._gone_why)
        for policy in policies:
            if labels_of(policy).get(names.LABEL_POLICY_ROLE) != names.ROLE_QUARANTINE:
                continue
            instance = annotations_of(policy).get(names.ANNOTATION_TARGET_POD)
            pod = self.index.pod_by_instance(instance) if instance else None
            if pod is None or not pod.live:
                self._remove_policies([policy], [], f"quarantined pod instance {instance} is gone")

    def detect_backend(self) -> None:
        """Discovery decides the quarantine backend (at start-up and on each new leadership)."""
        if self._backend_injected:
            return
        choice = detect_backend(self.kube, self.settings.quarantine_backend)
        api = choice.api
        if api is None:
            self.admin = None
            if not isinstance(self.quarantines.backend, NetworkPolicyBackend):
                self.quarantines.backend = NetworkPolicyBackend(self.kube, self.writer)
        elif self.admin is None or self.admin.api != api:
            admin = AdminQuarantines(self.kube, api, priority=self.settings.admin_policy_priority,
                                     dns=self.settings.dns, guard=self._before_write, event=self.writer.event)
            try:
                admin.refresh()  # served is not enough: RBAC must grant it too (CRDs installed after the chart)
            except Forbidden:
                choice = BackendChoice(None, f"{choice.reason}, but {api.plural} is forbidden to netwarden "
                                             "(helm upgrade after installing the CRDs); quarantine uses NetworkPolicy")
                self.admin = None
                self.quarantines.backend = NetworkPolicyBackend(self.kube, self.writer)
            else:
                self.admin = admin
                self.quarantines.backend = AdminPolicyBackend(admin)
        self.backend_reason = choice.reason
        metrics.set_quarantine_backend(choice.backend)
        log_event(log, "info", {"event": "quarantine_backend", "backend": choice.backend, "why": choice.reason})

    def _target_live(self, target: Target) -> bool:
        if target.instance is not None:
            pod = self.index.pod_by_instance(target.instance)
            return pod is not None and pod.live
        return any(p.live for p in self.index.pods_of(target.identity))

    @staticmethod
    def _gone_why(target: Target) -> str:
        return (f"quarantined pod instance {target.instance} is gone" if target.instance is not None
                else f"workload {target.identity} has no running pod")

    def collect_garbage(self) -> int:
        """Start-up: remove managed policies whose workload no longer exists (no pods, owner gone)."""
        removed = 0
        self.detect_backend()
        if self.admin is not None:
            removed += self.admin.collect(self._target_live, self._gone_why)
        for policy in self.index.policies():
            labels = labels_of(policy)
            identity = labels.get(names.LABEL_IDENTITY, "")
            if is_adopted(policy):
                continue
            if labels.get(names.LABEL_POLICY_ROLE) == names.ROLE_QUARANTINE:
                instance = annotations_of(policy).get(names.ANNOTATION_TARGET_POD)
                pod = self.index.pod_by_instance(instance) if instance else None
                if pod is None or not pod.live:
                    self._remove_policies([policy], [], f"quarantined pod instance {instance} no longer exists")
                    removed += 1
                continue
            if any(p.live for p in self.index.pods_of(identity)):
                continue
            if self._owner_exists(policy):
                self.queue.add(WL + identity)  # scaled to zero: the normal grace applies
                continue
            self._remove_policies([policy], [], f"workload {identity} no longer exists")
            removed += 1
        return removed

    def _owner_exists(self, policy: Obj) -> bool:
        namespace = obj_key(policy)[0]
        for ref in (policy.get("metadata") or {}).get("ownerReferences") or []:
            owner = OwnerRef.from_dict(ref)
            if self.kube.get_owner_refs(namespace, owner.kind, owner.name, owner.uid) is not None:
                return True
        return False

    # -- backfill (reconciler/backfill.py) ------------------------------------------------------
    def backfill_pod(self, namespace: str, name: str) -> None:
        self.backfill.backfill_pod(namespace, name)

    # -- policies: drift, approvals, deletes --------------------------------------------------
    def reconcile_policy(self, namespace: str, name: str) -> None:
        obj = self.index.policy(namespace, name)
        key = (namespace, name)
        if obj is None:
            self._maybe_recreate(key)
            return
        if is_adopted(obj):
            return
        annotations = annotations_of(obj)
        decision = annotations.get(names.ANNOTATION_APPROVE, "").lower()
        if annotations.get(names.ANNOTATION_PENDING) and decision in ("true", "false"):
            self._resolve_pending(namespace, name, obj, approved=decision == "true")
            return
        if has_drifted(obj):
            self._restore(obj)
        elif not annotations.get(names.ANNOTATION_SPEC_HASH):
            # Written without a hash (at admission): stamp what it holds as netwarden's.
            self.writer.patch_annotations(obj, {names.ANNOTATION_SPEC_HASH: spec_hash(obj.get("spec") or {})})
            if labels_of(obj).get(names.LABEL_POLICY_ROLE) == names.ROLE_BASELINE:
                self.check_containment(namespace, baseline=obj)

    def _resolve_pending(self, namespace: str, name: str, obj: Obj, approved: bool) -> None:
        identity = labels_of(obj).get(names.LABEL_IDENTITY, "")
        try:
            if approved:
                approve(self.writer, namespace, name, changed_by="kubectl-annotate")
            else:
                reject(self.writer, namespace, name, changed_by="kubectl-annotate")
        except PolicyOpError as exc:
            log.warning("pending change on %s/%s: %s", namespace, name, exc)
            return
        self._count("approved" if approved else "rejected")
        if self.on_pending_resolved is not None and identity:
            self.on_pending_resolved(identity, approved)

    def _restore(self, obj: Obj) -> None:
        key = obj_key(obj)
        good = self._known_good.get(key)
        if good is None:
            log.warning("policy %s/%s drifted but no known-good spec is kept; accepting it", *key)
            self.writer.patch_annotations(obj, {names.ANNOTATION_SPEC_HASH: spec_hash(obj.get("spec") or {})})
            return
        manifest = dict(obj)
        manifest["spec"] = good.get("spec") or {}
        change = Change(manifest, names.EVENT_POLICY_RESTORED,
                        f"spec edited outside netwarden; restored (set {names.ANNOTATION_ADOPTED}=true to keep edits)",
                        names.REASON_RESTORED)
        self.writer.apply(change)
        self._count("restored")

    def _maybe_recreate(self, key: tuple[str, str]) -> None:
        last = self._last_seen.pop(key, None)
        if key in self.writer.own_deletes:
            self.writer.own_deletes.discard(key)
            return
        if last is None or is_adopted(last):
            return
        labels = labels_of(last)
        identity = labels.get(names.LABEL_IDENTITY, "")
        if labels.get(names.LABEL_POLICY_ROLE) == names.ROLE_QUARANTINE:
            instance = annotations_of(last).get(names.ANNOTATION_TARGET_POD)
            pod = self.index.pod_by_instance(instance) if instance else None
            if pod is None or not pod.live:
                return
        elif not any(p.live for p in self.index.pods_of(identity)):
            return
        source = self._known_good.get(key, last)
        manifest = clean_for_create(source)
        change = Change(manifest, names.EVENT_POLICY_RESTORED,
                        f"deleted outside netwarden; re-created (set {names.ANNOTATION_ADOPTED}=true first to "
                        "stop netwarden managing it)", names.REASON_RESTORED)
        self.writer.apply(change)
        self._count("recreated")

    # -- decisions from the engine ------------------------------------------------------------
    def _holder_name(self, identity: str) -> str | None:
        holder = self.baseline_policy_of(identity)
        return obj_key(holder)[1] if holder is not None else None

    def baseline_policy_of(self, identity: str) -> Obj | None:
        for policy in self.index.policies_of(identity):
            if labels_of(policy).get(names.LABEL_POLICY_ROLE) == names.ROLE_BASELINE:
                return policy
        return None

    def apply_decision(self, decision: Decision) -> None:
        """Carry out one engine Decision according to its mode effect."""
        effect = decision.effect
        metrics.ACTIONS.labels(decision.action, effect).inc()
        pods = self._pods_of_decision(decision)
        holder = self.baseline_policy_of(decision.identity)
        evidence = evidence_summary(decision.evidence)
        record = {"event": "decision", **_decision_dict(decision), "evidence": evidence}
        if effect not in (Effect.WRITE, Effect.PENDING, Effect.RECORD):
            self.writer.audit_log(record)
            return
        if effect == Effect.RECORD:
            message = f"{'dry-run: would ' if decision.action != Action.ALERT_ONLY else ''}{decision.action} " \
                      f"(score {decision.score:.1f}): {decision.reason}"
            reason = decision.event_reason or names.EVENT_DRY_RUN
            if holder is not None:
                self.writer.event(holder, reason, message)
            for pod in pods_stub(pods):
                self.writer.event(pod, reason, message)
            self.writer.audit_log(record)
            return
        if effect == Effect.PENDING:
            if holder is None:
                log.warning("no policy of %s to hold a proposal; proposal dropped", decision.identity)
                return
            changes, deletes = self.changes_for(decision, holder, pods, evidence)
            pending = Pending(tuple(c.manifest for c in changes), tuple(deletes), decision.reason,
                              f"{decision.action} (score {decision.score:.1f}): {decision.reason}",
                              round(decision.score, 3), self.clock(), tuple(evidence))
            store_pending(self.writer, holder, pending, pods_stub(pods))
            return
        with self._write_lock:
            if decision.action == Action.ROLLBACK:
                self._apply_rollback(decision, holder, pods)
            elif decision.action == Action.QUARANTINE_POD:
                for plan in self.quarantine_plans(decision, pods, evidence):
                    self.submit_quarantine(plan)
            elif decision.action == Action.LIFT_QUARANTINE:
                for instance in decision.remove_instances:
                    pod = self.index.pod_by_instance(instance)
                    self.submit_quarantine(QuarantineRelease(
                        decision.namespace, decision.identity, instance, f"{decision.action}: {decision.reason}",
                        tuple(pods_stub([pod] if pod is not None else pods))))
            else:
                if decision.action == Action.QUARANTINE_WORKLOAD and self.admin is not None:
                    self._admin_workload_quarantine(decision, pods, evidence)  # the Deny exists first
                changes, _ = self.changes_for(decision, holder, pods, evidence)
                for change in changes:
                    self.writer.apply(change)
                if self.admin is not None and decision.action != Action.QUARANTINE_WORKLOAD and any(
                        i.instance is None and i.step != names.STEP_QUARANTINED for i in decision.intents):
                    self.admin.lift(decision.namespace, decision.identity, None, pods=pods_stub(pods),
                                    why=f"{decision.action}: {decision.reason}")
        if decision.action in ESCALATIONS:
            self.queue.add(CC + decision.namespace)  # off the signal's path: a worker looks

    def _admin_workload_quarantine(self, decision: Decision, pods: Sequence[PodView], evidence: list[dict[str, Any]]) -> None:
        """A workload quarantine's Admin-tier Deny (selecting the identity); its NetworkPolicy narrows after it."""
        assert self.admin is not None
        for intent in decision.intents:
            if intent.instance is None and intent.step == names.STEP_QUARANTINED:
                self.admin.apply(intent, mode=decision.mode, annotations=self._decision_annotations(decision, evidence),
                                 message=f"workload {intent.identity} quarantined by {self.admin.api.kind} "
                                         f"(score {decision.score:.1f}): {decision.reason}", pods=pods_stub(pods))

    # -- weak containment (reconciler/containment_report.py) ------------------------------------
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

    # -- quarantine steps ---------------------------------------------------------------------
    def submit_quarantine(self, work: QuarantineWork) -> bool:
        """Run a quarantine (or release) in its safe order now; on a failure keep it and retry it from
        the queue with backoff until every step holds. True when it completed now."""
        key = (work.namespace, work.instance)
        with self._write_lock:
            self._quarantine_work[key] = work  # a newer decision about this pod replaces an older one
            try:
                self.quarantines.run(work)
            except NotLeader:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: keep the plan, retry
                step = "quarantine" if isinstance(work, QuarantinePlan) else "release"
                metrics.QUARANTINE_RETRIES.labels(step).inc()
                delay = self.queue.add_rate_limited(f"{QR}{work.namespace}/{work.instance}")
                log_event(log, "warning", {"event": "quarantine_step_failed", "step": step, "identity": work.identity,
                                           "instance": work.instance, "error": f"{type(exc).__name__}: {exc}",
                                           "retry_in": round(delay, 3)})
                return False
            self._quarantine_work.pop(key, None)
        self.queue.forget(f"{QR}{work.namespace}/{work.instance}")
        return True

    def _retry_quarantine(self, namespace: str, instance: str) -> None:
        with self._write_lock:
            work = self._quarantine_work.get((namespace, instance))
            if work is None:
                return
            step = "quarantine" if isinstance(work, QuarantinePlan) else "release"
            try:
                self.quarantines.run(work)  # raises: the worker re-queues with backoff
            except NotLeader:
                raise
            except Exception:
                metrics.QUARANTINE_RETRIES.labels(step).inc()
                raise
            if self._quarantine_work.get((namespace, instance)) is work:
                del self._quarantine_work[(namespace, instance)]
        log_event(log, "info", {"event": "quarantine_step_completed", "step": step, "identity": work.identity,
                                "instance": instance})

    def pending_quarantine_work(self) -> dict[tuple[str, str], QuarantineWork]:
        with self._write_lock:
            return dict(self._quarantine_work)

    def _settle_carve_outs(self, identity: str, live: Sequence[PodView]) -> None:
        """Resume from the cluster (after a restart or failover): a carve-out whose quarantine is missing
        is undone (the pod goes back under its workload's policy); a quarantine whose pod is not yet
        carved out is completed. Pods with a step still queued in this process are left to it."""
        holder = self.baseline_policy_of(identity)
        if holder is None or is_adopted(holder) or not self.quarantines.backend.needs_carve_out:
            return
        namespace = obj_key(holder)[0]
        with self._write_lock:
            releasing = {i for (ns, i), w in self._quarantine_work.items()
                         if ns == namespace and isinstance(w, QuarantineRelease)}
            held = {annotations_of(p).get(names.ANNOTATION_TARGET_POD) for p in self.index.policies_of(identity)
                    if labels_of(p).get(names.LABEL_POLICY_ROLE) == names.ROLE_QUARANTINE}
            if carved_out(holder) == (held - {None}) - releasing:
                return  # consistent as far as the index knows: no API call
            self.quarantines.carve(namespace, identity, releasing=tuple(releasing), event_reason=names.EVENT_POLICY_RESTORED,
                                   message="carve-outs set to the quarantines that exist (resumed from the cluster)")

    def quarantine_plans(self, decision: Decision, pods: Sequence[PodView],
                         evidence: list[dict[str, Any]]) -> list[QuarantinePlan]:
        """The per-pod quarantines of a decision, rendered by the shared policy model."""
        annotations = self._decision_annotations(decision, evidence)
        plans = []
        for intent in decision.intents:
            if intent.instance is None:
                continue
            pod = self.index.pod_by_instance(intent.instance)
            owner = ({"apiVersion": "v1", "kind": "Pod", "name": pod.name, "uid": pod.uid}
                     if pod is not None else None)
            meta = PolicyMeta(quarantine_policy_name(intent.instance), names.REASON_QUARANTINE,
                              role=names.ROLE_QUARANTINE, mode=decision.mode, owner=owner, annotations=annotations)
            manifest = render_network_policy(intent, meta, self.settings.dns)
            stubs = tuple(pods_stub([pod] if pod is not None else pods))
            change = Change(manifest, names.EVENT_POD_QUARANTINED,
                            f"pod instance {intent.instance} quarantined (score {decision.score:.1f}): "
                            f"{decision.reason}", names.REASON_QUARANTINE, evidence, stubs)
            plans.append(QuarantinePlan(decision.namespace, decision.identity, intent.instance, intent, change, stubs))
        return plans

    def _decision_annotations(self, decision: Decision, evidence: list[dict[str, Any]]) -> dict[str, str]:
        annotations = {
            names.ANNOTATION_SCORE: f"{decision.score:.2f}",
            names.ANNOTATION_EVIDENCE: json.dumps(evidence, sort_keys=True, separators=(",", ":")),
        }
        if decision.expires_at is not None:
            annotations[names.ANNOTATION_EXPIRES_AT] = iso_time(decision.expires_at)
        return annotations

    def _apply_rollback(self, decision: Decision, holder: Obj | None, pods: Sequence[PodView]) -> None:
        if holder is None:
            return
        namespace, name = obj_key(holder)
        align = functools.partial(self.quarantines.align, namespace=namespace, identity=decision.identity)
        if decision.restore_spec is not None:
            manifest = dict(holder)
            manifest["spec"] = dict(decision.restore_spec)
            manifest = align(manifest)
            self.writer.apply(Change(manifest, names.EVENT_POLICY_ROLLED_BACK, f"automatic rollback: {decision.reason}",
                                     names.REASON_ROLLED_BACK, evidence_summary(decision.evidence), pods_stub(pods),
                                     annotations={names.ANNOTATION_STEP: decision.step_after,
                                                  names.ANNOTATION_SCORE: f"{decision.score:.2f}"}, safety=True))
            return
        try:
            rollback(self.writer, namespace, name, decision.restore_revision, changed_by="reconciler",
                     reason_detail=decision.reason, pods=pods_stub(pods), align=align)
        except PolicyOpError as exc:
            log.warning("automatic rollback of %s/%s impossible: %s", namespace, name, exc)

    def changes_for(self, decision: Decision, holder: Obj | None, pods: Sequence[PodView],
                    evidence: list[dict[str, Any]]) -> tuple[list[Change], list[tuple[str, str]]]:
        """Manifests (rendered by the shared policy model) and deletes that carry a decision out, in a safe
        order (quarantine before carve-out; carve-out ended before the quarantine goes). Workload-policy
        manifests carve out exactly the quarantines that exist (plus, for a quarantine, its own)."""
        annotations = self._decision_annotations(decision, evidence)
        plans = self.quarantine_plans(decision, pods, evidence)
        changes: list[Change] = [plan.change for plan in plans]
        stubs = pods_stub(pods)
        safety = decision.action in SAFETY_ACTIONS
        adding = tuple(p.instance for p in plans)
        releasing = tuple(decision.remove_instances)
        for intent in decision.intents:
            if intent.instance is not None:
                continue
            name = obj_key(holder)[1] if holder is not None else None
            if name is None:
                log.warning("no baseline policy for %s; cannot %s", decision.identity, decision.action)
                continue
            owner_refs = (holder.get("metadata") or {}).get("ownerReferences") if holder else None
            meta = PolicyMeta(name, decision.reason, role=names.ROLE_BASELINE, mode=decision.mode,
                              owner=owner_refs[0] if owner_refs else None, annotations=annotations)
            manifest = render_network_policy(intent, meta, self.settings.dns)
            if decision.action in (Action.QUARANTINE_POD, Action.LIFT_QUARANTINE):
                # Only the carve-out changes: the rest of the workload's current spec stays as it is.
                manifest = dict(holder)  # type: ignore[arg-type]
            exclusions = self.quarantines.exclusions_for(decision.namespace, decision.identity, adding=adding,
                                                         releasing=releasing)
            manifest = with_carve_outs(manifest, decision.namespace, decision.identity, exclusions)
            if decision.action in (Action.QUARANTINE_POD, Action.LIFT_QUARANTINE):
                event = names.EVENT_POD_QUARANTINED if adding else names.EVENT_QUARANTINE_LIFTED
                changes.append(Change(manifest, event, f"{decision.action}: {decision.reason}",
                                      names.REASON_QUARANTINE_EXCLUSION if adding else names.REASON_QUARANTINE_LIFTED,
                                      evidence, stubs, safety=safety))
                continue
            if not decision.expires_at:
                manifest["metadata"]["annotations"].pop(names.ANNOTATION_EXPIRES_AT, None)
            changes.append(Change(manifest, decision.event_reason or names.EVENT_POLICY_TIGHTENED,
                                  f"{decision.action} (score {decision.score:.1f}): {decision.reason}",
                                  decision.reason, evidence, stubs, safety=safety,
                                  annotations={} if decision.expires_at else {names.ANNOTATION_EXPIRES_AT: None}))
        deletes = [(decision.namespace, quarantine_policy_name(i)) for i in decision.remove_instances]
        return changes, deletes

    def _pods_of_decision(self, decision: Decision) -> list[PodView]:
        found: dict[tuple[str, str], PodView] = {}
        for name in getattr(decision, "pods", ()) or ():
            pod = self.index.pod(decision.namespace, name)
            if pod is not None:
                found[(pod.namespace, pod.name)] = pod
        for instance in getattr(decision, "instances", ()) or ():
            pod = self.index.pod_by_instance(instance)
            if pod is not None:
                found[(pod.namespace, pod.name)] = pod
        return list(found.values())


def _decision_dict(decision: Decision) -> dict[str, Any]:
    if hasattr(decision, "to_dict"):
        data = decision.to_dict()
        data.pop("evidence", None)
        return data
    return {"action": getattr(decision, "action", ""), "identity": getattr(decision, "identity", "")}
