"""Workload identity: which workload a pod belongs to, resolved from trusted sources.

The namespace comes from the request, never the pod body. The owning workload comes from the
pod's controller ownerReference, but only when the adapter fetched that owner from the API and its
uid matched the reference, followed one step up (ReplicaSet -> Deployment, Job -> CronJob) the
same way. A reference nobody verified (wrong uid, owner absent, a kind netwarden cannot read, the
API unreachable) proves nothing: the pod is then its own bare-pod workload, so it can never take
another workload's identity or write another workload's baseline.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from netwarden.model.labelvalues import fit_label_value

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
        return kind_token(self.kind)


def kind_token(kind: str) -> str:
    """Short token of a kind; a kind netwarden does not know is reduced to lowercase alphanumerics."""
    return KIND_TOKENS.get(kind) or "".join(c for c in kind.lower() if c.isascii() and c.isalnum())[:20] or "owner"


@functools.lru_cache(maxsize=8192)  # asked several times per admission, for workloads that repeat
def workload_identity_value(namespace: str, kind: str, name: str) -> str:
    token = kind_token(kind)
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


#: What the adapter reports per owner it was asked to verify, keyed by (kind, name) of the owner:
#: its own ownerReferences when the API returned it with the referenced uid, None when it could not
#: be verified. A key that is absent was not checked.
Parents = Mapping[tuple[str, str], Sequence[OwnerRef] | None]

#: Kinds a pod's controller may have that the adapter can fetch and verify (first level).
VERIFIABLE_POD_OWNERS = frozenset({"ReplicaSet", "Job", "StatefulSet", "DaemonSet"})
#: The one level above: ReplicaSet -> Deployment, Job -> CronJob.
VERIFIABLE_TOP_OWNERS: dict[str, str] = {"ReplicaSet": "Deployment", "Job": "CronJob"}


def resolve_workload(pod: PodOrigin, parents: Parents | None = None) -> Workload:
    """Resolve the owning workload of a pod from owners the API verified (uid included).

    `parents[(kind, name)]` is the fetched owner's own ownerReferences, or None when it was not
    verified. The pod's controller must be verified to count; the owner above it (Deployment,
    CronJob) counts unless the adapter reports it unverified (the webhook always checks it). An
    unverified controller leaves the pod its own workload: it never yields another's identity.
    """
    parents = parents or {}
    ref = controller_of(pod.owner_refs)
    if ref is None or ref.kind not in VERIFIABLE_POD_OWNERS:
        return Workload(pod.namespace, "Pod", bare_pod_name(pod))
    fetched = parents.get((ref.kind, ref.name))
    if fetched is None:
        return Workload(pod.namespace, "Pod", bare_pod_name(pod))
    top_kind = VERIFIABLE_TOP_OWNERS.get(ref.kind)
    top = controller_of(fetched)
    if top_kind and top is not None and top.kind == top_kind:
        if (top.kind, top.name) not in parents or parents[(top.kind, top.name)] is not None:
            return Workload(pod.namespace, top.kind, top.name, top)
    return Workload(pod.namespace, ref.kind, ref.name, ref)


def unverified_owner(pod: PodOrigin, workload: Workload) -> OwnerRef | None:
    """The controller reference the pod claimed but that did not become its workload (for a warning)."""
    ref = controller_of(pod.owner_refs)
    return ref if ref is not None and workload.kind == "Pod" else None


def guess_workload(pod: PodOrigin) -> Workload:
    """Offline guess from names alone (replay of recorded pods without API access). Never used for
    labels or policies: a name proves nothing (a ReplicaSet name minus pod-template-hash is a guess)."""
    ref = controller_of(pod.owner_refs)
    if ref is None:
        return Workload(pod.namespace, "Pod", bare_pod_name(pod))
    template_hash = pod.labels.get(POD_TEMPLATE_HASH, "")
    if ref.kind == "ReplicaSet" and template_hash and ref.name.endswith("-" + template_hash):
        return Workload(pod.namespace, "Deployment", ref.name[: -len(template_hash) - 1])
    return Workload(pod.namespace, ref.kind if ref.kind in KIND_TOKENS else "Pod", ref.name)


def bare_pod_name(pod: PodOrigin) -> str:
    """A bare pod is its own workload; a generateName pod is named by its stem.

    The stem wins even once the name is generated: the mutating webhook sees the pod before the
    API server generates its name, the validating webhook and the reconciler after, and all three
    must give the same identity.
    """
    stem = pod.generate_name.rstrip("-")
    return stem or pod.name or "unnamed"
