"""Calico Open Source flow records from Goldmane, as Whisker's backend serves them as JSON
(`GET /whisker-backend/flows`, Calico 3.30+; the shape of whisker-backend's `FlowResponse`): the
wire type (only what netwarden reads) and its parser.

Unlike Calico Enterprise flow logs (calico.py): times are RFC 3339 strings, `action` and `reporter`
are capitalised (`Allow`/`Deny`/`Pass`, `Src`/`Dst`), labels are one `" | "`-joined string,
`policies` is `{"enforced": [...], "pending": [...]}`, and there are no IPs or endpoint types.
Goldmane aggregates by pod prefix: a name ending in `*` (`frontend-5d9f8b7c6-*`) is the workload's
pod prefix, attributed to the workload whose pods carry that prefix. Public and private networks
are named `pub`/`pvt` (Goldmane) or `PUBLIC NETWORK`/`PRIVATE NETWORK` (Whisker) -> world.
An empty, `-` or `Global` namespace means none.

`flow_of` is also what a Goldmane gRPC client can call once it has filled a `GoldmaneFlow`.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from netwarden.reconciler.core.types import Endpoint, Flow, SignalError, Verdict
from netwarden.reconciler.signals.common import parse_rfc3339, protocol, validation_error

Count = Annotated[int, Meta(ge=0)]


class GoldmaneFlow(Struct):
    """One Whisker/Goldmane flow record; policies are not read (the engine learns edges, not rules)."""

    end_time: str
    action: str
    start_time: str | None = None
    source_name: str = ""
    source_namespace: str = ""
    source_labels: str = ""
    dest_name: str = ""
    dest_namespace: str = ""
    dest_labels: str = ""
    protocol: str = ""
    dest_port: int | None = None
    reporter: str = ""
    packets_in: Count = 0
    packets_out: Count = 0
    bytes_in: Count = 0
    bytes_out: Count = 0


SCHEMA = "calico-goldmane"
_VERDICTS: dict[str, Verdict] = {"allow": "forwarded", "deny": "dropped"}
_REPORTERS = {"src": "src", "dst": "dst"}
_NO_NAMESPACE = ("", "-", "Global")
_NETWORKS = ("pub", "pvt", "PUBLIC NETWORK", "PRIVATE NETWORK")
_RENAMES = {"dest_port": "bad-port"}


def split_labels(text: str) -> dict[str, str]:
    """"app=web | tier=front" -> {"app": "web", "tier": "front"}."""
    out: dict[str, str] = {}
    if text:
        for item in text.split(" | "):
            key, _, value = item.strip().partition("=")
            if key:
                out[key] = value
    return out


def _endpoint(name: str, namespace: str, labels: str) -> Endpoint:
    ns = None if namespace in _NO_NAMESPACE else namespace
    if ns is None and name in _NETWORKS:
        return Endpoint(world=True)
    pod = prefix = None
    if name and name != "-":
        if name.endswith("*"):
            prefix = name
        elif ns is not None:
            pod = name
    return Endpoint(namespace=ns, pod=pod, labels=split_labels(labels), pod_prefix=prefix)


def flow_of(rec: GoldmaneFlow) -> Flow:
    """A decoded record -> Flow, timed at the end of its aggregation interval."""
    when = parse_rfc3339(rec.end_time)
    proto = protocol(rec.protocol or "TCP", "protocol")
    port = rec.dest_port
    if port is not None and not 0 <= port <= 65535:
        raise SignalError("bad-port", f"not a port number: {port!r:.80}")
    verdict = _VERDICTS.get(rec.action.lower(), "unknown")
    return Flow(
        time=when,
        source=_endpoint(rec.source_name, rec.source_namespace, rec.source_labels),
        destination=_endpoint(rec.dest_name, rec.dest_namespace, rec.dest_labels),
        port=None if proto in ("ICMP", "ICMPv6") else (port or None),
        protocol=proto,
        verdict=verdict,
        policy_dropped=verdict == "dropped",
        reply=False,
        bytes=rec.bytes_in + rec.bytes_out,
        packets=rec.packets_in + rec.packets_out,
        source_format="goldmane",
        reporter=_REPORTERS.get(rec.reporter.lower()),
    )


def parse_goldmane_flow(value: object) -> Flow:
    """One Whisker/Goldmane JSON flow record (decoded) -> Flow. A record of this family that does
    not fit the shape read here (numeric times, a labels list, no action) is rejected as
    `unsupported-schema:calico-goldmane`, saying so, rather than as a field error."""
    if not isinstance(value, dict):
        raise SignalError("not-an-object", f"record is a {type(value).__name__}, not a JSON object")
    try:
        rec = msgspec.convert(value, GoldmaneFlow)
    except msgspec.ValidationError as err:
        raise unsupported(err) from None
    return flow_of(rec)


def unsupported(err: msgspec.ValidationError) -> SignalError:
    """A Goldmane-looking record this parser cannot read: named as such (bad ports stay bad-port)."""
    field = validation_error(err, _RENAMES)
    if field.reason == "bad-port":
        return field
    return SignalError(f"unsupported-schema:{SCHEMA}",
                       f"looks like a Calico Goldmane/Whisker flow of an unsupported version ({field})")
