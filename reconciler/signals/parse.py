"""Which flow format a record is, and the way in from bytes. Each format's wire type and parser
live in its own module (hubble, calico, goldmane, generic; falco and alertmanager for alerts);
this module only tells them apart and dispatches. Pure: a decoded JSON value (or one JSON line's
bytes) in, a value out. Anything unusable raises, or returns, a SignalError with a short, bounded
`reason` (it becomes a metric label), never another exception.

Reasons: not-an-object, not-a-flow, unknown-format, unsupported-schema:<schema>,
missing-field:<path>, bad-field:<path>, bad-timestamp, bad-port, bad-priority, bad-version; from
the line readers: line-too-long, bad-json, bad-encoding.

Bytes path: a Hubble line is decoded straight into its typed Struct (only the fields read); any
other line, or any line the typed path does not accept, takes the dict path, which decides
exactly as before (same flows, same reasons).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Iterator, Mapping

import msgspec

from reconciler.core.types import Flow, SignalError
from reconciler.signals import hubble
from reconciler.signals.calico import parse_calico_record
from reconciler.signals.common import require_dict_root
from reconciler.signals.generic import parse_generic_flow
from reconciler.signals.goldmane import parse_goldmane_flow
from reconciler.signals.hubble import NON_FLOW_EVENTS, parse_hubble_line
from reconciler.signals.streams import decode_json

FLOW_PARSERS: dict[str, Callable[[object], Flow]] = {
    "hubble": parse_hubble_line,
    "calico": parse_calico_record,
    "goldmane": parse_goldmane_flow,
    "generic": parse_generic_flow,
}


def _goldmane_like(rec: Mapping[str, Any]) -> bool:
    """Calico Open Source's Whisker/Goldmane shape, told from Calico Enterprise's flow log."""
    policies = rec.get("policies")
    return (isinstance(rec.get("end_time"), str) or isinstance(rec.get("start_time"), str)
            or isinstance(rec.get("source_labels"), str) or isinstance(rec.get("dest_labels"), str)
            or (isinstance(policies, dict) and ("enforced" in policies or "pending" in policies)))


def detect_flow_format(obj: object) -> str:
    """Which flow format a decoded record is: "hubble", "calico", "goldmane" or "generic"; a record
    of a schema netwarden does not read is rejected naming the schema it looks like."""
    rec = require_dict_root(obj)
    inner = rec.get("flow")
    if isinstance(inner, dict) and "key" in inner and "IP" not in inner:
        raise unsupported_schema(rec)
    if "flow" in rec or any(key in rec for key in NON_FLOW_EVENTS):
        return "hubble"
    if "IP" in rec and ("l4" in rec or "verdict" in rec or "source" in rec):
        return "hubble"
    if ("start_time" in rec or "end_time" in rec) and ("reporter" in rec or "source_namespace" in rec or "dest_type" in rec):
        return "goldmane" if _goldmane_like(rec) else "calico"
    if "src" in rec and "dst" in rec:
        return "generic"
    raise unsupported_schema(rec)


def unsupported_schema(rec: Mapping[str, Any]) -> SignalError:
    """Name the schema a record looks like (bounded: a fixed set), or say it is of no known format."""
    kind = rec.get("kind")
    if "apiVersion" in rec and isinstance(kind, str):
        if kind == "Event":
            return SignalError("unsupported-schema:kubernetes-event", "looks like a Kubernetes Event, not a flow")
        return SignalError("unsupported-schema:kubernetes-object", f"looks like a Kubernetes {kind[:40]} object, not a flow")
    inner = rec.get("flow")
    key = inner.get("key") if isinstance(inner, dict) else rec.get("key")
    if isinstance(key, dict) and ("source_name" in key or "proto" in key or "action" in key):
        return SignalError("unsupported-schema:calico-goldmane-protojson",
                           "looks like a Calico Goldmane gRPC flow in protojson, which is not read as JSON: "
                           "send Whisker's JSON (GET /whisker-backend/flows) or use the Goldmane stream")
    if "rule" in rec and "priority" in rec:
        return SignalError("unsupported-schema:falco-alert", "looks like a Falco alert, not a flow: POST it to /signals/falco")
    if "alerts" in rec and "version" in rec:
        return SignalError("unsupported-schema:alertmanager",
                           "looks like an Alertmanager webhook body, not a flow: POST it to /signals/alertmanager")
    if "srcaddr" in rec and "dstaddr" in rec:
        return SignalError("unsupported-schema:aws-vpc-flow-log",
                           "looks like an AWS VPC flow log record: convert it to netwarden's generic flow format")
    if "SrcAddr" in rec and "DstAddr" in rec:
        return SignalError("unsupported-schema:netobserv-flow",
                           "looks like an OpenShift Network Observability flow: convert it to netwarden's generic flow format")
    return SignalError("unknown-format", "record is not a Hubble, Calico, Calico Goldmane/Whisker or generic flow")


def parse_flow_any(obj: object) -> Flow:
    """Detect the flow format, then parse."""
    return FLOW_PARSERS[detect_flow_format(obj)](obj)


def flow_format_or_unknown(record: object) -> str:
    """The metric label of a rejected record: its format when it has one, else "unknown"."""
    try:
        return detect_flow_format(record)
    except SignalError:
        return "unknown"


# --- bytes -> Flow ----------------------------------------------------------------------------

#: A JSON escape of a UTF-16 surrogate: such lines take the dict path (which rejects lone ones).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_FAST_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, RecursionError, SignalError)


def flow_from_json(raw: bytes) -> tuple[Flow | SignalError, str]:
    """One JSON record's bytes -> (Flow, its format) or (SignalError, the format it looked like or
    "unknown"). Hubble lines are decoded typed; everything else as before."""
    if b'"flow"' in raw[:32] and _SURROGATE_ESCAPE.search(raw) is None:
        try:
            line = hubble.decode_hubble_line(raw)
            if line.flow is not msgspec.UNSET:
                return hubble.flow_of(line), "hubble"
        except _FAST_ERRORS:
            pass
    try:
        record = decode_json(raw, "record")
        if not isinstance(record, dict):
            raise SignalError("not-an-object", f"record is a {type(record).__name__}")
    except SignalError as error:
        return error, "unknown"
    try:
        fmt = detect_flow_format(record)
    except SignalError as error:
        return error, "unknown"
    try:
        return FLOW_PARSERS[fmt](record), fmt
    except SignalError as error:
        return error, fmt


def iter_flows(lines: Iterable[tuple[int, bytes | SignalError]]) -> Iterator[tuple[int, Flow | SignalError, str]]:
    """(number, Flow or SignalError, format) for each (number, line bytes or the reader's SignalError)."""
    for number, raw in lines:
        if isinstance(raw, SignalError):
            yield number, raw, "unknown"
        else:
            result, fmt = flow_from_json(raw)
            yield number, result, fmt
