"""The shared policy model renders what each step means."""

from __future__ import annotations

from hypothesis import given, strategies as st

from netwarden.model import names
from netwarden.model.identity import OwnerRef, Workload
from netwarden.model.policy import (
    DnsTarget,
    Peer,
    PolicyMeta,
    PortSpec,
    Rule,
    baseline_intent,
    baseline_policy_name,
    normalise_rules,
    quarantine_intent,
    quarantine_policy_name,
    render_network_policy,
    with_excluded_instances,
)

API = Workload("shop", "Deployment", "api", OwnerRef("apps/v1", "Deployment", "api", "uid-1", True))
DNS = DnsTarget.from_selector("kube-system", {"k8s-app": "kube-dns"})


def render(intent, **meta):
    return render_network_policy(intent, PolicyMeta(name=baseline_policy_name(API), reason="test", **meta), DNS)


def test_nothing_declared_is_default_deny_except_dns() -> None:
    spec = render(baseline_intent(API, (), (), ()))["spec"]
    assert spec["podSelector"] == {"matchLabels": {names.LABEL_IDENTITY: "shop.deploy.api"}}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == []
    assert spec["egress"] == [
        {
            "to": [{"namespaceSelector": {"matchLabels": {names.LABEL_NAMESPACE_NAME: "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        }
    ]


def test_declared_ingress_gets_container_ports_and_egress_keeps_its_own() -> None:
    intent = baseline_intent(
        API,
        [Rule((Peer("purpose", "frontend"),))],
        [Rule((Peer("purpose", "database"),), (PortSpec("TCP", 5432),)),
         Rule((Peer("identity", "payments.deploy.gw"),), (PortSpec("TCP", 443),))],
        [PortSpec("TCP", 8080)],
    )
    spec = render(intent)["spec"]
    assert spec["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": {names.LABEL_PURPOSE: "frontend"}}}],
         "ports": [{"protocol": "TCP", "port": 8080}]}
    ]
    assert {"to": [{"podSelector": {"matchLabels": {names.LABEL_PURPOSE: "database"}}}],
            "ports": [{"protocol": "TCP", "port": 5432}]} in spec["egress"]
    # An identity peer in another namespace is pinned to that namespace, never any namespace.
    assert {"to": [{"podSelector": {"matchLabels": {names.LABEL_IDENTITY: "payments.deploy.gw"}},
                    "namespaceSelector": {"matchLabels": {names.LABEL_NAMESPACE_NAME: "payments"}}}],
            "ports": [{"protocol": "TCP", "port": 443}]} in spec["egress"]


def test_learn_mode_selects_the_workload_but_allows_everything() -> None:
    manifest = render(baseline_intent(API, (), (), (), enforcing=False))
    assert manifest["spec"]["ingress"] == [{}] and manifest["spec"]["egress"] == [{}]
    assert manifest["metadata"]["annotations"][names.ANNOTATION_STEP] == names.STEP_LEARNING


def test_manifest_is_marked_managed_with_owner_and_bookkeeping() -> None:
    manifest = render(baseline_intent(API, (), (), ()), owner=API.owner.to_dict(), revision=3)
    meta = manifest["metadata"]
    assert meta["name"] == "netwarden-deploy-api" and meta["namespace"] == "shop"
    assert meta["labels"][names.LABEL_MANAGED_BY] == "netwarden"
    assert meta["labels"][names.LABEL_IDENTITY] == "shop.deploy.api"
    assert meta["annotations"][names.ANNOTATION_REVISION] == "3"
    assert meta["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "api", "uid": "uid-1"}]


def test_quarantine_selects_exactly_one_instance_and_workload_policy_excludes_it() -> None:
    quarantine = render_network_policy(
        quarantine_intent("shop", API.identity, "i-123"),
        PolicyMeta(name=quarantine_policy_name("i-123"), reason="falco", role=names.ROLE_QUARANTINE), DNS)
    assert quarantine["spec"]["podSelector"] == {"matchLabels": {names.LABEL_INSTANCE: "i-123"}}
    assert quarantine["spec"]["ingress"] == []
    assert len(quarantine["spec"]["egress"]) == 1 and quarantine["spec"]["egress"][0]["ports"][0]["port"] == 53
    baseline = render(with_excluded_instances(baseline_intent(API, (), (), ()), ["i-123"]))
    assert baseline["spec"]["podSelector"]["matchExpressions"] == [
        {"key": names.LABEL_INSTANCE, "operator": "NotIn", "values": ["i-123"]}]


def test_unknown_dns_falls_back_to_port_53_anywhere() -> None:
    manifest = render_network_policy(baseline_intent(API, (), (), ()), PolicyMeta("p", "r"), DnsTarget())
    assert manifest["spec"]["egress"] == [{"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]


peers = st.builds(Peer, st.sampled_from(["purpose", "identity"]), st.sampled_from(["a", "b", "shop.deploy.c"]),
                  st.sampled_from([None, "other", "*"]))
ports = st.builds(PortSpec, st.sampled_from(["TCP", "UDP"]), st.integers(1, 5))
rules = st.builds(Rule, st.lists(peers, max_size=3).map(tuple), st.lists(ports, max_size=2).map(tuple))


@given(st.lists(rules, max_size=6))
def test_rule_order_never_changes_the_rendered_policy(rule_list: list[Rule]) -> None:
    forward = render(baseline_intent(API, (), rule_list, ()))
    backward = render(baseline_intent(API, (), list(reversed(rule_list)), ()))
    assert forward == backward


@given(st.lists(rules, max_size=6))
def test_normalising_keeps_every_allowed_peer_port_pair(rule_list: list[Rule]) -> None:
    def pairs(rs):
        out = set()
        for r in rs:
            for p in r.peers or (None,):
                for port in r.ports or (None,):
                    out.add((p, port))
        return out

    normalised = normalise_rules(rule_list)
    before, after = pairs(rule_list), pairs(normalised)
    open_ports = {port for (p, port) in before if p is None}
    assert {x for x in before} <= after | {(p, port) for (p, port) in before if port in open_ports}
    assert all(p is None or (p, port) in before or port in open_ports for (p, port) in after)


def test_dns_target_is_the_dns_services_pods_or_port_53_anywhere() -> None:
    kube_dns = {"spec": {"selector": {"k8s-app": "kube-dns"}}}
    assert DnsTarget.of_service("kube-system", kube_dns) == DnsTarget("kube-system", (("k8s-app", "kube-dns"),))
    assert DnsTarget.of_service("kube-system", None) == DnsTarget()  # absent
    # no selector: endpoints made by hand (node-local DNS, an outside resolver): no pod label stands for them
    assert DnsTarget.of_service("kube-system", {"spec": {"clusterIP": "10.96.0.10"}}) == DnsTarget()
    assert DnsTarget.of_service("kube-system", {"spec": {"selector": {}}}) == DnsTarget()
