"""Saying when containment is weak: findings of netwarden.model.containment as Events, a log line and a metric.

Where only NetworkPolicy holds a quarantine or a tightening, a user's policy selecting the same pod
adds its allows (NetworkPolicies add up). The reconciler looks after each write that contains a pod,
when a baseline is written, and every `recheck_seconds` for namespaces with contained pods (user
policies are not watched). Each finding is reported once, as a Warning Event on the pod and on the
user's policy; the gauge counts what holds now. Nothing here changes or deletes a user's policy.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Mapping, Sequence

from netwarden.model import names
from netwarden.model.containment import KIND_ALLOW_ALL, KIND_QUARANTINE, KIND_TIGHTENED, AllowAll, Widening, cluster_findings
from netwarden.platform.kube import KubeClient
from netwarden.platform.logs import log_event
from netwarden.reconciler import metrics
from netwarden.reconciler.watch import ClusterIndex

log = logging.getLogger("netwarden.reconciler.containment")

Obj = dict[str, Any]
Event = Callable[..., None]


class ContainmentReporter:
    """Checks one namespace at a time; remembers what it reported so each finding is said once."""

    def __init__(self, kube: KubeClient, index: ClusterIndex, event: Event,
                 admin_objects: Callable[[], Sequence[Obj]] = lambda: ()) -> None:
        self.kube = kube
        self.index = index
        self.event = event
        self.admin_objects = admin_objects
        self._lock = threading.Lock()
        self._checking = threading.Lock()
        #: namespace -> findings reported and still holding (keys: Widening / AllowAll values)
        self._current: dict[str, set[Widening | AllowAll]] = {}

    def findings(self, namespace: str) -> tuple[list[Widening], list[AllowAll], list[Obj]]:
        """What holds in a namespace now, by netwarden.model.containment.cluster_findings (one list call)."""
        policies = self.kube.list_policies(namespace)
        admin = [o for o in self.admin_objects()
                 if ((o.get("metadata") or {}).get("annotations") or {}).get(names.ANNOTATION_TARGET_NAMESPACE)
                 == namespace]
        pods = [p.raw for p in self.index.pods() if p.live and p.raw]
        views = [self.index.namespace(n) for n in {p["metadata"].get("namespace", "") for p in pods} | {namespace}]
        namespaces = [{"metadata": {"name": v.facts.name, "labels": dict(v.facts.labels),
                                    "annotations": dict(v.facts.annotations)}} for v in views if v is not None]
        widenings, allow_all = cluster_findings([*policies, *admin], pods, namespaces)
        return [w for w in widenings if w.pod.startswith(f"{namespace}/")], allow_all, policies

    def check(self, namespace: str, *, baseline: Mapping[str, Any] | None = None) -> list[Widening | AllowAll]:
        """Look at a namespace now; report new findings. With `baseline` (just written), its allow-alls go on it too.

        One check at a time: a check that listed earlier must not overwrite what a later one found.
        """
        with self._checking:
            return self._check(namespace, baseline)

    def _check(self, namespace: str, baseline: Mapping[str, Any] | None) -> list[Widening | AllowAll]:
        widenings, allow_all, policies = self.findings(namespace)
        by_ref = {f"{p['metadata'].get('namespace')}/{p['metadata']['name']}": p for p in policies}
        found: set[Widening | AllowAll] = {*widenings, *allow_all}
        with self._lock:
            new = found - self._current.get(namespace, set())
            self._current[namespace] = found
            totals = {KIND_QUARANTINE: 0, KIND_TIGHTENED: 0, KIND_ALLOW_ALL: 0}
            for items in self._current.values():
                for item in items:
                    totals[item.kind if isinstance(item, Widening) else KIND_ALLOW_ALL] += 1
        for kind, count in totals.items():
            metrics.WEAK_CONTAINMENT.labels(kind).set(count)
        for item in sorted(new, key=lambda i: json.dumps(i.to_dict(), sort_keys=True)):
            reason = names.EVENT_CONTAINMENT_WEAK if isinstance(item, Widening) else names.EVENT_ALLOW_ALL_POLICY
            policy = by_ref.get(item.policy)
            if policy is not None:
                self.event(policy, reason, item.message(), type_="Warning")
            if isinstance(item, Widening):
                pod_namespace, _, pod_name = item.pod.partition("/")
                pod = self.index.pod(pod_namespace, pod_name)
                if pod is not None:
                    self.event({"apiVersion": "v1", "kind": "Pod", "metadata": {
                        "namespace": pod.namespace, "name": pod.pod, "uid": pod.uid}}, reason, item.message(),
                        type_="Warning")
            log_event(log, "warning", {"event": "weak_containment", "reason": reason, **item.to_dict(),
                                       "message": item.message()})
        if baseline is not None:
            for item in allow_all:
                self.event(baseline, names.EVENT_ALLOW_ALL_POLICY, item.message(), type_="Warning")
        return sorted(new, key=lambda i: json.dumps(i.to_dict(), sort_keys=True))

    def namespaces_to_recheck(self) -> set[str]:
        """Namespaces with a contained pod or a reported finding (a user may add or remove a policy any time)."""
        out = {ns for ns, items in self._current.items() if items}
        for policy in self.index.policies():
            step = ((policy.get("metadata") or {}).get("annotations") or {}).get(names.ANNOTATION_STEP)
            if step in (names.STEP_QUARANTINED, names.STEP_TIGHTENED):
                out.add((policy.get("metadata") or {}).get("namespace", ""))
        for obj in self.admin_objects():
            out.add(((obj.get("metadata") or {}).get("annotations") or {}).get(names.ANNOTATION_TARGET_NAMESPACE, ""))
        out.discard("")
        return out
