"""The nca output parser (no nca needed), and a generated cross-check (needs nca)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netwarden.model.netpol_eval import ContainerPort, ExternalIP, NamespaceInfo, PodInfo, PolicySet
from tests.netpol.test_netpol_properties import policies
from tests.support.nca import ConnSpec, nca_available, nca_connectivity, parse_connectivity, probes

SAMPLE = """\
0.0.0.0-9.255.255.255 => a/cli-1 : All connections
10.0.0.0-10.255.255.255 => b/db-1 : {protocols:TCP,dst_ports:7000}
a/cli-1[Pod] => b/db-1[Pod] : {protocols:TCP,dst_ports:80-90,100}
a/cli-1 => b/db-1 : {protocols:SCTP}
a/web-1 => kube-system/dns-1 : {protocols:TCP, UDP,dst_ports:53}
"""


def test_parser_reads_ranges_protocol_lists_and_all_connections() -> None:
    result = parse_connectivity(SAMPLE)
    assert result.edges[("a/cli-1", "b/db-1")] == [ConnSpec("TCP", ((80, 90), (100, 100))), ConnSpec("SCTP", None)]
    assert result.allows("a/cli-1", "b/db-1", 85, "TCP") and result.allows("a/cli-1", "b/db-1", 100, "TCP")
    assert not result.allows("a/cli-1", "b/db-1", 91, "TCP") and result.allows("a/cli-1", "b/db-1", 1, "sctp")
    assert result.allows("a/web-1", "kube-system/dns-1", 53, "UDP") and not result.allows("a/web-1", "kube-system/dns-1", 54, "UDP")
    assert result.allows("9.1.2.3", "a/cli-1", None, "ICMP") and not result.allows("10.1.2.3", "a/cli-1", 1, "TCP")
    assert result.allows("10.1.2.3", "b/db-1", 7000, "TCP") and not result.allows("11.0.0.1", "b/db-1", 7000, "TCP")
    assert result.allows("a/cli-1", "a/cli-1", 1, "TCP"), "a pod reaches itself; nca does not list it"


def test_parser_refuses_connection_properties_it_does_not_model() -> None:
    with pytest.raises(ValueError):
        parse_connectivity("a/x => a/y : {protocols:TCP,methods:GET}")


NAMESPACES = [NamespaceInfo("a", {"env": "x"}), NamespaceInfo("b", {"env": "y"})]
PODS = [
    PodInfo("a", "p1", {}, None, ()),
    PodInfo("a", "p2", {"app": "x"}, None, (ContainerPort(80, "http"),)),
    PodInfo("a", "p3", {"app": "y", "tier": "x"}, None, (ContainerPort(443, "http"),)),
    PodInfo("b", "p4", {"tier": "y"}, None, (ContainerPort(80, "http", "UDP"),)),
    PodInfo("b", "p5", {"app": "x", "tier": "x"}, None, ()),
]
EXTERNAL = [ExternalIP("203.0.113.9"), ExternalIP("198.51.100.1")]
PROBES = [(80, "TCP"), (443, "TCP"), (80, "UDP"), (200, "UDP"), (8080, "TCP")]


@pytest.mark.skipif(not nca_available(), reason="nca (pip install network-config-analyzer) is not installed")
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(st.lists(policies(), min_size=1, max_size=4, unique_by=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])))
def test_evaluator_agrees_with_nca_on_generated_policies(policy_list: list) -> None:
    ours = PolicySet(policy_list, NAMESPACES)
    theirs = nca_connectivity(PODS, NAMESPACES, policy_list)
    endpoints = [*PODS, *EXTERNAL]
    for src, dst, src_name, dst_name, port, protocol in probes(endpoints, PROBES):
        assert ours.is_allowed(src, dst, port, protocol) == theirs.allows(src_name, dst_name, port, protocol), (
            f"{src_name} -> {dst_name} {port}/{protocol}: " + ours.explain(src, dst, port, protocol).summary()
            + f"\n{policy_list}\n{theirs.raw}"
        )
