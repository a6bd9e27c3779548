"""Declaration warnings as Kubernetes Events on the workload, once per workload per distinct warning.

A bad `netwarden.io/allow-from` / `allow-to` entry is skipped with an admission warning, but an
admission warning reaches only whoever created the pod: for a Deployment's pod that is the ReplicaSet
controller, so nobody reads it. The reconciler (not the webhook) also records each one as a Warning
Event on the workload's top owner (the baseline policy's verified ownerReference; a bare pod is its
own workload): it runs off the admission path (no API call added to a pod create), it sees pods that
were admitted while the webhook was down, and it writes only while it leads, so one process decides
what was said. Already said survives a restart: the first time a workload is looked at, the Events on
its owner are read back, and a warning already there is not repeated.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable, Mapping

from netwarden.model import names
from netwarden.model.declarations import declaration_warnings
from netwarden.platform.kube import KubeClient
from netwarden.platform.logs import log_event

log = logging.getLogger("netwarden.reconciler.declarations")
Obj = dict[str, Any]
#: Distinct warnings told per workload (a pod template with hundreds of bad entries is still bounded).
MAX_WARNINGS_PER_WORKLOAD = 32
#: Workloads remembered (the oldest forgotten first; a forgotten one is read back from its Events).
MAX_WORKLOADS = 10_000


def involved_workload(policy: Mapping[str, Any] | None, pod: Mapping[str, Any]) -> Obj:
    """The object the Event is about: the baseline policy's owner (the verified top-level workload), or
    the pod itself when the workload is a bare pod (its policy has no owner)."""
    meta = (policy or {}).get("metadata") or {}
    owners = meta.get("ownerReferences") or []
    if not owners:
        return dict(pod, apiVersion=pod.get("apiVersion", "v1"), kind=pod.get("kind", "Pod"))
    owner = owners[0]
    return {"apiVersion": owner.get("apiVersion", ""), "kind": owner.get("kind", ""),
            "metadata": {"name": owner.get("name", ""), "namespace": meta.get("namespace", ""),
                         "uid": owner.get("uid", "")}}


class DeclarationEvents:
    """Remembers which warnings each workload was told (by the involved object's uid, else its name)."""

    def __init__(self, kube: KubeClient, emit: Callable[[Mapping[str, Any], str, str, str], None],
                 may_emit: Callable[[], bool]) -> None:
        self.kube = kube
        self.emit = emit
        self.may_emit = may_emit
        self._told: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def note(self, identity: str, policy: Mapping[str, Any] | None, pods: Iterable[Mapping[str, Any]]) -> int:
        """Record an Event for each warning of these pods' declarations not yet told; returns how many."""
        warnings: list[str] = []
        first_pod: Mapping[str, Any] | None = None
        for pod in pods:
            first_pod = first_pod or pod
            annotations = (pod.get("metadata") or {}).get("annotations") or {}
            warnings += [w for w in declaration_warnings(annotations) if w not in warnings]
        if not warnings or first_pod is None or not self.may_emit():
            return 0
        involved = involved_workload(policy, first_pod)
        meta = involved["metadata"]
        key = meta.get("uid") or f"{involved['kind']}/{meta.get('namespace')}/{meta.get('name')}"
        with self._lock:
            told = self._told.get(key)
        if told is None:
            told = self._already_recorded(involved)
        new = [w for w in warnings if w not in told][: max(0, MAX_WARNINGS_PER_WORKLOAD - len(told))]
        for warning in new:
            self.emit(involved, names.EVENT_DECLARATION_IGNORED, warning, "Warning")
            told.add(warning)
        with self._lock:
            self._told[key] = told
            while len(self._told) > MAX_WORKLOADS:
                del self._told[next(iter(self._told))]
        if new:
            log_event(log, "info", {"event": "declaration_warnings_recorded", "identity": identity,
                                    "object": f"{involved['kind']}/{meta.get('name')}", "warnings": new})
        return len(new)

    def _already_recorded(self, involved: Mapping[str, Any]) -> set[str]:
        """Warnings already recorded on the object (by an earlier leader): not repeated."""
        meta = involved["metadata"]
        try:
            events = self.kube.list_events(meta.get("namespace") or "default", meta.get("name") or "")
        except Exception as exc:  # noqa: BLE001 - unreadable: tell again rather than never
            log.warning("events of %s/%s unreadable: %s", meta.get("namespace"), meta.get("name"), exc)
            return set()
        return {str(e.get("message")) for e in events if e.get("reason") == names.EVENT_DECLARATION_IGNORED
                and (e.get("involvedObject") or {}).get("kind") == involved.get("kind")}
