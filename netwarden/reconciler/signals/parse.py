"""Which flow format a record is, and the way in from bytes. Each format's wire type and parser
live in its own module (hubble, calico, goldmane, generic; falco and alertmanager for alerts);
this module only tells them apart and dispatches. Pure: a decoded JSON value (or one JSON line's
bytes) in, a value out. Anything unusable raises, or returns, a SignalError with a short, bounded
`reason` (it becomes a metric label), never another exception.

Reasons: not-an-object, not-a-flow, unknown-format, unsupported-schema:<schema>,
missing-field:<path>, bad-field:<path>, bad-timestamp, bad-port, bad-priority, bad-version; from
the line readers: line-too-long, bad-json, bad-encoding.

Bytes path: a Hubble line is decoded straight into its typed Struct (only the fields read; its
addresses and endpoints left raw and decoded once per distinct bytes, `hubble.flow_of_raw`); any
other line, or any line the typed path does not accept, takes the dict path, which decides
exactly as before (same flows, same reasons).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Iterator, Mapping

import msgspec

from netwarden.reconciler.core.types import Flow, SignalError
from netwarden.reconciler.signals import hubble
from netwarden.reconciler.signals.calico import parse_calico_record
from netwarden.reconciler.signals.common import require_dict_root
from netwarden.reconciler.signals.generic import parse_generic_flow
from netwarden.reconciler.signals.goldmane import parse_goldmane_flow
from netwarden.reconciler.signals.hubble import NON_FLOW_EVENTS, parse_hubble_line
from netwarden.reconciler.signals.streams import MAX_LINE, decode_json, split_lines

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


# --- bytes -> Flow ----------------------------------------------------------------------------

#: A JSON escape of a UTF-16 surrogate: such lines take the dict path (which rejects lone ones).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_FAST_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError, SignalError)


def flow_from_json(raw: bytes) -> tuple[Flow | SignalError, str]:
    """One JSON record's bytes -> (Flow, its format) or (SignalError, the format it looked like or
    "unknown"). Hubble lines are decoded typed; everything else as before."""
    if raw.find(b'"flow"', 0, 32) >= 0 and clean_text(raw):
        try:
            line = hubble.decode_raw_ends_line(raw)
            if line.flow is not msgspec.UNSET:
                return hubble.flow_of_raw(line), "hubble"
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


# --- blocks of lines and arrays: one typed decode for a whole batch ---------------------------------

_HUBBLE_LINES = msgspec.json.Decoder(hubble.RawEndsLine)
_HUBBLE_ARRAY = msgspec.json.Decoder(list[hubble.RawEndsLine])
_BLOCK_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError)


class Parsed:
    """A batch's outcome: the flows, the rejected records (number, error, format), accepted per format."""

    __slots__ = ("flows", "rejected", "formats")

    def __init__(self, flows: list[Flow], rejected: list[tuple[int, SignalError, str]], formats: dict[str, int]) -> None:
        self.flows, self.rejected, self.formats = flows, rejected, formats


def _all_hubble(lines: list[hubble.RawEndsLine]) -> list[Flow] | None:
    """Every decoded line a Hubble flow: the flows; else None (the batch takes the per-record path).
    Raises msgspec.ValidationError for a raw endpoint the typed decode would have refused."""
    flow_of, unset = hubble.flow_of_raw, msgspec.UNSET
    flows: list[Flow] = []
    append = flows.append
    try:
        for line in lines:
            if line.flow is unset:
                return None
            append(flow_of(line))
    except SignalError:
        return None
    return flows


def _typed_batch_allowed(data: bytes) -> bool:
    """A batch the typed decoder may take whole: it looks like Hubble, and is what the dict path
    would accept as text (valid UTF-8, even in fields the typed decode skips; no surrogate escape)."""
    return data.find(b'"flow"', 0, 64) >= 0 and clean_text(data)


def clean_text(data: bytes) -> bool:
    """Valid UTF-8 and no JSON escape of a UTF-16 surrogate: bytes a typed decode may take, because
    the dict path would not reject them as bad-encoding."""
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return False
    # A one-byte search first: it is memchr, ~30x faster than looking for the two bytes "\\u" (and no
    # backslash, no escape); with backslashes, the regex alone (it finds no "\\u" where there is none).
    return b"\\" not in data or _SURROGATE_ESCAPE.search(data) is None


def parse_flow_lines(block: bytes, first_lineno: int = 1, *, max_line: int = MAX_LINE) -> Parsed:
    """JSON lines (a POST body, or whole lines of a file) -> Parsed, exactly as `iter_flows` over
    its lines would (numbers count from `first_lineno`). In a block that looks like Hubble and is
    clean text, each line is first decoded straight into the typed HubbleLine in one tight loop; a
    line that is not a good Hubble flow there (a blank line, another format, a bad record) takes
    `flow_from_json`, the per-record path."""
    if not _typed_batch_allowed(block):
        return parse_flow_records((number + first_lineno - 1, line) for number, line in split_lines(block, max_line=max_line))
    decode, flow_of, unset = _HUBBLE_LINES.decode, hubble.flow_of_raw, msgspec.UNSET
    flows: list[Flow] = []
    rejected: list[tuple[int, SignalError, str]] = []
    formats: dict[str, int] = {}
    append = flows.append
    typed = 0
    for number, raw in enumerate(block.split(b"\n"), first_lineno):
        if len(raw) > max_line:
            rejected.append((number, SignalError("line-too-long", f"line {number} is longer than {max_line}"), "unknown"))
            continue
        try:
            line = decode(raw)
            if line.flow is not unset:
                append(flow_of(line))
                typed += 1
                continue
        except _FAST_ERRORS:
            if not raw.strip():
                continue
        result, fmt = flow_from_json(raw)
        if isinstance(result, SignalError):
            rejected.append((number, result, fmt))
        else:
            append(result)
            formats[fmt] = formats.get(fmt, 0) + 1
    if typed:
        formats["hubble"] = formats.get("hubble", 0) + typed
    return Parsed(flows, rejected, formats)


def parse_flow_array(body: bytes, records: Callable[[], Iterable[tuple[int, bytes | SignalError]]]) -> Parsed:
    """A JSON array of flow records -> Parsed: one typed decode when all are good Hubble flows, else
    each of `records()` (index, record bytes or the array's own SignalError) on its own."""
    if _typed_batch_allowed(body):
        try:
            flows = _all_hubble(_HUBBLE_ARRAY.decode(body))
        except _BLOCK_ERRORS:
            flows = None
        if flows is not None:
            return Parsed(flows, [], {"hubble": len(flows)} if flows else {})
    return parse_flow_records(records())


def parse_flow_records(records: Iterable[tuple[int, bytes | SignalError]]) -> Parsed:
    """Record by record (index or line number, bytes or the reader's SignalError) -> Parsed."""
    flows: list[Flow] = []
    rejected: list[tuple[int, SignalError, str]] = []
    formats: dict[str, int] = {}
    for number, result, fmt in iter_flows(records):
        if isinstance(result, SignalError):
            rejected.append((number, result, fmt))
        else:
            flows.append(result)
            formats[fmt] = formats.get(fmt, 0) + 1
    return Parsed(flows, rejected, formats)
