"""Backfill: a pod admitted without netwarden's webhook (it was down, or its namespaceSelector missed the
pod) gets the labels and the workload baseline pod admission would have given it.

Through pod admission's own function (netwarden/model/admission.py:admit_pod), so a backfilled baseline
equals an admitted one. One of the reconciler's small controllers (netwarden/reconciler/controller.py wires them).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import replace
from typing import Any, Callable

from netwarden.model import names
from netwarden.model.admission import AdmissionSettings, PodAdmission, admit_pod
from netwarden.model.identity import verify_owners
from netwarden.platform.kube import KubeClient
from netwarden.model.labels import is_opted_in
from netwarden.model.labelvalues import fit_label_value
from netwarden.platform.logs import log_event
from netwarden.model.reach import outside_policy_reach
from netwarden.reconciler.leader import WriterGate
from netwarden.reconciler.policy_ops import Change, PolicyWriter, pods_stub
from netwarden.reconciler.core.pods import PodRef
from netwarden.reconciler.watch import ClusterIndex

log = logging.getLogger("netwarden.reconciler.controller")
Obj = dict[str, Any]


def backfill_instance(pod: PodRef) -> str:
    """Instance value for a pod the webhook never saw: derived from its uid, so a retry gives the same one."""
    return fit_label_value("bf-" + hashlib.sha256(pod.uid.encode()).hexdigest()[:12])


def _backfilled(manifest: Obj, pod: PodRef) -> Change:
    return Change(manifest, names.EVENT_POLICY_CREATED,
                  "baseline created by the reconciler (the pod was admitted without netwarden's webhook)",
                  names.REASON_BACKFILL, pods=pods_stub([pod]))


class Backfill:
    """Labels and baselines for pods the webhook never saw; says once per pod when NetworkPolicy cannot reach it."""

    def __init__(self, kube: KubeClient, index: ClusterIndex, writer: PolicyWriter, admission: AdmissionSettings,
                 gate: WriterGate, count: Callable[[str], None],
                 on_baseline_written: Callable[[str, Obj], None]) -> None:
        self.kube = kube
        self.index = index
        self.writer = writer
        self.admission = admission
        self.gate = gate
        self.count = count
        self.on_baseline_written = on_baseline_written
        #: Pods (uid) already told they are outside NetworkPolicy's reach (one Event each).
        self._unreachable_noted: set[str] = set()
        #: Baselines deleted outside netwarden, per identity: the form to re-create (a tightened step stays).
        self._deleted: dict[str, Obj] = {}
        self._lock = threading.Lock()

    def backfill_pod(self, namespace: str, name: str) -> None:
        pod = self.index.pod(namespace, name)
        if pod is None or pod.identity or not pod.live:
            return
        ns = self.index.namespace(namespace)
        if ns is None or not is_opted_in(ns.facts, pod.labels, pod.annotations):
            return
        decision = self.admission_decision(pod, backfill_instance(pod))
        if decision is None or not decision.labels:
            return
        self.writer.guard()
        self.kube.patch_pod_labels(namespace, name, decision.labels)
        self.writer.event(pod.raw, names.EVENT_LABELS_BACKFILLED,
                          "labels added by the reconciler (the pod was admitted without netwarden's webhook)")
        self.count("backfilled-pods")
        if decision.policy_manifest is not None:
            self._write_baseline(_backfilled(decision.policy_manifest, pod), pod, "backfilled-policies")

    def admission_decision(self, pod: PodRef, instance: str) -> PodAdmission | None:
        """Pod admission's own decision for this pod, so a backfilled baseline equals an admitted one.

        Who created a pod the webhook never saw is unknown, so its controller claim cannot count
        (`claimed_controller`): it becomes its own bare-pod workload. A pod admission already labelled
        had its creator judged then: its owners are verified again (both levels, as admission does)."""
        ns = self.index.namespace(pod.namespace)
        if ns is None:
            return None
        # The pod as admission would have seen it: netwarden's labels not yet there.
        labels = {k: v for k, v in pod.facts.labels.items() if k not in names.POD_LABELS}
        facts = replace(pod.facts, labels=labels, creator=None, creator_checked=bool(pod.identity))
        parents = verify_owners(replace(facts.origin, instance=instance), self.admission.pod_creators,
                                lambda ref: self.kube.get_owner_refs(pod.namespace, ref.kind, ref.name, ref.uid))
        return admit_pod(facts, ns.facts, parents, instance, self.admission)

    def note_deleted(self, identity: str, manifest: Obj) -> None:
        """A baseline was deleted outside netwarden: re-created in this form if its pods' owners still hold."""
        with self._lock:
            self._deleted[identity] = manifest

    def forget_deleted(self, identity: str) -> None:
        """The workload has no live pod: its baseline, if it comes back, is a fresh one."""
        with self._lock:
            self._deleted.pop(identity, None)

    def create_baseline(self, pod: PodRef) -> None:
        """The workload's baseline from one of its live pods (the policy was missing); only when admission's
        decision, derived again, gives the identity the pod was labelled with. One deleted outside netwarden
        comes back as it last was (its step, its history), not as a fresh baseline."""
        decision = self.admission_decision(pod, pod.instance or backfill_instance(pod))
        if decision is None or decision.policy_manifest is None:
            return
        if decision.workload.identity != pod.identity:
            log_event(log, "warning", {"event": "baseline_not_recreated", "pod": f"{pod.namespace}/{pod.name}",
                                       "identity": pod.identity, "derived": decision.workload.identity,
                                       "why": "the pod's owners no longer give the identity it was admitted with"})
            return
        with self._lock:
            deleted = self._deleted.pop(pod.identity, None)
        fresh = decision.policy_manifest
        if deleted is not None and deleted["metadata"].get("name") == fresh["metadata"]["name"]:
            # Its spec and history as they were; its owner as verified now (the old one may be gone).
            deleted["metadata"].pop("ownerReferences", None)
            if "ownerReferences" in fresh["metadata"]:
                deleted["metadata"]["ownerReferences"] = fresh["metadata"]["ownerReferences"]
            change = Change(deleted, names.EVENT_POLICY_RESTORED,
                            f"deleted outside netwarden; re-created, the pod's owners verified again (set "
                            f"{names.ANNOTATION_ADOPTED}=true first to stop netwarden managing it)",
                            names.REASON_RESTORED, pods=pods_stub([pod]))
            self._write_baseline(change, pod, "recreated")
            return
        self._write_baseline(_backfilled(fresh, pod), pod, "backfilled-policies")

    def note_unreachable(self, pod: PodRef) -> bool:
        """True for a pod NetworkPolicy cannot reach (hostNetwork); says why on the pod, once per pod."""
        reason = outside_policy_reach(pod.raw)
        if reason is None:
            return False
        with self._lock:
            first = pod.uid not in self._unreachable_noted
            self._unreachable_noted.add(pod.uid)
        if first and self.gate.is_open():
            self.writer.event(pod.raw, names.EVENT_POD_UNENFORCEABLE, reason, type_="Warning")
            log_event(log, "info", {"event": "pod_outside_policy_reach", "pod": f"{pod.namespace}/{pod.pod}",
                                    "identity": pod.identity, "why": reason})
        return True

    def _write_baseline(self, change: Change, pod: PodRef, counted_as: str) -> None:
        if self.note_unreachable(pod):
            return  # a baseline would promise containment NetworkPolicy cannot give this pod
        meta = change.manifest["metadata"]
        if self.index.policy(meta["namespace"], meta["name"]) is not None:
            return
        outcome = self.writer.apply(change)
        if outcome.operation == "created":
            self.count(counted_as)
            self.on_baseline_written(meta["namespace"], outcome.obj or change.manifest)
