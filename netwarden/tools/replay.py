"""`netwarden replay`: what netwarden would have learned and done on your own recorded data.

Reads a Hubble flow export (or Calico / generic JSON lines), optionally Falco and Alertmanager
files, and a `kubectl get pods -A -o json` snapshot; drives the same DecisionEngine the live
reconciler runs, offline and in dry-run (nothing is written anywhere). Streams: memory depends on
workloads and distinct peers, not on the file's length.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

import yaml

from netwarden.model import names
from netwarden.model.identity import OwnerRef, PodOrigin, guess_workload
from netwarden.reconciler.core.decision import Decision
from netwarden.reconciler.core.pods import PodRef
from netwarden.reconciler.core.config import CoreConfig
from netwarden.reconciler.core.engine import DecisionEngine
from netwarden.reconciler.core.types import MetricAlert, SecurityAlert, SignalError
from netwarden.reconciler.signals.alertmanager import parse_alertmanager_payload
from netwarden.reconciler.signals.falco import parse_falco_event
from netwarden.reconciler.signals.parse import parse_flow_lines
from netwarden.reconciler.signals.streams import SignalCounters, iter_json_lines, iter_line_blocks

TICK_SECONDS = 1.0


def pod_refs_from_snapshot(snapshot: dict[str, Any]) -> list[PodRef]:
    """PodRefs from a PodList. Pods netwarden labelled keep their identity; others are resolved
    from ownerReferences and names, as the webhook would without API access."""
    refs = []
    for pod in snapshot.get("items") or []:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        identity = labels.get(names.LABEL_IDENTITY)
        if not identity:
            origin = PodOrigin(meta.get("namespace", "default"), meta.get("name", ""), meta.get("generateName", ""), labels,
                               tuple(OwnerRef.from_dict(r) for r in meta.get("ownerReferences") or []))
            identity = guess_workload(origin).identity
        refs.append(PodRef(identity, meta.get("namespace", "default"), meta.get("name", ""),
                           labels.get(names.LABEL_INSTANCE) or meta.get("uid") or meta.get("name"),
                           (pod.get("status") or {}).get("podIP"), labels.get(names.LABEL_PURPOSE)))
    return refs


def load_alerts(falco: str | None, alertmanager: str | None, counters: SignalCounters) -> list[tuple[float, Any]]:
    """Alerts are small next to flows: load them, sort by time, and merge them into the flow stream."""
    alerts: list[tuple[float, Any]] = []
    if falco:
        with open(falco, "rb") as handle:
            for _, record in iter_json_lines(handle):
                try:
                    if isinstance(record, SignalError):
                        raise record
                    alert = parse_falco_event(record)
                    alerts.append((alert.time, alert))
                    counters.record_ok("falco")
                except SignalError as exc:
                    counters.record_error("falco", exc)
    if alertmanager:
        text = Path(alertmanager).read_text()
        payloads = [json.loads(line) for line in text.splitlines() if line.strip()] if not text.lstrip().startswith("{\n") \
            else [json.loads(text)]
        for payload in payloads:
            try:
                for alert in parse_alertmanager_payload(payload):
                    alerts.append((alert.time, alert))
                    counters.record_ok("alertmanager")
            except SignalError as exc:
                counters.record_error("alertmanager", exc)
    return sorted(alerts, key=lambda pair: pair[0])


class Progress:
    """A one-line progress bar on stderr, by bytes read of the input file."""

    def __init__(self, handle: IO[bytes], total: int, stream: IO[str] = sys.stderr, enabled: bool = True) -> None:
        self.handle, self.total, self.stream, self.enabled = handle, max(total, 1), stream, enabled
        self.last = 0.0

    def update(self, flows: int, started: float, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < 0.5):
            return
        self.last = now
        done = min(self.handle.tell() / self.total, 1.0)
        bar = "#" * int(done * 30)
        rate = flows / max(now - started, 1e-9)
        self.stream.write(f"\r[{bar:<30}] {done * 100:5.1f}%  {flows:,} flows  {rate:,.0f}/s")
        self.stream.flush()

    def finish(self, flows: int, started: float) -> None:
        self.update(flows, started, force=True)
        if self.enabled:
            self.stream.write("\n")


@dataclass
class ReplayResult:
    flows: int = 0
    seconds: float = 0.0
    decisions: list[Decision] = field(default_factory=list)
    counters: SignalCounters = field(default_factory=SignalCounters)
    peak_rss_mib: float = 0.0
    engine: DecisionEngine | None = None
    #: The first alerts attributed to no workload: (what the alert was, reason, why in words).
    unattributed: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def flows_per_second(self) -> float:
        return self.flows / self.seconds if self.seconds else 0.0


def replay(
    flows_path: str,
    pods: list[PodRef],
    *,
    config: CoreConfig,
    alerts: list[tuple[float, Any]] = (),  # type: ignore[assignment]
    on_decision: Callable[[Decision], None] = lambda d: None,
    progress: bool = True,
) -> ReplayResult:
    engine = DecisionEngine(config)
    for ref in pods:
        engine.upsert_pod(ref)
    result = ReplayResult(engine=engine)
    pending = list(alerts)
    next_tick: float | None = None
    started = time.monotonic()

    def emit(decisions: list[Decision]) -> None:
        for decision in decisions:
            result.decisions.append(decision)
            on_decision(decision)

    opener = sys.stdin.buffer if flows_path == "-" else open(flows_path, "rb")
    total = 0 if flows_path == "-" else os.path.getsize(flows_path)
    with opener as handle:
        bar = Progress(handle, total, enabled=progress and flows_path != "-")
        counters = result.counters
        ingest_flows, tick = engine.ingest_flows, engine.tick
        accepted: dict[str, int] = {}
        flows = 0
        for first, block in iter_line_blocks(handle):
            if isinstance(block, SignalError):
                counters.record_error("flows", block)
                continue
            parsed = parse_flow_lines(block, first)
            for _, error, _ in parsed.rejected:
                counters.record_error("flows", error)
            for fmt, n in parsed.formats.items():
                accepted[fmt] = accepted.get(fmt, 0) + n
            batch = parsed.flows
            i, n = 0, len(batch)
            while i < n:
                at = batch[i].time
                while pending and pending[0][0] <= at:
                    alert_at, alert = pending.pop(0)
                    emit(_ingest_alert(engine, alert, alert_at, result))
                if next_tick is None or at >= next_tick:
                    emit(ingest_flows((batch[i],)))
                    emit(tick(at))
                    next_tick = at + TICK_SECONDS
                    i += 1
                    continue
                # The run of flows before the next alert or tick is due: one call, as flow by flow.
                limit = min(next_tick, pending[0][0]) if pending else next_tick
                j = i + 1
                while j < n and batch[j].time < limit:
                    j += 1
                emit(ingest_flows(batch[i:j]))
                i = j
            flows += len(parsed.flows)
            bar.update(flows, started)
        result.flows = flows
        for fmt, n in accepted.items():
            counters.record_ok(fmt, n)
        bar.finish(result.flows, started)
    for at, alert in pending:
        emit(_ingest_alert(engine, alert, at, result))
    result.seconds = time.monotonic() - started
    result.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


#: Unattributed alerts listed one by one in the summary (all are counted by reason).
MAX_UNATTRIBUTED_LISTED = 20


def _ingest_alert(engine: DecisionEngine, alert: Any, at: float, result: ReplayResult) -> list[Decision]:
    if isinstance(alert, SecurityAlert):
        decisions, name = engine.ingest_alert(alert, at), f"falco {alert.rule!r}"
    elif isinstance(alert, MetricAlert):
        decisions, name = engine.ingest_metric_alert(alert, at), f"alertmanager {alert.alertname!r}"
    else:
        return []
    where = engine.last_alert_attribution
    if where is not None and where.reason is not None and len(result.unattributed) < MAX_UNATTRIBUTED_LISTED:
        result.unattributed.append((name, where.reason, where.detail))
    return decisions


def format_decision(decision: Decision) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(decision.time))
    target = decision.identity + (f" pods {','.join(decision.pods)}" if decision.pods else "")
    lines = [f"{stamp}  {decision.action:<18} {target}  score {decision.score:.1f}  ({decision.effect}) {decision.reason}"]
    for deviation in decision.evidence[:5]:
        lines.append(f"    evidence: {deviation.kind} (+{deviation.weight:g}) {deviation.summary}")
    if decision.what_if is not None and getattr(decision.what_if, "dropped_flows", None):
        lines.append(f"    what-if: would drop {len(decision.what_if.dropped_flows)} recent flows")
    return "\n".join(lines)


def run_replay(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    data: dict[str, Any] = {}
    if args.config:
        data = yaml.safe_load(Path(args.config).read_text()) or {}
    data["default_mode"] = names.MODE_DRY_RUN  # replay never acts: it says what it would do
    config = CoreConfig.from_mapping(data)
    pods = pod_refs_from_snapshot(json.loads(Path(args.pods).read_text())) if args.pods else []
    counters = SignalCounters()
    alerts = load_alerts(args.falco, args.alertmanager, counters)
    show_progress = not args.quiet and sys.stderr.isatty()

    def print_decision(decision: Decision) -> None:
        if show_progress:
            sys.stderr.write("\r\033[K")  # clear the progress line before printing above it
        out(format_decision(decision))

    result = replay(args.flows, pods, config=config, alerts=alerts, on_decision=print_decision, progress=show_progress)
    for key, value in counters.accepted.items():
        result.counters.accepted[key] += value
    for key, value in counters.rejected.items():
        result.counters.rejected[key] += value
    engine = result.engine
    assert engine is not None
    last = max((d.time for d in result.decisions), default=0.0)
    out("")
    out(f"learned baselines ({len(engine.workloads())} workloads):")
    for row in engine.status(last or time.time()):
        baseline = engine.baseline_of(row.identity)
        edges = len(baseline.edges) if baseline is not None else 0
        crossed = len(baseline.namespaces) if baseline is not None else 0
        out(f"  {row.identity:<50} learned edges {edges:>4}  namespaces crossed {crossed:>2}  "
            f"score {row.score:6.1f}  step {row.step}")
    unresolved = engine.counters.unresolved_flows
    if unresolved:
        out(f"flows not attributed to any workload: {unresolved:,}" + ("" if args.pods else " (give --pods to map IPs to workloads)"))
    by_reason = engine.counters.unattributed_by_reason
    if by_reason:
        out(f"alerts not attributed to any workload: {sum(by_reason.values())} ("
            + ", ".join(f"{reason} x{n}" for reason, n in sorted(by_reason.items())) + ")"
            + ("" if args.pods else " (give --pods to map pods to workloads)"))
        for name, reason, detail in result.unattributed:
            out(f"  {name}: {reason}: {detail}")
    rejected = sum(result.counters.rejected.values())
    out(f"decisions: {len(result.decisions)} (dry-run: nothing was written)")
    out(f"records rejected: {rejected}" + "".join(f"\n  {fmt}: {reason} x{n}"
                                                 for (fmt, reason), n in sorted(result.counters.rejected.items())))
    out(f"throughput: {result.flows:,} flows in {result.seconds:.1f}s = {result.flows_per_second:,.0f} flows/s; "
        f"peak memory {result.peak_rss_mib:.0f} MiB")
    return 0


def add_replay_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("replay", help="what netwarden would have done on recorded flows (offline, dry-run)",
                                   description=__doc__)
    parser.add_argument("--flows", required=True, help="Hubble/Calico/generic JSON-lines flow file, or - for stdin")
    parser.add_argument("--pods", help="`kubectl get pods -A -o json` snapshot (maps IPs to workloads)")
    parser.add_argument("--falco", help="Falco json_output / falcosidekick JSON lines")
    parser.add_argument("--alertmanager", help="Alertmanager webhook payloads (one JSON document, or JSON lines)")
    parser.add_argument("--config", help="reconciler core configuration (YAML)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_replay)
