"""Real Calico 3.32.2 Whisker flow records (tests/data/calico) as the Goldmane FlowResults they came from.

Whisker's backend serves Goldmane's `Flow` messages as JSON (whisker-backend's FlowResponse): the
same fields, times as RFC 3339, enums by name, labels joined by " | ". Undoing exactly that gives
the FlowResults Goldmane streamed; no capture of Goldmane's own gRPC bytes is stored.
"""

from __future__ import annotations

import json
from typing import Any

from netwarden.reconciler.signals.common import parse_rfc3339
from netwarden.reconciler.sources.proto import goldmane_pb2
from tests.support.data import PAYLOADS

ACTIONS = {"Allow": goldmane_pb2.Allow, "Deny": goldmane_pb2.Deny, "Pass": goldmane_pb2.Pass}
REPORTERS = {"Src": goldmane_pb2.Src, "Dst": goldmane_pb2.Dst}


def whisker_records() -> list[dict[str, Any]]:
    path = PAYLOADS / "calico" / "calico-3.32.2_whisker-flows_aggregated_3records.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _type(name: str, namespace: str) -> int:
    if name in ("pub", "pvt", "PUBLIC NETWORK", "PRIVATE NETWORK"):
        return goldmane_pb2.Network
    return goldmane_pb2.WorkloadEndpoint if namespace else goldmane_pb2.HostEndpoint


def as_goldmane(record: dict[str, Any], result_id: int = 1) -> goldmane_pb2.FlowResult:
    key = goldmane_pb2.FlowKey(
        source_name=record["source_name"], source_namespace=record["source_namespace"],
        source_type=_type(record["source_name"], record["source_namespace"]),
        dest_name=record["dest_name"], dest_namespace=record["dest_namespace"],
        dest_type=_type(record["dest_name"], record["dest_namespace"]),
        dest_port=record.get("dest_port") or 0, proto=record["protocol"],
        reporter=REPORTERS[record["reporter"]], action=ACTIONS[record["action"]])
    labels = lambda text: [item for item in text.split(" | ") if item]  # noqa: E731
    flow = goldmane_pb2.Flow(Key=key, start_time=int(parse_rfc3339(record["start_time"])),
                             end_time=int(parse_rfc3339(record["end_time"])),
                             source_labels=labels(record["source_labels"]), dest_labels=labels(record["dest_labels"]),
                             packets_in=record["packets_in"], packets_out=record["packets_out"],
                             bytes_in=record["bytes_in"], bytes_out=record["bytes_out"])
    return goldmane_pb2.FlowResult(id=result_id, flow=flow)
