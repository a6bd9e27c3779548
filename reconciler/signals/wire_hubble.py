"""Hubble flow records as they cross our boundary. Types only, no logic.

`hubble observe -o json` prints one GetFlowsResponse per line; the Hubble exporter (cilium-agent
`hubble-export-file-path`) writes one ExportEvent per line, which has the same JSON shape:
`{"flow": {...}, "node_name": "...", "time": "..."}`. Exporter lines may instead carry
`lost_events`, `agent_event` or `debug_event`; those are not flows. Field names are protobuf
names (snake_case) as Hubble prints them; the flow's `IP`, `Type`, `Summary` keep their odd case.
"""

from __future__ import annotations

from typing import Literal, TypedDict

Verdict = Literal["VERDICT_UNKNOWN", "FORWARDED", "DROPPED", "ERROR", "AUDIT", "REDIRECTED", "TRACED", "TRANSLATED"]


class IP(TypedDict, total=False):
    source: str
    destination: str
    ipVersion: Literal["IP_NOT_USED", "IPv4", "IPv6"]
    encrypted: bool


class TCPFlags(TypedDict, total=False):
    SYN: bool
    ACK: bool
    FIN: bool
    RST: bool
    PSH: bool
    URG: bool


class PortPair(TypedDict, total=False):
    source_port: int
    destination_port: int


class TCP(PortPair, total=False):
    flags: TCPFlags


class ICMP(TypedDict, total=False):
    type: int
    code: int


class Layer4(TypedDict, total=False):
    TCP: TCP
    UDP: PortPair
    SCTP: PortPair
    ICMPv4: ICMP
    ICMPv6: ICMP


class DNS(TypedDict, total=False):
    query: str
    ips: list[str]
    ttl: int
    rcode: int
    qtypes: list[str]
    rrtypes: list[str]
    observation_source: str


class HTTPHeader(TypedDict):
    key: str
    value: str


class HTTP(TypedDict, total=False):
    code: int
    method: str
    url: str
    protocol: str
    headers: list[HTTPHeader]


class Layer7(TypedDict, total=False):
    type: Literal["UNKNOWN_L7_TYPE", "REQUEST", "RESPONSE", "SAMPLE"]
    latency_ns: str
    dns: DNS
    http: HTTP


class Workload(TypedDict, total=False):
    name: str
    kind: str


class Endpoint(TypedDict, total=False):
    ID: int
    identity: int
    cluster_name: str
    namespace: str
    #: "k8s:app=web", "reserved:world", "reserved:host", ...
    labels: list[str]
    pod_name: str
    workloads: list[Workload]


class PolicyRef(TypedDict, total=False):
    name: str
    namespace: str
    labels: list[str]
    revision: str
    kind: str


class EventType(TypedDict, total=False):
    type: int
    sub_type: int


class Flow(TypedDict, total=False):
    time: str  # RFC 3339 with nanoseconds
    uuid: str
    verdict: Verdict
    drop_reason: int
    #: "POLICY_DENIED" (no rule allowed it) or "POLICY_DENY" (an explicit deny rule), among others.
    drop_reason_desc: str
    IP: IP
    l4: Layer4
    l7: Layer7
    source: Endpoint
    destination: Endpoint
    Type: Literal["UNKNOWN_TYPE", "L3_L4", "L7", "SOCK"]
    node_name: str
    #: Cilium >= 1.11; older flows only carry `reply`.
    is_reply: bool
    reply: bool
    event_type: EventType
    traffic_direction: Literal["TRAFFIC_DIRECTION_UNKNOWN", "INGRESS", "EGRESS"]
    trace_observation_point: str
    policy_match_type: int
    ingress_denied_by: list[PolicyRef]
    egress_denied_by: list[PolicyRef]
    Summary: str


class GetFlowsResponse(TypedDict, total=False):
    """One line of `hubble observe -o json`, and one ExportEvent line of the exporter file."""

    flow: Flow
    node_name: str
    time: str
    lost_events: dict[str, object]
    agent_event: dict[str, object]
    debug_event: dict[str, object]
