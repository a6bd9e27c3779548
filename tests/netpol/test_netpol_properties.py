"""Invariants of the evaluator, over generated policies and pods (hypothesis)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from netwarden.model.netpol_eval import ContainerPort, ExternalIP, NamespaceInfo, PodInfo, PolicySet, selector_matches

NS = ["a", "b"]
KEYS = ["app", "tier"]
VALUES = ["x", "y"]
NAMESPACES = [NamespaceInfo("a", {"env": "x"}), NamespaceInfo("b", {"env": "y"})]

labels = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2)
expression = st.one_of(
    st.fixed_dictionaries({"key": st.sampled_from(KEYS), "operator": st.sampled_from(["In", "NotIn"]),
                           "values": st.lists(st.sampled_from(VALUES), min_size=1, max_size=2)}),
    st.fixed_dictionaries({"key": st.sampled_from(KEYS), "operator": st.sampled_from(["Exists", "DoesNotExist"])}),
)
selector = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"matchLabels": labels}),
    st.fixed_dictionaries({"matchExpressions": st.lists(expression, min_size=1, max_size=2)}),
)
ns_selector = st.one_of(st.just({}), st.fixed_dictionaries({"matchLabels": st.dictionaries(st.just("env"), st.sampled_from(VALUES), max_size=1)}))
peer = st.one_of(
    st.fixed_dictionaries({"podSelector": selector}),
    st.fixed_dictionaries({"namespaceSelector": ns_selector}),
    st.fixed_dictionaries({"namespaceSelector": ns_selector, "podSelector": selector}),
    st.fixed_dictionaries({"ipBlock": st.fixed_dictionaries({"cidr": st.sampled_from(["0.0.0.0/0", "203.0.113.0/24"])})}),
)
port = st.one_of(
    st.fixed_dictionaries({"port": st.sampled_from([80, 443])}),
    st.fixed_dictionaries({"port": st.just("http")}),
    st.fixed_dictionaries({"protocol": st.sampled_from(["TCP", "UDP"]), "port": st.just(80), "endPort": st.just(443)}),
    st.fixed_dictionaries({"protocol": st.just("UDP")}),
)
rule_body = st.fixed_dictionaries({}, optional={"peers": st.lists(peer, max_size=2), "ports": st.lists(port, max_size=2)})


def as_rule(body: dict[str, Any], direction: str) -> dict[str, Any]:
    out = {}
    if "peers" in body:
        out[direction] = body["peers"]
    if "ports" in body:
        out["ports"] = body["ports"]
    return out


@st.composite
def policies(draw: Any) -> dict[str, Any]:
    types = draw(st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]]))
    spec: dict[str, Any] = {"podSelector": draw(selector), "policyTypes": types}
    if "Ingress" in types:
        spec["ingress"] = [as_rule(b, "from") for b in draw(st.lists(rule_body, max_size=2))]
    if "Egress" in types:
        spec["egress"] = [as_rule(b, "to") for b in draw(st.lists(rule_body, max_size=2))]
    name = f"p{draw(st.integers(0, 10_000))}"
    return {"metadata": {"namespace": draw(st.sampled_from(NS)), "name": name}, "spec": spec}


pods = st.builds(
    PodInfo,
    namespace=st.sampled_from(NS),
    name=st.sampled_from(["p1", "p2", "p3"]),
    labels=labels,
    ip=st.just("10.0.0.1"),
    container_ports=st.sampled_from([(), (ContainerPort(80, "http"),)]),
)
endpoints = st.one_of(pods, st.builds(ExternalIP, st.sampled_from(["203.0.113.9", "198.51.100.1"])))
connections = st.tuples(endpoints, endpoints, st.sampled_from([80, 443, 8080, None]), st.sampled_from(["TCP", "UDP", "ICMP"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(policies(), max_size=4), st.data(), st.lists(connections, min_size=1, max_size=8))
def test_adding_an_allow_rule_never_removes_a_connection(policy_list: list, data: Any, conns: list) -> None:
    if not policy_list:
        return
    index = data.draw(st.integers(0, len(policy_list) - 1))
    extended = copy.deepcopy(policy_list)
    spec = extended[index]["spec"]
    direction = data.draw(st.sampled_from([d for d in ("ingress", "egress") if d in spec]))
    spec[direction].append(as_rule(data.draw(rule_body), "from" if direction == "ingress" else "to"))
    before, after = PolicySet(policy_list, NAMESPACES), PolicySet(extended, NAMESPACES)
    for src, dst, p, proto in conns:
        if before.is_allowed(src, dst, p, proto):
            assert after.is_allowed(src, dst, p, proto)


@settings(max_examples=300, deadline=None)
@given(st.lists(policies(), max_size=4), selector, st.sampled_from(NS), st.lists(connections, min_size=1, max_size=8))
def test_a_policy_with_an_empty_ingress_list_denies_all_ingress_to_its_pods(
    policy_list: list, pod_selector: dict, namespace: str, conns: list
) -> None:
    deny = {"metadata": {"namespace": namespace, "name": "deny"},
            "spec": {"podSelector": pod_selector, "policyTypes": ["Ingress"], "ingress": []}}
    ps = PolicySet([*policy_list, deny], NAMESPACES)
    alone = PolicySet([deny], NAMESPACES)
    for src, dst, p, proto in conns:
        same_pod = isinstance(src, PodInfo) and isinstance(dst, PodInfo) and src.key == dst.key
        if isinstance(dst, PodInfo) and dst.namespace == namespace and not same_pod:
            if selector_matches(pod_selector, dst.labels):
                assert not alone.is_allowed(src, dst, p, proto)
                # Among other policies, the deny policy never contributes an allow, and isolates.
                ingress = ps.explain(src, dst, p, proto).ingress
                assert ingress.isolated
                assert all(m.policy != f"{namespace}/deny" for m in ingress.allowed_by)
                assert ingress.allowed == bool(ingress.allowed_by)


@settings(max_examples=300, deadline=None)
@given(st.lists(policies(), max_size=4), st.lists(connections, min_size=1, max_size=8))
def test_unselected_pods_are_open_and_both_sides_must_allow(policy_list: list, conns: list) -> None:
    ps = PolicySet(policy_list, NAMESPACES)
    for src, dst, p, proto in conns:
        explanation = ps.explain(src, dst, p, proto)
        assert explanation.allowed == (explanation.egress.allowed and explanation.ingress.allowed)
        if not explanation.ingress.isolated:
            assert explanation.ingress.allowed
        if isinstance(dst, PodInfo) and not any(
            pol["metadata"]["namespace"] == dst.namespace
            and "Ingress" in pol["spec"]["policyTypes"]
            and selector_matches(pol["spec"]["podSelector"], dst.labels)
            for pol in policy_list
        ):
            assert explanation.ingress.allowed
