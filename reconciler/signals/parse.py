"""Wire records -> normalised signals (reconciler.core.types). Pure: a decoded JSON value in, a
value out. Anything unusable raises SignalError with a short, bounded `reason` (it becomes a
metric label), never another exception: receivers count and skip bad records, they never crash.

Reasons: not-an-object, not-a-flow, unknown-format, missing-field:<path>, bad-field:<path>,
bad-timestamp, bad-port, bad-priority, bad-version.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping

from reconciler.core.types import (AlertTarget, Endpoint, Flow, MetricAlert, Priority, SecurityAlert, SignalError,
                                   Verdict)

# --- shared helpers ------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,12}))?(Z|z|[+-]\d{2}:?\d{2})$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: Alertmanager's "no end yet" (Go's zero time).
_GO_ZERO_TIME_PREFIX = "0001-01-01T00:00:00"


def parse_rfc3339(text: object) -> float:
    """RFC 3339 (nanoseconds allowed, which datetime.fromisoformat rejects on 3.10-) -> epoch seconds."""
    if not isinstance(text, str):
        raise SignalError("bad-timestamp", f"timestamp is not a string: {text!r:.80}")
    match = _RFC3339.match(text)
    if match is None:
        raise SignalError("bad-timestamp", f"not an RFC 3339 timestamp: {text!r:.80}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        if zone in ("Z", "z"):
            offset = timedelta(0)
        else:
            sign = -1 if zone[0] == "-" else 1
            digits = zone[1:].replace(":", "")
            offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=timezone(offset))
    except (ValueError, OverflowError) as err:
        raise SignalError("bad-timestamp", f"invalid timestamp {text!r:.80}: {err}") from None
    seconds = (moment - _EPOCH).total_seconds()
    if fraction:
        seconds += int(fraction) / 10 ** len(fraction)
    return seconds


def _epoch(value: object) -> float:
    """Epoch seconds given as a JSON number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SignalError("bad-timestamp", f"epoch timestamp is not a number: {value!r:.80}")
    try:
        out = float(value)
    except OverflowError:
        raise SignalError("bad-timestamp", "epoch timestamp out of range") from None
    if not math.isfinite(out) or out < 0 or out > 1e11:
        raise SignalError("bad-timestamp", f"epoch timestamp out of range: {value!r:.80}")
    return out


def _epoch_ns(value: int) -> float:
    """Integer nanoseconds since the epoch (Falco evt.time)."""
    if not 0 <= value < 10**20:
        raise SignalError("bad-timestamp", f"epoch nanoseconds out of range: {value!r:.40}")
    return value / 1e9


def _time_any(value: object) -> float:
    """RFC 3339 string or epoch seconds."""
    if isinstance(value, str):
        return parse_rfc3339(value)
    return _epoch(value)


def _obj(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise SignalError(f"bad-field:{path}", f"{path} is not an object")
    return value


def _opt_obj(parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = parent.get(key)
    return {} if value is None else _obj(value, path)


def _require_obj(parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    if key not in parent or parent[key] is None:
        raise SignalError(f"missing-field:{path}", f"record has no {path}")
    return _obj(parent[key], path)


def _opt_str(value: object, path: str, *, placeholders: tuple[str, ...] = ("",)) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SignalError(f"bad-field:{path}", f"{path} is not a string")
    return None if value in placeholders else value


def _first(mapping: Mapping[str, Any], *keys: str) -> Any:
    """Protobuf JSON may use proto names (pod_name) or lowerCamel (podName); take whichever is there."""
    for key in keys:
        if key in mapping:
            return mapping[key]
    return None


def _port(value: object) -> int | None:
    """A destination port; absent, null or 0 (proto3 omits zero) mean none."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise SignalError("bad-port", f"not a port number: {value!r:.80}")
    return value or None


def _count(value: object, path: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SignalError(f"bad-field:{path}", f"{path} is not a non-negative integer")
    return value


def _flag(value: object, path: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise SignalError(f"bad-field:{path}", f"{path} is not a boolean")
    return value


def _require_dict_root(obj: object) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise SignalError("not-an-object", f"record is a {type(obj).__name__}, not a JSON object")
    return obj


def _key_value_labels(items: object, path: str, strip_prefix: str | None = None) -> dict[str, str]:
    """["app=web", ...] -> {"app": "web"}; with strip_prefix only "<prefix>:"-sourced labels are kept."""
    if items is None:
        return {}
    if not isinstance(items, list):
        raise SignalError(f"bad-field:{path}", f"{path} is not a list")
    out: dict[str, str] = {}
    for item in items:
        if not isinstance(item, str):
            raise SignalError(f"bad-field:{path}", f"{path} has a non-string entry")
        if strip_prefix is not None:
            source, sep, rest = item.partition(":")
            if not sep or source != strip_prefix:
                continue
            item = rest
        key, _, value = item.partition("=")
        out[key] = value
    return out


# --- Hubble ---------------------------------------------------------------------------------------

_HUBBLE_VERDICTS: dict[object, Verdict] = {
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
_HUBBLE_POLICY_DROPS = {"POLICY_DENIED", "POLICY_DENY", 133, 181}
_HUBBLE_L4 = (("TCP", "TCP"), ("UDP", "UDP"), ("SCTP", "SCTP"), ("ICMPv4", "ICMP"), ("ICMPv6", "ICMPv6"))
#: Cilium's reserved world identities: world, world-ipv4, world-ipv6.
_HUBBLE_WORLD_IDENTITIES = {2, 9, 10}
_HUBBLE_REPORTER = {"EGRESS": "src", "INGRESS": "dst", 1: "dst", 2: "src"}
_HUBBLE_NON_FLOW_EVENTS = ("lost_events", "agent_event", "debug_event", "node_status", "lostEvents", "agentEvent")


def _hubble_endpoint(raw: Mapping[str, Any], ip: str | None, path: str) -> Endpoint:
    labels_raw = raw.get("labels")
    labels = _key_value_labels(labels_raw, f"{path}.labels", strip_prefix="k8s")
    reserved = _key_value_labels(labels_raw, f"{path}.labels", strip_prefix="reserved")
    world = any(key.startswith("world") for key in reserved) or _hashable(raw.get("identity")) in _HUBBLE_WORLD_IDENTITIES
    return Endpoint(
        ip=ip,
        namespace=_opt_str(raw.get("namespace"), f"{path}.namespace"),
        pod=_opt_str(_first(raw, "pod_name", "podName"), f"{path}.pod_name"),
        labels=labels,
        world=world,
    )


def parse_hubble_line(obj: object) -> Flow:
    """One `hubble observe -o json` / exporter line, or a bare flow object -> Flow.

    Replies keep the ports as seen on the packet (destination = the client's ephemeral port);
    consumers that learn "who talks to whom on which port" skip `reply` flows.
    """
    root = _require_dict_root(obj)
    if "flow" in root:
        flow = _obj(root["flow"], "flow")
    elif any(key in root for key in _HUBBLE_NON_FLOW_EVENTS):
        raise SignalError("not-a-flow", "Hubble event that is not a flow (lost/agent/debug event)")
    else:
        flow = root
    ip = _require_obj(flow, "IP", "flow.IP")
    src_ip = _opt_str(ip.get("source"), "flow.IP.source")
    dst_ip = _opt_str(ip.get("destination"), "flow.IP.destination")
    if src_ip is None or dst_ip is None:
        raise SignalError("missing-field:flow.IP", "flow.IP has no source or destination address")

    time_value = flow.get("time", root.get("time"))
    if time_value is None:
        raise SignalError("missing-field:flow.time", "flow has no time")
    when = parse_rfc3339(time_value)

    l4 = _opt_obj(flow, "l4", "flow.l4")
    protocol, port = "UNKNOWN", None
    for key, name in _HUBBLE_L4:
        if key in l4:
            protocol = name
            layer = _obj(l4[key], f"flow.l4.{key}")
            if name not in ("ICMP", "ICMPv6"):
                port = _port(_first(layer, "destination_port", "destinationPort"))
            break

    verdict = _HUBBLE_VERDICTS.get(_hashable(flow.get("verdict")), "unknown")
    drop_reason = _hashable(_first(flow, "drop_reason_desc", "dropReasonDesc"))
    if drop_reason is None:
        drop_reason = _hashable(_first(flow, "drop_reason", "dropReason"))
    policy_dropped = verdict == "dropped" and drop_reason in _HUBBLE_POLICY_DROPS
    reply_value = _first(flow, "is_reply", "isReply")
    if reply_value is None:
        reply_value = flow.get("reply")
    direction = _hashable(_first(flow, "traffic_direction", "trafficDirection"))

    return Flow(
        time=when,
        source=_hubble_endpoint(_opt_obj(flow, "source", "flow.source"), src_ip, "flow.source"),
        destination=_hubble_endpoint(_opt_obj(flow, "destination", "flow.destination"), dst_ip, "flow.destination"),
        port=port,
        protocol=protocol,
        verdict=verdict,
        policy_dropped=policy_dropped,
        reply=_flag(reply_value, "flow.is_reply"),
        bytes=0,
        packets=1,
        source_format="hubble",
        reporter=_HUBBLE_REPORTER.get(direction) if direction is not None else None,
    )


def _hashable(value: object) -> object:
    """Enum-ish JSON values used as dict keys; lists/dicts (never valid there) become None."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return value
    return None


# --- Calico ---------------------------------------------------------------------------------------

_IP_PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}
_PROTOCOL_NAMES = {"icmp": "ICMP", "tcp": "TCP", "udp": "UDP", "sctp": "SCTP", "icmp6": "ICMPv6", "icmpv6": "ICMPv6"}
_CALICO_ACTIONS: dict[object, Verdict] = {"allow": "forwarded", "deny": "dropped"}
_CALICO_PLACEHOLDER = ("", "-")


def _protocol(value: object, path: str) -> str:
    if isinstance(value, bool) or value is None:
        raise SignalError(f"bad-field:{path}", f"{path} is not a protocol")
    if isinstance(value, int):
        return _IP_PROTOCOLS.get(value, str(value))
    if isinstance(value, str) and value:
        if value.isdigit():
            return _IP_PROTOCOLS.get(int(value), value)
        return _PROTOCOL_NAMES.get(value.lower(), value.upper())
    raise SignalError(f"bad-field:{path}", f"{path} is not a protocol")


def _calico_endpoint(rec: Mapping[str, Any], side: str) -> Endpoint:
    kind = rec.get(f"{side}_type")
    name = _opt_str(rec.get(f"{side}_name"), f"{side}_name", placeholders=_CALICO_PLACEHOLDER)
    aggregate = _opt_str(rec.get(f"{side}_name_aggr"), f"{side}_name_aggr", placeholders=_CALICO_PLACEHOLDER)
    labels_obj = _opt_obj(rec, f"{side}_labels", f"{side}_labels")
    is_pod = kind == "wep"
    return Endpoint(
        ip=_opt_str(rec.get(f"{side}_ip"), f"{side}_ip", placeholders=_CALICO_PLACEHOLDER),
        namespace=_opt_str(rec.get(f"{side}_namespace"), f"{side}_namespace", placeholders=_CALICO_PLACEHOLDER),
        pod=name if is_pod else None,
        labels=_key_value_labels(labels_obj.get("labels"), f"{side}_labels.labels"),
        # "net" is any network that is not a cluster endpoint (name_aggr "pub" or "pvt").
        world=kind == "net",
        pod_prefix=aggregate if is_pod and name is None else None,
    )


def parse_calico_record(obj: object) -> Flow:
    """One Calico flow log record -> Flow. `time` is the end of the record's interval."""
    rec = _require_dict_root(obj)
    if "end_time" not in rec and "start_time" not in rec:
        raise SignalError("missing-field:end_time", "Calico record has no start_time/end_time")
    when = _epoch(rec.get("end_time", rec.get("start_time")))
    if "proto" not in rec:
        raise SignalError("missing-field:proto", "Calico record has no proto")
    protocol = _protocol(rec["proto"], "proto")
    verdict = _CALICO_ACTIONS.get(_hashable(rec.get("action")), "unknown")
    reporter = rec.get("reporter")
    return Flow(
        time=when,
        source=_calico_endpoint(rec, "source"),
        destination=_calico_endpoint(rec, "dest"),
        port=None if protocol in ("ICMP", "ICMPv6") else _port(rec.get("dest_port")),
        protocol=protocol,
        verdict=verdict,
        policy_dropped=verdict == "dropped",
        reply=False,
        bytes=_count(rec.get("bytes_in"), "bytes_in") + _count(rec.get("bytes_out"), "bytes_out"),
        packets=_count(rec.get("packets_in"), "packets_in") + _count(rec.get("packets_out"), "packets_out"),
        source_format="calico",
        reporter=reporter if reporter in ("src", "dst") else None,
    )


# --- generic --------------------------------------------------------------------------------------

_GENERIC_VERDICTS: dict[object, Verdict] = {"forwarded": "forwarded", "dropped": "dropped", "unknown": "unknown"}


def _generic_endpoint(raw: Mapping[str, Any], path: str) -> Endpoint:
    labels_raw = raw.get("labels")
    labels: dict[str, str] = {}
    if labels_raw is not None:
        labels_obj = _obj(labels_raw, f"{path}.labels")
        for key, value in labels_obj.items():
            if not isinstance(value, str):
                raise SignalError(f"bad-field:{path}.labels", f"{path}.labels has a non-string value")
            labels[key] = value
    return Endpoint(
        ip=_opt_str(raw.get("ip"), f"{path}.ip"),
        namespace=_opt_str(raw.get("namespace"), f"{path}.namespace"),
        pod=_opt_str(raw.get("pod"), f"{path}.pod"),
        labels=labels,
        world=_flag(raw.get("world"), f"{path}.world"),
    )


def parse_generic_flow(obj: object) -> Flow:
    """One record of netwarden's generic JSON-lines flow format (README.md) -> Flow."""
    rec = _require_dict_root(obj)
    if rec.get("time") is None:
        raise SignalError("missing-field:time", "flow has no time")
    when = _time_any(rec["time"])
    src = _require_obj(rec, "src", "src")
    dst = _require_obj(rec, "dst", "dst")
    protocol = _protocol(rec.get("protocol", "TCP"), "protocol")
    policy_dropped = _flag(rec.get("policy_dropped"), "policy_dropped")
    verdict_raw = rec.get("verdict")
    if verdict_raw is None:
        verdict: Verdict = "dropped" if policy_dropped else "forwarded"
    elif _hashable(verdict_raw) in _GENERIC_VERDICTS:
        verdict = _GENERIC_VERDICTS[verdict_raw]
    else:
        raise SignalError("bad-field:verdict", f"verdict must be forwarded, dropped or unknown: {verdict_raw!r:.40}")
    packets = rec.get("packets")
    return Flow(
        time=when,
        source=_generic_endpoint(src, "src"),
        destination=_generic_endpoint(dst, "dst"),
        port=_port(rec.get("port")),
        protocol=protocol,
        verdict=verdict,
        policy_dropped=policy_dropped,
        reply=_flag(rec.get("reply"), "reply"),
        bytes=_count(rec.get("bytes"), "bytes"),
        packets=1 if packets is None else _count(packets, "packets"),
        source_format="generic",
    )


# --- format detection -----------------------------------------------------------------------------

FLOW_PARSERS: dict[str, Callable[[object], Flow]] = {
    "hubble": parse_hubble_line,
    "calico": parse_calico_record,
    "generic": parse_generic_flow,
}


def detect_flow_format(obj: object) -> str:
    """Which flow format a decoded record is: "hubble", "calico" or "generic"."""
    rec = _require_dict_root(obj)
    if "flow" in rec or any(key in rec for key in _HUBBLE_NON_FLOW_EVENTS):
        return "hubble"
    if "IP" in rec and ("l4" in rec or "verdict" in rec or "source" in rec):
        return "hubble"
    if ("start_time" in rec or "end_time" in rec) and ("reporter" in rec or "source_namespace" in rec or "dest_type" in rec):
        return "calico"
    if "src" in rec and "dst" in rec:
        return "generic"
    raise SignalError("unknown-format", "record is not a Hubble, Calico or generic flow")


def parse_flow_any(obj: object) -> Flow:
    """Detect the flow format, then parse."""
    return FLOW_PARSERS[detect_flow_format(obj)](obj)


# --- Falco ----------------------------------------------------------------------------------------

_PRIORITIES: dict[str, Priority] = {
    "emergency": "emergency",
    "alert": "alert",
    "critical": "critical",
    "error": "error",
    "warning": "warning",
    "notice": "notice",
    "informational": "informational",
    "info": "informational",
    "debug": "debug",
}
_FALCO_UNKNOWN = ("", "<NA>")


def _falco_field(fields: Mapping[str, Any], name: str) -> str | None:
    return _opt_str(fields.get(name), f"output_fields.{name}", placeholders=_FALCO_UNKNOWN)


def _falco_subject(fields: Mapping[str, Any]) -> tuple[str | None, str | None, AlertTarget | None]:
    """(namespace, pod, target) an alert names: a syscall alert's `k8s.ns.name`/`k8s.pod.name`, or a
    k8s_audit alert's `ka.target.namespace`/`ka.target.name`/`ka.target.resource` (a target of
    resource "pods" is the pod; any other is kept as the target, for the engine to attribute)."""
    namespace = _falco_field(fields, "k8s.ns.name") or _falco_field(fields, "ka.target.namespace")
    pod = _falco_field(fields, "k8s.pod.name")
    resource = _falco_field(fields, "ka.target.resource")
    if resource is None:
        return namespace, pod, None
    target = AlertTarget(resource.lower(), _falco_field(fields, "ka.target.name"))
    if pod is None and target.resource == "pods":
        pod = target.name
    return namespace, pod, target


def parse_falco_event(obj: object) -> SecurityAlert:
    """A Falco `json_output` alert or a falcosidekick webhook body -> SecurityAlert."""
    rec = _require_dict_root(obj)
    rule = rec.get("rule")
    if not isinstance(rule, str) or not rule:
        raise SignalError("missing-field:rule", "Falco alert has no rule")
    priority_raw = rec.get("priority")
    if not isinstance(priority_raw, str) or priority_raw.lower() not in _PRIORITIES:
        raise SignalError("bad-priority", f"unknown Falco priority: {priority_raw!r:.40}")
    fields = _opt_obj(rec, "output_fields", "output_fields")
    if rec.get("time") is not None:
        when = parse_rfc3339(rec["time"])
    elif isinstance(fields.get("evt.time"), int) and not isinstance(fields.get("evt.time"), bool):
        when = _epoch_ns(fields["evt.time"])
    else:
        raise SignalError("missing-field:time", "Falco alert has no time")
    output = rec.get("output", "")
    tags = rec.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise SignalError("bad-field:tags", "Falco tags is not a list of strings")
    namespace, pod, target = _falco_subject(fields)
    return SecurityAlert(
        time=when,
        namespace=namespace,
        pod=pod,
        rule=rule,
        priority=_PRIORITIES[priority_raw.lower()],
        output=output if isinstance(output, str) else "",
        source_format="falco",
        tags=tuple(tags),
        alert_id=rec["uuid"] if isinstance(rec.get("uuid"), str) else "",
        target=target,
    )


# --- Alertmanager ---------------------------------------------------------------------------------


def _string_map(value: object, path: str) -> dict[str, str]:
    if value is None:
        return {}
    mapping = _obj(value, path)
    if not all(isinstance(v, str) for v in mapping.values()):
        raise SignalError(f"bad-field:{path}", f"{path} has a non-string value")
    return dict(mapping)


#: Alert labels naming a workload (kube-state-metrics' names) -> the API resource they name.
_WORKLOAD_LABELS = (("deployment", "deployments"), ("statefulset", "statefulsets"), ("daemonset", "daemonsets"),
                    ("replicaset", "replicasets"), ("job_name", "jobs"), ("cronjob", "cronjobs"))


def _alert_workload(labels: Mapping[str, str]) -> AlertTarget | None:
    """The workload an alert's labels name (the first of `_WORKLOAD_LABELS` present), None when none."""
    return next((AlertTarget(resource, labels[label]) for label, resource in _WORKLOAD_LABELS if labels.get(label)), None)


def _alert_end(value: object) -> float | None:
    if value is None or (isinstance(value, str) and (value == "" or value.startswith(_GO_ZERO_TIME_PREFIX))):
        return None
    return parse_rfc3339(value)


def parse_alertmanager_payload(obj: object) -> list[MetricAlert]:
    """An Alertmanager webhook body (version "4") -> one MetricAlert per alert.

    `time` is when the alert's current state began: startsAt when firing, endsAt when resolved.
    """
    body = _require_dict_root(obj)
    if body.get("version") != "4":
        raise SignalError("bad-version", f"Alertmanager webhook version must be \"4\": {body.get('version')!r:.20}")
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise SignalError("missing-field:alerts", "Alertmanager body has no alerts list")
    group_status = body.get("status")
    out = []
    for index, raw in enumerate(alerts):
        alert = _obj(raw, "alerts")
        status = alert.get("status", group_status)
        if status not in ("firing", "resolved"):
            raise SignalError("bad-field:alerts.status", f"alert {index} status is not firing/resolved")
        labels = _string_map(alert.get("labels"), "alerts.labels")
        annotations = _string_map(alert.get("annotations"), "alerts.annotations")
        if not labels.get("alertname"):
            raise SignalError("missing-field:alerts.labels.alertname", f"alert {index} has no alertname")
        if alert.get("startsAt") is None:
            raise SignalError("missing-field:alerts.startsAt", f"alert {index} has no startsAt")
        starts = parse_rfc3339(alert["startsAt"])
        ends = _alert_end(alert.get("endsAt"))
        fingerprint = alert.get("fingerprint", "")
        out.append(
            MetricAlert(
                time=ends if status == "resolved" and ends is not None else starts,
                firing=status == "firing",
                alertname=labels["alertname"],
                severity=labels.get("severity", ""),
                namespace=labels.get("namespace") or None,
                pod=labels.get("pod") or None,
                fingerprint=fingerprint if isinstance(fingerprint, str) else "",
                summary=annotations.get("summary", ""),
                description=annotations.get("description", ""),
                starts_at=starts,
                ends_at=ends,
                target=_alert_workload(labels),
            )
        )
    return out
