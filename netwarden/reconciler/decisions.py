"""Decisions: carrying out one engine Decision by its mode effect, and the quarantine steps it starts.

Enforce writes (rendered by the shared policy model, in a safe order), dry-run records an Event and
an audit log line, approve stores the changes as a proposal on the workload's policy. A quarantine
(or its release) runs in its safe order now; a failed step is kept and retried from the queue
(key `qr:<namespace>/<instance>`) with backoff until every step holds; so is a workload decision's
write that failed past the adapter's own retries (key `wd:<namespace>/<identity>`), the newest decision
of a workload replacing an older one, so the engine's belief and the cluster meet again. One of the
reconciler's small controllers (netwarden/reconciler/controller.py wires them).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Iterable, Sequence

from netwarden.model import names
from netwarden.model.errors import NetwardenError
from netwarden.model.reach import outside_policy_reach
from netwarden.platform.logs import log_event
from netwarden.model.policy import DnsTarget, PolicyMeta, quarantine_policy_name, render_network_policy, render_policy_spec
from netwarden.reconciler import metrics
from netwarden.reconciler.admin_backend import AdminQuarantines
from netwarden.reconciler.core.decision import ESCALATIONS, SAFETY_ACTIONS, Action, Decision, Effect
from netwarden.reconciler.core.plan import Op, Plan, workload_policy, workload_quarantine, workload_rollback
from netwarden.reconciler.leader import NotLeader
from netwarden.reconciler.policy_ops import (
    Change,
    Pending,
    PolicyWriter,
    annotations_of,
    iso_time,
    is_adopted,
    labels_of,
    pods_stub,
    store_pending,
)
from netwarden.reconciler.quarantine import (
    PodQuarantine,
    QuarantineRelease,
    QuarantineWork,
    QuarantineWriter,
    carved_out,
    with_carve_outs,
)
from netwarden.reconciler.queue import CC, QR, WD, WorkQueue
from netwarden.reconciler.core.pods import PodRef
from netwarden.reconciler.watch import ClusterIndex, obj_key

log = logging.getLogger("netwarden.reconciler.controller")

Obj = dict[str, Any]

EVIDENCE_SUMMARY_ITEMS = 5


def evidence_summary(evidence: Iterable[Any], limit: int = EVIDENCE_SUMMARY_ITEMS) -> list[dict[str, Any]]:
    """The strongest evidence, trimmed to what `netwarden explain` prints."""
    items = []
    for item in evidence:
        data = item.to_dict() if hasattr(item, "to_dict") else dict(item)
        items.append({k: data.get(k) for k in ("kind", "weight", "summary", "time", "pod", "peer", "port") if
                      data.get(k) is not None})
    items.sort(key=lambda e: -float(e.get("weight") or 0.0))
    return items[:limit]


class BaselineNotSeen(NetwardenError):
    """A workload decision found no baseline policy to write to yet (the watch had not delivered it)."""


def baseline_policy_of(index: ClusterIndex, identity: str) -> Obj | None:
    """A workload's baseline policy (the one that holds its proposals, carve-outs and history)."""
    for policy in index.policies_of(identity):
        if labels_of(policy).get(names.LABEL_POLICY_ROLE) == names.ROLE_BASELINE:
            return policy
    return None


class Decisions:
    """Applies Decisions and owns the quarantine steps not yet fully written (retried from the queue)."""

    def __init__(self, index: ClusterIndex, writer: PolicyWriter, quarantines: QuarantineWriter, queue: WorkQueue,
                 dns: DnsTarget, clock: Callable[[], float],
                 admin: Callable[[], AdminQuarantines | None]) -> None:
        self.index = index
        self.writer = writer
        self.quarantines = quarantines
        self.queue = queue
        self.dns = dns
        self.clock = clock
        self._admin = admin
        #: Pod quarantines and releases not yet fully written, by (namespace, instance).
        self._quarantine_work: dict[tuple[str, str], QuarantineWork] = {}
        #: Workload decisions whose writes failed, by (namespace, identity): the newest of each workload.
        self._workload_work: dict[tuple[str, str], Decision] = {}
        #: Serialises quarantine steps with every other write of a workload policy (no interleaving).
        self._write_lock = threading.RLock()

    @property
    def admin(self) -> AdminQuarantines | None:
        """The admin-tier quarantine objects when that backend is in use; None: NetworkPolicy."""
        return self._admin()

    def baseline_policy_of(self, identity: str) -> Obj | None:
        return baseline_policy_of(self.index, identity)

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
                              round(decision.score, 3), self.clock(), tuple(evidence),
                              self.admin.api.kind if self.admin is not None else "")
            store_pending(self.writer, holder, pending, pods_stub(pods))
            return
        with self._write_lock:
            if decision.action == Action.QUARANTINE_POD:
                for quarantine in self.pod_quarantines(decision, pods, evidence):
                    self.submit_quarantine(quarantine)
            elif decision.action == Action.LIFT_QUARANTINE:
                for instance in decision.remove_instances:
                    pod = self.index.pod_by_instance(instance)
                    self.submit_quarantine(QuarantineRelease(
                        decision.namespace, decision.identity, instance, f"{decision.action}: {decision.reason}",
                        tuple(pods_stub([pod] if pod is not None else pods))))
            else:
                self.submit_workload_write(decision)
        if decision.action in ESCALATIONS:
            self.queue.add(CC + decision.namespace)  # off the signal's path: a worker looks

    def workload_plan(self, decision: Decision) -> Plan | None:
        """The steps of a decision about the workload as a whole (rollback, quarantine, tighten, relax)."""
        deny = self.admin is not None
        if decision.action == Action.ROLLBACK:
            return workload_rollback(decision.namespace, decision.identity, decision.step_after)
        if decision.action == Action.QUARANTINE_WORKLOAD:
            return workload_quarantine(decision.namespace, decision.identity, deny=deny)
        to_step = next((i.step for i in decision.intents if i.instance is None), None)  # tighten, relax
        return workload_policy(decision.namespace, decision.identity, to_step, deny=deny) if to_step else None

    def submit_workload_write(self, decision: Decision) -> bool:
        """Take a workload decision's steps now; when one fails past the adapter's retries (an API
        brownout longer than its backoff), keep the decision and retry it from the queue with backoff
        until it holds, as a pod quarantine's steps are. True when it completed now."""
        queue_key = f"{WD}{decision.namespace}/{decision.identity}"
        with self._write_lock:
            self._workload_work[(decision.namespace, decision.identity)] = decision  # the newest one counts
            try:
                self._write_kept_workload(decision.namespace, decision.identity)
            except NotLeader:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: keep the decision, retry
                delay = self.queue.add_rate_limited(queue_key)
                log_event(log, "warning", {"event": "workload_write_failed", "action": decision.action,
                                           "identity": decision.identity, "error": f"{type(exc).__name__}: {exc}",
                                           "retry_in": round(delay, 3)})
                return False
        self.queue.forget(queue_key)
        return True

    def retry_workload_write(self, namespace: str, identity: str) -> None:
        """The queue's retry of a kept workload decision; raises on failure (the worker re-queues with backoff)."""
        decision = self._write_kept_workload(namespace, identity)
        if decision is not None:
            log_event(log, "info", {"event": "workload_write_completed", "action": decision.action,
                                    "identity": identity})

    def _write_kept_workload(self, namespace: str, identity: str) -> Decision | None:
        """Carry out the decision kept for a workload against its policy and pods as they are now, and
        forget it once written; a failure is counted and raised."""
        with self._write_lock:
            decision = self._workload_work.get((namespace, identity))
            if decision is None:
                return None
            plan = self.workload_plan(decision)
            try:
                if plan is not None:
                    self.execute(plan, decision, self.baseline_policy_of(identity), self._pods_of_decision(decision),
                                 evidence_summary(decision.evidence))
            except NotLeader:
                raise
            except Exception:
                metrics.WORKLOAD_WRITE_RETRIES.labels(decision.action).inc()
                raise
            if self._workload_work.get((namespace, identity)) is decision:
                del self._workload_work[(namespace, identity)]
            return decision

    def pending_workload_work(self) -> dict[tuple[str, str], Decision]:
        with self._write_lock:
            return dict(self._workload_work)

    def execute(self, plan: Plan, decision: Decision, holder: Obj | None, pods: Sequence[PodRef],
                evidence: list[dict[str, Any]]) -> None:
        """Take a workload plan's steps in order (netwarden/reconciler/core/plan.py); the first that fails
        raises, so no step runs without the ones before it (its precondition)."""
        for step in plan.steps:
            if step.op == Op.ENSURE_WORKLOAD_DENY:
                self._admin_workload_quarantine(decision, pods, evidence)
            elif step.op == Op.WRITE_WORKLOAD_POLICY:
                if holder is None and decision.action != Action.ROLLBACK and \
                        any(intent.instance is None for intent in decision.intents) and \
                        any(pod.live and outside_policy_reach(pod.raw) is None
                            for pod in self.index.pods_of(decision.identity)):
                    # Decided before the watch delivered the workload's policy (it was just written): kept and
                    # retried while a pod it could contain runs, never dropped while the engine counts it done.
                    raise BaselineNotSeen(f"no baseline policy of {decision.identity} seen yet; "
                                          f"{decision.action} kept and retried")
                if decision.action == Action.ROLLBACK:
                    changes = [self._rollback_change(decision, holder, pods)] if holder is not None else []
                else:
                    changes, _ = self.changes_for(decision, holder, pods, evidence)
                for change in changes:
                    self.writer.apply(change)
            elif step.op == Op.REMOVE_WORKLOAD_DENY and self.admin is not None:
                self.admin.lift(decision.namespace, decision.identity, None, pods=pods_stub(pods),
                                why=f"{decision.action}: {decision.reason}")
            else:
                raise ValueError(f"{step.op} is not a step this executor takes for a workload")

    def _admin_workload_quarantine(self, decision: Decision, pods: Sequence[PodRef], evidence: list[dict[str, Any]]) -> None:
        """A workload quarantine's Admin-tier Deny (selecting the identity); its NetworkPolicy narrows after it."""
        assert self.admin is not None
        for intent in decision.intents:
            if intent.instance is None and intent.step == names.STEP_QUARANTINED:
                self.admin.apply(intent, mode=decision.mode, annotations=self._decision_annotations(decision, evidence),
                                 message=f"workload {intent.identity} quarantined by {self.admin.api.kind} "
                                         f"(score {decision.score:.1f}): {decision.reason}", pods=pods_stub(pods))

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
                step = "quarantine" if isinstance(work, PodQuarantine) else "release"
                metrics.QUARANTINE_RETRIES.labels(step).inc()
                delay = self.queue.add_rate_limited(f"{QR}{work.namespace}/{work.instance}")
                log_event(log, "warning", {"event": "quarantine_step_failed", "step": step, "identity": work.identity,
                                           "instance": work.instance, "error": f"{type(exc).__name__}: {exc}",
                                           "retry_in": round(delay, 3)})
                return False
            self._quarantine_work.pop(key, None)
        self.queue.forget(f"{QR}{work.namespace}/{work.instance}")
        return True

    def retry_quarantine(self, namespace: str, instance: str) -> None:
        with self._write_lock:
            work = self._quarantine_work.get((namespace, instance))
            if work is None:
                return
            step = "quarantine" if isinstance(work, PodQuarantine) else "release"
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

    def settle_carve_outs(self, identity: str, live: Sequence[PodRef]) -> None:
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

    def pod_quarantines(self, decision: Decision, pods: Sequence[PodRef],
                         evidence: list[dict[str, Any]]) -> list[PodQuarantine]:
        """The per-pod quarantines of a decision, rendered by the shared policy model."""
        annotations = self._decision_annotations(decision, evidence)
        quarantines = []
        for intent in decision.intents:
            if intent.instance is None:
                continue
            pod = self.index.pod_by_instance(intent.instance)
            owner = ({"apiVersion": "v1", "kind": "Pod", "name": pod.pod, "uid": pod.uid}
                     if pod is not None else None)
            meta = PolicyMeta(quarantine_policy_name(intent.instance), names.REASON_QUARANTINE,
                              role=names.ROLE_QUARANTINE, mode=decision.mode, owner=owner, annotations=annotations)
            manifest = render_network_policy(intent, meta, self.dns)
            stubs = tuple(pods_stub([pod] if pod is not None else pods))
            change = Change(manifest, names.EVENT_POD_QUARANTINED,
                            f"pod instance {intent.instance} quarantined (score {decision.score:.1f}): "
                            f"{decision.reason}", names.REASON_QUARANTINE, evidence, stubs)
            quarantines.append(PodQuarantine(decision.namespace, decision.identity, intent.instance, intent, change, stubs))
        return quarantines

    def _decision_annotations(self, decision: Decision, evidence: list[dict[str, Any]]) -> dict[str, str]:
        annotations = {
            names.ANNOTATION_SCORE: f"{decision.score:.2f}",
            names.ANNOTATION_EVIDENCE: json.dumps(evidence, sort_keys=True, separators=(",", ":")),
        }
        if decision.expires_at is not None:
            annotations[names.ANNOTATION_EXPIRES_AT] = iso_time(decision.expires_at)
        return annotations

    def _rollback_change(self, decision: Decision, holder: Obj, pods: Sequence[PodRef]) -> Change:
        """Back to the intent the workload had before its automatic tightening (the decision carries it),
        with the carve-outs of the quarantines that hold. The spec it replaces joins the policy's history
        annotation, the one home of its past specs (`netwarden rollback` and `explain` read it)."""
        namespace, _name = obj_key(holder)
        manifest = dict(holder)
        manifest["spec"] = render_policy_spec(decision.intents[0], self.dns)
        manifest = self.quarantines.align(manifest, namespace=namespace, identity=decision.identity)
        return Change(manifest, names.EVENT_POLICY_ROLLED_BACK, f"automatic rollback: {decision.reason}",
                      names.REASON_ROLLED_BACK, evidence_summary(decision.evidence), pods_stub(pods),
                      annotations={names.ANNOTATION_STEP: decision.step_after,
                                   names.ANNOTATION_SCORE: f"{decision.score:.2f}"}, safety=True)

    def changes_for(self, decision: Decision, holder: Obj | None, pods: Sequence[PodRef],
                    evidence: list[dict[str, Any]]) -> tuple[list[Change], list[tuple[str, str]]]:
        """Manifests (rendered by the shared policy model) and deletes that carry a decision out, in a safe
        order (quarantine before carve-out; carve-out ended before the quarantine goes). Workload-policy
        manifests carve out exactly the quarantines that exist (plus, for a quarantine, its own)."""
        annotations = self._decision_annotations(decision, evidence)
        quarantines = self.pod_quarantines(decision, pods, evidence)
        changes: list[Change] = [q.change for q in quarantines]
        stubs = pods_stub(pods)
        safety = decision.action in SAFETY_ACTIONS
        adding = tuple(q.instance for q in quarantines)
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
            manifest = render_network_policy(intent, meta, self.dns)
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

    def _pods_of_decision(self, decision: Decision) -> list[PodRef]:
        found: dict[tuple[str, str], PodRef] = {}
        for name in getattr(decision, "pods", ()) or ():
            pod = self.index.pod(decision.namespace, name)
            if pod is not None:
                found[(pod.namespace, pod.pod)] = pod
        for instance in getattr(decision, "instances", ()) or ():
            pod = self.index.pod_by_instance(instance)
            if pod is not None:
                found[(pod.namespace, pod.pod)] = pod
        return list(found.values())


def _decision_dict(decision: Decision) -> dict[str, Any]:
    if hasattr(decision, "to_dict"):
        data = decision.to_dict()
        data.pop("evidence", None)
        return data
    return {"action": getattr(decision, "action", ""), "identity": getattr(decision, "identity", "")}
