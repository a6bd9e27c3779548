"""Calico flow log records: the wire type and its parser.

Calico Enterprise writes `/var/log/calico/flowlogs/flows.log` (or the Elasticsearch flow index,
which adds `host` and `@timestamp`). Times are epoch seconds, `action` is lower case, labels are
`{"labels": ["k=v", ...]}`. Aggregated records use placeholders: `"-"` for a name hidden by
aggregation (see `*_name_aggr`), null for IPs and ports hidden by aggregation. (Calico Open
Source 3.30+'s Goldmane/Whisker records are another shape: goldmane.py.)

Mapping: `time` = `end_time`; `"-"`/null placeholders -> None; `pod` only for `wep` endpoints; an
aggregated name (`nginx-86c57db685-*`) goes to `Endpoint.pod_prefix`; `net` endpoints (pub or pvt)
-> `world=True`; `deny` -> dropped + policy_dropped; bytes/packets = in + out.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, TypedDict

from netwarden.reconciler.core.types import Endpoint, Flow, SignalError, Verdict
from netwarden.reconciler.signals.common import (count, epoch, hashable, key_value_labels, opt_obj, opt_str, port, protocol,
                                       require_dict_root)

#: wep: workload endpoint (a pod); hep: host endpoint; ns: network set; net: any other network
#: ("pub" or "pvt" in `*_name_aggr`).
EndpointType = Literal["wep", "hep", "ns", "net"]


class Labels(TypedDict):
    labels: list[str]  # "key=value"


class Policies(TypedDict):
    #: "index|tier|name|action" (older) or "index|tier|name|action|ruleIndex".
    all_policies: list[str]


class FlowLog(TypedDict, total=False):
    """What netwarden reads of a record (others, e.g. num_flows*, original_source_ips, are ignored)."""

    start_time: int  # epoch seconds
    end_time: int
    source_ip: str | None
    source_name: str
    source_name_aggr: str
    source_namespace: str
    source_type: EndpointType
    source_labels: Labels
    dest_ip: str | None
    dest_name: str
    dest_name_aggr: str
    dest_namespace: str
    dest_port: int | None
    dest_type: EndpointType
    dest_labels: Labels
    #: "tcp", "udp", ... or an IP protocol number.
    proto: str | int
    action: Literal["allow", "deny"]
    reporter: Literal["src", "dst"]
    policies: Policies
    bytes_in: int
    bytes_out: int
    packets_in: int
    packets_out: int


_ACTIONS: dict[object, Verdict] = {"allow": "forwarded", "deny": "dropped"}
_PLACEHOLDER = ("", "-")


def _endpoint(rec: Mapping[str, Any], side: str) -> Endpoint:
    kind = rec.get(f"{side}_type")
    name = opt_str(rec.get(f"{side}_name"), f"{side}_name", placeholders=_PLACEHOLDER)
    aggregate = opt_str(rec.get(f"{side}_name_aggr"), f"{side}_name_aggr", placeholders=_PLACEHOLDER)
    labels_obj = opt_obj(rec, f"{side}_labels", f"{side}_labels")
    is_pod = kind == "wep"
    return Endpoint(
        ip=opt_str(rec.get(f"{side}_ip"), f"{side}_ip", placeholders=_PLACEHOLDER),
        namespace=opt_str(rec.get(f"{side}_namespace"), f"{side}_namespace", placeholders=_PLACEHOLDER),
        pod=name if is_pod else None,
        labels=key_value_labels(labels_obj.get("labels"), f"{side}_labels.labels"),
        # "net" is any network that is not a cluster endpoint (name_aggr "pub" or "pvt").
        world=kind == "net",
        pod_prefix=aggregate if is_pod and name is None else None,
    )


def parse_calico_record(obj: object) -> Flow:
    """One Calico flow log record -> Flow. `time` is the end of the record's interval."""
    rec = require_dict_root(obj)
    if "end_time" not in rec and "start_time" not in rec:
        raise SignalError("missing-field:end_time", "Calico record has no start_time/end_time")
    when = epoch(rec.get("end_time", rec.get("start_time")))
    if "proto" not in rec:
        raise SignalError("missing-field:proto", "Calico record has no proto")
    proto = protocol(rec["proto"], "proto")
    verdict = _ACTIONS.get(hashable(rec.get("action")), "unknown")
    reporter = rec.get("reporter")
    return Flow(
        time=when,
        source=_endpoint(rec, "source"),
        destination=_endpoint(rec, "dest"),
        port=None if proto in ("ICMP", "ICMPv6") else port(rec.get("dest_port")),
        protocol=proto,
        verdict=verdict,
        policy_dropped=verdict == "dropped",
        reply=False,
        bytes=count(rec.get("bytes_in"), "bytes_in") + count(rec.get("bytes_out"), "bytes_out"),
        packets=count(rec.get("packets_in"), "packets_in") + count(rec.get("packets_out"), "packets_out"),
        source_format="calico",
        reporter=reporter if reporter in ("src", "dst") else None,
    )
