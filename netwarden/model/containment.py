"""Is containment weak? Policies that are not netwarden's and widen what a contained pod may do.

NetworkPolicies are additive: a user's policy selecting a quarantined or tightened pod adds its allows
to netwarden's. This finds each such policy and one connection it opens that netwarden's policies
alone (NetworkPolicies and admin-tier objects) refuse, with the project's one evaluator
(netwarden/model/netpol_eval.py). It also finds allow-all policies, which cancel every baseline in their
namespace. Pure: manifests and pods in, findings out. It never changes anything; the reconciler
reports findings as Events and a metric, and `netwarden status|explain|report` show them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping, Sequence

from netwarden.model import names
from netwarden.model.labels import NamespaceFacts, is_opted_in
from netwarden.model.netpol_eval import (ContainerPort, Endpoint, ExternalIP, NamespaceInfo, PodInfo, PolicySet,
                                   is_admin_tier, selector_matches)
from netwarden.model.policy import is_managed

WideningKind = Literal["widens-quarantine", "widens-tightened"]
KIND_QUARANTINE: WideningKind = "widens-quarantine"
KIND_TIGHTENED: WideningKind = "widens-tightened"
KIND_ALLOW_ALL = "allow-all"
#: An address outside the cluster to probe egress and ingress "to the world" with (TEST-NET-3).
WORLD = "203.0.113.9"
PROBE_PROTOCOLS = ("TCP", "UDP", "SCTP")
#: A port no rule names: what "every port" opens.
ANY_PORT_PROBE = 1


@dataclass(frozen=True)
class Widening:
    """A user's policy that opens `connection` for a contained pod, which netwarden's policies refuse."""

    kind: WideningKind
    policy: str  # namespace/name
    pod: str  # namespace/name
    direction: Literal["ingress", "egress"]
    connection: str  # e.g. "shop/web-0 -> shop/api-0 :8080/TCP"

    def message(self) -> str:
        step = "quarantined" if self.kind == KIND_QUARANTINE else "tightened"
        return (f"containment is weak: NetworkPolicy {self.policy} (not netwarden's) allows {self.connection} "
                f"({self.direction} of {step} pod {self.pod}), which netwarden's policies refuse; NetworkPolicies "
                "add up, so netwarden cannot take it back (it never edits your policies)")

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "policy": self.policy, "pod": self.pod, "direction": self.direction,
                "connection": self.connection}


@dataclass(frozen=True)
class AllowAll:
    """A user's policy whose rule allows every peer on every port in one direction."""

    policy: str
    direction: Literal["ingress", "egress"]
    selects: str  # "every pod" or the selector as text

    def message(self) -> str:
        return (f"NetworkPolicy {self.policy} (not netwarden's) allows all {self.direction} for {self.selects} in "
                "an opted-in namespace: netwarden's baselines and tightenings there do not restrict those pods")

    def to_dict(self) -> dict[str, str]:
        return {"kind": KIND_ALLOW_ALL, "policy": self.policy, "direction": self.direction, "selects": self.selects}


def pod_info(pod: Mapping[str, Any]) -> PodInfo:
    """A Pod wire object as the evaluator sees it."""
    meta = pod.get("metadata") or {}
    ports = tuple(ContainerPort(int(c["containerPort"]), c.get("name"), c.get("protocol") or "TCP")
                  for container in (pod.get("spec") or {}).get("containers") or [] for c in container.get("ports") or []
                  if c.get("containerPort"))
    return PodInfo(meta.get("namespace") or "", meta.get("name") or "", dict(meta.get("labels") or {}),
                   (pod.get("status") or {}).get("podIP"), ports)


def _ref(manifest: Mapping[str, Any]) -> str:
    meta = manifest.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def is_users(manifest: Mapping[str, Any]) -> bool:
    """A namespaced NetworkPolicy that netwarden did not write."""
    return not is_admin_tier(manifest) and not is_managed(manifest)


def contained_step(pod: PodInfo, netwarden_policies: Iterable[Mapping[str, Any]]) -> str | None:
    """The step that contains this pod: quarantined (by instance or workload), tightened, or None."""
    instance, identity = pod.labels.get(names.LABEL_INSTANCE), pod.labels.get(names.LABEL_IDENTITY)
    found: str | None = None
    for policy in netwarden_policies:
        meta = policy.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        step = annotations.get(names.ANNOTATION_STEP)
        target = annotations.get(names.ANNOTATION_TARGET_POD)
        mine = (target == instance) if target else ((meta.get("labels") or {}).get(names.LABEL_IDENTITY) == identity)
        if not mine or (not is_admin_tier(policy) and meta.get("namespace") != pod.namespace):
            continue
        if step == names.STEP_QUARANTINED:
            return names.STEP_QUARANTINED
        if step == names.STEP_TIGHTENED:
            found = names.STEP_TIGHTENED
    return found


def _probe_ports(policy: Mapping[str, Any], pod: PodInfo) -> list[tuple[int | None, str]]:
    """Ports and protocols a policy's rules name (resolved against the pod), or a stand-in for "every port"."""
    out: set[tuple[int | None, str]] = set()
    spec = policy.get("spec") or {}
    for rule in [*(spec.get("ingress") or []), *(spec.get("egress") or [])]:
        entries = rule.get("ports") or []
        if not entries:
            out.update((ANY_PORT_PROBE, proto) for proto in PROBE_PROTOCOLS)
            out.update((cp.port, cp.protocol.upper()) for cp in pod.container_ports)
        for entry in entries:
            proto = str(entry.get("protocol") or "TCP").upper()
            port = entry.get("port")
            if port is None:
                out.add((ANY_PORT_PROBE, proto))
            elif isinstance(port, str) and not port.isdigit():
                out.update((cp.port, proto) for cp in pod.container_ports if cp.name == port)
            else:
                out.add((int(port), proto))
    return sorted(out, key=lambda p: (PROBE_PROTOCOLS.index(p[1]) if p[1] in PROBE_PROTOCOLS else 9, p[0] or 0))


def _probe_externals(policy: Mapping[str, Any]) -> list[ExternalIP]:
    found = [WORLD]
    spec = policy.get("spec") or {}
    for rule in [*(spec.get("ingress") or []), *(spec.get("egress") or [])]:
        for peer in [*(rule.get("from") or []), *(rule.get("to") or [])]:
            block = peer.get("ipBlock") or {}
            try:
                network = ipaddress.ip_network(block["cidr"], strict=False)
            except (KeyError, ValueError):
                continue
            if ipaddress.ip_address(WORLD) in network:
                continue
            address = str(network.network_address + (1 if network.num_addresses > 1 else 0))
            if address not in found:
                found.append(address)
    return [ExternalIP(ip) for ip in found]


def _describe(src: Endpoint, dst: Endpoint, port: int | None, protocol: str) -> str:
    def name(end: Endpoint) -> str:
        return end.key if isinstance(end, PodInfo) else end.ip

    where = f" :{port}/{protocol}" if port != ANY_PORT_PROBE else f" (any port)/{protocol}"
    return f"{name(src)} -> {name(dst)}{where}"


def widening_policies(pod: PodInfo, policies: Sequence[Mapping[str, Any]], pods: Sequence[PodInfo],
                      namespaces: Sequence[NamespaceInfo] = ()) -> list[Widening]:
    """Every user policy that opens a connection for this contained pod that netwarden's policies refuse.

    `policies`: the NetworkPolicies of the pod's namespace (netwarden's and the user's) and netwarden's
    admin-tier objects. One witness connection per policy (the first found), so the report stays short.
    """
    ours = [p for p in policies if not is_users(p)]
    step = contained_step(pod, ours)
    if step is None:
        return []
    kind = KIND_QUARANTINE if step == names.STEP_QUARANTINED else KIND_TIGHTENED
    alone = PolicySet(ours, namespaces)
    out = []
    for policy in policies:
        if not is_users(policy) or (policy.get("metadata") or {}).get("namespace") != pod.namespace:
            continue
        if not selector_matches((policy.get("spec") or {}).get("podSelector"), pod.labels):
            continue
        added = PolicySet([*ours, policy], namespaces)
        peers: list[Endpoint] = [p for p in pods if p.key != pod.key] + list(_probe_externals(policy))
        witness = _first_widening(alone, added, pod, peers, _probe_ports(policy, pod))
        if witness is not None:
            direction, connection = witness
            out.append(Widening(kind, _ref(policy), pod.key, direction, connection))
    return out


def _first_widening(alone: PolicySet, added: PolicySet, pod: PodInfo, peers: Sequence[Endpoint],
                    ports: Sequence[tuple[int | None, str]]) -> tuple[Literal["ingress", "egress"], str] | None:
    for port, protocol in ports:
        for peer in peers:
            if added.is_allowed(peer, pod, port, protocol) and not alone.is_allowed(peer, pod, port, protocol):
                return "ingress", _describe(peer, pod, port, protocol)
            if added.is_allowed(pod, peer, port, protocol) and not alone.is_allowed(pod, peer, port, protocol):
                return "egress", _describe(pod, peer, port, protocol)
    return None


def _is_everyone(peer: Mapping[str, Any]) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"] or {}
        return block.get("cidr") in ("0.0.0.0/0", "::/0") and not block.get("except")
    return peer.get("namespaceSelector") == {} and not (peer.get("podSelector") or {})


def allow_all_policies(policies: Iterable[Mapping[str, Any]]) -> list[AllowAll]:
    """User policies with a rule that allows every peer (every pod, or the whole internet) on every port."""
    out = []
    for policy in policies:
        if not is_users(policy):
            continue
        spec = policy.get("spec") or {}
        selector = spec.get("podSelector") or {}
        selects = "every pod" if not selector else f"pods matching {_selector_text(selector)}"
        for direction, key in (("ingress", "from"), ("egress", "to")):
            for rule in spec.get(direction) or []:
                peers = rule.get(key) or []
                if not rule.get("ports") and (not peers or any(_is_everyone(p) for p in peers)):
                    out.append(AllowAll(_ref(policy), direction, selects))  # type: ignore[arg-type]
                    break
    return out


def _selector_text(selector: Mapping[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    parts += [f"{e.get('key')} {e.get('operator')} {e.get('values') or ''}".strip()
              for e in selector.get("matchExpressions") or []]
    return ", ".join(parts) or "everything"


def cluster_findings(policies: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]],
                     namespaces: Sequence[Mapping[str, Any]]) -> tuple[list[Widening], list[AllowAll]]:
    """Every finding in a set of wire objects: widenings of contained pods, allow-alls in opted-in namespaces.

    `policies`: NetworkPolicies (netwarden's and users') plus netwarden's admin-tier objects; `pods` and
    `namespaces`: Pod and Namespace wire objects (a namespace is opted in by the netwarden.io/inject label
    or annotation). Used by the reconciler's Events, `netwarden status|explain` and the HTML report.
    """
    infos = [NamespaceInfo((n.get("metadata") or {}).get("name", ""), dict((n.get("metadata") or {}).get("labels") or {}))
             for n in namespaces]
    opted = {(n.get("metadata") or {}).get("name") for n in namespaces
             if is_opted_in(NamespaceFacts((n.get("metadata") or {}).get("name", ""),
                                           dict((n.get("metadata") or {}).get("labels") or {}),
                                           dict((n.get("metadata") or {}).get("annotations") or {})), {}, {})}
    live = [pod_info(p) for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and not (p.get("metadata") or {}).get("deletionTimestamp")]
    by_namespace: dict[str, list[PodInfo]] = {}
    for pod in live:
        by_namespace.setdefault(pod.namespace, []).append(pod)
    widenings: list[Widening] = []
    for namespace, members in sorted(by_namespace.items()):
        scoped = [p for p in policies if is_admin_tier(p) or (p.get("metadata") or {}).get("namespace") == namespace]
        for pod in members:
            if contained_step(pod, scoped):
                widenings += widening_policies(pod, scoped, live, infos)
    allow_all = allow_all_policies(p for p in policies if (p.get("metadata") or {}).get("namespace") in opted)
    return widenings, allow_all
