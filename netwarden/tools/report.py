"""The report people look at: a network map, the timeline of policy changes, the managed policies.

Pure rendering: `ReportData` (plain values) in, one self-contained HTML string (inline CSS and SVG, no
CDN, opens offline) or a standalone SVG out. The demo, `netwarden report` and `netwarden replay`
collect the data; this module only draws it.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping, Sequence

import yaml

EdgeStatus = Literal["allowed", "denied", "anomalous"]
NodeState = Literal["normal", "learning", "tightened", "quarantined"]

EDGE_COLOURS: dict[str, str] = {"allowed": "#2f9e44", "denied": "#868e96", "anomalous": "#e03131"}
NODE_COLOURS: dict[str, str] = {
    "normal": "#e7f5ff",
    "learning": "#fff9db",
    "tightened": "#fff4e6",
    "quarantined": "#ffe3e3",
}
NODE_STROKES: dict[str, str] = {"normal": "#1c7ed6", "learning": "#f59f00", "tightened": "#f76707", "quarantined": "#c92a2a"}
WORLD = "world"


@dataclass(frozen=True)
class MapNode:
    """A workload (or the outside world) on the map."""

    id: str
    namespace: str
    label: str
    purpose: str = ""
    state: NodeState = "normal"


@dataclass(frozen=True)
class MapEdge:
    source: str
    target: str
    port: int | None
    protocol: str
    status: EdgeStatus
    count: int = 1


@dataclass(frozen=True)
class TimelineEntry:
    at: float  # seconds since the start of the story
    action: str
    target: str
    detail: str
    evidence: tuple[str, ...] = ()
    latency_ms: float | None = None


@dataclass
class ReportData:
    title: str
    subtitle: str = ""
    nodes: list[MapNode] = field(default_factory=list)
    edges: list[MapEdge] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    policies: list[Mapping] = field(default_factory=list)
    summary: Mapping[str, str | int | float] = field(default_factory=dict)
    #: Where containment is weak (netwarden.model.containment): one sentence each, shown above the map.
    weak_containment: list[str] = field(default_factory=list)


# --- layout -------------------------------------------------------------------------------------

COLUMN_WIDTH = 300
ROW_HEIGHT = 74
NODE_W, NODE_H = 170, 46
MARGIN_TOP = 60


def layout(nodes: Sequence[MapNode]) -> tuple[dict[str, tuple[float, float]], list[tuple[str, float, float, float]], float, float]:
    """Namespaces become columns (the world last); nodes stack in their column.

    Returns node centres, namespace boxes (name, x, width, height) and the canvas size.
    """
    columns: dict[str, list[MapNode]] = {}
    for node in sorted(nodes, key=lambda n: (n.namespace == WORLD, n.namespace, n.label)):
        columns.setdefault(node.namespace, []).append(node)
    centres: dict[str, tuple[float, float]] = {}
    boxes = []
    tallest = max((len(c) for c in columns.values()), default=1)
    height = MARGIN_TOP + tallest * ROW_HEIGHT + 30
    for col, (namespace, members) in enumerate(columns.items()):
        x = 20 + col * COLUMN_WIDTH
        boxes.append((namespace, x, COLUMN_WIDTH - 30, height - 30))
        for row, node in enumerate(members):
            centres[node.id] = (x + 15 + NODE_W / 2, MARGIN_TOP + row * ROW_HEIGHT + NODE_H / 2)
    width = 20 + max(len(columns), 1) * COLUMN_WIDTH
    return centres, boxes, width, height


def render_map_svg(data: ReportData) -> str:
    """The network map as a standalone SVG document."""
    centres, boxes, width, height = layout(data.nodes)
    esc = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="network-map" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" font-family="sans-serif" font-size="12">',
        "<defs>",
    ]
    for status, colour in EDGE_COLOURS.items():
        parts.append(
            f'<marker id="arrow-{status}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        )
    parts.append("</defs>")
    parts.append(f'<rect width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>')
    for namespace, x, w, h in boxes:
        parts.append(
            f'<g class="namespace" data-namespace="{esc(namespace)}"><rect x="{x}" y="20" width="{w}" height="{h}" rx="10" '
            f'fill="#f8f9fa" stroke="#ced4da"/><text x="{x + 10}" y="40" font-weight="bold" fill="#495057">'
            f"{esc('the internet' if namespace == WORLD else 'namespace ' + namespace)}</text></g>"
        )
    same_column = 0
    for edge in sorted(data.edges, key=lambda e: ("allowed", "denied", "anomalous").index(e.status)):
        if edge.source not in centres or edge.target not in centres:
            continue
        (x1, y1), (x2, y2) = centres[edge.source], centres[edge.target]
        if x1 == x2:
            # Within a namespace: arc out to the right of the column, one lane per edge.
            same_column += 1
            x1 = x2 = x1 + NODE_W / 2
            y1, y2 = y1 + 6, y2 - 6 if y2 > y1 else y2 + 6
            mx, my = x1 + 24 + 14 * (same_column % 6) + abs(y2 - y1) * 0.25, (y1 + y2) / 2 + 11 * (same_column % 3)
        else:
            x1, y1, x2, y2 = _clip(x1, y1, x2, y2)
            mx, my = (x1 + x2) / 2, (y1 + y2) / 2 - 12
        label = f"{edge.port}/{edge.protocol}" if edge.port else edge.protocol
        dash = ' stroke-dasharray="5,4"' if edge.status == "denied" else ""
        parts.append(
            f'<g class="edge edge-{edge.status}" data-source="{esc(edge.source)}" data-target="{esc(edge.target)}">'
            f'<title>{esc(edge.source)} -> {esc(edge.target)} {esc(label)}: {edge.status}, {edge.count} flows</title>'
            f'<path d="M{x1:.1f},{y1:.1f} Q{mx:.1f},{my:.1f} {x2:.1f},{y2:.1f}" fill="none" '
            f'stroke="{EDGE_COLOURS[edge.status]}" stroke-width="{_width(edge.count):.1f}"{dash} '
            f'marker-end="url(#arrow-{edge.status})"/>'
            f'<text x="{mx:.1f}" y="{my - 3:.1f}" fill="{EDGE_COLOURS[edge.status]}" font-size="10" text-anchor="start">'
            f"{esc(label)}</text></g>"
        )
    for node in data.nodes:
        if node.id not in centres:
            continue
        cx, cy = centres[node.id]
        x, y = cx - NODE_W / 2, cy - NODE_H / 2
        mark = " (quarantined)" if node.state == "quarantined" else ""
        parts.append(
            f'<g class="node node-{node.state}" data-id="{esc(node.id)}"><title>{esc(node.id)} ({node.state})</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="8" fill="{NODE_COLOURS[node.state]}" '
            f'stroke="{NODE_STROKES[node.state]}" stroke-width="{3 if node.state == "quarantined" else 1.5}"/>'
            f'<text x="{cx:.1f}" y="{cy - 3:.1f}" text-anchor="middle" font-weight="bold">{esc(node.label)}{mark}</text>'
            f'<text x="{cx:.1f}" y="{cy + 13:.1f}" text-anchor="middle" fill="#495057" font-size="10">'
            f"{esc(node.purpose or node.state)}</text></g>"
        )
    parts.append(_legend(height))
    parts.append("</svg>")
    return "\n".join(parts)


def _width(count: int) -> float:
    return min(6.0, 1.2 + math.log10(max(count, 1)))


def _clip(x1: float, y1: float, x2: float, y2: float) -> tuple[float, float, float, float]:
    """Start and end edges at the node boxes' borders, not their centres."""
    dx, dy = x2 - x1, y2 - y1
    if dx == 0 and dy == 0:
        return x1, y1, x2, y2
    scale = min((NODE_W / 2) / abs(dx) if dx else math.inf, (NODE_H / 2) / abs(dy) if dy else math.inf)
    return x1 + dx * scale, y1 + dy * scale, x2 - dx * scale, y2 - dy * scale


def _legend(height: float) -> str:
    items = [f'<g class="legend" transform="translate(20,{height - 4:.0f})">']
    for i, (status, colour) in enumerate(EDGE_COLOURS.items()):
        items.append(
            f'<line x1="{i * 110}" y1="-4" x2="{i * 110 + 24}" y2="-4" stroke="{colour}" stroke-width="3"/>'
            f'<text x="{i * 110 + 30}" y="0" font-size="10">{status}</text>'
        )
    items.append("</g>")
    return "".join(items)


# --- the HTML page ------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#212529;background:#fff}
h1{margin:0 0 4px} .sub{color:#868e96;margin-bottom:18px}
section{margin:26px 0} .map{overflow-x:auto;border:1px solid #dee2e6;border-radius:8px;padding:8px}
table{border-collapse:collapse;width:100%} th,td{border-bottom:1px solid #e9ecef;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f8f9fa} td.num{text-align:right;font-variant-numeric:tabular-nums}
.ev{color:#495057;font-size:12px;margin:2px 0 0 0;padding-left:16px}
.summary{display:flex;gap:14px;flex-wrap:wrap} .card{border:1px solid #dee2e6;border-radius:8px;padding:10px 14px}
.card b{display:block;font-size:20px} pre{background:#f8f9fa;padding:10px;border-radius:6px;overflow-x:auto;font-size:12px}
details{margin:6px 0}
"""


def render_report_html(data: ReportData) -> str:
    esc = html.escape
    cards = "".join(
        f'<div class="card"><b>{esc(str(value))}</b>{esc(key)}</div>' for key, value in data.summary.items()
    )
    rows = []
    for entry in sorted(data.timeline, key=lambda e: e.at):
        evidence = "".join(f"<li>{esc(item)}</li>" for item in entry.evidence)
        latency = "" if entry.latency_ms is None else f"{entry.latency_ms:.0f}"
        rows.append(
            f'<tr class="timeline-entry" data-action="{esc(entry.action)}"><td class="num">{entry.at:.1f}s</td>'
            f"<td>{esc(entry.action)}</td><td>{esc(entry.target)}</td><td>{esc(entry.detail)}"
            f'{"<ul class=ev>" + evidence + "</ul>" if evidence else ""}</td><td class="num">{latency}</td></tr>'
        )
    policies = []
    for manifest in sorted(data.policies, key=lambda m: (m["metadata"].get("namespace") or "", m["metadata"]["name"])):
        meta = manifest["metadata"]
        where = meta.get("namespace") or manifest.get("kind", "")
        policies.append(
            f'<details class="policy"><summary>{esc(where)}/{esc(meta["name"])}</summary>'
            f"<pre>{esc(yaml.safe_dump(dict(manifest), sort_keys=False))}</pre></details>"
        )
    weak = ""
    if data.weak_containment:
        items = "".join(f'<li class="weak">{esc(line)}</li>' for line in data.weak_containment)
        weak = f'<section id="weak-containment"><h2>Weak containment ({len(data.weak_containment)})</h2><ul>{items}</ul></section>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(data.title)}</title><style>{_CSS}</style></head>
<body>
<h1>{esc(data.title)}</h1><div class="sub">{esc(data.subtitle)}</div>
<section id="summary"><div class="summary">{cards}</div></section>
{weak}
<section id="map"><h2>Network map</h2><div class="map">{render_map_svg(data)}</div></section>
<section id="timeline"><h2>Timeline of policy changes</h2>
<table><thead><tr><th>at</th><th>action</th><th>target</th><th>what and why</th><th>signal&#8594;policy ms</th></tr></thead>
<tbody>{''.join(rows) or '<tr><td colspan="5">no changes</td></tr>'}</tbody></table></section>
<section id="policies"><h2>Managed policies ({len(data.policies)})</h2>{''.join(policies) or '<p>none</p>'}</section>
</body></html>
"""


def merge_edges(edges: Iterable[MapEdge]) -> list[MapEdge]:
    """One edge per (source, target, port, protocol); the worst status wins, counts add up."""
    rank = {"allowed": 0, "denied": 1, "anomalous": 2}
    merged: dict[tuple, MapEdge] = {}
    for edge in edges:
        key = (edge.source, edge.target, edge.port, edge.protocol)
        old = merged.get(key)
        if old is None:
            merged[key] = edge
        else:
            status = edge.status if rank[edge.status] > rank[old.status] else old.status
            merged[key] = MapEdge(edge.source, edge.target, edge.port, edge.protocol, status, old.count + edge.count)
    return list(merged.values())


# --- from cluster objects -----------------------------------------------------------------------


def nodes_from_cluster(pods: Iterable[Mapping], policies: Iterable[Mapping]) -> list[MapNode]:
    """One node per workload identity netwarden labelled; its state read from the managed policies."""
    from netwarden.model import names  # local: keep the renderer importable without the core

    policies = list(policies)
    steps: dict[str, str] = {}
    quarantined: set[str] = set()
    for policy in policies:
        labels = (policy.get("metadata") or {}).get("labels") or {}
        if labels.get(names.LABEL_MANAGED_BY) != names.MANAGED_BY_VALUE:
            continue
        if labels.get(names.LABEL_POLICY_ROLE) == names.ROLE_QUARANTINE:
            instance = ((policy.get("spec") or {}).get("podSelector") or {}).get("matchLabels", {}).get(names.LABEL_INSTANCE)
            if instance:
                quarantined.add(instance)
            else:
                steps[labels.get(names.LABEL_IDENTITY, "")] = "quarantined"
        else:
            annotations = (policy.get("metadata") or {}).get("annotations") or {}
            steps.setdefault(labels.get(names.LABEL_IDENTITY, ""), annotations.get(names.ANNOTATION_STEP, "baseline"))
    nodes: dict[str, MapNode] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        identity = labels.get(names.LABEL_IDENTITY)
        if not identity:
            continue
        step = steps.get(identity, "baseline")
        state = {"tightened": "tightened", "quarantined": "quarantined", "learning": "learning"}.get(step, "normal")
        if labels.get(names.LABEL_INSTANCE) in quarantined:
            state = "quarantined"
        previous = nodes.get(identity)
        if previous is not None and previous.state == "quarantined":
            continue
        nodes[identity] = MapNode(identity, meta.get("namespace", ""), labels.get(names.LABEL_WORKLOAD, identity),
                                  labels.get(names.LABEL_PURPOSE, ""), state)  # type: ignore[arg-type]
    return sorted(nodes.values(), key=lambda n: n.id)


def timeline_from_events(events: Iterable[Mapping], started: float) -> list[TimelineEntry]:
    """netwarden's Events (reason Netwarden*) as timeline entries, seconds after `started` (epoch)."""
    from datetime import datetime

    entries = []
    for event in events:
        reason = event.get("reason") or ""
        if not reason.startswith("Netwarden"):
            continue
        stamp = event.get("lastTimestamp") or event.get("firstTimestamp") or event.get("eventTime")
        try:
            at = datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() - started
        except ValueError:
            at = 0.0
        involved = event.get("involvedObject") or {}
        entries.append(TimelineEntry(max(at, 0.0), reason.removeprefix("Netwarden"),
                                     f"{involved.get('namespace', '')}/{involved.get('name', '')}", event.get("message") or ""))
    return entries
