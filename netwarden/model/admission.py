"""Pod admission, pure: one pod's facts in, its netwarden labels and its workload's baseline out.

The one function (`admit_pod`) behind every baseline netwarden writes: the webhook calls it with the
pod of an AdmissionReview (netwarden/webhook/admission.py keeps only the envelope), the reconciler's backfill
with a pod admitted without the webhook, and the reconciler's runtime takes its declared baseline
(`declared_intent`) from the same facts. So a backfilled or learned-from baseline equals the
admitted one, native sidecars' ports included.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from netwarden.model import names
from netwarden.model.declarations import parse_peer_declarations, warnings_of
from netwarden.model.identity import (
    UPSTREAM_POD_CREATORS,
    OwnerRef,
    Parents,
    PodCreators,
    PodOrigin,
    Workload,
    resolve_workload,
    unverified_owner,
)
from netwarden.model.labels import NamespaceFacts, derive_pod_labels, is_opted_in, namespace_mode, spoofed_label_keys
from netwarden.model.policy import (
    DnsTarget,
    PolicyIntent,
    PolicyMeta,
    PortName,
    PortSpec,
    baseline_intent,
    baseline_policy_name,
    named_container_ports,
    pod_port_entries,
    render_network_policy,
)
from netwarden.model.reach import outside_policy_reach

#: Workload kinds whose verified object may own (garbage-collect) the baseline policy. A ReplicaSet
#: is one only when no Deployment controls it (resolve_workload returns the Deployment otherwise).
OWNER_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet"})


@dataclass(frozen=True)
class AdmissionSettings:
    """What pod admission needs from the configuration (each process builds it once from NetwardenConfig)."""

    default_mode: str = names.DEFAULT_MODE
    dns: DnsTarget = field(default_factory=DnsTarget)
    #: Usernames allowed to change netwarden.io/* labels on UPDATE (netwarden's own service accounts).
    trusted_usernames: frozenset[str] = frozenset()
    #: Usernames also allowed to write netwarden's NetworkPolicies (operators running netwarden's CLI).
    policy_writers: frozenset[str] = frozenset()
    #: Whose pods may claim a controller owner (cluster.pod_creators): that kind's controller only.
    pod_creators: PodCreators = UPSTREAM_POD_CREATORS


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def service_account_of(pod: Mapping[str, Any]) -> str:
    spec = pod.get("spec") or {}
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")


def container_ports(pod: Mapping[str, Any]) -> tuple[PortSpec, ...]:
    """Declared containerPorts with their protocol: app containers and sidecars (restartable init containers)."""
    ports: set[PortSpec] = set()
    for port in pod_port_entries(pod):
        number = port.get("containerPort")
        if isinstance(number, int) and 1 <= number <= 65535:
            ports.add(PortSpec(str(port.get("protocol") or "TCP").upper(), number))
    return tuple(sorted(ports, key=PortSpec.sort_key))


@dataclass(frozen=True)
class PodFacts:
    """What admission reads of a pod, lifted once out of the wire object."""

    namespace: str
    name: str
    generate_name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    owner_refs: tuple[OwnerRef, ...] = ()
    service_account: str = "default"
    ports: tuple[PortSpec, ...] = ()
    #: Its named containerPorts: what a named port declared in allow-from means for this pod.
    port_names: tuple[PortName, ...] = ()
    #: Why NetworkPolicy cannot reach this pod (hostNetwork), or None.
    outside_reach: str | None = None
    #: Who created it (the request's userInfo.username); None when unknown (the reconciler's backfill).
    creator: str | None = None
    #: See PodOrigin.creator_checked (a pod already labelled by admission).
    creator_checked: bool = False

    @classmethod
    def of_pod(cls, pod: Mapping[str, Any], namespace: str, name: str = "", creator: str | None = None) -> "PodFacts":
        """`namespace` is the caller's authority (the request's); `name` a fallback for a pod with generateName;
        `creator` the request's user."""
        meta = pod.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        return cls(
            namespace=namespace,
            name=str(meta.get("name") or name or ""),
            generate_name=str(meta.get("generateName") or ""),
            labels=_str_map(meta.get("labels")),
            annotations=_str_map(meta.get("annotations")),
            owner_refs=tuple(OwnerRef.from_dict(r) for r in meta.get("ownerReferences") or [] if isinstance(r, dict)),
            service_account=service_account_of(pod),
            ports=container_ports(pod),
            port_names=named_container_ports(pod),
            outside_reach=outside_policy_reach(pod),
            creator=creator,
        )

    @property
    def origin(self) -> PodOrigin:
        return PodOrigin(namespace=self.namespace, name=self.name, generate_name=self.generate_name,
                         labels=dict(self.labels), owner_refs=self.owner_refs, creator=self.creator,
                         creator_checked=self.creator_checked)


def is_enforcing(mode: str) -> bool:
    """learn and dry-run observe only: the baseline selects the workload but allows everything."""
    return mode in (names.MODE_ENFORCE, names.MODE_APPROVE)


def policy_owner(workload: Workload) -> dict[str, Any] | None:
    """The verified top-level owner as an ownerReference; never blockOwnerDeletion (we must not hold deletes up)."""
    if workload.owner is None or workload.kind not in OWNER_KINDS or workload.owner.kind != workload.kind:
        return None
    return workload.owner.to_dict(block_owner_deletion=False)


def declared_intent(facts: PodFacts, workload: Workload, mode: str) -> tuple[PolicyIntent, tuple[str, ...]]:
    """The workload's baseline from the pod's declarations and ports, and a warning per entry ignored."""
    declared, warnings = {}, []
    for key in (names.ANNOTATION_ALLOW_FROM, names.ANNOTATION_ALLOW_TO):
        parsed = parse_peer_declarations(facts.annotations.get(key))
        declared[key] = parsed.rules
        warnings += warnings_of(key, parsed)
    intent = baseline_intent(workload, declared[names.ANNOTATION_ALLOW_FROM], declared[names.ANNOTATION_ALLOW_TO],
                             facts.ports, enforcing=is_enforcing(mode), port_names=facts.port_names)
    return intent, tuple(warnings)


@dataclass(frozen=True)
class PodAdmission:
    """An opted-in pod's labels and its workload's baseline."""

    workload: Workload
    #: netwarden's labels for the pod.
    labels: Mapping[str, str]
    #: Reserved labels the pod set itself that no decision gives (to remove).
    spoofed: tuple[str, ...]
    warnings: tuple[str, ...]
    #: The workload's baseline NetworkPolicy (None: NetworkPolicy cannot reach the pod).
    policy_manifest: dict[str, Any] | None


def admit_pod(facts: PodFacts, namespace: NamespaceFacts, parents: Parents, instance: str,
              settings: AdmissionSettings) -> PodAdmission | None:
    """The labels and baseline of a pod being admitted; None when neither the namespace nor the pod opts in."""
    if not is_opted_in(namespace, facts.labels, facts.annotations):
        return None
    origin = replace(facts.origin, instance=instance)
    workload = resolve_workload(origin, parents, settings.pod_creators)
    derived = derive_pod_labels(workload, namespace, facts.service_account, facts.labels, facts.annotations, instance)
    warnings = list(derived.warnings)  # already names every reserved label the pod set (replaced or removed)
    claimed = unverified_owner(origin, workload)
    if claimed is not None:
        why = ("could not be verified through the API"
               if settings.pod_creators.may_create_for(claimed.kind, facts.creator)
               else f"counts only for pods its {claimed.kind} controller creates, and "
                    f"{facts.creator or 'a creator netwarden did not see'} created this one")
        warnings.append(
            f"owner {claimed.kind} {claimed.name!r} (uid {claimed.uid!r}) {why}; "
            f"this pod is its own workload {workload.identity!r}"
        )
    if facts.outside_reach is not None:  # hostNetwork: labels yes, a baseline no (it would promise nothing)
        warnings.append(f"netwarden: {facts.outside_reach}")
    mode = namespace_mode(namespace, settings.default_mode)
    intent, declaration_warnings = declared_intent(facts, workload, mode)
    warnings += declaration_warnings
    meta = PolicyMeta(name=baseline_policy_name(workload), reason=names.REASON_CREATED_AT_ADMISSION, mode=mode,
                      owner=policy_owner(workload))
    manifest = render_network_policy(intent, meta, settings.dns)
    return PodAdmission(
        workload=workload,
        labels=dict(derived.labels),
        spoofed=tuple(spoofed_label_keys(facts.labels)),
        warnings=tuple(warnings),
        policy_manifest=None if facts.outside_reach is not None else manifest,
    )
