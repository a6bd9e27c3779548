"""Signal receivers over real HTTP: auth, size limit, per-record rejections, real tool payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Sequence

import pytest
import requests

from netwarden.reconciler.core.types import Flow, MetricAlert, SecurityAlert
from netwarden.reconciler.receivers import ReceiverServer, TokenFile, create_receiver_app
from netwarden.reconciler.signals.streams import SignalCounters
from tests.support.data import PAYLOADS

DATA = PAYLOADS
TOKEN = "s3cret-token"


class Sink:
    def __init__(self) -> None:
        self.flows: list[Flow] = []
        self.alerts: list[SecurityAlert] = []
        self.metric_alerts: list[MetricAlert] = []

    def accept_flows(self, flows: Sequence[Flow]) -> None:
        self.flows.extend(flows)

    def accept_alert(self, alert: SecurityAlert) -> None:
        self.alerts.append(alert)

    def accept_metric_alerts(self, alerts: Sequence[MetricAlert]) -> None:
        self.metric_alerts.extend(alerts)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Sink, SignalCounters, Path]]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    sink, counters = Sink(), SignalCounters()
    from prometheus_client import CollectorRegistry

    app = create_receiver_app(sink, token=TokenFile(str(token_file)), counters=counters, max_body_bytes=64 * 1024,
                              registry=CollectorRegistry())
    server = ReceiverServer(app, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{server.port}", sink, counters, token_file
    finally:
        server.stop()


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_signals_without_or_with_a_wrong_token_get_401(served) -> None:
    url, sink, _, _ = served
    body = (DATA / "hubble/hubble-otel_gke-istio_2021_l3l4_10flows.jsonl").read_bytes()
    assert requests.post(f"{url}/signals/flows", data=body).status_code == 401
    assert requests.post(f"{url}/signals/flows", data=body, headers=auth("wrong")).status_code == 401
    assert requests.post(f"{url}/signals/falco", data=b"{}", headers={"Authorization": "Basic eA=="}).status_code == 401
    assert sink.flows == []


def test_rotated_token_file_applies_without_restart(served) -> None:
    url, _, _, token_file = served
    assert requests.post(f"{url}/signals/flows", data=b"", headers=auth()).status_code == 200
    token_file.write_text("rotated-token-value")
    assert requests.post(f"{url}/signals/flows", data=b"", headers=auth()).status_code == 401
    assert requests.post(f"{url}/signals/flows", data=b"", headers=auth("rotated-token-value")).status_code == 200


def test_body_over_the_limit_gets_413(served) -> None:
    url, sink, _, _ = served
    response = requests.post(f"{url}/signals/flows", data=b"[" + b" " * (70 * 1024) + b"]", headers=auth())
    assert response.status_code == 413
    assert sink.flows == []


@pytest.mark.parametrize("path", sorted(str(p) for p in (DATA / "hubble").glob("*.jsonl"))
                         + sorted(str(p) for p in (DATA / "calico").glob("*.jsonl")))
def test_real_flow_files_are_accepted_as_json_lines_and_as_an_array(served, path: str) -> None:
    url, sink, _, _ = served
    raw = Path(path).read_bytes()
    lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
    as_lines = requests.post(f"{url}/signals/flows", data=raw, headers=auth()).json()
    as_array = requests.post(f"{url}/signals/flows", json=lines, headers=auth()).json()
    assert as_lines["accepted"] + as_lines["rejected_total"] == len(lines)
    assert as_array["accepted"] == as_lines["accepted"]
    assert as_lines["accepted"] >= 1
    assert len(sink.flows) == 2 * as_lines["accepted"]


def test_bad_records_are_rejected_with_index_and_reason_and_counted(served) -> None:
    url, sink, counters, _ = served
    good = json.loads((DATA / "hubble/hubble-otel_gke-istio_2021_l3l4_10flows.jsonl").read_text().splitlines()[0])
    batch = [good, {"neither": "hubble nor calico"}, 42, good]
    result = requests.post(f"{url}/signals/flows", json=batch, headers=auth()).json()
    assert result["accepted"] == 2
    assert [(r["index"], r["reason"]) for r in result["rejected"]] == [(1, "unknown-format"), (2, "not-an-object")]
    assert sum(counters.rejected.values()) == 2
    lines = json.dumps(good) + "\n{not json\n"
    result = requests.post(f"{url}/signals/flows", data=lines, headers=auth()).json()
    assert result["accepted"] == 1 and result["rejected"][0]["reason"] == "bad-json"
    assert result["rejected"][0]["index"] == 2  # JSON lines: the line number


def test_falcosidekick_body_and_falco_json_lines_are_accepted(served) -> None:
    url, sink, _, _ = served
    body = (DATA / "falco/falcosidekick_webhook-post-body_terminal-shell_2024.json").read_bytes()
    result = requests.post(f"{url}/signals/falco", data=body, headers=auth()).json()
    assert result == {"accepted": 1, "rejected": [], "rejected_total": 0, "attributed": 1, "unattributed": [],
                      "unattributed_total": 0}
    assert (sink.alerts[0].namespace, sink.alerts[0].pod) == ("ingress-nginx", "ingress-nginx-controller-slszv")
    lines = (DATA / "falco/falco-blog-2021_json-output_k8s-meta.jsonl").read_bytes()
    assert requests.post(f"{url}/signals/falco", data=lines, headers=auth()).json()["accepted"] == 2


@pytest.mark.parametrize("name", sorted(p.name for p in (DATA / "alertmanager").glob("*.json")))
def test_real_alertmanager_bodies_are_accepted(served, name: str) -> None:
    url, sink, _, _ = served
    body = (DATA / "alertmanager" / name).read_bytes()
    response = requests.post(f"{url}/signals/alertmanager", data=body, headers=auth())
    assert response.status_code == 200
    assert response.json()["accepted"] == len(json.loads(body)["alerts"])
    assert sink.metric_alerts


def test_alertmanager_body_that_is_not_json_is_a_400_with_a_reason(served) -> None:
    url, _, counters, _ = served
    response = requests.post(f"{url}/signals/alertmanager", data=b"{oops", headers=auth())
    assert response.status_code == 400
    assert response.json()["rejected"][0]["reason"] == "bad-json"


def test_health_ready_and_metrics_need_no_token(served) -> None:
    url, _, _, _ = served
    assert requests.get(f"{url}/healthz").status_code == 200
    assert requests.get(f"{url}/readyz").status_code == 200
    requests.post(f"{url}/signals/flows", json=[{}], headers=auth())
    metrics = requests.get(f"{url}/metrics").text
    assert "netwarden_signals_rejected_total" in metrics


MALFORMED = {
    "deep-array": b"[" * 10_000 + b"]" * 10_000,
    "deep-object": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "bad-utf8": b'{"rule": "x\xff\xfe"}',
    "lone-surrogate": b'{"rule": "Terminal shell", "output": "\\ud800", "priority": "Critical",'
                      b' "output_fields": {"k8s.pod.name": "\\udfff", "k8s.ns.name": "shop"}}',
}


@pytest.mark.parametrize("endpoint", ["flows", "falco", "alertmanager"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_envelopes_get_a_json_400_with_a_reason_and_are_counted(served, endpoint: str, case: str) -> None:
    url, sink, counters, _ = served
    before = sum(counters.rejected.values())
    response = requests.post(f"{url}/signals/{endpoint}", data=MALFORMED[case], headers=auth())
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    answer = response.json()
    assert answer["accepted"] == 0 and answer["rejected"][0]["reason"] in ("bad-json", "bad-encoding")
    assert answer["error"].startswith(answer["rejected"][0]["reason"])
    assert sum(counters.rejected.values()) == before + 1
    assert sink.flows == [] and sink.alerts == [] and sink.metric_alerts == []


def test_whisker_flows_are_accepted_and_other_schemas_are_named_and_counted(served) -> None:
    url, sink, counters, _ = served
    raw = (DATA / "calico/calico-3.32.2_whisker-flows_aggregated_3records.jsonl").read_bytes()
    records = [json.loads(line) for line in raw.splitlines()]
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.1"}, "reason": "Started"}
    as_lines = requests.post(f"{url}/signals/flows", data=raw + json.dumps(event).encode() + b"\n", headers=auth()).json()
    assert as_lines["accepted"] == 3
    assert [(r["index"], r["reason"]) for r in as_lines["rejected"]] == [(4, "unsupported-schema:kubernetes-event")]
    assert "looks like a Kubernetes Event" in as_lines["rejected"][0]["message"]
    as_array = requests.post(f"{url}/signals/flows", json=records, headers=auth()).json()
    assert as_array["accepted"] == 3 and as_array["rejected_total"] == 0
    assert counters.accepted["goldmane"] == 6
    assert counters.rejected[("unknown", "unsupported-schema:kubernetes-event")] == 1
    assert {flow.source.pod_prefix for flow in sink.flows} == {"scraper-655c844475-*", "shopper-6fd84cfbb4-*"}
