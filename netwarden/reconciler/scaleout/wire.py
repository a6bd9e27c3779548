"""What crosses Kafka in scale-out mode: topics, keys, partitions and records. Plain data, no I/O.

Every record is keyed by a workload identity and goes to partition `partition_of(identity)` of its
topic, chosen here rather than by the client's partitioner, so the observations topic and the
state changelog agree on which partition holds a workload (the engine that owns observations
partition p restores exactly state partition p).

observations  one record per (workload, fold bucket) of flow views, or per alert / health signal
state         compacted changelog: identity -> deflated snapshot (netwarden.reconciler.core.snapshot); a
              tombstone (None) when the workload is gone
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

from netwarden.reconciler.core.behaviour import FlowView
from netwarden.reconciler.core.types import HealthSignal, MetricAlert, SecurityAlert
from netwarden.model.errors import NetwardenError

WIRE_VERSION = 1
EDGES, FALCO, METRIC, HEALTH = "edges", "falco", "metric", "health"


@dataclass(frozen=True)
class Topics:
    observations: str = "netwarden.observations"
    state: str = "netwarden.state"
    partitions: int = 12


def partition_of(identity: str, partitions: int) -> int:
    """Stable across processes and languages that can compute CRC-32."""
    return zlib.crc32(identity.encode()) % partitions


# A folded view: the view's fields, then how many flows it stands for.
_VIEW_FIELDS = ("direction", "peer_kind", "peer_value", "peer_namespace", "port", "protocol", "instance", "pod",
                "dropped", "peer_ip", "peer_purpose")


def edges_record(identity: str, namespace: str, folds: list[tuple[FlowView, int]]) -> bytes:
    """One workload's folded views of one bucket; each row's time is its view's latest."""
    rows = [[*(getattr(v, f) for f in _VIEW_FIELDS), v.time, n] for v, n in folds]
    return _dumps({"v": WIRE_VERSION, "k": EDGES, "id": identity, "ns": namespace, "rows": rows})


def views_of(record: dict[str, Any]) -> list[tuple[FlowView, int]]:
    identity, namespace = record["id"], record["ns"]
    out = []
    for row in record["rows"]:
        (direction, kind, value, peer_ns, port, protocol, instance, pod, dropped, peer_ip, purpose, time, count) = row
        view = FlowView(identity, namespace, instance, pod, direction, kind, value, peer_ns, port, protocol, time,
                        dropped, peer_ip, purpose)
        view.key = view.edge
        out.append((view, count))
    return out


def alert_record(identity: str, alert: SecurityAlert) -> bytes:
    return _dumps({"v": WIRE_VERSION, "k": FALCO, "id": identity, "a": {
        "time": alert.time, "namespace": alert.namespace, "pod": alert.pod, "rule": alert.rule,
        "priority": alert.priority, "output": alert.output, "source_format": alert.source_format,
        "tags": list(alert.tags), "alert_id": alert.alert_id}})


def metric_record(identity: str, alert: MetricAlert) -> bytes:
    fields = {name: getattr(alert, name) for name in MetricAlert.__dataclass_fields__}
    return _dumps({"v": WIRE_VERSION, "k": METRIC, "id": identity, "a": fields})


def health_record(identity: str, signal: HealthSignal) -> bytes:
    fields = {name: getattr(signal, name) for name in HealthSignal.__dataclass_fields__}
    return _dumps({"v": WIRE_VERSION, "k": HEALTH, "id": identity, "a": fields})


def security_alert_of(record: dict[str, Any]) -> SecurityAlert:
    a = dict(record["a"])
    a["tags"] = tuple(a.get("tags", ()))
    return SecurityAlert(**a)


def metric_alert_of(record: dict[str, Any]) -> MetricAlert:
    return MetricAlert(**record["a"])


def health_of(record: dict[str, Any]) -> HealthSignal:
    return HealthSignal(**record["a"])


class WireError(NetwardenError, ValueError):
    """A record this version cannot read (counted and skipped by the consumer, never fatal)."""


def loads(raw: bytes) -> dict[str, Any]:
    try:
        record = json.loads(raw)
    except ValueError as exc:
        raise WireError(f"not JSON: {exc}") from exc
    if not isinstance(record, dict) or record.get("v") != WIRE_VERSION or record.get("k") not in (EDGES, FALCO, METRIC, HEALTH):
        raise WireError("not a netwarden observation of this version")
    return record


def _dumps(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()
