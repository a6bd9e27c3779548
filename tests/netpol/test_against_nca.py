"""netpol_eval agrees with an independent analyzer (nca) on policies netwarden renders."""

from __future__ import annotations

from typing import Any

import pytest

from netwarden.model import names
from netwarden.model.identity import Workload
from netwarden.model.netpol_eval import ContainerPort, ExternalIP, NamespaceInfo, PodInfo, PolicySet
from netwarden.model.policy import (
    DnsTarget,
    Peer,
    PolicyMeta,
    PortSpec,
    Rule,
    baseline_intent,
    baseline_policy_name,
    quarantine_intent,
    quarantine_policy_name,
    render_network_policy,
    with_excluded_instances,
)
from tests.support.nca import nca_available, nca_connectivity, probes

pytestmark = pytest.mark.skipif(
    not nca_available(), reason="nca (pip install network-config-analyzer) is not installed in this environment"
)

WEB = Workload("shop", "Deployment", "web")
API = Workload("shop", "Deployment", "api")
DB = Workload("data", "StatefulSet", "db")
NAMESPACES = [
    NamespaceInfo("shop", {names.LABEL_ENVIRONMENT_PLAIN: "production"}),
    NamespaceInfo("data"),
    NamespaceInfo("ingress"),
    NamespaceInfo("kube-system"),
    NamespaceInfo("monitoring"),
    NamespaceInfo("other"),
]
EXTERNAL = [ExternalIP("203.0.113.9"), ExternalIP("198.51.100.20")]
PROBES = [(8080, "TCP"), (9000, "TCP"), (5432, "TCP"), (53, "UDP"), (53, "TCP"), (443, "TCP"), (22, "TCP"), (9100, "TCP")]
KUBE_DNS = DnsTarget.from_selector("kube-system", {"k8s-app": "kube-dns"})


def workload_pod(workload: Workload, suffix: str, purpose: str, ports: tuple[ContainerPort, ...]) -> PodInfo:
    labels = {
        names.LABEL_IDENTITY: workload.identity,
        names.LABEL_PURPOSE: purpose,
        names.LABEL_INSTANCE: f"{workload.name}-{suffix}",
        "app": workload.name,
    }
    return PodInfo(workload.namespace, f"{workload.name}-{suffix}", labels, None, ports)


PODS = [
    workload_pod(WEB, "a", "frontend", (ContainerPort(8080, "http"),)),
    workload_pod(WEB, "b", "frontend", (ContainerPort(8080, "http"),)),
    workload_pod(API, "a", "backend", (ContainerPort(9000, "grpc"),)),
    workload_pod(DB, "a", "database", (ContainerPort(5432, "pg"),)),
    PodInfo("ingress", "nginx-a", {names.LABEL_PURPOSE: "ingress"}, None, (ContainerPort(443),)),
    PodInfo("kube-system", "coredns-a", {"k8s-app": "kube-dns"}, None, (ContainerPort(53, "dns", "UDP"), ContainerPort(53, "dns-tcp"))),
    PodInfo("monitoring", "prom-a", {"app": "prometheus"}, None, (ContainerPort(9090),)),
    PodInfo("other", "rogue-a", {}, None, ()),
]


def baseline(workload: Workload, allow_from: list[Rule], allow_to: list[Rule], ports: list[PortSpec],
             dns: DnsTarget = KUBE_DNS, excluded: tuple[str, ...] = (), enforcing: bool = True) -> dict[str, Any]:
    intent = baseline_intent(workload, allow_from, allow_to, ports, enforcing=enforcing)
    if excluded:
        intent = with_excluded_instances(intent, excluded)
    return render_network_policy(intent, PolicyMeta(baseline_policy_name(workload), "test"), dns)


def web_baseline(**kwargs: Any) -> dict[str, Any]:
    return baseline(
        WEB,
        [Rule((Peer("namespace", "ingress"),))],
        [Rule((Peer("purpose", "backend"),), (PortSpec("TCP", 9000),))],
        [PortSpec("TCP", 8080)],
        **kwargs,
    )


def api_baseline(**kwargs: Any) -> dict[str, Any]:
    return baseline(
        API,
        [Rule((Peer("purpose", "frontend"),))],
        [Rule((Peer("identity", DB.identity),), (PortSpec("TCP", 5432),)),
         Rule((Peer("cidr", "203.0.113.0/24"),), (PortSpec("TCP", 443),))],
        [PortSpec("TCP", 9000)],
        **kwargs,
    )


def db_baseline(**kwargs: Any) -> dict[str, Any]:
    return baseline(DB, [Rule((Peer("identity", API.identity),))], [], [PortSpec("TCP", 5432)], **kwargs)


def named_port_baselines() -> list[dict[str, Any]]:
    """Declarations with port names (issue 14 item 4): `purpose=ingress:http`-style allow-from resolves on
    web's own containerPort `http`; allow-to `purpose=database@data:pg` on the database pod's port `pg`,
    and on nothing for a cidr peer or a peer with no such port."""
    from netwarden.model.declarations import parse_peer_declarations

    web_from = parse_peer_declarations("namespace=ingress:http, namespace=monitoring:grpc").rules
    api_to = parse_peer_declarations("purpose=database@data:pg, purpose=frontend:pg, cidr=203.0.113.0/24:http").rules
    return [baseline(WEB, list(web_from), [], [PortSpec("TCP", 8080)]),
            baseline(API, [Rule((Peer("purpose", "frontend"),))], list(api_to), [PortSpec("TCP", 9000)]),
            db_baseline()]


def quarantine_web_b() -> list[dict[str, Any]]:
    intent = quarantine_intent("shop", WEB.identity, "web-b", [Rule((Peer("namespace", "monitoring"),), (PortSpec("TCP", 8080),))])
    meta = PolicyMeta(quarantine_policy_name("web-b"), "test", role=names.ROLE_QUARANTINE)
    return [web_baseline(excluded=("web-b",)), render_network_policy(intent, meta, KUBE_DNS)]


SCENARIOS = {
    "baseline-declared-peers-and-dns": lambda: [web_baseline()],
    "cross-namespace-identity-peers": lambda: [api_baseline(), db_baseline()],
    "dns-to-any-destination-when-dns-unknown": lambda: [db_baseline(dns=DnsTarget())],
    "quarantine-with-excluded-instance": quarantine_web_b,
    "learn-mode-selects-but-allows-everything": lambda: [web_baseline(enforcing=False), db_baseline()],
    "whole-app": lambda: [*quarantine_web_b(), api_baseline(), db_baseline()],
    "named-ports-in-declarations": named_port_baselines,
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_evaluator_agrees_with_nca_on_rendered_policies(scenario: str) -> None:
    policies = SCENARIOS[scenario]()
    ours = PolicySet(policies, NAMESPACES)
    theirs = nca_connectivity(PODS, NAMESPACES, policies)
    endpoints: list[PodInfo | ExternalIP] = [*PODS, *EXTERNAL]
    mismatches = []
    checked = 0
    for src, dst, src_name, dst_name, port, protocol in probes(endpoints, PROBES):
        checked += 1
        expected = theirs.allows(src_name, dst_name, port, protocol)
        if ours.is_allowed(src, dst, port, protocol) != expected:
            mismatches.append(f"{src_name} -> {dst_name} {port}/{protocol}: nca says {expected}; "
                              + ours.explain(src, dst, port, protocol).summary())
    assert checked > 500
    assert not mismatches, "\n".join(mismatches[:20]) + f"\n--- nca output ---\n{theirs.raw}"


def test_named_ports_render_as_names_and_nca_resolves_them_on_the_destination() -> None:
    """The scenario must exercise the names: they render as names, and nca itself resolves them."""
    web, api, _ = named_port_baselines()
    assert sorted(p["port"] for r in web["spec"]["ingress"] for p in r["ports"]) == ["grpc", "http"]
    assert sorted(p["port"] for r in api["spec"]["egress"] for p in r["ports"] if isinstance(p["port"], str)) == [
        "http", "pg"]
    theirs = nca_connectivity(PODS, NAMESPACES, named_port_baselines())
    assert theirs.allows("ingress/nginx-a", "shop/web-a", 8080, "TCP")
    assert not theirs.allows("monitoring/prom-a", "shop/web-a", 8080, "TCP"), "web has no port named grpc"
    assert theirs.allows("shop/api-a", "data/db-a", 5432, "TCP")
    assert not theirs.allows("shop/api-a", "shop/web-a", 5432, "TCP"), "pg names no port of web"
    assert not theirs.allows("shop/api-a", "203.0.113.9", 8080, "TCP"), "a named port matches no external peer"


def test_nca_sees_the_quarantined_instance_cut_off_from_its_peers() -> None:
    """The cross-check is only useful if the scenarios restrict something: spot-check nca itself."""
    theirs = nca_connectivity(PODS, NAMESPACES, quarantine_web_b())
    assert theirs.allows("ingress/nginx-a", "shop/web-a", 8080, "TCP")
    assert not theirs.allows("ingress/nginx-a", "shop/web-b", 8080, "TCP")
    assert theirs.allows("monitoring/prom-a", "shop/web-b", 8080, "TCP")
    assert theirs.allows("shop/web-b", "kube-system/coredns-a", 53, "UDP")
    assert not theirs.allows("shop/web-b", "shop/api-a", 9000, "TCP")
    assert theirs.allows("shop/web-a", "shop/api-a", 9000, "TCP")
    assert not theirs.allows("shop/web-a", "203.0.113.9", 443, "TCP")
