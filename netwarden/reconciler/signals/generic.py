"""netwarden's generic JSON-lines flow format (README.md beside this file), for sources without a
parser of their own: the wire type and its parser."""

from __future__ import annotations

from typing import Any, Literal, Mapping, TypedDict

from netwarden.reconciler.core.types import Endpoint, Flow, SignalError, Verdict
from netwarden.reconciler.signals.common import (count, flag, hashable, obj, opt_str, port, protocol, require_dict_root,
                                       time_any)


class GenericEndpoint(TypedDict, total=False):
    ip: str
    namespace: str
    pod: str
    labels: dict[str, str]
    #: True when the peer is outside the cluster.
    world: bool


class GenericFlow(TypedDict, total=False):
    #: RFC 3339 string or epoch seconds (int or float). Required.
    time: str | int | float
    #: Required, with `dst`.
    src: GenericEndpoint
    dst: GenericEndpoint
    #: Destination port; absent or null for ICMP.
    port: int | None
    #: TCP (default), UDP, SCTP, ICMP, ICMPv6.
    protocol: str
    verdict: Literal["forwarded", "dropped", "unknown"]
    policy_dropped: bool
    reply: bool
    bytes: int
    packets: int


_VERDICTS: dict[object, Verdict] = {"forwarded": "forwarded", "dropped": "dropped", "unknown": "unknown"}


def _require_obj(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    if key not in parent or parent[key] is None:
        raise SignalError(f"missing-field:{key}", f"record has no {key}")
    return obj(parent[key], key)


def _endpoint(raw: Mapping[str, Any], path: str) -> Endpoint:
    labels_raw = raw.get("labels")
    labels: dict[str, str] = {}
    if labels_raw is not None:
        for key, value in obj(labels_raw, f"{path}.labels").items():
            if not isinstance(value, str):
                raise SignalError(f"bad-field:{path}.labels", f"{path}.labels has a non-string value")
            labels[key] = value
    return Endpoint(
        ip=opt_str(raw.get("ip"), f"{path}.ip"),
        namespace=opt_str(raw.get("namespace"), f"{path}.namespace"),
        pod=opt_str(raw.get("pod"), f"{path}.pod"),
        labels=labels,
        world=flag(raw.get("world"), f"{path}.world"),
    )


def parse_generic_flow(value: object) -> Flow:
    """One record of netwarden's generic JSON-lines flow format -> Flow."""
    rec = require_dict_root(value)
    if rec.get("time") is None:
        raise SignalError("missing-field:time", "flow has no time")
    when = time_any(rec["time"])
    src = _require_obj(rec, "src")
    dst = _require_obj(rec, "dst")
    proto = protocol(rec.get("protocol", "TCP"), "protocol")
    policy_dropped = flag(rec.get("policy_dropped"), "policy_dropped")
    verdict_raw = rec.get("verdict")
    if verdict_raw is None:
        verdict: Verdict = "dropped" if policy_dropped else "forwarded"
    elif hashable(verdict_raw) in _VERDICTS:
        verdict = _VERDICTS[verdict_raw]
    else:
        raise SignalError("bad-field:verdict", f"verdict must be forwarded, dropped or unknown: {verdict_raw!r:.40}")
    packets = rec.get("packets")
    return Flow(
        time=when,
        source=_endpoint(src, "src"),
        destination=_endpoint(dst, "dst"),
        port=port(rec.get("port")),
        protocol=proto,
        verdict=verdict,
        policy_dropped=policy_dropped,
        reply=flag(rec.get("reply"), "reply"),
        bytes=count(rec.get("bytes"), "bytes"),
        packets=1 if packets is None else count(packets, "packets"),
        source_format="generic",
    )
