"""Which alerts are reasons to act now: attributed, de-duplicated by their id, and aged.

An alert counts against the pod it names, or against the workload it names (a Falco k8s_audit alert
about a Deployment, an Alertmanager alert labelled `deployment`) as a whole; one that names neither
a pod nor a workload netwarden knows is answered as unattributed, with one of a few reasons. A
falcosidekick body sent five times is one alert, not five; a body from 2019 is evidence of the past,
not a reason to isolate a pod today. Pure: `now` is passed in; memory is bounded.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from netwarden.model.identity import workload_identity_value
from netwarden.reconciler.core.pods import PodIndex
from netwarden.reconciler.core.config import CoreConfig
from netwarden.reconciler.core.types import AlertTarget, SecurityAlert

#: Why an alert is kept as evidence but not acted on (the metric's `reason` label).
DUPLICATE = "duplicate"
TOO_OLD = "too-old"

#: Why an alert counts against no workload (the unattributed metric's `reason` label; a closed set).
NO_TARGET = "no-target"  # no namespace, or neither a pod nor a Kubernetes object named (a host's syscall alert)
NOT_A_WORKLOAD = "not-a-workload"  # names an object that runs no pods (a Secret, an Event, a Node)
UNKNOWN_POD = "unknown-pod"  # names a pod the cluster does not have now (gone, or not seen yet)
UNKNOWN_WORKLOAD = "unknown-workload"  # names a workload that has no pods here and that netwarden does not track
UNATTRIBUTED_REASONS = (NO_TARGET, NOT_A_WORKLOAD, UNKNOWN_POD, UNKNOWN_WORKLOAD)

POD_RESOURCE = "pods"
#: API resource (plural, lowercase: how k8s_audit and RBAC name it) -> the workload kind that runs pods.
WORKLOAD_RESOURCES = {
    "deployments": "Deployment",
    "statefulsets": "StatefulSet",
    "daemonsets": "DaemonSet",
    "replicasets": "ReplicaSet",
    "jobs": "Job",
    "cronjobs": "CronJob",
}
_TEMPLATE_HASH = re.compile(r"^(.+)-[a-z0-9]{1,10}$")
_SCHEDULED_JOB = re.compile(r"^(.+)-[0-9]{1,12}$")


@dataclass(frozen=True)
class Attribution:
    """Where an alert counts: one pod (`instance` set) or its workload as a whole (`instance` None);
    or, with `reason` set, nowhere, and `detail` says why in words."""

    identity: str | None = None
    namespace: str | None = None
    instance: str | None = None
    pod: str | None = None
    #: "deployments shop/web" when the alert counts against a workload it named, not a pod.
    workload: str | None = None
    reason: str | None = None
    detail: str = ""


def workload_identities(namespace: str, kind: str, name: str) -> tuple[str, ...]:
    """The identities a named workload may have, most likely first. netwarden keys a workload by its
    top owner, so a ReplicaSet is first its Deployment's (name minus the pod-template-hash) and a Job
    first its CronJob's (name minus the scheduled time); the caller takes the first it knows."""
    own = workload_identity_value(namespace, kind, name)
    if kind == "ReplicaSet" and (match := _TEMPLATE_HASH.match(name)):
        return workload_identity_value(namespace, "Deployment", match.group(1)), own
    if kind == "Job" and (match := _SCHEDULED_JOB.match(name)):
        return own, workload_identity_value(namespace, "CronJob", match.group(1))
    return (own,)


def attribute_alert(namespace: str | None, pod: str | None, target: AlertTarget | None, index: PodIndex,
                    known: Callable[[str], bool]) -> Attribution:
    """The pod or workload an alert is evidence about. A pod it names that belongs to the workload it
    names (or names alone) makes it pod-level; a workload named without such a pod makes it
    workload-level (kube-state-metrics alerts carry the exporter's own `pod` label beside
    `deployment`: that pod is not the subject). `known(identity)` says a workload has pods or state."""
    resource = target.resource if target is not None else None
    if not namespace:
        if resource is not None and resource != POD_RESOURCE and resource not in WORKLOAD_RESOURCES:
            return Attribution(reason=NOT_A_WORKLOAD, detail=f"names {_object(target)}, which runs no pods")
        return Attribution(reason=NO_TARGET, detail="names no namespace (and so no pod or workload in the cluster)")
    kind = WORKLOAD_RESOURCES.get(resource or "")
    if resource is not None and resource != POD_RESOURCE and kind is None:
        return Attribution(reason=NOT_A_WORKLOAD, detail=f"names {_object(target, namespace)}, which runs no pods")
    identity = None
    if kind is not None and target is not None and target.name:
        identity = next((i for i in workload_identities(namespace, kind, target.name) if known(i)), None)
    ref = index.by_pod.get((namespace, pod)) if pod else None
    if ref is not None and (kind is None or ref.identity == identity):
        return Attribution(ref.identity, ref.namespace, ref.instance, ref.pod)
    if identity is not None:
        return Attribution(identity, namespace, None, None, workload=_object(target, namespace))
    if kind is not None:
        named = _object(target, namespace)
        if not (target and target.name):
            return Attribution(reason=NO_TARGET, detail=f"names {named} without a name")
        return Attribution(reason=UNKNOWN_WORKLOAD, detail=f"names {named}, which has no pods netwarden knows")
    if pod:
        return Attribution(reason=UNKNOWN_POD, detail=f"names pod {namespace}/{pod}, which the cluster does not have now")
    return Attribution(reason=NO_TARGET, detail=f"names namespace {namespace} but no pod or workload in it")


def _object(target: AlertTarget | None, namespace: str | None = None) -> str:
    if target is None:
        return "nothing"
    where = f"{namespace}/" if namespace else ""
    return f"{target.resource} {where}{target.name or '(no name)'}"


def security_alert_key(alert: SecurityAlert) -> str:
    """falcosidekick's uuid when it sent one, else a hash of what the alert says (time included)."""
    if alert.alert_id:
        return f"id:{alert.alert_id}"
    content = [alert.source_format, alert.time, alert.namespace, alert.pod, alert.rule, alert.priority, alert.output]
    if alert.target is not None:
        content += [alert.target.resource, alert.target.name]
    return "sha256:" + hashlib.sha256(json.dumps(content, default=str).encode()).hexdigest()[:32]


@dataclass
class AlertMemory:
    """Alert keys seen recently (each remembered for `window` seconds, at most `max_keys` of them)."""

    window: float
    max_keys: int

    def __post_init__(self) -> None:
        self._until: OrderedDict[str, float] = OrderedDict()

    @classmethod
    def from_config(cls, config: CoreConfig) -> "AlertMemory":
        return cls(config.alert_dedup_seconds, config.alert_dedup_max)

    def seen(self, key: str, now: float) -> bool:
        """True when `key` was seen within the window; remembers it either way."""
        while self._until:
            oldest, until = next(iter(self._until.items()))
            if until > now and len(self._until) <= self.max_keys:
                break
            del self._until[oldest]
        if key in self._until:
            return True
        self._until[key] = now + self.window
        return False

    def __len__(self) -> int:
        return len(self._until)


def alert_verdict(alert: SecurityAlert, memory: AlertMemory, config: CoreConfig, now: float) -> str | None:
    """None when the alert is a reason to act now; else DUPLICATE or TOO_OLD."""
    if memory.seen(security_alert_key(alert), now):
        return DUPLICATE
    if now - alert.time > config.alert_max_age_seconds:
        return TOO_OLD
    return None
