"""Workload identity: which workload a pod belongs to, resolved from trusted sources.

The namespace comes from the request, never the pod body. The owning workload comes from the
pod's controller ownerReference, but only when (1) the pod was created by that kind's controller
(the request's user is one of `PodCreators`: an ownerReference's uid is no secret, anyone who can
read the ReplicaSet can name it, so the reference alone proves nothing about who made the pod) and
(2) the adapter fetched that owner from the API and its uid matched the reference, followed one
step up (ReplicaSet -> Deployment, Job -> CronJob) the same way. A reference that fails either
(another creator, a creator nobody knows as in the reconciler's backfill, wrong uid, owner absent,
a kind netwarden cannot read, the API unreachable) proves nothing: the pod is then its own bare-pod
workload, so it can never take another workload's identity or write another workload's baseline.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

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
    #: Who created it: the admission request's userInfo.username; None when nobody knows (a pod the
    #: webhook never saw, labelled later by the reconciler's backfill).
    creator: str | None = None
    #: The creator was judged already: the pod carries netwarden's identity label, which only pod
    #: admission sets (the guard refuses it from anyone else). The caller must still check that what
    #: it resolves equals that label (the reconciler re-creating a missing baseline does).
    creator_checked: bool = False
    #: netwarden's random instance value for the pod (what names a generateName bare pod apart).
    instance: str = ""


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


#: Who creates the pods of each controller kind in upstream Kubernetes, as `Kind=username` ("*": every
#: kind). kube-controller-manager with --use-service-account-credentials (kubeadm's and most
#: distributions' default) acts as one service account per controller; without it, as
#: system:kube-controller-manager for all of them.
DEFAULT_POD_CREATORS: tuple[str, ...] = (
    "ReplicaSet=system:serviceaccount:kube-system:replicaset-controller",
    "Job=system:serviceaccount:kube-system:job-controller",
    "StatefulSet=system:serviceaccount:kube-system:statefulset-controller",
    "DaemonSet=system:serviceaccount:kube-system:daemon-set-controller",
    "*=system:kube-controller-manager",
)


@dataclass(frozen=True)
class PodCreators:
    """The users whose pods may claim a controller owner: that kind's controller, nobody else.

    Anyone allowed to create pods can write any ownerReference, with the right uid (a uid is readable
    by whoever can get the owner), and Kubernetes lets it through: OwnerReferencesPermissionEnforcement
    (off by default) only guards blockOwnerDeletion and changes to existing references. So the
    reference is believed only from the controller that creates that kind's pods.
    """

    by_kind: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, entries: Iterable[str]) -> "PodCreators":
        """From `Kind=username` entries (`*=username` for every kind); ValueError names a bad one."""
        by_kind: dict[str, set[str]] = {}
        for entry in entries:
            kind, sep, user = str(entry).partition("=")
            kind, user = kind.strip(), user.strip()
            if not sep or not user or (kind != "*" and kind not in VERIFIABLE_POD_OWNERS):
                raise ValueError(f"{entry!r}: expected Kind=username with Kind one of "
                                 f"{', '.join(sorted(VERIFIABLE_POD_OWNERS))} or *")
            by_kind.setdefault(kind, set()).add(user)
        return cls({kind: frozenset(users) for kind, users in by_kind.items()})

    def may_create_for(self, kind: str, creator: str | None) -> bool:
        if not creator:
            return False
        return creator in self.by_kind.get(kind, ()) or creator in self.by_kind.get("*", ())


UPSTREAM_POD_CREATORS = PodCreators.parse(DEFAULT_POD_CREATORS)


def claimed_controller(pod: PodOrigin, creators: PodCreators) -> OwnerRef | None:
    """The pod's controller reference when it may count: a kind netwarden verifies, and the pod was
    created by that kind's controller. The one rule for the webhook, its guard and the backfill."""
    ref = controller_of(pod.owner_refs)
    if ref is None or ref.kind not in VERIFIABLE_POD_OWNERS:
        return None
    if not (pod.creator_checked or creators.may_create_for(ref.kind, pod.creator)):
        return None
    return ref


#: Fetches an owner and compares its uid: its own ownerReferences, or None when not verified.
OwnerFetch = Callable[[OwnerRef], Sequence[OwnerRef] | None]


def verify_owners(pod: PodOrigin, creators: PodCreators, fetch: OwnerFetch) -> dict[tuple[str, str], Sequence[OwnerRef] | None]:
    """The parents `resolve_workload` needs: the claimed controller and the owner above it, each
    fetched (a reference without a uid names nothing the API can vouch for). Nothing is fetched for
    a claim that cannot count, so a pod naming owners costs no API call."""
    ref = claimed_controller(pod, creators)
    if ref is None:
        return {}
    first = fetch(ref) if ref.uid else None
    parents: dict[tuple[str, str], Sequence[OwnerRef] | None] = {(ref.kind, ref.name): first}
    top = controller_of(first or [])
    if first is not None and top is not None and top.kind == VERIFIABLE_TOP_OWNERS.get(ref.kind):
        parents[(top.kind, top.name)] = fetch(top) if top.uid else None
    return parents


def resolve_workload(pod: PodOrigin, parents: Parents | None = None,
                     creators: PodCreators = UPSTREAM_POD_CREATORS) -> Workload:
    """Resolve the owning workload of a pod from owners its controller claimed and the API verified.

    The claim counts only from the controller of that kind (`claimed_controller`).
    `parents[(kind, name)]` is the fetched owner's own ownerReferences, or None when it was not
    verified. The pod's controller must be verified to count; the owner above it (Deployment,
    CronJob) counts unless the adapter reports it unverified (`verify_owners` always checks it). An
    unverified controller leaves the pod its own workload: it never yields another's identity.
    """
    parents = parents or {}
    ref = claimed_controller(pod, creators)
    if ref is None:
        return bare_workload(pod)
    fetched = parents.get((ref.kind, ref.name))
    if fetched is None:
        return bare_workload(pod)
    top_kind = VERIFIABLE_TOP_OWNERS.get(ref.kind)
    top = controller_of(fetched)
    if top_kind and top is not None and top.kind == top_kind:
        if (top.kind, top.name) not in parents or parents[(top.kind, top.name)] is not None:
            return Workload(pod.namespace, top.kind, top.name, top)
    return Workload(pod.namespace, ref.kind, ref.name, ref)


def bare_workload(pod: PodOrigin) -> Workload:
    return Workload(pod.namespace, "Pod", bare_pod_name(pod))


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


#: Joins a generateName stem and the pod's instance token in a bare pod's workload name: a character
#: label values allow and pod names (DNS subdomains) never contain, so no pod can be named into it.
GENERATED_MARK = "_"
#: Hex digits of the instance kept (48 random bits: pods of one stem stay apart).
GENERATED_TOKEN_LENGTH = 12


def bare_pod_name(pod: PodOrigin) -> str:
    """A bare pod is its own workload, never another pod's.

    A generateName pod has no name yet when the mutating webhook sees it (the API server generates
    it later), so its name cannot tell it apart; the stem alone would make every `web-` pod, and a
    pod named `web`, one workload sharing baseline, risk and quarantine. Its workload is named by
    stem, `GENERATED_MARK` and netwarden's random instance, which the mutating webhook chose and the
    validating webhook and the reconciler read back from the pod's label, so all three agree.
    """
    stem = pod.generate_name.rstrip("-")
    if stem:
        token = "".join(c for c in pod.instance if c.isascii() and c.isalnum())[-GENERATED_TOKEN_LENGTH:]
        return f"{stem}{GENERATED_MARK}{token}" if token else stem
    return pod.name or "unnamed"
