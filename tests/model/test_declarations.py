"""The allow-from / allow-to grammar."""

from __future__ import annotations

from hypothesis import given, strategies as st

from netwarden.model.declarations import parse_peer_declarations
from netwarden.model.policy import Peer, PortSpec, Rule


def test_purpose_identity_namespace_and_cidr_entries_parse_with_ports() -> None:
    parsed = parse_peer_declarations(
        "purpose=frontend, identity=shop.deploy.api@shop:8080/TCP namespace=monitoring:9090 cidr=203.0.113.0/24:443,"
        " purpose=dns@*:53/udp"
    )
    assert parsed.errors == ()
    assert parsed.rules == (
        Rule((Peer("purpose", "frontend"),)),
        Rule((Peer("identity", "shop.deploy.api", "shop"),), (PortSpec("TCP", 8080),)),
        Rule((Peer("namespace", "monitoring"),), (PortSpec("TCP", 9090),)),
        Rule((Peer("cidr", "203.0.113.0/24"),), (PortSpec("TCP", 443),)),
        Rule((Peer("purpose", "dns", "*"),), (PortSpec("UDP", 53),)),
    )


def test_port_ranges_and_ipv6_cidrs() -> None:
    parsed = parse_peer_declarations("cidr=2001:db8::/32 cidr=10.0.0.0/8:30000-32767/TCP")
    assert parsed.errors == ()
    assert parsed.rules[0] == Rule((Peer("cidr", "2001:db8::/32"),))
    assert parsed.rules[1].ports == (PortSpec("TCP", 30000, 32767),)


def test_bad_entries_are_reported_and_good_ones_still_apply() -> None:
    parsed = parse_peer_declarations("purpose=frontend, colour=blue, cidr=10.0.0.300/8, purpose=db:70000, namespace=Bad_NS")
    assert parsed.rules == (Rule((Peer("purpose", "frontend"),)),)
    assert len(parsed.errors) == 4
    assert any("colour" in e for e in parsed.errors)
    assert any("out of range" in e for e in parsed.errors)


def test_port_names_parse_as_named_ports_and_render_as_names() -> None:
    """Issue 14 item 4: `purpose=web:http` was dropped with "invalid port"; now it is a named port."""
    from netwarden.model.identity import Workload
    from netwarden.model.policy import DnsTarget, PolicyMeta, baseline_intent, render_network_policy

    parsed = parse_peer_declarations("purpose=web:http, namespace=monitoring:metrics/UDP, purpose=db:pg-main")
    assert parsed.errors == ()
    assert [r.ports for r in parsed.rules] == [(PortSpec("TCP", "http"),), (PortSpec("UDP", "metrics"),),
                                               (PortSpec("TCP", "pg-main"),)]
    intent = baseline_intent(Workload("shop", "Deployment", "api"), parsed.rules[:2], parsed.rules[2:],
                             [PortSpec("TCP", 8080)])
    spec = render_network_policy(intent, PolicyMeta("p", "test"), DnsTarget())["spec"]
    assert [r["ports"] for r in spec["ingress"]] == [[{"protocol": "TCP", "port": "http"}],
                                                     [{"protocol": "UDP", "port": "metrics"}]]
    assert spec["egress"][0]["ports"] == [{"protocol": "TCP", "port": "pg-main"}]


def test_bad_port_names_are_reported_with_what_a_port_name_is() -> None:
    parsed = parse_peer_declarations("purpose=a:HTTP purpose=b:a--b purpose=c:-x purpose=d:1234567890abcdef "
                                     "purpose=e:http-8080 web:http")
    assert parsed.rules == (Rule((Peer("purpose", "e"),), (PortSpec("TCP", "http-8080"),)),)
    assert sum("invalid port name" in e for e in parsed.errors) == 3
    assert any("'purpose=d:1234567890abcdef': invalid port" in e for e in parsed.errors), "16 characters"
    assert any("'web:http': expected one of purpose=" in e for e in parsed.errors)


def test_empty_or_missing_annotation_declares_nothing() -> None:
    assert parse_peer_declarations(None).rules == ()
    assert parse_peer_declarations("  ,, ").rules == ()


@given(st.text(max_size=200))
def test_any_text_parses_without_raising(text: str) -> None:
    parsed = parse_peer_declarations(text)
    assert len(parsed.rules) + len(parsed.errors) <= len(text)
