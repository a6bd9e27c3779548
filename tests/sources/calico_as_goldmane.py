"""Real Calico flow log records (tests/data/calico) as the Goldmane FlowResults of the same traffic.

Goldmane's Flow carries the flow log's aggregated fields under the same meanings (pod prefix as the
name, type, namespace, port, protocol, action, reporter, labels, byte and packet counts, start/end),
so these are the closest real Goldmane data the repository holds; no real Goldmane capture is stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reconciler.sources.proto import goldmane_pb2
from tests.support.data import PAYLOADS

TYPES = {"wep": goldmane_pb2.WorkloadEndpoint, "hep": goldmane_pb2.HostEndpoint, "ns": goldmane_pb2.NetworkSet,
         "net": goldmane_pb2.Network}
ACTIONS = {"allow": goldmane_pb2.Allow, "deny": goldmane_pb2.Deny, "pass": goldmane_pb2.Pass}
REPORTERS = {"src": goldmane_pb2.Src, "dst": goldmane_pb2.Dst}


def calico_records() -> list[dict[str, Any]]:
    out = []
    for path in sorted((PAYLOADS / "calico").glob("calico-enterprise*.jsonl")):
        out += [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return out


def as_goldmane(record: dict[str, Any], result_id: int = 1) -> goldmane_pb2.FlowResult:
    def side(prefix: str) -> dict[str, Any]:
        aggregate = record.get(f"{prefix}_name_aggr")
        return {"name": aggregate if aggregate not in (None, "-") else "",
                "namespace": record.get(f"{prefix}_namespace") if record.get(f"{prefix}_namespace") != "-" else "",
                "type": TYPES.get(record.get(f"{prefix}_type"), 0),
                "labels": list((record.get(f"{prefix}_labels") or {}).get("labels") or [])}

    src, dst = side("source"), side("dest")
    key = goldmane_pb2.FlowKey(source_name=src["name"], source_namespace=src["namespace"], source_type=src["type"],
                               dest_name=dst["name"], dest_namespace=dst["namespace"], dest_type=dst["type"],
                               dest_port=record.get("dest_port") or 0, proto=str(record["proto"]),
                               reporter=REPORTERS[record["reporter"]], action=ACTIONS[record["action"]])
    flow = goldmane_pb2.Flow(Key=key, start_time=record["start_time"], end_time=record["end_time"],
                             source_labels=src["labels"], dest_labels=dst["labels"],
                             packets_in=record.get("packets_in") or 0, packets_out=record.get("packets_out") or 0,
                             bytes_in=record.get("bytes_in") or 0, bytes_out=record.get("bytes_out") or 0)
    return goldmane_pb2.FlowResult(id=result_id, flow=flow)
