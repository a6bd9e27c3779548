"""Synthetic Hubble flows with realistic shape: what `hubble observe -o json` prints. Pure.

Used by the demo (to play traffic) and the benchmarks. The records carry the fields real
Hubble sends (see tests/data/hubble): IP, l4, source/destination with namespace, pod_name,
k8s-prefixed labels and identity, verdict, traffic direction, node name, is_reply.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

WORLD_IDENTITY = 2


@dataclass(frozen=True)
class PodEnd:
    """A pod as the flow generator sees it."""

    namespace: str
    name: str
    ip: str
    labels: Mapping[str, str]
    security_identity: int = 0


@dataclass(frozen=True)
class WorldEnd:
    ip: str


def rfc3339(epoch: float) -> str:
    stamp = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond:06d}000Z"


def _endpoint(end: PodEnd | WorldEnd) -> dict[str, Any]:
    if isinstance(end, WorldEnd):
        return {"identity": WORLD_IDENTITY, "labels": ["reserved:world"]}
    labels = [f"k8s:{k}={v}" for k, v in sorted(end.labels.items())]
    labels.append(f"k8s:io.kubernetes.pod.namespace={end.namespace}")
    identity = end.security_identity or (abs(hash((end.namespace, tuple(sorted(end.labels.items()))))) % 60000 + 1000)
    return {"ID": abs(hash(end.name)) % 4000 + 1, "identity": identity, "namespace": end.namespace,
            "labels": labels, "pod_name": end.name}


def hubble_flow(
    source: PodEnd | WorldEnd,
    destination: PodEnd | WorldEnd,
    port: int,
    protocol: str,
    epoch: float,
    *,
    verdict: str = "FORWARDED",
    source_port: int = 40000,
    node: str = "demo-node",
) -> dict[str, Any]:
    """One GetFlowsResponse line: `{"flow": {...}, "node_name": ..., "time": ...}`."""
    l4_key = protocol.upper()
    l4: dict[str, Any] = {l4_key: {"source_port": source_port, "destination_port": port}}
    if l4_key == "TCP":
        l4[l4_key]["flags"] = {"SYN": True}
    flow: dict[str, Any] = {
        "time": rfc3339(epoch),
        "verdict": verdict,
        "ethernet": {"source": "0a:58:0a:f4:00:01", "destination": "0a:58:0a:f4:00:02"},
        "IP": {"source": source.ip, "destination": destination.ip, "ipVersion": "IPv4"},
        "l4": l4,
        "source": _endpoint(source),
        "destination": _endpoint(destination),
        "Type": "L3_L4",
        "node_name": node,
        "event_type": {"type": 1 if verdict == "DROPPED" else 4},
        "traffic_direction": "EGRESS",
        "is_reply": False,
        "Summary": f"{l4_key} Flags: SYN" if l4_key == "TCP" else l4_key,
    }
    if verdict == "DROPPED":
        flow["drop_reason"] = 133
        flow["drop_reason_desc"] = "POLICY_DENIED"
    return {"flow": flow, "node_name": node, "time": flow["time"]}


def steady_flows(
    edges: list[tuple[PodEnd | WorldEnd, PodEnd | WorldEnd, int, str, str]],
    *,
    start: float,
    seconds: float,
    rate: float,
    seed: int = 7,
) -> Iterator[dict[str, Any]]:
    """`rate` flows per second spread over `edges` for `seconds`, with Poisson-like spacing."""
    rng = random.Random(seed)
    count = max(1, int(seconds * rate))
    t = start
    for i in range(count):
        source, destination, port, protocol, verdict = edges[i % len(edges)]
        t += rng.expovariate(rate) if rate > 0 else 0
        yield hubble_flow(source, destination, port, protocol, min(t, start + seconds), verdict=verdict,
                          source_port=rng.randint(32768, 60999))
