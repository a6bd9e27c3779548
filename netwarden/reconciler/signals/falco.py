"""Falco alerts: the wire type and its parser.

The `json_output` line Falco writes, and the body falcosidekick POSTs to a webhook (same fields
plus `uuid`, keys re-ordered). Older Falco (< 0.31ish) omits `hostname`, `source` and `tags`.
Fields Falco could not resolve are absent or the string "<NA>".

Mapping: `k8s.ns.name`/`k8s.pod.name` from `output_fields`, absent or `<NA>` -> None; a k8s_audit
alert's `ka.target.namespace`/`ka.target.name`/`ka.target.resource` -> namespace, pod (resource
"pods") or `target`; priority
case-insensitive; `time` (or `output_fields["evt.time"]` ns when `time` is absent).
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, TypedDict

from netwarden.reconciler.core.types import AlertTarget, Priority, SecurityAlert, SignalError
from netwarden.reconciler.signals.common import epoch_ns, opt_obj, opt_str, parse_rfc3339, require_dict_root

#: Falco writes these capitalised; we compare case-insensitively.
FalcoPriority = Literal["Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational", "Debug"]

#: `output_fields` maps field names ("k8s.ns.name", "k8s.pod.name", "container.id", "proc.cmdline",
#: "evt.time", ...) to strings, integers or null; dotted keys cannot be TypedDict members.
OutputFields = dict[str, object]


class FalcoAlert(TypedDict, total=False):
    uuid: str  # falcosidekick only
    hostname: str
    output: str
    priority: FalcoPriority
    rule: str
    source: str  # "syscall", "k8s_audit", ...
    tags: list[str]
    time: str  # RFC 3339 with nanoseconds
    output_fields: OutputFields


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
_UNKNOWN = ("", "<NA>")


def _field(fields: Mapping[str, Any], name: str) -> str | None:
    return opt_str(fields.get(name), f"output_fields.{name}", placeholders=_UNKNOWN)


def _subject(fields: Mapping[str, Any]) -> tuple[str | None, str | None, AlertTarget | None]:
    """(namespace, pod, target) an alert names: a syscall alert's `k8s.ns.name`/`k8s.pod.name`, or a
    k8s_audit alert's `ka.target.namespace`/`ka.target.name`/`ka.target.resource` (a target of
    resource "pods" is the pod; any other is kept as the target, for the engine to attribute)."""
    namespace = _field(fields, "k8s.ns.name") or _field(fields, "ka.target.namespace")
    pod = _field(fields, "k8s.pod.name")
    resource = _field(fields, "ka.target.resource")
    if resource is None:
        return namespace, pod, None
    target = AlertTarget(resource.lower(), _field(fields, "ka.target.name"))
    if pod is None and target.resource == "pods":
        pod = target.name
    return namespace, pod, target


def parse_falco_event(obj: object) -> SecurityAlert:
    """A Falco `json_output` alert or a falcosidekick webhook body -> SecurityAlert."""
    rec = require_dict_root(obj)
    rule = rec.get("rule")
    if not isinstance(rule, str) or not rule:
        raise SignalError("missing-field:rule", "Falco alert has no rule")
    priority_raw = rec.get("priority")
    if not isinstance(priority_raw, str) or priority_raw.lower() not in _PRIORITIES:
        raise SignalError("bad-priority", f"unknown Falco priority: {priority_raw!r:.40}")
    fields = opt_obj(rec, "output_fields", "output_fields")
    if rec.get("time") is not None:
        when = parse_rfc3339(rec["time"])
    elif isinstance(fields.get("evt.time"), int) and not isinstance(fields.get("evt.time"), bool):
        when = epoch_ns(fields["evt.time"])
    else:
        raise SignalError("missing-field:time", "Falco alert has no time")
    output = rec.get("output", "")
    tags = rec.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise SignalError("bad-field:tags", "Falco tags is not a list of strings")
    namespace, pod, target = _subject(fields)
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
