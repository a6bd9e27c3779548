"""Snapshot and restore of what the engine learned about one workload, as plain data.

A leader change (single mode) or a partition moving to another engine (scale-out mode) must not
forget baselines: the new owner restores them and goes on deciding as the old one would have. What
is kept, per workload: the behaviour baseline (edges, namespaces, novel edges, the rate EWMA, the
drop window), the decaying risk (workload, workload-level and per-pod scores, firing alerts, the
evidence), the recent edges the what-if replays, the step state (escalation level, cooldown,
health at the last tightening, intents to roll back to). Not the specs a policy had: those live in
its history annotation, on the policy, where the next leader finds them.

Not kept: pending approvals (approve mode proposes again), the policies of the last decision (only
what `explain` and a rollback's evidence read of it), the guard rails' windows and the alert de-duplication memory
(cluster-wide, not per workload), and the config (the restoring engine's own applies).

The snapshot is bounded by the config caps (edges, novel edges, namespaces, evidence, recent
edges) and versioned: a snapshot of another version is refused (`SnapshotError`, counted
by the adapter), and that workload learns again.

Rolling upgrades read both ways within one VERSION. The keys a reader of commit e0fbee7 requires are
still written, with values that change nothing (`LEGACY_DECISION` in a decision, `history: null`, which
that reader takes for an empty history, so its automatic rollback reads the policy's annotation); a reader ignores
keys it does not know (a snapshot of e0fbee7 carries them), and a snapshot that still does not fit
is a `SnapshotError` ("malformed"), never a KeyError that stops the restore loop. `to_bytes` adds a byte bound for the stores
(Kafka's message size, a ConfigMap's 1 MiB). Pure: no clock, no I/O.
"""

from __future__ import annotations

import json
import zlib
from collections import deque
from typing import Any, Iterable

from netwarden.model.policy import Peer, PolicyIntent, PortSpec, Rule
from netwarden.reconciler.core.decision import Decision, QuarantinedPod, WorkloadState
from netwarden.reconciler.core.behaviour import Baseline, FlowView
from netwarden.reconciler.core.config import CoreConfig
from netwarden.reconciler.core.risk import Deviation, RiskState, _Decaying
from netwarden.reconciler.core.whatif import RecentFlows, WhatIf
from netwarden.model.errors import NetwardenError

VERSION = 1
#: Largest encoded snapshot of one workload; above it `to_bytes` refuses (the caps keep real ones far below).
MAX_BYTES = 512 * 1024

Data = dict[str, Any]


class SnapshotError(NetwardenError, ValueError):
    """A snapshot that cannot be restored (other version, malformed, too large); `reason` is a metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- policy intents -----------------------------------------------------------------------------


def _rule_data(rule: Rule) -> Data:
    return {
        "peers": [[p.kind, p.value, p.namespace] for p in rule.peers],
        "ports": [[p.protocol, p.port, p.end_port] for p in rule.ports],
    }


def _rule(data: Data) -> Rule:
    return Rule(tuple(Peer(k, v, ns) for k, v, ns in data["peers"]), tuple(PortSpec(pr, p, e) for pr, p, e in data["ports"]))


def intent_data(intent: PolicyIntent) -> Data:
    return {
        "namespace": intent.namespace, "identity": intent.identity, "step": intent.step,
        "ingress": [_rule_data(r) for r in intent.ingress], "egress": [_rule_data(r) for r in intent.egress],
        "enforcing": intent.enforcing, "excluded": list(intent.excluded_instances), "instance": intent.instance,
        "dns": intent.include_dns,
    }


def intent_of(data: Data) -> PolicyIntent:
    return PolicyIntent(
        data["namespace"], data["identity"], data["step"], tuple(_rule(r) for r in data["ingress"]),
        tuple(_rule(r) for r in data["egress"]), data["enforcing"], tuple(data["excluded"]), data["instance"], data["dns"],
    )


# --- baseline -----------------------------------------------------------------------------------


def _edges(items: Iterable[tuple[tuple, float]]) -> list[list[Any]]:
    return [[list(edge), seen] for edge, seen in items]


def _edge_map(rows: list[list[Any]]) -> dict[tuple, float]:
    return {tuple(edge): seen for edge, seen in rows}


_BASELINE_FIELDS = (
    "first_seen", "learning_until", "flows_seen", "learning", "evicted_edges", "evicted_novel", "bucket",
    "bucket_count", "rate_mean", "rate_var", "buckets_seen", "spike_threshold", "spiked_bucket", "drop_window",
    "drop_count", "drop_reported",
)


def baseline_data(b: Baseline) -> Data:
    out: Data = {name: getattr(b, name) for name in _BASELINE_FIELDS}
    out["edges"] = _edges(b.edges.items())
    out["namespaces"] = [[ns, seen] for ns, seen in b.namespaces.items()]
    out["novel"] = _edges(b.novel.items())
    return out


def baseline_of(data: Data, identity: str, namespace: str, config: CoreConfig) -> Baseline:
    b = Baseline(identity, namespace, data["first_seen"], config)
    for name in _BASELINE_FIELDS:
        setattr(b, name, data[name])
    b.edges = _edge_map(data["edges"])
    b.namespaces = {ns: seen for ns, seen in data["namespaces"]}
    b.novel = _edge_map(data["novel"])
    return b


# --- recent flows (the what-if's memory) --------------------------------------------------------

_VIEW_FIELDS = (
    "identity", "namespace", "instance", "pod", "direction", "peer_kind", "peer_value", "peer_namespace", "port",
    "protocol", "time", "dropped", "peer_ip", "peer_purpose",
)


def _view_data(view: FlowView) -> list[Any]:
    return [getattr(view, name) for name in _VIEW_FIELDS]


def _view(row: list[Any]) -> FlowView:
    view = FlowView(*row)
    view.key = view.edge
    return view


def recent_data(recent: RecentFlows) -> list[list[Any]]:
    return [[_view_data(view), count] for view, count in recent._edges.values()]


def recent_of(rows: list[list[Any]], maxlen: int) -> RecentFlows:
    recent = RecentFlows(maxlen)
    for row, count in rows[-maxlen:]:
        view = _view(row)
        recent._edges[view.edge] = [view, count]
    return recent


# --- risk ---------------------------------------------------------------------------------------


def deviation_data(dev: Deviation) -> Data:
    return dev.to_dict()


def deviation_of(data: Data) -> Deviation:
    fields = dict(data)
    fields["details"] = fields.get("details", {})
    return Deviation(**fields)


def risk_data(risk: RiskState) -> Data:
    return {
        "workload": [risk._workload.value, risk._workload.as_of],
        "workload_level": [risk._workload_level.value, risk._workload_level.as_of],
        "instances": {i: [d.value, d.as_of] for i, d in risk._instances.items()},
        "alerts": [deviation_data(a) for a in risk._alerts.values()],
        "evidence": [deviation_data(e) for e in risk._evidence],
    }


def risk_of(data: Data, identity: str, config: CoreConfig) -> RiskState:
    risk = RiskState(identity, config)
    risk._workload = _Decaying(*data["workload"])
    risk._workload_level = _Decaying(*data["workload_level"])
    risk._instances = {i: _Decaying(v, t) for i, (v, t) in data["instances"].items()}
    alerts = [deviation_of(a) for a in data["alerts"]]
    risk._alerts = {a.key: a for a in alerts if a.key is not None}
    evidence = []
    for row in data["evidence"][-config.max_evidence:]:
        dev = deviation_of(row)
        firing = risk._alerts.get(dev.key) if dev.key is not None else None
        # A firing alert's evidence is the very object held as firing (its contribution is checked by identity).
        evidence.append(firing if firing is not None and firing == dev else dev)
    risk._evidence = evidence
    return risk


# --- step state ---------------------------------------------------------------------------------


def _health(data: dict[str, tuple[bool, int]] | None) -> dict[str, list[Any]] | None:
    return None if data is None else {pod: [ready, restarts] for pod, (ready, restarts) in data.items()}


def _health_of(data: dict[str, list[Any]] | None) -> dict[str, tuple[bool, int]] | None:
    return None if data is None else {pod: (bool(r), int(n)) for pod, (r, n) in data.items()}


_DECISION_FIELDS = (
    "action", "identity", "namespace", "time", "mode", "effect", "reason", "score", "step_before", "step_after",
    "expires_at", "level", "blast_pods", "automatic",
)


#: Keys the previous shape of a decision had, written with the value that says "nothing to restore"
#: (a reader of commit e0fbee7 requires them; this one ignores them). Drop them with a VERSION bump.
LEGACY_DECISION: Data = {"restore_revision": None, "restore_spec": None}


def decision_data(decision: Decision | None) -> Data | None:
    if decision is None:
        return None
    out: Data = {name: getattr(decision, name) for name in _DECISION_FIELDS}
    out.update(LEGACY_DECISION)
    out.update(instances=list(decision.instances), pods=list(decision.pods),
               evidence=[deviation_data(e) for e in decision.evidence])
    what_if = decision.what_if
    out["what_if"] = None if what_if is None else {
        "dropped": [_view_data(v) for v in what_if.dropped_flows],
        "dropped_baseline": [_view_data(v) for v in what_if.dropped_baseline_flows], "checked": what_if.checked,
    }
    return out


def decision_of(data: Data | None) -> Decision | None:
    if data is None:
        return None
    fields = {name: data[name] for name in _DECISION_FIELDS}
    return Decision(**fields, instances=tuple(data["instances"]), pods=tuple(data["pods"]),
                    evidence=tuple(deviation_of(e) for e in data["evidence"]), what_if=_what_if(data["what_if"]))


def _what_if(data: Data | None) -> WhatIf | None:
    if data is None:
        return None
    return WhatIf(tuple(_view(v) for v in data["dropped"]), tuple(_view(v) for v in data["dropped_baseline"]), data["checked"])


def state_data(state: WorkloadState) -> Data:
    return {
        "base_intent": intent_data(state.base_intent), "intent": intent_data(state.intent), "step": state.step,
        "step_since": state.step_since, "expires_at": state.expires_at, "automatic": state.automatic,
        "before": [intent_data(i) for i in state.before],
        "quarantined": [[q.instance, q.pod, q.since, q.expires_at, q.restored] for q in state.quarantined.values()],
        "alerted_level": state.alerted_level, "cooldown_until": state.cooldown_until, "changed_at": state.changed_at,
        "health": _health(state.health), "health_snapshot": _health(state.health_snapshot), "restored": state.restored,
        "last_decision": decision_data(state.last_decision),
    }


def state_of(data: Data, identity: str, namespace: str, max_history: int) -> WorkloadState:
    state = WorkloadState.new(identity, namespace, intent_of(data["base_intent"]), max_history)
    state.intent = intent_of(data["intent"])
    state.step, state.step_since, state.expires_at = data["step"], data["step_since"], data["expires_at"]
    state.automatic = data["automatic"]
    state.before = deque((intent_of(i) for i in data["before"]), maxlen=max_history)
    state.quarantined = {row[0]: QuarantinedPod(*row) for row in data["quarantined"]}
    state.alerted_level, state.cooldown_until, state.changed_at = data["alerted_level"], data["cooldown_until"], data["changed_at"]
    state.health = _health_of(data["health"]) or {}
    state.health_snapshot = _health_of(data["health_snapshot"])
    state.restored = data["restored"]
    state.last_decision = decision_of(data["last_decision"])
    return state


# --- one workload -------------------------------------------------------------------------------


def workload_data(identity: str, namespace: str, baseline: Baseline, risk: RiskState, recent: RecentFlows,
                  state: WorkloadState, taken_at: float) -> Data:
    """Everything `restore` needs for one workload, as JSON-ready plain data."""
    return {
        "v": VERSION, "identity": identity, "namespace": namespace, "taken_at": taken_at,
        "baseline": baseline_data(baseline), "risk": risk_data(risk), "recent": recent_data(recent),
        "state": state_data(state), "history": None,  # the key a reader of e0fbee7 reads; null: empty
    }


def parts_of(data: Data, config: CoreConfig) -> tuple[Baseline, RiskState, RecentFlows, WorkloadState]:
    """A checked snapshot's workload, read whole before anything is replaced; SnapshotError when a part does
    not fit (a shape this reader does not know), so the caller counts it and that workload learns again."""
    identity, namespace = data["identity"], data["namespace"]
    try:
        return (baseline_of(data["baseline"], identity, namespace, config), risk_of(data["risk"], identity, config),
                recent_of(data["recent"], config.what_if_window),
                state_of(data["state"], identity, namespace, config.max_history))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise SnapshotError("malformed", f"snapshot of {identity} does not fit this reader: "
                                         f"{type(exc).__name__} {exc}") from None


def check(data: Any) -> Data:
    """The snapshot if it can be restored; else SnapshotError saying why."""
    if not isinstance(data, dict):
        raise SnapshotError("malformed", f"a snapshot is an object, not {type(data).__name__}")
    if data.get("v") != VERSION:
        raise SnapshotError("version", f"snapshot version {data.get('v')!r}, this netwarden reads {VERSION}")
    missing = [k for k in ("identity", "namespace", "baseline", "risk", "recent", "state") if k not in data]
    if missing:
        raise SnapshotError("malformed", f"snapshot lacks {', '.join(missing)}")
    return data


def to_bytes(data: Data) -> bytes:
    """Compact JSON, deflated (edges repeat their peers and ports: ~5x smaller); bounded by MAX_BYTES."""
    raw = zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 1)
    if len(raw) > MAX_BYTES:
        raise SnapshotError("too-large", f"snapshot of {data.get('identity')} is {len(raw)} bytes (max {MAX_BYTES})")
    return raw


def from_bytes(raw: bytes) -> Data:
    try:
        data = json.loads(zlib.decompress(raw))
    except (zlib.error, ValueError) as exc:
        raise SnapshotError("malformed", f"snapshot is not deflated JSON: {exc}") from exc
    return check(data)
