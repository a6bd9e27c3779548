"""The admin-tier quarantine backend: write, find and remove netwarden's cluster-scoped quarantine objects.

When the API serves ClusterNetworkPolicy (or AdminNetworkPolicy) and the backend is on, a quarantine
is an Admin-tier Deny that no namespaced NetworkPolicy can reopen (netwarden/model/admin_policy.py renders
it). Cluster-scoped objects cannot be owned by a pod, so nothing in the cluster collects them: this
module removes them when their pod or workload is gone, and `collect` finds orphans at start-up and
after a failover (the new leader lists them). Writes pass the reconciler's guard (leader gate, write
budget); every write is an Event on the object and on the pods, like the NetworkPolicy writes.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence


from netwarden.model import names
from netwarden.model.admin_policy import (DISCOVERY_ORDER, AdminApi, BackendChoice, admin_quarantine_name, choose_backend,
                                    render_admin_quarantine)
from netwarden.model.containment import cluster_findings
from netwarden.model.errors import ApiError, Conflict
from netwarden.platform.kube import KubeClient
from netwarden.platform.logs import log_event
from netwarden.model.policy import DnsTarget, PolicyIntent, PolicyMeta
from netwarden.reconciler import metrics

log = logging.getLogger("netwarden.reconciler.admin")

Obj = dict[str, Any]
MANAGED_SELECTOR = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY_VALUE}"


def detect_backend(kube: KubeClient, setting: str) -> BackendChoice:
    """Ask discovery, never assume: the configured backend when served, else NetworkPolicy (and say why)."""
    if setting == "networkpolicy":
        return choose_backend(setting, {})
    try:
        served = kube.served_admin_policy_resources()
    except ApiError as exc:
        return BackendChoice(None, f"{setting}: discovery failed ({exc.status}); quarantine uses NetworkPolicy")
    return choose_backend(setting, served)


@dataclass(frozen=True)
class Target:
    """What an admin-tier quarantine object isolates: one pod instance, or a workload (instance None)."""

    namespace: str
    identity: str
    instance: str | None

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> "Target":
        meta = obj.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        return cls(annotations.get(names.ANNOTATION_TARGET_NAMESPACE, ""),
                   (meta.get("labels") or {}).get(names.LABEL_IDENTITY, ""),
                   annotations.get(names.ANNOTATION_TARGET_POD))


class AdminQuarantines:
    """Netwarden's admin-tier quarantine objects of one backend, with a cache of the ones that exist."""

    def __init__(self, kube: KubeClient, api: AdminApi, *, priority: int, dns: DnsTarget,
                 guard: Callable[[], None], event: Callable[[Mapping[str, Any], str, str], None]) -> None:
        self.kube = kube
        self.api = api
        self.priority = priority
        self.dns = dns
        self.guard = guard
        self.event = event
        self._lock = threading.Lock()
        #: name -> last object written or listed (what `remove_gone` and `collect` look at)
        self._known: dict[str, Obj] = {}

    # -- writes -------------------------------------------------------------------------------
    def apply(self, intent: PolicyIntent, *, mode: str, annotations: Mapping[str, str], message: str,
              pods: Sequence[Mapping[str, Any]] = ()) -> Obj:
        """Create (or renew) the quarantine object for an intent: it exists when this returns."""
        name = admin_quarantine_name(intent.namespace, intent.instance, intent.identity)
        meta = PolicyMeta(name, names.REASON_QUARANTINE, role=names.ROLE_QUARANTINE, mode=mode, annotations=annotations)
        manifest = render_admin_quarantine(intent, meta, self.dns, self.api, self.priority)
        for _attempt in range(4):
            current = self.kube.get_admin_policy(self.api.version, self.api.plural, name)
            self.guard()
            if current is None:
                status, obj = self.kube.create_admin_policy(self.api.version, self.api.plural, manifest)
                if status == "exists":
                    continue
                operation = "created"
            else:
                try:
                    revision = int(((current["metadata"].get("annotations") or {}).get(names.ANNOTATION_REVISION)) or 1)
                except ValueError:
                    revision = 1
                manifest["metadata"]["annotations"][names.ANNOTATION_REVISION] = str(revision + 1)
                manifest["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                try:
                    obj = self.kube.replace_admin_policy(self.api.version, self.api.plural, manifest)
                except Conflict:
                    continue
                operation = "updated"
            assert obj is not None
            with self._lock:
                self._known[name] = obj
            metrics.POLICY_WRITES.labels(operation, "ok").inc()
            self._record(obj, names.EVENT_POD_QUARANTINED, message, pods, operation)
            return obj
        raise RuntimeError(f"{self.api.kind} {name}: conflicting writes, gave up after 4 attempts")

    def remove(self, name: str, *, why: str, reason: str = names.EVENT_QUARANTINE_LIFTED,
               pods: Sequence[Mapping[str, Any]] = ()) -> bool:
        with self._lock:
            obj = self._known.pop(name, None)
        self.guard()
        deleted = self.kube.delete_admin_policy(self.api.version, self.api.plural, name)
        metrics.POLICY_WRITES.labels("delete", "ok" if deleted else "gone").inc()
        if deleted:
            self._record(obj or {"apiVersion": self.api.api_version, "kind": self.api.kind, "metadata": {"name": name}},
                         reason, f"removed: {why}", pods, "deleted")
        return deleted

    def lift(self, namespace: str, identity: str, instance: str | None, *, why: str,
             pods: Sequence[Mapping[str, Any]] = ()) -> bool:
        """End a quarantine: remove its object if netwarden knows of one (from its writes or the last list)."""
        name = admin_quarantine_name(namespace, instance, identity)
        with self._lock:
            known = name in self._known
        return self.remove(name, why=why, pods=pods) if known else False

    # -- lifecycle: the pod or workload went away ---------------------------------------------
    def known(self) -> list[Obj]:
        with self._lock:
            return list(self._known.values())

    def refresh(self) -> list[Obj]:
        """List netwarden's objects of this backend (start-up, new leader): the cache becomes the cluster's."""
        items = self.kube.list_admin_policies(self.api.version, self.api.plural, MANAGED_SELECTOR)
        with self._lock:
            self._known = {item["metadata"]["name"]: item for item in items}
        return items

    def remove_gone(self, is_live: Callable[[Target], bool], why: Callable[[Target], str]) -> int:
        """Remove every known object whose pod (or workload) is no longer live. Returns how many."""
        removed = 0
        for obj in self.known():
            if _adopted(obj):
                continue
            target = Target.of(obj)
            if not is_live(target):
                if self.remove(obj["metadata"]["name"], why=why(target), reason=names.EVENT_POLICY_REMOVED):
                    removed += 1
        return removed

    def collect(self, is_live: Callable[[Target], bool], why: Callable[[Target], str]) -> int:
        """Start-up and failover: list what exists, then remove the orphans."""
        self.refresh()
        return self.remove_gone(is_live, why)

    # -- audit --------------------------------------------------------------------------------
    def _record(self, obj: Mapping[str, Any], reason: str, message: str, pods: Iterable[Mapping[str, Any]],
                operation: str) -> None:
        self.event(obj, reason, message)
        refs = []
        for pod in pods:
            self.event({"apiVersion": "v1", "kind": "Pod", **pod}, reason, message)
            meta = pod.get("metadata") or {}
            refs.append(f"{meta.get('namespace')}/{meta.get('name')}")
        log_event(log, "info", {"event": "policy_change", "operation": operation, "reason": reason,
                                "policy": f"{self.api.kind}/{(obj.get('metadata') or {}).get('name')}",
                                "pods": refs, "message": message})


def _adopted(obj: Mapping[str, Any]) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(names.ANNOTATION_ADOPTED, "")).lower() == "true"


class AdminPolicyBackend:
    """The quarantine backend (netwarden/reconciler/quarantine.py's seam) backed by admin-tier objects.

    An Admin-tier Deny is final, so a pod needs no carve-out from its workload's policy: that policy
    keeps governing what the admin API cannot say (ingress from outside the cluster), nothing is loosened.
    """

    needs_carve_out = False

    def __init__(self, admin: AdminQuarantines) -> None:
        self.admin = admin
        self.name = admin.api.backend

    def ensure(self, work: Any) -> None:
        annotations = (work.change.manifest.get("metadata") or {}).get("annotations") or {}
        carried = {k: annotations[k] for k in (names.ANNOTATION_SCORE, names.ANNOTATION_EVIDENCE,
                                                names.ANNOTATION_EXPIRES_AT) if k in annotations}
        self.admin.apply(work.intent, mode=annotations.get(names.ANNOTATION_POLICY_MODE, names.MODE_ENFORCE),
                         annotations=carried, message=f"{work.change.message} ({self.admin.api.kind})",
                         pods=work.pods)

    def held(self, namespace: str, identity: str) -> set[str]:
        selector = (f"{MANAGED_SELECTOR},{names.LABEL_IDENTITY}={identity},"
                    f"{names.LABEL_POLICY_ROLE}={names.ROLE_QUARANTINE}")
        items = self.admin.kube.list_admin_policies(self.admin.api.version, self.admin.api.plural, selector)
        return {t.instance for t in map(Target.of, items) if t.namespace == namespace and t.instance}

    def remove(self, namespace: str, instance: str, *, message: str, reason: str,
               pods: Sequence[Mapping[str, Any]] = ()) -> None:
        self.admin.remove(admin_quarantine_name(namespace, instance, ""), why=message, pods=pods)


def list_admin_quarantines(kube: KubeClient) -> list[Obj]:
    """netwarden's admin-tier quarantine objects of every served kind (for status, explain, the report)."""
    try:
        served = kube.served_admin_policy_resources()
    except ApiError:
        return []
    out: list[Obj] = []
    seen: set[str] = set()
    for api in DISCOVERY_ORDER:
        if api.plural in served.get(api.version, ()) and api.plural not in seen:
            seen.add(api.plural)
            for item in kube.list_admin_policies(api.version, api.plural, MANAGED_SELECTOR):
                item.setdefault("apiVersion", api.api_version)
                item.setdefault("kind", api.kind)
                out.append(item)
    return out


def weak_containment_findings(kube: KubeClient, namespace: str | None = None) -> list[dict[str, str]]:
    """What `status`, `explain` and the report say about weak containment, from the cluster alone."""
    policies = kube.list_policies(namespace)
    pods = kube.list_objects("pods", namespace=namespace)[0]
    namespaces = kube.list_objects("namespaces")[0]
    widenings, allow_all = cluster_findings([*policies, *list_admin_quarantines(kube)], pods, namespaces)
    identity_of = {f"{p['metadata'].get('namespace')}/{p['metadata']['name']}":
                   (p["metadata"].get("labels") or {}).get(names.LABEL_IDENTITY, "") for p in pods}
    out = [{**w.to_dict(), "identity": identity_of.get(w.pod, ""), "namespace": w.pod.split("/")[0],
            "message": w.message()} for w in widenings]
    out += [{**a.to_dict(), "identity": "", "namespace": a.policy.split("/")[0], "message": a.message()}
            for a in allow_all]
    return out
