"""Weak containment: user policies that widen a quarantined or tightened pod, and allow-all policies."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from netwarden.model import names
from netwarden.model.admin_policy import CNP_V1BETA1, admin_quarantine_name, render_admin_quarantine
from netwarden.model.containment import (KIND_QUARANTINE, KIND_TIGHTENED, allow_all_policies, contained_step, pod_info,
                                   widening_policies)
from netwarden.model.netpol_eval import NamespaceInfo, PodInfo, PolicySet
from netwarden.model.policy import (DnsTarget, Peer, PolicyMeta, PortSpec, Rule, quarantine_intent, quarantine_policy_name,
                              render_network_policy)
from tests.netpol.test_netpol_properties import policies as generated_policies

DNS = DnsTarget.from_selector("kube-system", {"k8s-app": "kube-dns"})
NAMESPACES = [NamespaceInfo("shop"), NamespaceInfo("kube-system")]
API0 = PodInfo("shop", "api-0", {names.LABEL_IDENTITY: "shop.deploy.api", names.LABEL_INSTANCE: "i-0", "app": "api"},
               "10.0.0.10")
API1 = PodInfo("shop", "api-1", {names.LABEL_IDENTITY: "shop.deploy.api", names.LABEL_INSTANCE: "i-1", "app": "api"},
               "10.0.0.11")
WEB = PodInfo("shop", "web-0", {"app": "web"}, "10.0.0.20")
PODS = [API0, API1, WEB]


def np_quarantine() -> dict[str, Any]:
    meta = PolicyMeta(quarantine_policy_name("i-0"), names.REASON_QUARANTINE, role=names.ROLE_QUARANTINE)
    return render_network_policy(quarantine_intent("shop", "shop.deploy.api", "i-0"), meta, DNS)


def workload_policy(step: str = names.STEP_BASELINE, excluded: tuple[str, ...] = ("i-0",)) -> dict[str, Any]:
    from netwarden.model.policy import PolicyIntent

    intent = PolicyIntent("shop", "shop.deploy.api", step=step, ingress=(Rule((Peer("purpose", "frontend"),),
                                                                             (PortSpec("TCP", 8080),)),),
                          excluded_instances=excluded)
    return render_network_policy(intent, PolicyMeta("netwarden-deployment-api", "backfill"), DNS)


def user_policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": "shop", "name": name}, "spec": spec}


WEB_TO_API = user_policy("allow-web", {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"],
                                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                                                    "ports": [{"port": 8080}]}]})


def test_a_user_allow_policy_that_reopens_a_quarantine_is_found_with_the_connection_it_opens() -> None:
    found = widening_policies(API0, [np_quarantine(), workload_policy(), WEB_TO_API], PODS, NAMESPACES)
    assert [(w.kind, w.policy, w.pod, w.direction, w.connection) for w in found] == [
        (KIND_QUARANTINE, "shop/allow-web", "shop/api-0", "ingress", "shop/web-0 -> shop/api-0 :8080/TCP")]
    assert "allow-web" in found[0].message() and "never edits" in found[0].message()
    # The sibling is not contained: nothing to report for it.
    assert widening_policies(API1, [np_quarantine(), workload_policy(), WEB_TO_API], PODS, NAMESPACES) == []


def test_a_policy_that_allows_nothing_more_than_netwarden_is_not_reported() -> None:
    dns_only = user_policy("dns", {"podSelector": {}, "policyTypes": ["Egress"],
                                   "egress": [{"to": [{"namespaceSelector": {"matchLabels": {
                                       names.LABEL_NAMESPACE_NAME: "kube-system"}}, "podSelector": {
                                       "matchLabels": {"k8s-app": "kube-dns"}}}], "ports": [{"port": 53, "protocol": "UDP"}]}]})
    other_pods = user_policy("web-only", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]})
    assert widening_policies(API0, [np_quarantine(), workload_policy(), dns_only, other_pods], PODS, NAMESPACES) == []


def test_tightened_pods_are_checked_too_and_an_admin_tier_quarantine_leaves_only_external_ingress() -> None:
    tightened = workload_policy(names.STEP_TIGHTENED)
    world_in = user_policy("world-in", {"podSelector": {"matchLabels": {"app": "api"}},
                                        "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]})
    found = widening_policies(API1, [tightened, world_in, WEB_TO_API], PODS, NAMESPACES)
    assert {(w.kind, w.policy) for w in found} == {(KIND_TIGHTENED, "shop/world-in"), (KIND_TIGHTENED, "shop/allow-web")}
    meta = PolicyMeta(admin_quarantine_name("shop", "i-0", "shop.deploy.api"), names.REASON_QUARANTINE)
    admin = render_admin_quarantine(quarantine_intent("shop", "shop.deploy.api", "i-0"), meta, DNS, CNP_V1BETA1)
    assert contained_step(API0, [admin]) == names.STEP_QUARANTINED
    found = widening_policies(API0, [workload_policy(excluded=()), admin, world_in, WEB_TO_API], PODS, NAMESPACES)
    # The admin Deny holds against pods (no carve-out with it); ingress from outside the cluster is NetworkPolicy's alone.
    assert [(w.policy, w.connection) for w in found] == [("shop/world-in", "203.0.113.9 -> shop/api-0 (any port)/TCP")]


def test_allow_all_policies_are_found_by_direction() -> None:
    everything = user_policy("open", {"podSelector": {}, "ingress": [{}], "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]})
    all_pods = user_policy("all-pods-in", {"podSelector": {"matchLabels": {"app": "api"}},
                                           "ingress": [{"from": [{"namespaceSelector": {}}]}]})
    narrow = user_policy("narrow", {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]})
    found = allow_all_policies([everything, all_pods, narrow, np_quarantine()])
    assert [(a.policy, a.direction, a.selects) for a in found] == [
        ("shop/open", "ingress", "every pod"), ("shop/open", "egress", "every pod"),
        ("shop/all-pods-in", "ingress", "pods matching app=api")]


def test_pod_info_reads_a_pod_wire_object() -> None:
    pod = {"metadata": {"namespace": "shop", "name": "a", "labels": {"x": "1"}},
           "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080, "name": "http"}]}]},
           "status": {"podIP": "10.1.1.1"}}
    info = pod_info(pod)
    assert (info.key, info.ip, info.container_ports[0].name, info.container_ports[0].protocol) == (
        "shop/a", "10.1.1.1", "http", "TCP")


@settings(max_examples=100, deadline=None)
@given(st.lists(generated_policies(), max_size=3), st.sampled_from([80, 443, 8080]), st.sampled_from(["TCP", "UDP"]))
def test_when_no_policy_is_reported_no_user_policy_opens_a_probed_connection_netwarden_refuses(
        user: list, port: int, protocol: str) -> None:
    """Soundness on the probes: a connection to or from the quarantined pod that the whole set allows
    and netwarden's alone refuses implies some user policy is reported."""
    for policy in user:
        policy["metadata"]["namespace"] = "shop"
    ours = [np_quarantine(), workload_policy()]
    reported = widening_policies(API0, [*ours, *user], PODS, NAMESPACES)
    everything, alone = PolicySet([*ours, *user], NAMESPACES), PolicySet(ours, NAMESPACES)
    opened = [(a, b) for other in (API1, WEB) for a, b in ((other, API0), (API0, other))
              if everything.is_allowed(a, b, port, protocol) and not alone.is_allowed(a, b, port, protocol)]
    if opened:
        assert reported, opened
