"""`netwarden report`: the HTML report (and SVG map) of a live cluster, through the API."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from kubernetes import client

from netwarden.model import names
from netwarden.platform.kube import load_api_client
from netwarden.model.netpol_eval import ExternalIP, NamespaceInfo, PodInfo, PolicySet
from netwarden.tools.report import (MapEdge, ReportData, merge_edges, nodes_from_cluster, render_map_svg, render_report_html,
                              timeline_from_events)
from netwarden.reconciler.core.types import SignalError
from netwarden.reconciler.signals.parse import parse_flow_any
from netwarden.reconciler.signals.streams import iter_json_lines


def edges_from_flows(path: str, pods: list[dict[str, Any]], policy_set: PolicySet, limit: int = 1_000_000) -> list[MapEdge]:
    """Aggregate recorded flows into map edges; each edge's status is what the current policies say."""
    by_ip = {(p.get("status") or {}).get("podIP"): p for p in pods if (p.get("status") or {}).get("podIP")}
    by_name = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}
    counts: Counter[tuple[str, str, int | None, str, bool]] = Counter()
    ends: dict[str, PodInfo | ExternalIP] = {}

    def resolve(endpoint: Any) -> tuple[str, PodInfo | ExternalIP] | None:
        pod = by_name.get((endpoint.namespace, endpoint.pod)) or by_ip.get(endpoint.ip)
        if pod is not None:
            labels = pod["metadata"].get("labels") or {}
            key = labels.get(names.LABEL_IDENTITY) or f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
            return key, PodInfo(pod["metadata"]["namespace"], pod["metadata"]["name"], labels, endpoint.ip)
        if endpoint.ip:
            return endpoint.ip, ExternalIP(endpoint.ip)
        return None

    with open(path, "rb") as handle:
        for number, record in iter_json_lines(handle):
            if number > limit:
                break
            try:
                if isinstance(record, SignalError):
                    continue
                flow = parse_flow_any(record)
            except SignalError:
                continue
            if flow.reply:
                continue
            source, destination = resolve(flow.source), resolve(flow.destination)
            if source is None or destination is None:
                continue
            ends.setdefault(source[0], source[1])
            ends.setdefault(destination[0], destination[1])
            counts[(source[0], destination[0], flow.port, flow.protocol, flow.policy_dropped)] += 1
    edges = []
    for (src, dst, port, protocol, dropped), count in counts.items():
        allowed = policy_set.is_allowed(ends[src], ends[dst], port, protocol)
        status = "denied" if dropped or not allowed else "allowed"
        edges.append(MapEdge(src, dst, port, protocol, status, count))  # type: ignore[arg-type]
    return merge_edges(edges)


def collect_report(api: client.ApiClient, flows: str | None = None, since: float | None = None) -> ReportData:
    core, net = client.CoreV1Api(api), client.NetworkingV1Api(api)
    to_dict = api.sanitize_for_serialization
    pods = [to_dict(p) for p in core.list_pod_for_all_namespaces().items]
    policies = [to_dict(p) for p in net.list_network_policy_for_all_namespaces(
        label_selector=f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY_VALUE}").items]
    namespaces = [to_dict(n) for n in core.list_namespace().items]
    events = [to_dict(e) for e in core.list_event_for_all_namespaces().items]
    timeline = timeline_from_events(events, since if since is not None else _earliest(events))
    nodes = nodes_from_cluster(pods, policies)
    edges: list[MapEdge] = []
    if flows:
        all_policies = [to_dict(p) for p in net.list_network_policy_for_all_namespaces().items]
        policy_set = PolicySet(all_policies, [NamespaceInfo(n["metadata"]["name"], n["metadata"].get("labels") or {})
                                              for n in namespaces])
        edges = edges_from_flows(flows, pods, policy_set)
    from netwarden.tools.report import MapNode

    known = {n.id for n in nodes}
    for edge in edges:
        for end in (edge.source, edge.target):
            if end not in known:
                known.add(end)
                nodes.append(MapNode(end, "world" if "/" not in end else end.split("/")[0], end))
    steps = Counter(n.state for n in nodes)
    from netwarden.platform.kube import KubeClient
    from netwarden.reconciler.admin_backend import list_admin_quarantines, weak_containment_findings

    kube = KubeClient(api)
    policies = policies + list_admin_quarantines(kube)
    weak = [finding["message"] for finding in weak_containment_findings(kube)]
    return ReportData(
        title="netwarden report",
        subtitle=time.strftime("generated %Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        nodes=nodes, edges=edges, timeline=timeline, policies=policies,
        summary={"workloads": len([n for n in nodes if n.namespace != "world"]), "managed policies": len(policies),
                 "tightened": steps.get("tightened", 0), "quarantined": steps.get("quarantined", 0),
                 "weak containment": len(weak)},
        weak_containment=weak,
    )


def _earliest(events: list[dict[str, Any]]) -> float:
    from datetime import datetime

    stamps = []
    for event in events:
        stamp = event.get("firstTimestamp") or event.get("eventTime")
        if stamp and (event.get("reason") or "").startswith("Netwarden"):
            try:
                stamps.append(datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp())
            except ValueError:
                pass
    return min(stamps, default=time.time())


def run_report(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    data = collect_report(load_api_client(args.kubeconfig), args.flows)
    Path(args.out).write_text(render_report_html(data))
    out(f"report: {args.out} ({len(data.nodes)} workloads, {len(data.policies)} managed policies, "
        f"{len(data.timeline)} timeline entries)")
    if args.svg:
        Path(args.svg).write_text(render_map_svg(data))
        out(f"map: {args.svg}")
    return 0


def add_report_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="write a self-contained HTML report of a cluster netwarden manages")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then KUBECONFIG / ~/.kube/config)")
    parser.add_argument("--flows", help="recorded flows (Hubble/Calico/generic JSON lines) to draw as edges")
    parser.add_argument("--out", default="netwarden-report.html", help="HTML file to write")
    parser.add_argument("--svg", help="also write the network map as an SVG file")
    parser.set_defaults(func=run_report)
