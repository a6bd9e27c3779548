"""Workload identity: which workload a pod belongs to, resolved from trusted sources.

The namespace comes from the request, never the pod body. The owning workload comes from the
pod's controller ownerReference, followed one step up (ReplicaSet -> Deployment, Job -> CronJob)
through owner objects the adapter fetched from the API, so their uids are verified. When an owner
could not be fetched, the Deployment name is derived from the ReplicaSet name minus the
pod-template-hash, and no owner is claimed for garbage collection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from netwarden.labelvalues import fit_label_value

POD_TEMPLATE_HASH = "pod-template-hash"

#: Kind -> short token used in identity values and policy names.
KIND_TOKENS: dict[str, str] = {
    "Deployment": "deploy",
    "StatefulSet": "sts",
    "DaemonSet": "ds",
    "Job": "job",
    "CronJob": "cronjob",
    "ReplicaSet": "rs",
    "Pod": "pod",
}
_TOKEN_KINDS = {token: kind for kind, token in KIND_TOKENS.items()}


@dataclass(frozen=True)
class OwnerRef:
    """An ownerReference (the fields netwarden needs)."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OwnerRef":
        return cls(
            api_version=str(data.get("apiVersion", "")),
            kind=str(data.get("kind", "")),
            name=str(data.get("name", "")),
            uid=str(data.get("uid", "")),
            controller=bool(data.get("controller", False)),
        )

    def to_dict(self, *, block_owner_deletion: bool = False) -> dict[str, Any]:
        ref: dict[str, Any] = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
        }
        if block_owner_deletion:
            ref["blockOwnerDeletion"] = True
        return ref


@dataclass(frozen=True)
class Workload:
    """The unit netwarden keeps one baseline policy and one behaviour baseline for."""

    namespace: str
    kind: str
    name: str
    #: The top-level owner object, verified through the API; the baseline policy hangs on it.
    owner: OwnerRef | None = None

    @property
    def identity(self) -> str:
        """Label value `<namespace>.<kind-token>.<name>`; long names are hashed, the namespace kept."""
        return workload_identity_value(self.namespace, self.kind, self.name)

    @property
    def kind_token(self) -> str:
        return KIND_TOKENS.get(self.kind, self.kind.lower())


def workload_identity_value(namespace: str, kind: str, name: str) -> str:
    token = KIND_TOKENS.get(kind, kind.lower())
    full = f"{namespace}.{token}.{name}"
    head = f"{namespace}.{token}."
    if len(full) <= 63:
        return fit_label_value(full)
    if len(head) < 40:
        return head + fit_label_value(name, 63 - len(head))
    return fit_label_value(full)


def namespace_of_identity(identity: str) -> str | None:
    """The namespace part of an identity value, when it is still readable (not fully hashed)."""
    parts = identity.split(".", 2)
    if len(parts) == 3 and parts[1] in _TOKEN_KINDS:
        return parts[0]
    return None


@dataclass(frozen=True)
class PodOrigin:
    """What the identity resolver needs from a pod (all from trusted places)."""

    namespace: str
    name: str
    generate_name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    owner_refs: Sequence[OwnerRef] = ()


def controller_of(owner_refs: Sequence[OwnerRef]) -> OwnerRef | None:
    for ref in owner_refs:
        if ref.controller:
            return ref
    return None


def resolve_workload(
    pod: PodOrigin,
    parents: Mapping[tuple[str, str], Sequence[OwnerRef] | None] | None = None,
) -> Workload:
    """Resolve the owning workload of a pod.

    `parents` maps (kind, name) of the pod's direct owner to that owner's own ownerReferences as
    fetched from the API (None when it could not be fetched). Only fetched owners become the
    policy's GC owner, because only they have a uid the API vouched for.
    """
    parents = parents or {}
    ref = controller_of(pod.owner_refs)
    if ref is None:
        return Workload(pod.namespace, "Pod", bare_pod_name(pod))
    fetched = parents.get((ref.kind, ref.name))
    if ref.kind == "ReplicaSet":
        if fetched is not None:
            top = controller_of(fetched)
            if top is not None and top.kind == "Deployment":
                return Workload(pod.namespace, "Deployment", top.name, top)
            return Workload(pod.namespace, "ReplicaSet", ref.name, ref)
        template_hash = pod.labels.get(POD_TEMPLATE_HASH, "")
        if template_hash and ref.name.endswith("-" + template_hash):
            return Workload(pod.namespace, "Deployment", ref.name[: -len(template_hash) - 1])
        return Workload(pod.namespace, "ReplicaSet", ref.name)
    if ref.kind == "Job":
        if fetched is not None:
            top = controller_of(fetched)
            if top is not None and top.kind == "CronJob":
                return Workload(pod.namespace, "CronJob", top.name, top)
            return Workload(pod.namespace, "Job", ref.name, ref)
        return Workload(pod.namespace, "Job", ref.name)
    if ref.kind in ("StatefulSet", "DaemonSet"):
        verified = ref if fetched is not None else None
        return Workload(pod.namespace, ref.kind, ref.name, verified)
    # Any other controller (a CRD operator, say) is its own workload kind.
    return Workload(pod.namespace, ref.kind, ref.name, ref if fetched is not None else None)


def bare_pod_name(pod: PodOrigin) -> str:
    """A bare pod is its own workload; a generateName-only pod is named by its stem."""
    if pod.name:
        return pod.name
    return pod.generate_name.rstrip("-") or "unnamed"
