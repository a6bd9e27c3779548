"""Falco alerts: the `json_output` line Falco writes, and the body falcosidekick POSTs to a
webhook (same fields plus `uuid`, keys re-ordered). Types only, no logic.

Older Falco (< 0.31ish) omits `hostname`, `source` and `tags`. Fields Falco could not resolve are
absent or the string "<NA>".
"""

from __future__ import annotations

from typing import Literal, TypedDict

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
