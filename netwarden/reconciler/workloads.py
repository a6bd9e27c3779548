"""Workloads and garbage collection: a workload's baseline is present while it has live pods, its
policies go after its last pod (with grace), quarantine policies go with their pod, and at start-up
policies whose workload no longer exists are collected. Discovery picks the quarantine backend here
(at start-up and on each new leadership). One of the reconciler's small controllers
(netwarden/reconciler/controller.py wires them).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Sequence

from netwarden.model import names
from netwarden.model.admin_policy import BackendChoice
from netwarden.model.errors import Forbidden
from netwarden.model.identity import OwnerRef
from netwarden.platform.kube import KubeClient
from netwarden.platform.logs import log_event
from netwarden.reconciler import metrics
from netwarden.reconciler.admin_backend import AdminPolicyBackend, AdminQuarantines, Target, detect_backend
from netwarden.reconciler.backfill import Backfill
from netwarden.reconciler.declaration_events import DeclarationEvents
from netwarden.reconciler.decisions import baseline_policy_of
from netwarden.reconciler.policy_ops import PolicyWriter, annotations_of, is_adopted, labels_of, pods_stub
from netwarden.reconciler.quarantine import NetworkPolicyBackend, QuarantineWriter
from netwarden.reconciler.queue import WL, WorkQueue
from netwarden.reconciler.core.pods import PodRef
from netwarden.reconciler.watch import ClusterIndex, obj_key

if TYPE_CHECKING:
    from netwarden.reconciler.controller import ControllerSettings

log = logging.getLogger("netwarden.reconciler.controller")

Obj = dict[str, Any]


class Workloads:
    """Baseline presence, cleanup after the last pod, garbage collection, the quarantine backend."""

    def __init__(self, kube: KubeClient, index: ClusterIndex, writer: PolicyWriter, settings: ControllerSettings,
                 *, backfill: Backfill, declarations: DeclarationEvents, quarantines: QuarantineWriter,
                 queue: WorkQueue, clock: Callable[[], float], count: Callable[[str], None],
                 before_write: Callable[..., None], settle_carve_outs: Callable[[str, Sequence[PodRef]], None],
                 backend_injected: bool) -> None:
        self.kube = kube
        self.index = index
        self.writer = writer
        self.settings = settings
        self.backfill = backfill
        self.declarations = declarations
        self.quarantines = quarantines
        self.queue = queue
        self.clock = clock
        self.count = count
        self.before_write = before_write
        self.settle_carve_outs = settle_carve_outs
        #: An injected backend is kept; otherwise discovery decides (detect_backend, at start and on leadership).
        self._backend_injected = backend_injected
        #: The admin-tier quarantine objects when that backend is in use; None: NetworkPolicy.
        self.admin: AdminQuarantines | None = None
        self.backend_reason = "not detected yet"
        #: First time a workload was seen with no live pod (cleanup grace starts there).
        self._gone_since: dict[str, float] = {}

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
            holder = baseline_policy_of(self.index, identity)
            if holder is not None:  # the Event goes on the policy's owner: wait for the policy to be seen
                self.declarations.note(identity, holder, [p.raw for p in live])
            self._collect_orphan_quarantines(policies)
            self.settle_carve_outs(identity, live)
            return None
        self.backfill.forget_deleted(identity)
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

    def _remove_policies(self, policies: Sequence[Obj], pods: Sequence[PodRef], why: str) -> None:
        for policy in policies:
            if is_adopted(policy):
                continue
            self.writer.delete(policy, event_reason=names.EVENT_POLICY_REMOVED, message=f"removed: {why}",
                               reason="cleanup", pods=pods_stub(pods))
            self.count("removed")

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
                                     dns=self.settings.dns, guard=self.before_write, event=self.writer.event)
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
            if is_adopted(policy) or labels.get(names.LABEL_POLICY_ROLE) == names.ROLE_ADMISSION_GUARD:
                continue  # a guard belongs to its namespace, not to a workload: it lives as long as the namespace
            if labels.get(names.LABEL_POLICY_ROLE) == names.ROLE_QUARANTINE:
                instance = annotations_of(policy).get(names.ANNOTATION_TARGET_POD)
                pod = self.index.pod_by_instance(instance) if instance else None
                if pod is None or not pod.live:
                    self._remove_policies([policy], [], f"quarantined pod instance {instance} no longer exists")
                    removed += 1
                continue
            if any(p.live for p in self.index.pods_of(identity)):
                continue
            if self._owner_exists(policy) or self._pods_listed(obj_key(policy)[0], identity):
                # Scaled to zero, or its pod is there but its watch event is still on the way (the pods' and
                # the policies' watches are independent): the normal grace applies.
                self.queue.add(WL + identity)
                continue
            self._remove_policies([policy], [], f"workload {identity} no longer exists")
            removed += 1
        return removed

    def _pods_listed(self, namespace: str, identity: str) -> bool:
        """Whether the API lists a live pod of the workload now (a pod created just before start-up may
        not be in the index yet while its baseline already is): the index alone never removes a baseline."""
        if not identity:
            return False
        listed, _ = self.kube.list_objects("pods", namespace=namespace,
                                           label_selector=f"{names.LABEL_IDENTITY}={identity}")
        return any(PodRef.from_obj(pod).live for pod in listed)

    def _owner_exists(self, policy: Obj) -> bool:
        namespace = obj_key(policy)[0]
        for ref in (policy.get("metadata") or {}).get("ownerReferences") or []:
            owner = OwnerRef.from_dict(ref)
            if self.kube.get_owner_refs(namespace, owner.kind, owner.name, owner.uid) is not None:
                return True
        return False
