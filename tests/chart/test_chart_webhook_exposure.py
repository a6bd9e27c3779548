"""Who may reach the webhook port: the API server's addresses and the metrics scrapers, never any pod by default."""

from __future__ import annotations

from tests.chart.chartkit import notes, one, render


def webhook_ingress(values: dict) -> list[dict]:
    return one(render(values), "NetworkPolicy", "-webhook")["spec"]["ingress"]


def test_by_default_no_source_but_the_metrics_scrapers_reaches_the_webhook_port_without_a_cluster_to_ask() -> None:
    (rule,) = webhook_ingress({})
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert not [peer for peer in rule["from"] if "ipBlock" in peer]
    assert "no API server address known" in notes({}) and "kubectl get endpoints kubernetes" in notes({})


def test_without_metrics_scrapers_or_api_server_addresses_the_port_is_closed() -> None:
    assert webhook_ingress({"networkPolicy": {"metricsSources": []}}) == []


def test_given_api_server_cidrs_are_the_only_addresses_admitted() -> None:
    (rule,) = webhook_ingress({"networkPolicy": {"apiServerCIDRs": ["10.0.0.10/32", "fd00::1/128"]}})
    assert [p["ipBlock"]["cidr"] for p in rule["from"] if "ipBlock" in p] == ["10.0.0.10/32", "fd00::1/128"]
    assert "reachable from the API server at 10.0.0.10/32, fd00::1/128" in notes(
        {"networkPolicy": {"apiServerCIDRs": ["10.0.0.10/32", "fd00::1/128"]}})
