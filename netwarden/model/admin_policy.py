"""Admin-tier quarantine objects: ClusterNetworkPolicy (v1beta1, v1alpha2) and AdminNetworkPolicy (v1alpha1).

The same policy model as `netwarden.model.policy` (a quarantine PolicyIntent, the DnsTarget), rendered for
sig-network's policy.networking.k8s.io API instead of networking.k8s.io/v1. Why: NetworkPolicies are
additive, so any allow policy a user writes reopens a NetworkPolicy quarantine; an Admin-tier Deny is
evaluated before every NetworkPolicy and is final. Pure: discovery facts and intents in, manifests out.

Field names follow the CRDs shipped by sigs.k8s.io/network-policy-api (copies in tests/data/crds/):
* ClusterNetworkPolicy (v0.3.0; v1beta1 and v1alpha2 share the schema): `tier: Admin`, `priority`
  0-1000 (lower wins), `subject.pods{namespaceSelector,podSelector}`, rules `{name, action:
  Accept|Deny|Pass, from|to: [peer], protocols: [{tcp|udp|sctp: {destinationPort: {number}}}]}`,
  peers `namespaces` | `pods` | `networks` (egress only).
* AdminNetworkPolicy (v0.1.x, frozen): no tier, `priority` 0-1000, `subject.pods` needs both
  selectors, `action: Allow|Deny|Pass`, `ports: [{portNumber: {protocol, port}}]`, peers as above.

Neither API has an ingress peer for addresses outside the cluster: ingress from external IPs stays
with NetworkPolicy (the weak-containment check reports user policies that open it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping

from netwarden.model import names
from netwarden.model.labelvalues import fit_object_name
from netwarden.model.policy import DNS_PORT, DnsTarget, Peer, PolicyIntent, PolicyMeta, PortSpec, Rule

GROUP = "policy.networking.k8s.io"
BACKEND_AUTO = "auto"
BACKEND_NETWORKPOLICY = "networkpolicy"
BACKEND_ANP = "adminnetworkpolicy"
BACKEND_CNP = "clusternetworkpolicy"
BACKENDS = (BACKEND_AUTO, BACKEND_NETWORKPOLICY, BACKEND_ANP, BACKEND_CNP)
#: Every address, both families: egress to anything outside (and, per the API, inside) the cluster.
ALL_NETWORKS = ("0.0.0.0/0", "::/0")
DEFAULT_PRIORITY = 10


@dataclass(frozen=True)
class AdminApi:
    """One served admin-tier resource: where it lives and how its rules are spelled."""

    backend: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{GROUP}/{self.version}"

    @property
    def accept(self) -> str:
        return "Accept" if self.backend == BACKEND_CNP else "Allow"


CNP_V1BETA1 = AdminApi(BACKEND_CNP, "v1beta1", "clusternetworkpolicies", "ClusterNetworkPolicy")
CNP_V1ALPHA2 = AdminApi(BACKEND_CNP, "v1alpha2", "clusternetworkpolicies", "ClusterNetworkPolicy")
ANP_V1ALPHA1 = AdminApi(BACKEND_ANP, "v1alpha1", "adminnetworkpolicies", "AdminNetworkPolicy")
#: Discovery order: the newest ClusterNetworkPolicy first, the frozen AdminNetworkPolicy last.
DISCOVERY_ORDER = (CNP_V1BETA1, CNP_V1ALPHA2, ANP_V1ALPHA1)
ADMIN_KINDS = frozenset(api.kind for api in DISCOVERY_ORDER)


@dataclass(frozen=True)
class BackendChoice:
    """The quarantine backend in use (None: NetworkPolicy) and why, for the log and `status`."""

    api: AdminApi | None
    reason: str

    @property
    def backend(self) -> str:
        return self.api.backend if self.api is not None else BACKEND_NETWORKPOLICY


def choose_backend(setting: str, served: Mapping[str, Iterable[str]]) -> BackendChoice:
    """Pick the quarantine backend from the setting and what discovery says the API serves.

    `served` maps each version of policy.networking.k8s.io to its resource names. Never assumed: a
    backend asked for but not served falls back to NetworkPolicy (containment still happens) and says so.
    """
    if setting not in BACKENDS:
        raise ValueError(f"quarantine backend {setting!r}: expected one of {', '.join(BACKENDS)}")
    if setting == BACKEND_NETWORKPOLICY:
        return BackendChoice(None, "configured: networkpolicy")
    available = [api for api in DISCOVERY_ORDER if api.plural in set(served.get(api.version, ()))]
    wanted = [api for api in available if setting in (BACKEND_AUTO, api.backend)]
    if wanted:
        return BackendChoice(wanted[0], f"{setting}: {wanted[0].api_version} {wanted[0].plural} is served")
    seen = ", ".join(f"{a.api_version}/{a.plural}" for a in available) or f"nothing of {GROUP}"
    return BackendChoice(None, f"{setting}: no admin-tier policy resource to use (served: {seen}); "
                               "quarantine falls back to NetworkPolicy")


def admin_quarantine_name(namespace: str, instance: str | None, identity: str) -> str:
    """Cluster-scoped, so the namespace is part of the name; one object per pod or per workload."""
    target = instance if instance is not None else identity
    kind = "pod" if instance is not None else "workload"
    return fit_object_name(f"netwarden-quarantine-{kind}-{namespace}-{target}")


def _namespace_selector(namespace: str | None) -> dict[str, Any]:
    return {} if namespace is None else {"matchLabels": {names.LABEL_NAMESPACE_NAME: namespace}}


def _subject(intent: PolicyIntent) -> dict[str, Any]:
    label = (names.LABEL_INSTANCE, intent.instance) if intent.instance is not None else (
        names.LABEL_IDENTITY, intent.identity)
    return {"pods": {"namespaceSelector": _namespace_selector(intent.namespace),
                     "podSelector": {"matchLabels": {label[0]: label[1]}}}}


def _peer(peer: Peer, policy_namespace: str) -> dict[str, Any] | None:
    """A policy-model peer as an admin-tier peer; None when the API cannot say it (ingress CIDRs)."""
    if peer.kind == "cidr":
        return {"networks": [peer.value]}
    if peer.kind == "namespace":
        if peer.value == "*":
            return {"namespaces": {}}
        return {"namespaces": _namespace_selector(peer.value)}
    namespace = peer.effective_namespace()
    label = names.LABEL_PURPOSE if peer.kind == "purpose" else names.LABEL_IDENTITY
    return {"pods": {"namespaceSelector": _namespace_selector(None if namespace == "*" else namespace or policy_namespace),
                     "podSelector": {"matchLabels": {label: peer.value}}}}


def _ports(api: AdminApi, ports: Iterable[PortSpec]) -> list[dict[str, Any]]:
    """Ports in the API's spelling; a port it cannot say (a named port for ClusterNetworkPolicy) is left out."""
    out: list[dict[str, Any]] = []
    for spec in ports:
        if isinstance(spec.port, str):
            if api.backend == BACKEND_ANP:
                out.append({"namedPort": spec.port})
            continue
        start, end = (1, 65535) if spec.port is None else (spec.port, spec.end_port)
        if api.backend == BACKEND_CNP:
            dest = {"range": {"start": start, "end": end}} if end else {"number": start}
            out.append({spec.protocol.lower(): {"destinationPort": dest}})
        elif end:
            out.append({"portRange": {"protocol": spec.protocol, "start": start, "end": end}})
        else:
            out.append({"portNumber": {"protocol": spec.protocol, "port": start}})
    return out


def _rule(api: AdminApi, name: str, action: str, direction: Literal["from", "to"], peers: list[dict[str, Any]],
          ports: Iterable[PortSpec] = ()) -> dict[str, Any] | None:
    """One rule; None when its ports were given but none can be said (an Accept must never widen)."""
    rule: dict[str, Any] = {"name": name, "action": action, direction: peers}
    ports = tuple(ports)
    rendered = _ports(api, ports)
    if ports and not rendered:
        return None
    if rendered:
        rule["protocols" if api.backend == BACKEND_CNP else "ports"] = rendered
    return rule


def _dns_rule(api: AdminApi, dns: DnsTarget) -> dict[str, Any] | None:
    if dns.namespace is None:
        peers: list[dict[str, Any]] = [{"namespaces": {}}, {"networks": list(ALL_NETWORKS)}]
    else:
        peers = [{"pods": {"namespaceSelector": _namespace_selector(dns.namespace),
                           "podSelector": {"matchLabels": dict(dns.pod_labels)} if dns.pod_labels else {}}}]
    return _rule(api, "netwarden-allow-dns", api.accept, "to", peers, (PortSpec("UDP", DNS_PORT), PortSpec("TCP", DNS_PORT)))


def _exception_rules(api: AdminApi, intent: PolicyIntent, rules: Iterable[Rule],
                     direction: Literal["from", "to"]) -> list[dict[str, Any]]:
    out = []
    for index, rule in enumerate(rules):
        peers = [p for p in (_peer(peer, intent.namespace) for peer in rule.peers)
                 if p is not None and not (direction == "from" and "networks" in p)]
        if not rule.peers:
            peers = [{"namespaces": {}}] + ([{"networks": list(ALL_NETWORKS)}] if direction == "to" else [])
        rendered = _rule(api, f"netwarden-exception-{index}", api.accept, direction, peers, rule.ports) if peers else None
        if rendered is not None:
            out.append(rendered)
    return out


def render_admin_quarantine(intent: PolicyIntent, meta: PolicyMeta, dns: DnsTarget, api: AdminApi,
                            priority: int = DEFAULT_PRIORITY) -> dict[str, Any]:
    """The cluster-scoped quarantine object: exceptions and DNS accepted above a Deny of everything.

    Labels and annotations match the NetworkPolicy quarantine's, plus the target namespace (the
    object has none of its own), so status/explain/cleanup find it the same way.
    """
    if not 0 <= priority <= 1000:
        raise ValueError(f"admin policy priority {priority}: expected 0-1000")
    ingress = _exception_rules(api, intent, intent.ingress, "from")
    ingress.append({"name": "netwarden-deny-ingress", "action": "Deny", "from": [{"namespaces": {}}]})
    egress = _exception_rules(api, intent, intent.egress, "to")
    dns_rule = _dns_rule(api, dns) if intent.include_dns else None
    if dns_rule is not None:
        egress.append(dns_rule)
    egress.append({"name": "netwarden-deny-egress", "action": "Deny", "to": [{"namespaces": {}},
                                                                               {"networks": list(ALL_NETWORKS)}]})
    spec: dict[str, Any] = {"priority": priority, "subject": _subject(intent), "ingress": ingress, "egress": egress}
    if api.backend == BACKEND_CNP:
        spec = {"tier": "Admin", **spec}
    annotations = {
        names.ANNOTATION_REASON: meta.reason,
        names.ANNOTATION_REVISION: str(meta.revision),
        names.ANNOTATION_STEP: intent.step,
        names.ANNOTATION_POLICY_MODE: meta.mode,
        names.ANNOTATION_TARGET_NAMESPACE: intent.namespace,
        **dict(meta.annotations),
    }
    if intent.instance is not None:
        annotations[names.ANNOTATION_TARGET_POD] = intent.instance
    return {
        "apiVersion": api.api_version,
        "kind": api.kind,
        "metadata": {
            "name": meta.name,
            "labels": {
                names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE,
                names.LABEL_IDENTITY: intent.identity,
                names.LABEL_POLICY_ROLE: names.ROLE_QUARANTINE,
            },
            "annotations": annotations,
        },
        "spec": spec,
    }


def api_of(manifest: Mapping[str, Any]) -> AdminApi | None:
    """Which admin-tier API a manifest belongs to (None: not an admin-tier object)."""
    for api in DISCOVERY_ORDER:
        if manifest.get("apiVersion") == api.api_version and manifest.get("kind") == api.kind:
            return api
    return None
