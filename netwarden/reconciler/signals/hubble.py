"""Hubble flows: the wire type (what netwarden reads of it) and its parser.

`hubble observe -o json` prints one GetFlowsResponse per line; the Hubble exporter (cilium-agent
`hubble-export-file-path`) writes one ExportEvent per line, which has the same JSON shape:
`{"flow": {...}, "node_name": "...", "time": "..."}`. Exporter lines may instead carry
`lost_events`, `agent_event` or `debug_event`; those are not flows. Field names are protobuf names
(snake_case) as Hubble prints them, or lowerCamel (protojson's default); both are read.

Mapping: `k8s:` labels kept with the prefix stripped (other sources dropped); `reserved:world*` or
identity 2/9/10 -> `world=True`. Verdicts FORWARDED/REDIRECTED/TRANSLATED/TRACED/AUDIT -> forwarded,
DROPPED/ERROR -> dropped, absent -> unknown. `policy_dropped` when dropped with POLICY_DENIED /
POLICY_DENY (or reason 133/181). Port is the packet's destination port (for replies, the client's).
traffic_direction EGRESS/INGRESS -> reporter "src"/"dst". Hubble carries no byte counts.
"""

from __future__ import annotations

from typing import Any, Annotated

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType

from netwarden.reconciler.core.types import Endpoint, Flow, SignalError, Verdict
from netwarden.reconciler.signals.common import convert, flag, hashable, parse_rfc3339

Port = Annotated[int, Meta(ge=0, le=65535)]


class Ports(Struct, gc=False):
    destination_port: Port | None = None
    destinationPort: Port | None = None


class L4(Struct, gc=False):
    """Which key is present names the protocol; an explicit null is a bad field, as before."""

    TCP: Ports | UnsetType = UNSET
    UDP: Ports | UnsetType = UNSET
    SCTP: Ports | UnsetType = UNSET
    ICMPv4: dict[str, Any] | UnsetType = UNSET
    ICMPv6: dict[str, Any] | UnsetType = UNSET


class IP(Struct, gc=False):
    source: str | None = None
    destination: str | None = None


class HubbleEndpoint(Struct, gc=False):
    namespace: str | None = None
    pod_name: str | None = None
    podName: str | None = None
    #: A tuple (hashable: the endpoint cache's key as decoded); a JSON array on the wire.
    labels: tuple[str, ...] | None = None
    #: Cilium's numeric identity (2, 9, 10 are world); any JSON value is tolerated.
    identity: Any = None


class HubbleFlow(Struct, gc=False):
    time: Any = UNSET
    IP: IP | None = None
    l4: L4 | None = None
    source: HubbleEndpoint | None = None
    destination: HubbleEndpoint | None = None
    verdict: Any = None
    drop_reason_desc: Any = None
    dropReasonDesc: Any = None
    drop_reason: Any = None
    dropReason: Any = None
    is_reply: Any = None
    isReply: Any = None
    reply: Any = None
    traffic_direction: Any = None
    trafficDirection: Any = None


class HubbleLine(HubbleFlow, gc=False):
    """A GetFlowsResponse / ExportEvent line, or a bare flow object (then the flow is the line)."""

    flow: HubbleFlow | None | UnsetType = UNSET
    lost_events: Any = UNSET
    agent_event: Any = UNSET
    debug_event: Any = UNSET
    node_status: Any = UNSET
    lostEvents: Any = UNSET
    agentEvent: Any = UNSET


_NULL = Raw(b"null")


class RawEndsFlow(HubbleFlow, gc=False):
    """A flow decoded from bytes with its addresses and both endpoints left as their raw JSON: they
    repeat flow after flow (one per pod pair), so `flow_of_raw` decodes each distinct one once and
    msgspec only scans them. Absent and null are both `null`, as `None` is for HubbleFlow."""

    IP: Raw = _NULL  # type: ignore[assignment]
    source: Raw = _NULL  # type: ignore[assignment]
    destination: Raw = _NULL  # type: ignore[assignment]


class RawEndsLine(HubbleLine, gc=False):
    """A HubbleLine (the same top-level fields, validated the same) whose wrapped flow is a RawEndsFlow."""

    flow: RawEndsFlow | None | UnsetType = UNSET  # type: ignore[assignment]


#: Reasons the dict parser gave for these paths (anything else: bad-field:<path>).
_RENAMES = {
    f"flow.l4.{proto}.{key}": "bad-port"
    for proto in ("TCP", "UDP", "SCTP") for key in ("destination_port", "destinationPort")
}
_RENAMES.update({f"flow.{side}.podName": f"bad-field:flow.{side}.pod_name" for side in ("source", "destination")})

_VERDICTS: dict[object, Verdict] = {
    "FORWARDED": "forwarded",
    "REDIRECTED": "forwarded",
    "TRANSLATED": "forwarded",
    "TRACED": "forwarded",
    "AUDIT": "forwarded",  # would have been dropped, but the policy is in audit mode
    "DROPPED": "dropped",
    "ERROR": "dropped",
    # enum numbers, for protojson written with UseEnumNumbers
    1: "forwarded",
    2: "dropped",
    3: "dropped",
    4: "forwarded",
    5: "forwarded",
    6: "forwarded",
    7: "forwarded",
}
_POLICY_DROPS = {"POLICY_DENIED", "POLICY_DENY", 133, 181}
#: Cilium's reserved world identities: world, world-ipv4, world-ipv6.
_WORLD_IDENTITIES = {2, 9, 10}
_REPORTER = {"EGRESS": "src", "INGRESS": "dst", 1: "dst", 2: "src"}
#: JSON scalars usable as enum keys (bool is not: True == 1 would read as a verdict number).
_SCALARS = frozenset({str, int})
NON_FLOW_EVENTS = ("lost_events", "agent_event", "debug_event", "node_status", "lostEvents", "agentEvent")

#: Endpoints repeat (one per pod and peer): the same wire endpoint gives the same (immutable)
#: Endpoint. Bounded: cleared when full.
_ENDPOINTS: dict[tuple[Any, ...], Endpoint] = {}
_ENDPOINTS_MAX = 8192


def _labels(items: tuple[str, ...]) -> tuple[dict[str, str], bool]:
    """`k8s:`-sourced labels (prefix stripped), and whether a `reserved:world*` label is there."""
    labels: dict[str, str] = {}
    world = False
    for item in items:
        source, sep, rest = item.partition(":")
        if not sep:
            continue
        if source == "k8s":
            key, _, value = rest.partition("=")
            labels[key] = value
        elif source == "reserved" and rest.startswith("world"):
            world = True
    return labels, world


def _endpoint(raw: HubbleEndpoint | None, ip: str) -> Endpoint:
    if raw is None:
        key: tuple[Any, ...] = (ip,)
        cached = _ENDPOINTS.get(key)
        if cached is None:
            cached = _ENDPOINTS[key] = Endpoint(ip=ip)
        return cached
    pod = raw.pod_name if raw.pod_name is not None else raw.podName
    items = raw.labels
    identity = raw.identity
    if type(identity) not in _SCALARS:
        identity = None  # a list or an object, never a valid identity; True is not 1
    if items is not None and type(items) is not tuple:
        items = tuple(items)  # built by a caller (a gRPC client) rather than decoded
    key = (ip, raw.namespace, pod, identity, items)
    cached = _ENDPOINTS.get(key)
    if cached is not None:
        return cached
    labels, world = _labels(items) if items else ({}, False)
    cached = Endpoint(ip=ip, namespace=raw.namespace or None, pod=pod or None, labels=labels,
                      world=world or identity in _WORLD_IDENTITIES)
    if len(_ENDPOINTS) >= _ENDPOINTS_MAX:
        _ENDPOINTS.clear()
    _ENDPOINTS[key] = cached
    return cached


def flow_of(line: HubbleLine) -> Flow:
    """A decoded line -> Flow. Replies keep the ports as seen on the packet (destination = the
    client's ephemeral port); consumers that learn "who talks to whom on which port" skip them."""
    flow = _flow_in(line)
    src, dst = _ends(flow.IP, flow.source, flow.destination)
    return _flow(line, flow, src, dst)


def _flow_in(line: HubbleLine) -> HubbleFlow:
    """The flow a line carries (wrapped, or the line itself), or why there is none."""
    wrapped = line.flow
    if wrapped is not UNSET:
        if wrapped is None:
            raise SignalError("bad-field:flow", "flow is not an object")
        return wrapped
    if (line.lost_events is not UNSET or line.agent_event is not UNSET or line.debug_event is not UNSET
            or line.node_status is not UNSET or line.lostEvents is not UNSET or line.agentEvent is not UNSET):
        raise SignalError("not-a-flow", "Hubble event that is not a flow (lost/agent/debug event)")
    return line


def _ends(ip: IP | None, source: HubbleEndpoint | None, destination: HubbleEndpoint | None) -> tuple[Endpoint, Endpoint]:
    if ip is None:
        raise SignalError("missing-field:flow.IP", "record has no flow.IP")
    src_ip = ip.source or None
    dst_ip = ip.destination or None
    if src_ip is None or dst_ip is None:
        raise SignalError("missing-field:flow.IP", "flow.IP has no source or destination address")
    return _endpoint(source, src_ip), _endpoint(destination, dst_ip)


#: A RawEndsFlow's raw IP -> (its raw source, raw destination, and their two Endpoints): a pod pair's
#: bytes repeat flow after flow, so a hit (the same IP bytes, then both endpoints byte for byte)
#: skips decoding them. Another pair with the same addresses takes the slot. Bounded: cleared when full.
_RAW_ENDS: dict[bytes, tuple[Raw, Raw, Endpoint, Endpoint]] = {}
_RAW_ENDS_MAX = 8192
_IP_DECODER = msgspec.json.Decoder(IP | None)
_ENDPOINT_DECODER = msgspec.json.Decoder(HubbleEndpoint | None)


def flow_of_raw(line: RawEndsLine) -> Flow:
    """`flow_of` for a line decoded as RawEndsLine: the same Flow, or the same SignalError, or a
    msgspec.ValidationError where the typed HubbleLine decode would have failed (a raw part that
    is not what HubbleFlow declares)."""
    flow = line.flow
    if flow is UNSET or flow is None:
        return flow_of(line)
    ip = bytes(flow.IP)
    known = _RAW_ENDS.get(ip)
    if known is None or known[0] != flow.source or known[1] != flow.destination:
        decode = _ENDPOINT_DECODER.decode
        src, dst = _ends(_IP_DECODER.decode(ip), decode(flow.source), decode(flow.destination))
        if len(_RAW_ENDS) >= _RAW_ENDS_MAX:
            _RAW_ENDS.clear()
        # Copies: a decoded Raw is a view of the whole line.
        known = _RAW_ENDS[ip] = (flow.source.copy(), flow.destination.copy(), src, dst)
    return _flow(line, flow, known[2], known[3])


def _flow(line: HubbleLine, flow: HubbleFlow | RawEndsFlow, source: Endpoint, destination: Endpoint) -> Flow:
    time_value = flow.time if flow.time is not UNSET else (line.time if line.time is not UNSET else None)
    if time_value is None:
        raise SignalError("missing-field:flow.time", "flow has no time")
    when = parse_rfc3339(time_value)
    protocol, port = "UNKNOWN", None
    l4 = flow.l4
    if l4 is not None:
        layer = l4.TCP
        if layer is not UNSET:
            protocol = "TCP"
        elif (layer := l4.UDP) is not UNSET:
            protocol = "UDP"
        elif (layer := l4.SCTP) is not UNSET:
            protocol = "SCTP"
        elif l4.ICMPv4 is not UNSET:
            protocol = "ICMP"
        elif l4.ICMPv6 is not UNSET:
            protocol = "ICMPv6"
        if protocol in ("TCP", "UDP", "SCTP"):
            port = layer.destination_port if layer.destination_port is not None else layer.destinationPort  # type: ignore[union-attr]
            port = port or None

    raw_verdict = flow.verdict
    verdict = _VERDICTS.get(raw_verdict, "unknown") if type(raw_verdict) in _SCALARS else "unknown"
    policy_dropped = False
    if verdict == "dropped":
        drop_reason = hashable(flow.drop_reason_desc if flow.drop_reason_desc is not None else flow.dropReasonDesc)
        if drop_reason is None:
            drop_reason = hashable(flow.drop_reason if flow.drop_reason is not None else flow.dropReason)
        policy_dropped = drop_reason in _POLICY_DROPS
    reply = flow.is_reply if flow.is_reply is not None else flow.isReply
    if reply is None:
        reply = flow.reply
    if reply is not True and reply is not False:
        reply = flag(reply, "flow.is_reply")
    direction = flow.traffic_direction if flow.traffic_direction is not None else flow.trafficDirection
    reporter = _REPORTER.get(direction) if type(direction) in _SCALARS else None

    # Positional: the constructor is per flow (field order of core.types.Flow).
    return Flow(when, source, destination, port, protocol, verdict, policy_dropped, reply, 0, 1, "hubble", reporter)


def parse_hubble_line(value: object) -> Flow:
    """One `hubble observe -o json` / exporter line (decoded), or a bare flow object -> Flow."""
    return flow_of(convert(value, HubbleLine, _RENAMES, "flow."))


_DECODER = msgspec.json.Decoder(HubbleLine)
_RAW_DECODER = msgspec.json.Decoder(RawEndsLine)


def decode_hubble_line(line: bytes) -> HubbleLine:
    """Typed decode of one JSON line (reads only the declared fields). Raises msgspec errors; the
    caller falls back to the dict path for the exact rejection reason."""
    return _DECODER.decode(line)


def decode_raw_ends_line(line: bytes) -> RawEndsLine:
    """`decode_hubble_line`, the endpoints left raw (`flow_of_raw` reads them)."""
    return _RAW_DECODER.decode(line)
