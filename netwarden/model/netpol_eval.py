"""What a set of NetworkPolicies allows: the semantics of networking.k8s.io/v1, evaluated in Python.

Used to answer "would this flow be dropped under this policy" (what-if, dry-run) and to test that
rendered policies mean what we intend. Pure: manifests and pod/namespace facts in, booleans and
explanations out.

Semantics (Kubernetes docs, "Network Policies"):
* A connection needs both the egress side of the source and the ingress side of the destination
  to allow it. A pod is isolated in a direction when at least one policy in its namespace selects
  it and has that direction in policyTypes; a pod isolated in no policy is open in that direction.
  An isolated pod allows what the union of its selecting policies' rules allows.
* policyTypes, when absent: Ingress always, Egress when the policy has a non-empty egress list.
* A rule with no `from`/`to` matches every peer; with no `ports` matches every port and protocol.
* In one peer, namespaceSelector and podSelector are ANDed; separate peers are ORed. A podSelector
  alone means pods in the policy's namespace; a namespaceSelector alone means all pods there.
* Ports: protocol defaults to TCP; `port` absent means every port of that protocol; `endPort` makes
  a range; a named port resolves against the destination pod's containerPorts (name and protocol),
  and matches nothing when the destination has no such port (or is not a pod).
* A pod can always reach itself.
* ipBlock: matches external IPs (cidr minus except). Whether it also matches pod IPs is left to the
  implementation by the spec (Calico: yes; Cilium and the NCA analyzer: no). Default here: no, set
  `ipblock_matches_pods=True` for Calico-like behaviour.
* Connections between two external IPs are not governed by NetworkPolicy: allowed.

Admin tiers (policy.networking.k8s.io: ClusterNetworkPolicy v1beta1/v1alpha2, AdminNetworkPolicy and
BaselineAdminNetworkPolicy v1alpha1), given in the same list as the NetworkPolicies:
* Per direction, Admin-tier policies whose subject selects the pod are checked first, in priority
  order (lower first), each policy's rules in order: the first matching rule decides. Accept/Allow
  and Deny are final (no NetworkPolicy can change them); Pass skips the rest of the Admin tier.
* Otherwise the NetworkPolicies decide, as above, when one selects the pod in that direction.
* Otherwise Baseline-tier rules decide the same way (first match); with none matching, allowed.
* Peers: `namespaces` (every pod there), `pods` (namespace AND pod selector; absent namespace
  selector: every namespace), `networks` (CIDRs: external IPs, and pod IPs too, as the API says).
  Ports: ClusterNetworkPolicy `protocols` ({tcp|udp|sctp: {destinationPort: {number|range}}}),
  AdminNetworkPolicy `ports` (portNumber, portRange, namedPort); none given: every port.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping, Sequence

from netwarden.model import names

Direction = Literal["ingress", "egress"]


@dataclass(frozen=True)
class ContainerPort:
    """A pod's declared containerPort; named ports in policies resolve through these."""

    port: int
    name: str | None = None
    protocol: str = "TCP"


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str | None = None
    container_ports: tuple[ContainerPort, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class NamespaceInfo:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExternalIP:
    """A peer outside the cluster (or any IP that is not a known pod)."""

    ip: str


Endpoint = PodInfo | ExternalIP


# --- selectors ----------------------------------------------------------------------------------


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics; an empty selector matches everything."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, operator, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if operator == "In":
            ok = present and labels[key] in values
        elif operator == "NotIn":
            ok = not present or labels[key] not in values
        elif operator == "Exists":
            ok = present
        elif operator == "DoesNotExist":
            ok = not present
        else:
            raise ValueError(f"unknown label selector operator {operator!r}")
        if not ok:
            return False
    return True


def _in_ip_block(ip: str | None, block: Mapping[str, Any]) -> bool:
    if ip is None:
        return False
    try:
        address = ipaddress.ip_address(ip)
        if address not in ipaddress.ip_network(block["cidr"], strict=False):
            return False
        return not any(address in ipaddress.ip_network(ex, strict=False) for ex in block.get("except") or [])
    except (ValueError, KeyError, TypeError):
        return False


# --- normalised policies ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Policy:
    namespace: str
    name: str
    pod_selector: Mapping[str, Any]
    types: frozenset[str]
    ingress: tuple[Mapping[str, Any], ...]
    egress: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> "_Policy":
        metadata = manifest.get("metadata") or {}
        spec = manifest.get("spec") or {}
        ingress = tuple(spec.get("ingress") or ())
        egress = tuple(spec.get("egress") or ())
        types = spec.get("policyTypes")
        if types is None:
            types = ["Ingress"] + (["Egress"] if egress else [])
        return cls(
            namespace=metadata.get("namespace") or "default",
            name=metadata.get("name") or "",
            pod_selector=spec.get("podSelector") or {},
            types=frozenset(types),
            ingress=ingress,
            egress=egress,
        )

    def selects(self, pod: PodInfo) -> bool:
        return pod.namespace == self.namespace and selector_matches(self.pod_selector, pod.labels)


ADMIN_API_GROUP = "policy.networking.k8s.io"
TIER_ADMIN, TIER_BASELINE = "Admin", "Baseline"


@dataclass(frozen=True)
class _AdminPolicy:
    """An Admin- or Baseline-tier policy of policy.networking.k8s.io, normalised."""

    name: str
    tier: str
    priority: int
    subject: Mapping[str, Any]
    ingress: tuple[Mapping[str, Any], ...]
    egress: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> "_AdminPolicy":
        spec = manifest.get("spec") or {}
        kind = manifest.get("kind")
        tier = spec.get("tier") or (TIER_BASELINE if kind == "BaselineAdminNetworkPolicy" else TIER_ADMIN)
        return cls(
            name=(manifest.get("metadata") or {}).get("name") or "",
            tier=tier,
            priority=int(spec.get("priority") or 0),
            subject=spec.get("subject") or {},
            ingress=tuple(spec.get("ingress") or ()),
            egress=tuple(spec.get("egress") or ()),
        )


def is_admin_tier(manifest: Mapping[str, Any]) -> bool:
    """True for policy.networking.k8s.io objects (evaluated as Admin or Baseline tier)."""
    return str(manifest.get("apiVersion") or "").startswith(ADMIN_API_GROUP + "/")


@dataclass(frozen=True)
class RuleMatch:
    """A rule that allowed the connection: policy `namespace/name`, direction, index in its list."""

    policy: str
    direction: Direction
    rule_index: int


@dataclass(frozen=True)
class DirectionVerdict:
    """One side of the decision. `isolated` False means no policy selects the pod in this direction."""

    direction: Direction
    allowed: bool
    isolated: bool
    #: Policies (namespace/name) that select the pod for this direction.
    selecting: tuple[str, ...] = ()
    #: Rules that allowed the connection (empty when denied, or when open because not isolated).
    allowed_by: tuple[RuleMatch, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Explanation:
    allowed: bool
    egress: DirectionVerdict
    ingress: DirectionVerdict

    def summary(self) -> str:
        parts = []
        for side in (self.egress, self.ingress):
            if side.note:
                parts.append(f"{side.direction}: {side.note}")
            elif not side.isolated:
                parts.append(f"{side.direction}: open (no policy selects the pod)")
            elif side.allowed:
                by = ", ".join(f"{m.policy}[{m.rule_index}]" for m in side.allowed_by)
                parts.append(f"{side.direction}: allowed by {by}")
            else:
                parts.append(f"{side.direction}: denied (selected by {', '.join(side.selecting)}; no rule matches)")
        return ("allowed" if self.allowed else "denied") + ": " + "; ".join(parts)


class PolicySet:
    """A namespace's-worth (or cluster's-worth) of NetworkPolicies, queried by connection."""

    def __init__(
        self,
        policies: Iterable[Mapping[str, Any]],
        namespaces: Iterable[NamespaceInfo] = (),
        *,
        ipblock_matches_pods: bool = False,
    ) -> None:
        manifests = list(policies)
        self.policies: tuple[_Policy, ...] = tuple(_Policy.from_manifest(p) for p in manifests if not is_admin_tier(p))
        admin = sorted((_AdminPolicy.from_manifest(p) for p in manifests if is_admin_tier(p)),
                       key=lambda a: (a.priority, a.name))
        self.admin: tuple[_AdminPolicy, ...] = tuple(a for a in admin if a.tier == TIER_ADMIN)
        self.baseline: tuple[_AdminPolicy, ...] = tuple(a for a in admin if a.tier == TIER_BASELINE)
        self.namespace_labels: dict[str, Mapping[str, str]] = {ns.name: ns.labels for ns in namespaces}
        self.ipblock_matches_pods = ipblock_matches_pods

    # -- public ----------------------------------------------------------------------------------

    def is_allowed(self, src: Endpoint, dst: Endpoint, port: int | None, protocol: str = "TCP") -> bool:
        return self.explain(src, dst, port, protocol).allowed

    def explain(self, src: Endpoint, dst: Endpoint, port: int | None, protocol: str = "TCP") -> Explanation:
        protocol = protocol.upper()
        if isinstance(src, PodInfo) and isinstance(dst, PodInfo) and src.key == dst.key:
            egress = DirectionVerdict("egress", True, False, note="a pod can always reach itself")
            ingress = DirectionVerdict("ingress", True, False, note="a pod can always reach itself")
            return Explanation(True, egress, ingress)
        egress = self._side("egress", src, dst, port, protocol)
        ingress = self._side("ingress", dst, src, port, protocol)
        return Explanation(egress.allowed and ingress.allowed, egress, ingress)

    def namespace_labels_of(self, namespace: str) -> Mapping[str, str]:
        """Known labels, plus the kubernetes.io/metadata.name label every real namespace carries."""
        labels = dict(self.namespace_labels.get(namespace, {}))
        labels.setdefault(names.LABEL_NAMESPACE_NAME, namespace)
        return labels

    # -- internals -------------------------------------------------------------------------------

    def _side(self, direction: Direction, subject: Endpoint, peer: Endpoint, port: int | None, protocol: str) -> DirectionVerdict:
        if not isinstance(subject, PodInfo):
            return DirectionVerdict(direction, True, False, note="not a pod: not governed by NetworkPolicy")
        dst = subject if direction == "ingress" else peer
        decided = self._admin_tier(self.admin, direction, subject, peer, dst, port, protocol)
        if decided is not None:
            return decided
        policy_type = "Ingress" if direction == "ingress" else "Egress"
        selecting = [p for p in self.policies if policy_type in p.types and p.selects(subject)]
        if not selecting:
            return self._admin_tier(self.baseline, direction, subject, peer, dst, port, protocol) or \
                DirectionVerdict(direction, True, False)
        matches = []
        for policy in selecting:
            rules = policy.ingress if direction == "ingress" else policy.egress
            for index, rule in enumerate(rules):
                peers = rule.get("from" if direction == "ingress" else "to")
                if peers and not any(self._peer_matches(p, peer, policy.namespace) for p in peers):
                    continue
                if not _ports_match(rule.get("ports"), dst, port, protocol):
                    continue
                matches.append(RuleMatch(f"{policy.namespace}/{policy.name}", direction, index))
        return DirectionVerdict(
            direction,
            bool(matches),
            True,
            selecting=tuple(f"{p.namespace}/{p.name}" for p in selecting),
            allowed_by=tuple(matches),
        )

    def _admin_tier(self, tier: Sequence[_AdminPolicy], direction: Direction, subject: PodInfo, peer: Endpoint,
                    dst: Endpoint, port: int | None, protocol: str) -> DirectionVerdict | None:
        """The first matching rule of the tier's policies selecting `subject`: its verdict, or None (no match, Pass)."""
        for policy in tier:
            if not self._admin_peer_matches(policy.subject, subject):
                continue
            rules = policy.ingress if direction == "ingress" else policy.egress
            for index, rule in enumerate(rules):
                peers = rule.get("from" if direction == "ingress" else "to") or []
                if not any(self._admin_peer_matches(p, peer) for p in peers):
                    continue
                if not _admin_ports_match(rule, dst, port, protocol):
                    continue
                action = str(rule.get("action") or "")
                if action == "Pass":
                    return None
                where = f"{policy.tier} tier {policy.name}[{index}]"
                match = RuleMatch(f"cluster/{policy.name}", direction, index)
                if action in ("Accept", "Allow"):
                    return DirectionVerdict(direction, True, True, (f"cluster/{policy.name}",), (match,),
                                            note=f"accepted by {where}")
                return DirectionVerdict(direction, False, True, (f"cluster/{policy.name}",),
                                        note=f"denied by {where}")
        return None

    def _admin_peer_matches(self, peer: Mapping[str, Any], endpoint: Endpoint) -> bool:
        """An admin-tier peer (or subject): namespaces, pods (namespace AND pod selector), networks."""
        if "networks" in peer:
            return any(_in_ip_block(endpoint.ip, {"cidr": cidr}) for cidr in peer.get("networks") or [])
        if not isinstance(endpoint, PodInfo):
            return False
        if "namespaces" in peer:
            return selector_matches(peer["namespaces"], self.namespace_labels_of(endpoint.namespace))
        if "pods" in peer:
            pods = peer["pods"] or {}
            return (selector_matches(pods.get("namespaceSelector"), self.namespace_labels_of(endpoint.namespace))
                    and selector_matches(pods.get("podSelector"), endpoint.labels))
        return False  # nodes, domainNames, or nothing: not modelled, matches no pod

    def _peer_matches(self, peer: Mapping[str, Any], endpoint: Endpoint, policy_namespace: str) -> bool:
        if "ipBlock" in peer:
            if isinstance(endpoint, ExternalIP):
                return _in_ip_block(endpoint.ip, peer["ipBlock"])
            return self.ipblock_matches_pods and _in_ip_block(endpoint.ip, peer["ipBlock"])
        if not isinstance(endpoint, PodInfo):
            return False
        if "podSelector" not in peer and "namespaceSelector" not in peer:
            return False  # invalid (empty) peer: the API server rejects it; match nothing
        if "namespaceSelector" in peer:
            if not selector_matches(peer["namespaceSelector"], self.namespace_labels_of(endpoint.namespace)):
                return False
        elif endpoint.namespace != policy_namespace:
            return False
        return selector_matches(peer.get("podSelector"), endpoint.labels)


def _ports_match(ports: Sequence[Mapping[str, Any]] | None, dst: Endpoint, port: int | None, protocol: str) -> bool:
    if not ports:
        return True
    for entry in ports:
        if str(entry.get("protocol") or "TCP").upper() != protocol:
            continue
        want = entry.get("port")
        if want is None:
            return True
        if port is None:
            continue
        if isinstance(want, str) and not want.isdigit():
            if _named_port(dst, want, port, protocol):
                return True
            continue
        low = int(want)
        high = entry.get("endPort")
        if low <= port <= (int(high) if high is not None else low):
            return True
    return False


def _admin_ports_match(rule: Mapping[str, Any], dst: Endpoint, port: int | None, protocol: str) -> bool:
    """ClusterNetworkPolicy `protocols` or AdminNetworkPolicy `ports`; neither given: every port."""
    if rule.get("protocols"):
        for entry in rule["protocols"]:
            for proto, match in entry.items():
                if proto.upper() != protocol:
                    continue
                dest = (match or {}).get("destinationPort") or {}
                if "number" in dest and port == dest["number"]:
                    return True
                if "range" in dest and port is not None and dest["range"]["start"] <= port <= dest["range"]["end"]:
                    return True
                if "namedPort" in dest and _named_port(dst, dest["namedPort"], port, protocol):
                    return True
        return False
    if rule.get("ports"):
        for entry in rule["ports"]:
            if "portNumber" in entry:
                number = entry["portNumber"]
                if str(number.get("protocol") or "TCP").upper() == protocol and port == number.get("port"):
                    return True
            elif "portRange" in entry:
                span = entry["portRange"]
                if (str(span.get("protocol") or "TCP").upper() == protocol and port is not None
                        and span["start"] <= port <= span["end"]):
                    return True
            elif "namedPort" in entry and _named_port(dst, entry["namedPort"], port, protocol):
                return True
        return False
    return True


def _named_port(dst: Endpoint, name: str, port: int | None, protocol: str) -> bool:
    return isinstance(dst, PodInfo) and any(
        cp.name == name and cp.protocol.upper() == protocol and cp.port == port for cp in dst.container_ports)
