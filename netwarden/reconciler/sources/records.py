"""gRPC messages -> the typed records the flow parsers read, and the requests netwarden sends. Pure.

A Hubble `GetFlowsResponse` becomes the `HubbleLine` netwarden/reconciler/signals/hubble.py decodes from
`hubble observe -o json`, a Goldmane `FlowResult` the `GoldmaneFlow` netwarden/reconciler/signals/goldmane.py
decodes from Whisker's JSON; their `flow_of` then makes the same `Flow` as from a file or a POST.
One mapping of each source's meaning (verdicts, world identities, drop reasons, pod prefixes)
therefore serves every way a flow arrives.
"""

from __future__ import annotations

import time
from typing import Any

from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from netwarden.reconciler.core.types import Flow, SignalError
from netwarden.reconciler.signals import goldmane, hubble
from netwarden.reconciler.sources.proto import flow_pb2, goldmane_pb2, observer_pb2

# --- Hubble -----------------------------------------------------------------------------------

#: The Flow fields netwarden scores (netwarden/reconciler/signals/parse.py:parse_hubble_line reads these and
#: nothing else); the field mask asks Relay to send only them. Paths use the proto field names.
HUBBLE_FIELD_MASK = (
    "time", "uuid", "verdict", "drop_reason", "drop_reason_desc", "IP.source", "IP.destination", "l4",
    "source.identity", "source.namespace", "source.labels", "source.pod_name",
    "destination.identity", "destination.namespace", "destination.labels", "destination.pod_name",
    "traffic_direction", "is_reply", "reply",
)


def _enum_names(enum: Any) -> dict[int, str]:
    return {value.number: value.name for value in enum.DESCRIPTOR.values}


_VERDICTS = _enum_names(flow_pb2.Verdict)
_DROP_REASONS = _enum_names(flow_pb2.DropReason)
_DIRECTIONS = _enum_names(flow_pb2.TrafficDirection)
_PORTED = ("TCP", "UDP", "SCTP")


def rfc3339(stamp: Timestamp) -> str:
    """A protobuf Timestamp as Hubble's JSON writes it (UTC, nanoseconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp.seconds)) + f".{stamp.nanos:09d}Z"


def stamp_ns(stamp: Timestamp) -> int:
    return stamp.seconds * 1_000_000_000 + stamp.nanos


def _endpoint(ep: flow_pb2.Endpoint) -> hubble.HubbleEndpoint:
    return hubble.HubbleEndpoint(namespace=ep.namespace, pod_name=ep.pod_name, labels=tuple(ep.labels),
                                 identity=ep.identity)


def hubble_line(response: observer_pb2.GetFlowsResponse) -> hubble.HubbleLine:
    """One GetFlowsResponse -> the typed line netwarden/reconciler/signals/hubble.py decodes from its JSON export
    (`hubble.flow_of` makes the Flow); lost events and node status are not flows (`not-a-flow`)."""
    if response.WhichOneof("response_types") != "flow":
        raise SignalError("not-a-flow", "Hubble event that is not a flow (lost events or node status)")
    f = response.flow
    flow = hubble.HubbleFlow(
        verdict=_VERDICTS.get(f.verdict, f.verdict),
        source=_endpoint(f.source), destination=_endpoint(f.destination),
        IP=hubble.IP(f.IP.source, f.IP.destination) if f.HasField("IP") else None,
    )
    if f.HasField("time"):
        flow.time = rfc3339(f.time)
    layer = f.l4.WhichOneof("protocol")
    if layer in _PORTED:
        flow.l4 = hubble.L4(**{layer: hubble.Ports(destination_port=getattr(f.l4, layer).destination_port)})
    elif layer is not None:
        flow.l4 = hubble.L4(**{layer: {}})
    if f.drop_reason_desc:
        flow.drop_reason_desc = _DROP_REASONS.get(f.drop_reason_desc, f.drop_reason_desc)
    elif f.drop_reason:
        flow.drop_reason = f.drop_reason
    if f.traffic_direction:
        flow.traffic_direction = _DIRECTIONS.get(f.traffic_direction, f.traffic_direction)
    if f.HasField("is_reply"):
        flow.is_reply = f.is_reply.value
    elif f.reply:
        flow.reply = True
    line = hubble.HubbleLine(flow=flow)
    if response.HasField("time"):
        line.time = rfc3339(response.time)
    return line


def hubble_flow(response: observer_pb2.GetFlowsResponse) -> Flow:
    return hubble.flow_of(hubble_line(response))


def flow_time_ns(response: observer_pb2.GetFlowsResponse) -> int | None:
    """When the flow happened (the flow's time, else the response's), for resuming and lag."""
    if response.WhichOneof("response_types") == "flow" and response.flow.HasField("time"):
        return stamp_ns(response.flow.time)
    if response.HasField("time"):
        return stamp_ns(response.time)
    return None


def hubble_request(*, since_ns: int | None, whitelist: list[flow_pb2.FlowFilter] | None = None,
                   blacklist: list[flow_pb2.FlowFilter] | None = None,
                   field_mask: tuple[str, ...] = HUBBLE_FIELD_MASK) -> observer_pb2.GetFlowsRequest:
    """GetFlows with follow, from `since_ns` (None: only flows from now on). The mask goes both where
    cilium 1.16+ reads it and where 1.14/1.15 did (experimental); each ignores the other's field."""
    request = observer_pb2.GetFlowsRequest(follow=True, whitelist=whitelist or default_whitelist(),
                                           blacklist=blacklist or default_blacklist())
    if since_ns is not None:
        request.since.FromNanoseconds(since_ns)
    if field_mask:
        request.field_mask.CopyFrom(FieldMask(paths=list(field_mask)))
        request.experimental.field_mask.CopyFrom(FieldMask(paths=list(field_mask)))
    return request


#: Cilium's monitor message type of L7 (proxy access log) records.
L7_EVENT_TYPE = 129


def default_whitelist() -> list[flow_pb2.FlowFilter]:
    """Flows with a verdict netwarden scores: forwarded, dropped, or dropped-in-audit-mode."""
    return [flow_pb2.FlowFilter(verdict=[flow_pb2.FORWARDED, flow_pb2.DROPPED, flow_pb2.AUDIT])]


def default_blacklist() -> list[flow_pb2.FlowFilter]:
    """L7 records repeat the connection their L3/L4 flows already showed; they stay on the node."""
    return [flow_pb2.FlowFilter(event_type=[flow_pb2.EventTypeFilter(type=L7_EVENT_TYPE)])]


# --- Goldmane ---------------------------------------------------------------------------------

#: Names Goldmane gives endpoints that are not pods: hosts and network sets keep no name here (they
#: are no workload's pods), networks keep theirs ("pub"/"pvt": outside the cluster).
_NAMED_TYPES = (goldmane_pb2.WorkloadEndpoint, goldmane_pb2.Network)
_ACTIONS = {goldmane_pb2.Allow: "Allow", goldmane_pb2.Deny: "Deny", goldmane_pb2.Pass: "Pass"}
_REPORTERS = {goldmane_pb2.Src: "Src", goldmane_pb2.Dst: "Dst"}


def goldmane_record(result: goldmane_pb2.FlowResult) -> goldmane.GoldmaneFlow:
    """One Goldmane FlowResult -> the typed record netwarden/reconciler/signals/goldmane.py reads from Whisker's
    JSON of the same flow (`goldmane.flow_of` makes the Flow: a workload endpoint's name is its pods'
    prefix, "frontend-5d8f9c7b4-*", attributed to the workload owning those pods)."""
    f = result.flow
    if not result.HasField("flow") or not f.HasField("Key"):
        raise SignalError("missing-field:flow.Key", "Goldmane result has no flow key")
    key = f.Key
    return goldmane.GoldmaneFlow(
        start_time=rfc3339(Timestamp(seconds=f.start_time)), end_time=rfc3339(Timestamp(seconds=f.end_time)),
        action=_ACTIONS.get(key.action, ""), reporter=_REPORTERS.get(key.reporter, ""),
        source_name=key.source_name if key.source_type in _NAMED_TYPES else "",
        source_namespace=key.source_namespace, source_labels=" | ".join(f.source_labels),
        dest_name=key.dest_name if key.dest_type in _NAMED_TYPES else "",
        dest_namespace=key.dest_namespace, dest_labels=" | ".join(f.dest_labels),
        protocol=key.proto, dest_port=key.dest_port or None,
        packets_in=f.packets_in, packets_out=f.packets_out, bytes_in=f.bytes_in, bytes_out=f.bytes_out,
    )


def goldmane_flow(result: goldmane_pb2.FlowResult) -> Flow:
    return goldmane.flow_of(goldmane_record(result))


def goldmane_identity(result: goldmane_pb2.FlowResult) -> tuple[int, bytes]:
    """(start time, key bytes): the same aggregated flow re-sent after a reconnect has the same one."""
    return result.flow.start_time, result.flow.Key.SerializeToString(deterministic=True)
