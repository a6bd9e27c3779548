"""Admin-tier quarantine objects: rendered to the real CRD schemas, evaluated with tier semantics.

The property at the end is the reason this backend exists: with an Admin-tier quarantine, no set of
NetworkPolicies a user can write allows any non-DNS connection to or from the quarantined pod.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from netwarden.model import names
from netwarden.model.admin_policy import (
    ANP_V1ALPHA1,
    CNP_V1ALPHA2,
    CNP_V1BETA1,
    DISCOVERY_ORDER,
    admin_quarantine_name,
    api_of,
    choose_backend,
    render_admin_quarantine,
)
from netwarden.model.netpol_eval import ExternalIP, NamespaceInfo, PodInfo, PolicySet
from netwarden.model.policy import DnsTarget, Peer, PolicyMeta, PortSpec, Rule, quarantine_intent, workload_quarantine_intent
from tests.netpol.test_netpol_properties import policies

CRDS = Path(__file__).resolve().parents[1] / "data" / "crds"
DNS = DnsTarget.from_selector("kube-system", {"k8s-app": "kube-dns"})


def crd_schema(file: str, version: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / file).read_text())
    return next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]


SCHEMAS = {
    CNP_V1BETA1: ("clusternetworkpolicies-v0.3.0-standard.yaml", "v1beta1"),
    CNP_V1ALPHA2: ("clusternetworkpolicies-v0.3.0-standard.yaml", "v1alpha2"),
    ANP_V1ALPHA1: ("adminnetworkpolicies-v0.1.7-standard.yaml", "v1alpha1"),
}


def quarantine(api: Any, instance: str | None = "i-0", exceptions: tuple[Rule, ...] = (), dns: DnsTarget = DNS,
               priority: int = 10) -> dict[str, Any]:
    intent = (quarantine_intent("shop", "shop.deploy.api", instance, exceptions) if instance is not None
              else workload_quarantine_intent("shop", "shop.deploy.api", exceptions))
    meta = PolicyMeta(admin_quarantine_name("shop", instance, "shop.deploy.api"), names.REASON_QUARANTINE,
                      role=names.ROLE_QUARANTINE)
    return render_admin_quarantine(intent, meta, dns, api, priority)


EXCEPTIONS = (Rule((Peer("purpose", "monitoring", "*"),), (PortSpec("TCP", 9090),)),
              Rule((Peer("namespace", "ops"),), (PortSpec("TCP", None), PortSpec("UDP", 7000, 7010))),
              Rule((Peer("cidr", "10.9.0.0/16"),), ()))


@pytest.mark.parametrize("api", list(SCHEMAS), ids=lambda a: f"{a.kind}-{a.version}")
@pytest.mark.parametrize("instance", ["i-0", None], ids=["pod", "workload"])
@pytest.mark.parametrize("dns", [DNS, DnsTarget()], ids=["dns-service", "dns-anywhere"])
def test_rendered_quarantine_validates_against_the_real_crd_schema(api: Any, instance: str | None, dns: DnsTarget) -> None:
    manifest = quarantine(api, instance, EXCEPTIONS, dns)
    jsonschema.validate(manifest, crd_schema(*SCHEMAS[api]))
    assert manifest["apiVersion"] == api.api_version and api_of(manifest) == api
    assert "namespace" not in manifest["metadata"]  # cluster-scoped
    spec = manifest["spec"]
    assert ("tier" in spec) == (api.kind == "ClusterNetworkPolicy")
    selector = spec["subject"]["pods"]["podSelector"]["matchLabels"]
    assert selector == ({names.LABEL_INSTANCE: "i-0"} if instance else {names.LABEL_IDENTITY: "shop.deploy.api"})
    assert spec["ingress"][-1]["action"] == "Deny" and spec["egress"][-1]["action"] == "Deny"
    # The ingress CIDR exception cannot be said in these APIs: left out, never widened to everything.
    assert not any("networks" in peer for rule in spec["ingress"] for peer in rule["from"])


def test_backend_is_detected_in_discovery_order_and_never_assumed() -> None:
    everything = {"v1beta1": ["clusternetworkpolicies"], "v1alpha2": ["clusternetworkpolicies"],
                  "v1alpha1": ["adminnetworkpolicies", "baselineadminnetworkpolicies"]}
    assert choose_backend("auto", everything).api == CNP_V1BETA1
    assert choose_backend("auto", {"v1alpha2": ["clusternetworkpolicies"], "v1alpha1": ["adminnetworkpolicies"]}).api \
        == CNP_V1ALPHA2
    assert choose_backend("auto", {"v1alpha1": ["adminnetworkpolicies"]}).api == ANP_V1ALPHA1
    assert choose_backend("adminnetworkpolicy", everything).api == ANP_V1ALPHA1
    assert choose_backend("networkpolicy", everything).api is None
    missing = choose_backend("clusternetworkpolicy", {"v1alpha1": ["adminnetworkpolicies"]})
    assert missing.api is None and missing.backend == "networkpolicy" and "falls back" in missing.reason
    assert choose_backend("auto", {}).api is None
    with pytest.raises(ValueError):
        choose_backend("calico", everything)
    assert [a.version for a in DISCOVERY_ORDER] == ["v1beta1", "v1alpha2", "v1alpha1"]


NAMESPACES = [NamespaceInfo("shop"), NamespaceInfo("kube-system"), NamespaceInfo("ops")]
Q = PodInfo("shop", "api-0", {names.LABEL_IDENTITY: "shop.deploy.api", names.LABEL_INSTANCE: "i-0", "app": "api"},
            "10.0.0.10")
SIBLING = PodInfo("shop", "api-1", {names.LABEL_IDENTITY: "shop.deploy.api", names.LABEL_INSTANCE: "i-1", "app": "api"},
                  "10.0.0.11")
WEB = PodInfo("shop", "web-0", {"app": "web"}, "10.0.0.20")
DNS_POD = PodInfo("kube-system", "coredns", {"k8s-app": "kube-dns"}, "10.0.0.53")
WORLD = ExternalIP("203.0.113.9")
USER_ALLOW = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"namespace": "shop", "name": "allow-web"},
              "spec": {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"],
                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                                    "ports": [{"port": 8080}]}]}}


@pytest.mark.parametrize("api", list(SCHEMAS), ids=lambda a: f"{a.kind}-{a.version}")
def test_admin_deny_is_final_a_user_allow_policy_does_not_reopen_it(api: Any) -> None:
    assert PolicySet([USER_ALLOW], NAMESPACES).is_allowed(WEB, Q, 8080)
    held = PolicySet([USER_ALLOW, quarantine(api)], NAMESPACES)
    verdict = held.explain(WEB, Q, 8080)
    assert not verdict.allowed and "denied by Admin tier" in verdict.ingress.note
    assert held.is_allowed(WEB, SIBLING, 8080)  # the sibling keeps its traffic
    assert not held.is_allowed(Q, WORLD, 443) and not held.is_allowed(Q, SIBLING, 8080)
    assert held.is_allowed(Q, DNS_POD, 53, "UDP") and held.is_allowed(Q, DNS_POD, 53, "TCP")
    assert not held.is_allowed(Q, DNS_POD, 80)


def test_pass_hands_over_to_network_policy_and_baseline_tier_decides_only_unselected_pods() -> None:
    pass_all = {"apiVersion": "policy.networking.k8s.io/v1beta1", "kind": "ClusterNetworkPolicy",
                "metadata": {"name": "pass"},
                "spec": {"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
                         "ingress": [{"action": "Pass", "from": [{"namespaces": {}}]}]}}
    baseline_deny = {"apiVersion": "policy.networking.k8s.io/v1beta1", "kind": "ClusterNetworkPolicy",
                     "metadata": {"name": "baseline"},
                     "spec": {"tier": "Baseline", "priority": 1, "subject": {"namespaces": {}},
                              "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}}
    # Pass at priority 1 wins over the quarantine's Deny at priority 10: the user NP decides.
    ps = PolicySet([pass_all, quarantine(CNP_V1BETA1), USER_ALLOW, baseline_deny], NAMESPACES)
    assert ps.is_allowed(WEB, Q, 8080)
    assert not ps.is_allowed(WEB, Q, 9999)  # NetworkPolicy isolates it: no baseline involved
    assert not ps.is_allowed(Q, WEB, 80)  # WEB is selected by no NetworkPolicy: baseline Deny decides
    assert PolicySet([USER_ALLOW], NAMESPACES).is_allowed(Q, WEB, 80)


@pytest.mark.parametrize("api", [CNP_V1BETA1, ANP_V1ALPHA1], ids=lambda a: a.kind)
def test_exceptions_are_accepted_above_the_deny(api: Any) -> None:
    monitor = PodInfo("mon", "prom", {names.LABEL_PURPOSE: "monitoring"}, "10.0.0.90")
    ops = PodInfo("ops", "tool", {}, "10.0.0.91")
    ps = PolicySet([quarantine(api, exceptions=EXCEPTIONS)], NAMESPACES)
    assert ps.is_allowed(monitor, Q, 9090)
    assert not ps.is_allowed(monitor, Q, 9091) and not ps.is_allowed(monitor, Q, 7005, "UDP")
    assert ps.is_allowed(ops, Q, 7005, "UDP") and ps.is_allowed(ops, Q, 1234)  # namespace=ops: TCP any, 7000-7010/UDP
    assert not ps.is_allowed(ops, Q, 7011, "UDP")


OTHER_PODS = [SIBLING, WEB, DNS_POD, PodInfo("ops", "tool", {"app": "x"}, "10.0.0.30")]
USER_NAMESPACES = [NamespaceInfo("shop", {"env": "x"}), NamespaceInfo("kube-system", {"env": "y"}),
                   NamespaceInfo("ops", {"env": "y"})]


@st.composite
def user_policies(draw: Any) -> dict[str, Any]:
    """Any NetworkPolicy a user could write in shop/kube-system/ops (the generator of the evaluator's properties)."""
    policy = copy.deepcopy(draw(policies()))
    policy["metadata"]["namespace"] = draw(st.sampled_from(["shop", "kube-system", "ops"]))
    return policy


@settings(max_examples=150, deadline=None)
@given(st.lists(user_policies(), max_size=5), st.sampled_from(list(SCHEMAS)),
       st.sampled_from([80, 443, 8080, 53, None]), st.sampled_from(["TCP", "UDP", "SCTP"]))
def test_with_an_admin_tier_quarantine_no_user_network_policy_allows_a_non_dns_connection(
        user: list, api: Any, port: int | None, protocol: str) -> None:
    ps = PolicySet([*user, quarantine(api)], USER_NAMESPACES)
    for other in [*OTHER_PODS, WORLD, ExternalIP("10.0.0.53")]:
        dns = other in (DNS_POD,) and port == 53 and protocol in ("TCP", "UDP")
        if not dns:
            assert not ps.is_allowed(Q, other, port, protocol), (other, port, protocol)
        if isinstance(other, PodInfo):
            assert not ps.is_allowed(other, Q, port, protocol), (other, port, protocol)
