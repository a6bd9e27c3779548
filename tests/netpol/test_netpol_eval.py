"""networking.k8s.io/v1 semantics of the NetworkPolicy evaluator."""

from __future__ import annotations

from typing import Any

from netwarden.model.netpol_eval import ContainerPort, ExternalIP, NamespaceInfo, PodInfo, PolicySet

WEB = PodInfo("shop", "web-1", {"app": "web", "tier": "front"}, "10.1.0.1", (ContainerPort(8080, "http"),))
API = PodInfo("shop", "api-1", {"app": "api"}, "10.1.0.2", (ContainerPort(9000, "grpc"), ContainerPort(53, "dns", "UDP")))
DB = PodInfo("data", "db-1", {"app": "db"}, "10.2.0.1")
MON = PodInfo("monitoring", "prom-1", {"app": "prometheus"}, "10.3.0.1")
NAMESPACES = [
    NamespaceInfo("shop", {"team": "shop"}),
    NamespaceInfo("data", {"team": "data", "tier": "storage"}),
    NamespaceInfo("monitoring", {"team": "platform"}),
]
INTERNET = ExternalIP("203.0.113.7")


def policy(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": namespace, "name": name}, "spec": spec}


def test_pods_selected_by_no_policy_are_open_both_ways() -> None:
    ps = PolicySet([policy("shop", "web", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": []})], NAMESPACES)
    assert ps.is_allowed(API, DB, 5432, "TCP")
    assert ps.is_allowed(INTERNET, DB, 1, "UDP")
    assert ps.explain(API, DB, 5432, "TCP").ingress.isolated is False


def test_policy_with_empty_ingress_denies_all_ingress_but_not_egress() -> None:
    ps = PolicySet([policy("shop", "deny", {"podSelector": {}, "policyTypes": ["Ingress"]})], NAMESPACES)
    assert not ps.is_allowed(MON, WEB, 8080, "TCP")
    assert not ps.is_allowed(API, WEB, 8080, "TCP")
    assert ps.is_allowed(WEB, DB, 5432, "TCP")


def test_policy_types_default_adds_egress_only_when_egress_rules_exist() -> None:
    ingress_only = policy("shop", "a", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]})
    with_egress = policy("shop", "b", {"podSelector": {"matchLabels": {"app": "web"}},
                                        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "api"}}}]}]})
    assert PolicySet([ingress_only], NAMESPACES).is_allowed(WEB, DB, 5432, "TCP")
    ps = PolicySet([with_egress], NAMESPACES)
    assert not ps.is_allowed(WEB, DB, 5432, "TCP")
    assert ps.is_allowed(WEB, API, 9000, "TCP")
    assert not ps.is_allowed(MON, WEB, 8080, "TCP"), "Ingress is always in the default policyTypes"


def test_egress_of_source_and_ingress_of_destination_must_both_allow() -> None:
    egress_deny = policy("shop", "egress-deny", {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"]})
    ingress_allow = policy("data", "db-in", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]})
    ps = PolicySet([egress_deny, ingress_allow], NAMESPACES)
    explanation = ps.explain(WEB, DB, 5432, "TCP")
    assert explanation.ingress.allowed and not explanation.egress.allowed and not explanation.allowed
    assert "egress: denied" in explanation.summary()
    assert ps.is_allowed(API, DB, 5432, "TCP")


def test_namespace_and_pod_selector_in_one_peer_are_anded_separate_peers_ored() -> None:
    anded = policy("data", "and", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "shop"}}, "podSelector": {"matchLabels": {"app": "api"}}}]}]})
    ored = policy("data", "or", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "shop"}}}, {"podSelector": {"matchLabels": {"app": "api"}}}]}]})
    ps_and = PolicySet([anded], NAMESPACES)
    assert ps_and.is_allowed(API, DB, 5432, "TCP") and not ps_and.is_allowed(WEB, DB, 5432, "TCP")
    ps_or = PolicySet([ored], NAMESPACES)
    assert ps_or.is_allowed(API, DB, 5432, "TCP") and ps_or.is_allowed(WEB, DB, 5432, "TCP")
    assert not ps_or.is_allowed(MON, DB, 5432, "TCP"), "a bare podSelector peer means the policy's own namespace"


def test_match_expressions_operators() -> None:
    def allowed(expr: dict[str, Any], src: PodInfo) -> bool:
        p = policy("data", "x", {"podSelector": {}, "ingress": [{"from": [
            {"namespaceSelector": {}, "podSelector": {"matchExpressions": [expr]}}]}]})
        return PolicySet([p], NAMESPACES).is_allowed(src, DB, 5432, "TCP")

    assert allowed({"key": "app", "operator": "In", "values": ["web", "x"]}, WEB)
    assert not allowed({"key": "app", "operator": "In", "values": ["x"]}, WEB)
    assert allowed({"key": "app", "operator": "NotIn", "values": ["api"]}, WEB)
    assert allowed({"key": "missing", "operator": "NotIn", "values": ["a"]}, WEB)
    assert allowed({"key": "tier", "operator": "Exists"}, WEB) and not allowed({"key": "tier", "operator": "Exists"}, API)
    assert allowed({"key": "tier", "operator": "DoesNotExist"}, API)


def test_namespace_selector_sees_the_metadata_name_label_even_when_not_listed() -> None:
    p = policy("data", "x", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}}]}]})
    ps = PolicySet([p])  # no namespace facts at all
    assert ps.is_allowed(WEB, DB, 1, "TCP") and not ps.is_allowed(MON, DB, 1, "TCP")


def test_ip_block_with_except_for_external_ips() -> None:
    p = policy("shop", "out", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"]}}]}]})
    ps = PolicySet([p], NAMESPACES)
    assert ps.is_allowed(WEB, ExternalIP("203.0.113.7"), 443, "TCP")
    assert not ps.is_allowed(WEB, ExternalIP("203.0.113.200"), 443, "TCP")
    assert not ps.is_allowed(WEB, ExternalIP("198.51.100.1"), 443, "TCP")
    assert not ps.is_allowed(WEB, ExternalIP("2001:db8::1"), 443, "TCP")


def test_ip_block_matches_pod_ips_only_when_asked() -> None:
    p = policy("shop", "out", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"ipBlock": {"cidr": "10.2.0.0/16"}}]}]})
    assert not PolicySet([p], NAMESPACES).is_allowed(WEB, DB, 5432, "TCP")
    assert PolicySet([p], NAMESPACES, ipblock_matches_pods=True).is_allowed(WEB, DB, 5432, "TCP")


def test_ports_protocol_default_tcp_and_end_port_range() -> None:
    p = policy("data", "x", {"podSelector": {}, "ingress": [{"ports": [
        {"port": 5432}, {"protocol": "UDP", "port": 6000, "endPort": 6010}, {"protocol": "SCTP"}]}]})
    ps = PolicySet([p], NAMESPACES)
    assert ps.is_allowed(WEB, DB, 5432, "TCP") and not ps.is_allowed(WEB, DB, 5432, "UDP")
    assert ps.is_allowed(WEB, DB, 6000, "UDP") and ps.is_allowed(WEB, DB, 6010, "udp")
    assert not ps.is_allowed(WEB, DB, 6011, "UDP") and not ps.is_allowed(WEB, DB, 6005, "TCP")
    assert ps.is_allowed(WEB, DB, 1, "SCTP")
    assert not ps.is_allowed(WEB, DB, None, "ICMP"), "a rule with ports never matches ICMP"


def test_rule_without_ports_allows_every_protocol_including_icmp() -> None:
    p = policy("data", "x", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]})
    assert PolicySet([p], NAMESPACES).is_allowed(WEB, DB, None, "ICMP")


def test_named_ports_resolve_through_destination_container_ports() -> None:
    ingress = policy("shop", "x", {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}, {"port": "dns", "protocol": "UDP"}]}]})
    ps = PolicySet([ingress], NAMESPACES)
    assert ps.is_allowed(MON, WEB, 8080, "TCP") and not ps.is_allowed(MON, WEB, 9000, "TCP")
    assert not ps.is_allowed(MON, API, 9000, "TCP"), "api has no port named http"
    assert ps.is_allowed(MON, API, 53, "UDP") and not ps.is_allowed(MON, API, 53, "TCP")
    egress = policy("monitoring", "y", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "http"}]}]})
    ps = PolicySet([egress], NAMESPACES)
    assert ps.is_allowed(MON, WEB, 8080, "TCP")
    assert not ps.is_allowed(MON, INTERNET, 8080, "TCP"), "a named port never matches an external peer"


def test_policies_are_additive_and_explain_names_the_allowing_rules() -> None:
    a = policy("data", "a", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "shop"}}}]}]})
    b = policy("data", "b", {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [
        {"ports": [{"port": 1}]}, {"from": [{"namespaceSelector": {"matchLabels": {"team": "platform"}}}]}]})
    ps = PolicySet([a, b], NAMESPACES)
    assert ps.is_allowed(WEB, DB, 5432, "TCP") and ps.is_allowed(MON, DB, 5432, "TCP")
    explanation = ps.explain(MON, DB, 5432, "TCP")
    assert explanation.ingress.selecting == ("data/a", "data/b")
    assert [(m.policy, m.rule_index) for m in explanation.ingress.allowed_by] == [("data/b", 1)]


def test_a_pod_can_always_reach_itself() -> None:
    ps = PolicySet([policy("shop", "deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})], NAMESPACES)
    assert ps.is_allowed(WEB, WEB, 8080, "TCP")
    assert not ps.is_allowed(WEB, API, 9000, "TCP")


def test_policy_in_another_namespace_does_not_select_the_pod() -> None:
    ps = PolicySet([policy("data", "deny", {"podSelector": {}, "policyTypes": ["Ingress"]})], NAMESPACES)
    assert ps.is_allowed(MON, WEB, 8080, "TCP") and not ps.is_allowed(MON, DB, 5432, "TCP")
