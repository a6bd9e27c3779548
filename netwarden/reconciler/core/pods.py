"""The pod index: which pods exist, with which IPs, labels and workload. One home for the engine and the adapter.

The watch adapter (netwarden/reconciler/watch.py) feeds it every pod it sees, as a `PodRef` lifted once
out of the wire object; the engine resolves flow ends and alerts through it, the controllers look up
pods by name, instance and workload. Two sets of maps, one write path:

* every pod watched, by (namespace, name), by instance and by workload (finished and deleting pods
  included: garbage collection and the backfill need to see them);
* the pods the engine resolves (`by_pod`, `by_ip`, `by_identity`): live pods of a known workload; a
  hostNetwork pod's IP is its node's, so it is never resolved by IP.

Pure and unlocked: the reconciler's runtime writes and reads it under the engine lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from netwarden.model import names
from netwarden.model.admission import PodFacts, container_ports, service_account_of
from netwarden.model.identity import OwnerRef
from netwarden.model.policy import PortSpec, named_container_ports
from netwarden.model.reach import outside_policy_reach
from netwarden.reconciler.core.types import Endpoint

#: Pod-prefix answers remembered between pod changes.
MAX_PREFIXES = 4096


@dataclass(frozen=True, slots=True)
class PodRef:
    """One pod as netwarden knows it. The first seven fields are all the engine reads (and all a test
    or a replay needs to give); the rest are lifted from the wire object by `from_obj` for the adapter."""

    identity: str  # "" when the pod carries no identity label (not admitted yet)
    namespace: str
    pod: str
    instance: str | None = None
    ip: str | None = None
    purpose: str | None = None
    #: Why NetworkPolicy cannot reach this pod (hostNetwork), None when it can (netwarden.model.reach).
    outside_reach: str | None = None
    uid: str = ""
    phase: str = "Running"
    ready: bool = True
    restarts: int = 0
    labels: Mapping[str, str] = field(default_factory=dict, compare=False)
    annotations: Mapping[str, str] = field(default_factory=dict, compare=False)
    owner_refs: tuple[OwnerRef, ...] = ()
    service_account: str = ""
    container_ports: tuple[PortSpec, ...] = ()
    deleting: bool = False
    #: The wire object it was lifted from (Events name it; admission reads its ports), {} when built by hand.
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        """A Job pod that ran to completion (or failed) no longer needs a policy."""
        return self.phase in ("Succeeded", "Failed")

    @property
    def live(self) -> bool:
        return not self.finished and not self.deleting

    @property
    def resolvable(self) -> bool:
        """Whether the engine attributes traffic and alerts to it: a live pod of a known workload."""
        return bool(self.identity) and self.live

    @property
    def facts(self) -> PodFacts:
        """The pod as pod admission reads it (netwarden/model/admission.py)."""
        meta = self.raw.get("metadata") or {}
        return PodFacts(namespace=self.namespace, name=self.pod, generate_name=str(meta.get("generateName") or ""),
                        labels=dict(self.labels), annotations=dict(self.annotations), owner_refs=self.owner_refs,
                        service_account=self.service_account, ports=self.container_ports,
                        port_names=named_container_ports(self.raw), outside_reach=self.outside_reach)

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> "PodRef":
        """Lift a Pod wire object (as listed or watched) into the record."""
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        labels = meta.get("labels") or {}
        conditions = status.get("conditions") or []
        return cls(
            identity=labels.get(names.LABEL_IDENTITY) or "",
            namespace=meta.get("namespace") or "",
            pod=meta.get("name") or "",
            instance=labels.get(names.LABEL_INSTANCE),
            ip=status.get("podIP") or None,
            purpose=labels.get(names.LABEL_PURPOSE),
            outside_reach=outside_policy_reach(obj),
            uid=meta.get("uid") or "",
            phase=status.get("phase") or "Pending",
            ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
            restarts=sum(int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or []),
            labels=dict(labels),
            annotations=dict(meta.get("annotations") or {}),
            owner_refs=tuple(OwnerRef.from_dict(r) for r in meta.get("ownerReferences") or []),
            service_account=service_account_of(obj),
            container_ports=container_ports(obj),  # native sidecars' too: the same ports admission reads
            deleting=bool(meta.get("deletionTimestamp")),
            raw=obj,
        )


@dataclass
class PodIndex:
    """Every pod watched, and the live pods of known workloads the engine resolves (see the module doc)."""

    #: (namespace, pod) -> PodRef, resolvable pods only.
    by_pod: dict[tuple[str, str], PodRef] = field(default_factory=dict)
    by_ip: dict[str, PodRef] = field(default_factory=dict)
    #: identity -> pod name -> PodRef (the live replicas the workload has now).
    by_identity: dict[str, dict[str, PodRef]] = field(default_factory=dict)
    #: (namespace, pod-name prefix) -> the workload owning every pod with that prefix (None: no
    #: pod, or pods of several workloads). Emptied on any pod change; bounded.
    by_prefix: dict[tuple[str, str], PodRef | None] = field(default_factory=dict)
    #: (namespace, pod) -> PodRef, every pod watched (finished, deleting, not yet labelled too).
    every: dict[tuple[str, str], PodRef] = field(default_factory=dict)
    #: instance label -> PodRef, every pod watched.
    by_instance: dict[str, PodRef] = field(default_factory=dict)
    #: identity -> pod name -> PodRef, every pod watched.
    members: dict[str, dict[str, PodRef]] = field(default_factory=dict)
    #: Moves whenever the pods the engine resolves change (`by_pod`, hence `by_ip` and `by_prefix`):
    #: an attribution remembered at one version holds until the next (the engine's endpoint cache).
    version: int = 0

    def add(self, ref: PodRef) -> PodRef | None:
        """Put (or replace) a pod; returns what it replaced."""
        key = (ref.namespace, ref.pod)
        old = self.remove(ref.namespace, ref.pod)
        self.every[key] = ref
        if ref.instance:
            self.by_instance[ref.instance] = ref
        if ref.identity:
            self.members.setdefault(ref.identity, {})[ref.pod] = ref
        if ref.resolvable:
            self.by_pod[key] = ref
            if ref.ip and ref.outside_reach is None:  # a hostNetwork pod's IP is its node's, not its own
                self.by_ip[ref.ip] = ref
            self.by_identity.setdefault(ref.identity, {})[ref.pod] = ref
            self.version += 1
        if self.by_prefix:
            self.by_prefix.clear()
        return old

    def remove(self, namespace: str, pod: str) -> PodRef | None:
        """Forget a pod; returns what was known of it."""
        key = (namespace, pod)
        ref = self.every.pop(key, None)
        if ref is None:
            return None
        if ref.instance and self.by_instance.get(ref.instance) is ref:
            del self.by_instance[ref.instance]
        _drop(self.members, ref)
        if self.by_pod.get(key) is ref:
            del self.by_pod[key]
            if ref.ip and self.by_ip.get(ref.ip) is ref:
                del self.by_ip[ref.ip]
            _drop(self.by_identity, ref)
            self.version += 1
        if self.by_prefix:
            self.by_prefix.clear()
        return ref

    # -- the adapter's questions -----------------------------------------------------------------
    def pod(self, namespace: str, name: str) -> PodRef | None:
        return self.every.get((namespace, name))

    def pod_by_instance(self, instance: str) -> PodRef | None:
        return self.by_instance.get(instance)

    def pods_of(self, identity: str) -> list[PodRef]:
        """Every pod of a workload (live or not), by name."""
        members = self.members.get(identity, {})
        return [members[name] for name in sorted(members)]

    # -- the engine's questions ------------------------------------------------------------------
    def lookup(self, endpoint: Endpoint) -> PodRef | None:
        pod = endpoint.pod
        if pod and endpoint.namespace:
            ref = self.by_pod.get((endpoint.namespace, pod))
            if ref is not None:
                return ref
        ip = endpoint.ip
        if ip and not endpoint.world:
            ref = self.by_ip.get(ip)
            if ref is not None:
                return ref
        if endpoint.identity and endpoint.namespace:
            return PodRef(endpoint.identity, endpoint.namespace, endpoint.pod or "")
        if endpoint.pod_prefix and endpoint.namespace:
            return self.owner_of_prefix(endpoint.namespace, endpoint.pod_prefix)
        return None

    def owner_of_prefix(self, namespace: str, prefix: str) -> PodRef | None:
        """The workload whose pods are named `prefix` (Calico aggregates flows by pod prefix,
        "frontend-5d9f8b7c6-*"): a workload-level PodRef (no pod, no instance), or None when no
        pod has the prefix or pods of more than one workload do."""
        key = (namespace, prefix)
        if key in self.by_prefix:
            return self.by_prefix[key]
        stem = prefix.rstrip("*")
        named = [(name[len(stem):], ref) for (ns, name), ref in self.by_pod.items()
                 if ns == namespace and name.startswith(stem)]
        # Calico's prefix is the pods' generateName ("web-5d9f8b7c6-"): pods it generated have no
        # further "-"; failing those, any pod whose name starts with it.
        identities = {ref.identity for rest, ref in named if "-" not in rest} or {ref.identity for _, ref in named}
        owner = PodRef(identities.pop(), namespace, "") if len(identities) == 1 else None
        if len(self.by_prefix) >= MAX_PREFIXES:
            self.by_prefix.clear()
        self.by_prefix[key] = owner
        return owner

    def replicas(self, identity: str) -> tuple[PodRef, ...]:
        return tuple(self.by_identity.get(identity, {}).values())

    def pod_count(self) -> int:
        return len(self.by_pod)


def _drop(groups: dict[str, dict[str, PodRef]], ref: PodRef) -> None:
    group = groups.get(ref.identity)
    if group is not None and group.get(ref.pod) is ref:
        del group[ref.pod]
        if not group:
            del groups[ref.identity]
