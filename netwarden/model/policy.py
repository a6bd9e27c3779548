"""The policy model: how a workload's NetworkPolicy is rendered.

One home for this concept. The webhook renders the admission-time baseline with it, the reconciler
renders backfilled, tightened, relaxed and quarantine policies with it, so a baseline written at
admission equals the one the reconciler would write. Pure: plain values in, a manifest dict out.

NetworkPolicies are additive: a pod selected by several policies gets the union of their allows.
So quarantining one pod needs two things: a quarantine policy selecting exactly that pod (by its
instance label), and the workload's own policy excluding that instance from its podSelector.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator, Literal, Mapping

from netwarden.model import names
from netwarden.model.identity import Workload, namespace_of_identity
from netwarden.model.labelvalues import fit_object_name

PeerKind = Literal["purpose", "identity", "namespace", "cidr"]
#: One of a workload's own containerPorts by name: (name, protocol, number).
PortName = tuple[str, str, int]
ANY_NAMESPACE = "*"
DNS_PORT = 53


@dataclass(frozen=True)
class PortSpec:
    """A port (or range) and protocol. `port=None` means every port of that protocol."""

    protocol: str = "TCP"
    port: int | str | None = None
    end_port: int | None = None

    def sort_key(self) -> tuple[str, str, int]:
        return (self.protocol, "" if self.port is None else f"{self.port:>5}", self.end_port or 0)

    def __lt__(self, other: "PortSpec") -> bool:
        return self.sort_key() < other.sort_key()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol": self.protocol}
        if self.port is not None:
            out["port"] = self.port
        if self.end_port is not None:
            out["endPort"] = self.end_port
        return out


@dataclass(frozen=True)
class Peer:
    """One side of a connection, as a NetworkPolicy can select it.

    `namespace` None means the policy's own namespace; ANY_NAMESPACE means every namespace.
    """

    kind: PeerKind
    value: str
    namespace: str | None = None

    def sort_key(self) -> tuple[str, str, str]:
        return (self.kind, self.value, self.namespace or "")

    def __lt__(self, other: "Peer") -> bool:
        return self.sort_key() < other.sort_key()

    def effective_namespace(self) -> str | None:
        """For identity peers the namespace is part of the identity; selectors must pin it."""
        if self.kind == "identity" and self.namespace is None:
            return namespace_of_identity(self.value)
        return self.namespace


@dataclass(frozen=True)
class Rule:
    """Peers (empty: any peer) allowed on ports (empty: any port)."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PortSpec, ...] = ()


@dataclass(frozen=True)
class DnsTarget:
    """Where cluster DNS runs, as found from the DNS Service's selector (or configured).

    With no namespace the rule allows port 53 to any destination: safe, and better than guessing
    labels a cluster may not have.
    """

    namespace: str | None = None
    pod_labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_selector(cls, namespace: str, selector: Mapping[str, str]) -> "DnsTarget":
        return cls(namespace, tuple(sorted(selector.items())))

    @classmethod
    def of_service(cls, namespace: str, service: Mapping[str, Any] | None) -> "DnsTarget":
        """The DNS Service's pods as the DNS peer; port 53 anywhere when the Service is absent or selects
        nothing by label (a Service without a selector has hand-made endpoints, often not pods at all,
        so no pod label can stand for them: allowing every pod of the namespace would guess)."""
        selector = ((service or {}).get("spec") or {}).get("selector") or {}
        return cls.from_selector(namespace, selector) if selector else cls()


@dataclass(frozen=True)
class PolicyIntent:
    """What a workload's (or one pod's) NetworkPolicy should allow, before rendering."""

    namespace: str
    identity: str
    step: str = names.STEP_BASELINE
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    #: False renders a policy that selects the workload but allows everything (learn mode).
    enforcing: bool = True
    #: Pod instances carved out of this policy because a quarantine policy holds them.
    excluded_instances: tuple[str, ...] = ()
    #: When set, the policy selects exactly this pod instance (quarantine).
    instance: str | None = None
    include_dns: bool = True
    #: The workload's own named containerPorts: what a named port in an ingress rule means here (the
    #: rendered policy keeps the name; the engine's what-if resolves it with these). An egress named
    #: port resolves on the peer, which the intent cannot know.
    port_names: tuple[PortName, ...] = ()


@dataclass(frozen=True)
class PolicyMeta:
    """Bookkeeping carried on the object: who owns it, why it has this spec."""

    name: str
    reason: str
    role: str = names.ROLE_BASELINE
    revision: int = 1
    mode: str = names.MODE_ENFORCE
    owner: Mapping[str, Any] | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)


def baseline_policy_name(workload: Workload) -> str:
    return fit_object_name(f"netwarden-{workload.kind_token}-{workload.name}")


def quarantine_policy_name(instance: str) -> str:
    return fit_object_name(f"netwarden-quarantine-{instance}")


def baseline_intent(
    workload: Workload,
    allow_from: Iterable[Rule],
    allow_to: Iterable[Rule],
    container_ports: Iterable[PortSpec],
    *,
    enforcing: bool = True,
    port_names: Iterable[PortName] = (),
) -> PolicyIntent:
    """Default deny, plus declared peers on the pod's declared ports, plus DNS.

    An allow-from rule that names no ports gets the workload's containerPorts; with none declared
    either, it allows every port (the declaration is the user's intent; ports narrow it when known).
    """
    ports = sorted_ports(container_ports)
    ingress = tuple(rule if rule.ports else Rule(rule.peers, ports) for rule in allow_from)
    return PolicyIntent(
        namespace=workload.namespace,
        identity=workload.identity,
        step=names.STEP_BASELINE if enforcing else names.STEP_LEARNING,
        ingress=normalise_rules(ingress),
        egress=normalise_rules(allow_to),
        enforcing=enforcing,
        port_names=tuple(sorted(set(port_names))),
    )


def pod_port_entries(pod: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The `ports` entries of a pod's long-running containers: app containers and sidecars (restartable
    init containers); one-shot init containers serve nothing."""
    spec = pod.get("spec") or {}
    containers = list(spec.get("containers") or [])
    containers += [c for c in spec.get("initContainers") or [] if (c or {}).get("restartPolicy") == "Always"]
    for container in containers:
        for port in (container or {}).get("ports") or []:
            if isinstance(port, Mapping):
                yield port


def named_container_ports(pod: Mapping[str, Any]) -> tuple[PortName, ...]:
    """A pod's named containerPorts, as (name, protocol, number): what a named port resolves to."""
    out: set[PortName] = set()
    for port in pod_port_entries(pod):
        name, number = port.get("name"), port.get("containerPort")
        if isinstance(name, str) and name and isinstance(number, int):
            out.add((name, str(port.get("protocol") or "TCP").upper(), number))
    return tuple(sorted(out))


def quarantine_intent(namespace: str, identity: str, instance: str | None,
                      exceptions: Iterable[Rule] = ()) -> PolicyIntent:
    """Isolate one pod (every replica when `instance` is None): no ingress but the configured exceptions,
    no egress but DNS."""
    return PolicyIntent(
        namespace=namespace,
        identity=identity,
        step=names.STEP_QUARANTINED,
        ingress=normalise_rules(exceptions),
        egress=(),
        instance=instance,
    )


def workload_quarantine_intent(namespace: str, identity: str, exceptions: Iterable[Rule] = ()) -> PolicyIntent:
    """Isolate every replica of a workload (only when the evidence covers its replicas)."""
    return quarantine_intent(namespace, identity, None, exceptions)


def sorted_ports(ports: Iterable[PortSpec]) -> tuple[PortSpec, ...]:
    return tuple(sorted(set(ports), key=PortSpec.sort_key))


def normalise_rules(rules: Iterable[Rule]) -> tuple[Rule, ...]:
    """Merge rules with the same ports, sort peers and ports: equal intents render equal dicts."""
    by_ports: dict[tuple[PortSpec, ...], set[Peer]] = {}
    open_ports: set[tuple[PortSpec, ...]] = set()
    for rule in rules:
        key = sorted_ports(rule.ports)
        if not rule.peers:
            open_ports.add(key)
        by_ports.setdefault(key, set()).update(rule.peers)
    out = []
    for key in sorted(by_ports, key=lambda ports: [p.sort_key() for p in ports]):
        peers = () if key in open_ports else tuple(sorted(by_ports[key], key=Peer.sort_key))
        out.append(Rule(peers, key))
    return tuple(out)


def with_excluded_instances(intent: PolicyIntent, instances: Iterable[str]) -> PolicyIntent:
    return replace(intent, excluded_instances=tuple(sorted(set(instances))))


# --- rendering ----------------------------------------------------------------------------------


def render_peer(peer: Peer, policy_namespace: str) -> dict[str, Any]:
    if peer.kind == "cidr":
        return {"ipBlock": {"cidr": peer.value}}
    namespace = peer.effective_namespace()
    out: dict[str, Any] = {}
    if peer.kind == "namespace":
        if peer.value == ANY_NAMESPACE:
            return {"namespaceSelector": {}}
        return {"namespaceSelector": {"matchLabels": {names.LABEL_NAMESPACE_NAME: peer.value}}}
    label = names.LABEL_PURPOSE if peer.kind == "purpose" else names.LABEL_IDENTITY
    out["podSelector"] = {"matchLabels": {label: peer.value}}
    if namespace == ANY_NAMESPACE:
        out["namespaceSelector"] = {}
    elif namespace is not None and namespace != policy_namespace:
        out["namespaceSelector"] = {"matchLabels": {names.LABEL_NAMESPACE_NAME: namespace}}
    return out


def render_rule(rule: Rule, policy_namespace: str, direction: Literal["from", "to"]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rule.peers:
        out[direction] = [render_peer(p, policy_namespace) for p in rule.peers]
    if rule.ports:
        out["ports"] = [p.to_dict() for p in rule.ports]
    return out


def render_dns_rule(dns: DnsTarget) -> dict[str, Any]:
    ports = [PortSpec("UDP", DNS_PORT).to_dict(), PortSpec("TCP", DNS_PORT).to_dict()]
    if dns.namespace is None:
        return {"ports": ports}
    peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": {names.LABEL_NAMESPACE_NAME: dns.namespace}}}
    if dns.pod_labels:
        peer["podSelector"] = {"matchLabels": dict(dns.pod_labels)}
    return {"to": [peer], "ports": ports}


def render_pod_selector(intent: PolicyIntent) -> dict[str, Any]:
    if intent.instance is not None:
        return {"matchLabels": {names.LABEL_INSTANCE: intent.instance}}
    selector: dict[str, Any] = {"matchLabels": {names.LABEL_IDENTITY: intent.identity}}
    if intent.excluded_instances:
        selector["matchExpressions"] = [
            {"key": names.LABEL_INSTANCE, "operator": "NotIn", "values": list(intent.excluded_instances)}
        ]
    return selector


def render_policy_spec(intent: PolicyIntent, dns: DnsTarget) -> dict[str, Any]:
    """The `spec` of the NetworkPolicy for an intent."""
    if not intent.enforcing:
        ingress: list[dict[str, Any]] = [{}]
        egress: list[dict[str, Any]] = [{}]
    else:
        ingress = [render_rule(r, intent.namespace, "from") for r in intent.ingress]
        egress = [render_rule(r, intent.namespace, "to") for r in intent.egress]
        if intent.include_dns:
            egress.append(render_dns_rule(dns))
    return {
        "podSelector": render_pod_selector(intent),
        "policyTypes": ["Ingress", "Egress"],
        "ingress": ingress,
        "egress": egress,
    }


def render_network_policy(intent: PolicyIntent, meta: PolicyMeta, dns: DnsTarget) -> dict[str, Any]:
    """The whole NetworkPolicy manifest, labelled and annotated as managed by netwarden."""
    annotations = {
        names.ANNOTATION_REASON: meta.reason,
        names.ANNOTATION_REVISION: str(meta.revision),
        names.ANNOTATION_STEP: intent.step,
        names.ANNOTATION_POLICY_MODE: meta.mode,
        **dict(meta.annotations),
    }
    if intent.instance is not None:
        annotations[names.ANNOTATION_TARGET_POD] = intent.instance
    metadata: dict[str, Any] = {
        "name": meta.name,
        "namespace": intent.namespace,
        "labels": {
            names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE,
            names.LABEL_IDENTITY: intent.identity,
            names.LABEL_POLICY_ROLE: meta.role,
        },
        "annotations": annotations,
    }
    if meta.owner is not None:
        metadata["ownerReferences"] = [dict(meta.owner)]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": render_policy_spec(intent, dns),
    }


def admission_guard_policy(namespace: str) -> dict[str, Any]:
    """Deny everything, both ways, to every pod of `namespace` that wears netwarden's identity label.

    Why: NetworkPolicies add up, so a policy with no rule adds no allow; a pod its baseline selects is
    isolated by the baseline already, and the guard changes nothing for it. A labelled pod whose
    baseline is not written yet (written after its review, or backfilled later) is selected by the
    guard alone: no packet in or out until its baseline lands. Not owned by anything (the namespace
    owns it by containing it); the reconciler never collects it."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": names.ADMISSION_GUARD_POLICY_NAME,
            "namespace": namespace,
            "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE,
                       names.LABEL_POLICY_ROLE: names.ROLE_ADMISSION_GUARD},
            "annotations": {names.ANNOTATION_REASON: names.REASON_ADMISSION_GUARD},
        },
        "spec": {
            "podSelector": {"matchExpressions": [{"key": names.LABEL_IDENTITY, "operator": "Exists"}]},
            "policyTypes": ["Ingress", "Egress"],
        },
    }


def is_managed(manifest: Any) -> bool:
    """Labelled as netwarden's (false for anything not shaped as an object with metadata labels)."""
    meta = manifest.get("metadata") if isinstance(manifest, Mapping) else None
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    return isinstance(labels, Mapping) and labels.get(names.LABEL_MANAGED_BY) == names.MANAGED_BY_VALUE


#: Annotations on netwarden's policies that are the user's to set: approving or rejecting a proposal,
#: and adopting the policy (netwarden stops reconciling it).
USER_POLICY_ANNOTATIONS = frozenset({names.ANNOTATION_APPROVE, names.ANNOTATION_ADOPTED})


def changed_policy_marks(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """The marks netwarden trusts on its own policies (the managed-by label, netwarden.io/* labels and
    annotations) that a write from anyone but netwarden would add, change or remove: such a write
    forges netwarden's decision (a spec hash stamping an edited spec as netwarden's, a proposal the
    reconciler replays, a history a rollback returns to). Creating a managed policy changes every mark;
    approving, rejecting (a proposal removed) and adopting do not. A spec edit is not a mark: netwarden
    restores it (or, adopted, leaves it to its user)."""
    def marks(obj: Mapping[str, Any] | None) -> dict[str, str]:
        meta = (obj or {}).get("metadata") or {}
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        found = {f"label {k}": v for k, v in labels.items()
                 if k == names.LABEL_MANAGED_BY or k.startswith(names.PREFIX + "/")}
        found.update({f"annotation {k}": v for k, v in annotations.items()
                      if k.startswith(names.PREFIX + "/") and k not in USER_POLICY_ANNOTATIONS})
        return found

    before, after = marks(old), marks(new)
    pending = f"annotation {names.ANNOTATION_PENDING}"
    return sorted(k for k in before.keys() | after.keys()
                  if before.get(k) != after.get(k) and not (k == pending and k not in after))
