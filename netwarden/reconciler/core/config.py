"""Every tunable of the decision core, with its default and why, in one frozen value.

The live reconciler and the offline replay build one `CoreConfig` (usually from a YAML mapping via
`CoreConfig.from_mapping`) and hand it to the engine; nothing in the core reads the environment.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from netwarden.model import names
from netwarden.model.errors import ConfigError

#: Deviation kinds (defined here so the config can validate weight keys; risk.py re-exports them).
NEW_PEER = "new-peer"
NEW_NAMESPACE = "new-namespace"
WORLD_EGRESS = "world-egress"
RATE_SPIKE = "rate-spike"
POLICY_DROPS = "policy-drops"
SECURITY_ALERT = "security-alert"
METRIC_ALERT = "metric-alert"
FLOW_DEVIATION_KINDS = (NEW_PEER, NEW_NAMESPACE, WORLD_EGRESS, RATE_SPIKE, POLICY_DROPS)

FALCO_PRIORITIES = ("emergency", "alert", "critical", "error", "warning", "notice", "informational", "debug")
#: Key used for an Alertmanager severity label the config does not name.
DEFAULT_SEVERITY = "default"


def _frozen(mapping: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class CoreConfig:
    """Tunables of behaviour learning, scoring, stepping and guard rails (times in seconds)."""

    # --- learning -----------------------------------------------------------------------------
    #: A workload's baseline learns for this long after its first flow ...
    learning_seconds: float = 300.0
    #: ... or until it has seen this many flows, whichever comes first.
    learning_max_flows: int = 5000
    #: Learned edges (direction, peer, port, protocol) kept per workload; least recently seen evicted.
    max_peers_per_workload: int = 256
    #: Distinct namespaces remembered per workload.
    max_namespaces_per_workload: int = 64
    #: Novel (post-learning) edges remembered so each one is reported once, not per flow.
    max_novel_per_workload: int = 128

    # --- traffic rate -------------------------------------------------------------------------
    #: Flows are counted in fixed buckets of this length; the EWMA runs over bucket counts.
    rate_bucket_seconds: float = 10.0
    #: EWMA weight of the newest bucket (0 < alpha <= 1).
    rate_alpha: float = 0.1
    #: A bucket is a spike when its count exceeds mean + z * stddev ...
    rate_spike_z: float = 4.0
    #: ... and at least this many flows (so a quiet workload's 3 flows are no spike) ...
    rate_spike_min_flows: int = 50
    #: ... and the EWMA has seen this many buckets.
    rate_min_buckets: int = 6
    #: A spike within this many buckets of the last spiking one continues its episode: one sustained
    #: spike is one anomaly, whatever dips its delivery shows (flows arrive in batches, late under load).
    rate_spike_gap_buckets: int = 6
    #: Floor for the standard deviation, as a fraction of the mean (a flat history is not a zero sd).
    rate_min_stddev_fraction: float = 0.25

    # --- policy drops -------------------------------------------------------------------------
    #: A burst is this many policy-dropped flows of one workload ...
    drop_burst_flows: int = 20
    #: ... within one window of this length.
    drop_burst_window_seconds: float = 60.0

    # --- scoring ------------------------------------------------------------------------------
    #: Weight per flow-derived deviation kind.
    deviation_weights: Mapping[str, float] = field(
        default_factory=lambda: _frozen(
            {NEW_PEER: 3.0, NEW_NAMESPACE: 4.0, WORLD_EGRESS: 6.0, RATE_SPIKE: 8.0, POLICY_DROPS: 5.0}
        )
    )
    #: Weight of a Falco alert by priority: one critical alert on a pod is enough to quarantine it.
    falco_priority_weights: Mapping[str, float] = field(
        default_factory=lambda: _frozen(
            {
                "emergency": 40.0,
                "alert": 35.0,
                "critical": 30.0,
                "error": 15.0,
                "warning": 6.0,
                "notice": 2.0,
                "informational": 0.5,
                "debug": 0.0,
            }
        )
    )
    #: Weight of a firing Alertmanager alert by its severity label (held while firing, not decayed).
    alert_severity_weights: Mapping[str, float] = field(
        default_factory=lambda: _frozen({"critical": 12.0, "warning": 5.0, "info": 1.0, "none": 0.0, DEFAULT_SEVERITY: 2.0})
    )
    #: A Falco alert older than this when it arrives (its own `time`) is evidence of the past: recorded
    #: and explained, never acted on (a replayed or long-queued alert is not a reason to isolate now).
    alert_max_age_seconds: float = 600.0
    #: An alert seen again (same falcosidekick uuid, or the same content when it has none) within this
    #: long is a duplicate: counted once. Longer than the max age, so a replay is caught either way.
    alert_dedup_seconds: float = 3600.0
    #: Alert ids remembered for de-duplication (oldest forgotten first).
    alert_dedup_max: int = 10000
    #: Evidence loses half its weight every this many seconds.
    half_life_seconds: float = 900.0
    #: Evidence items kept per workload for `explain` (the strongest survive).
    max_evidence: int = 32

    # --- steps and hysteresis -----------------------------------------------------------------
    tighten_threshold: float = 10.0
    quarantine_threshold: float = 25.0
    #: A tightened workload relaxes to its baseline once its score falls below this.
    relax_threshold: float = 4.0
    #: A quarantine is lifted (one step, to tightened) once the score falls below this.
    lift_threshold: float = 10.0
    tighten_expiry_seconds: float = 3600.0
    quarantine_expiry_seconds: float = 1800.0

    # --- guard rails --------------------------------------------------------------------------
    #: Never tightened or quarantined automatically (alert-only): the cluster's own and netwarden's.
    protected_namespaces: tuple[str, ...] = ("kube-system", "kube-public", "kube-node-lease", "netwarden")
    #: At most this many workloads put under automatic quarantine within the window ...
    blast_max_workloads: int = 3
    #: ... and at most this fraction of all known pods; beyond either, alert-only.
    blast_max_pod_fraction: float = 0.10
    blast_window_seconds: float = 3600.0
    #: Token bucket for API writes: sustained writes per second and burst size.
    write_rate_per_second: float = 1.0
    write_burst: int = 10
    #: Rollbacks, relaxations, quarantine releases and cleanups have their own bucket: a busy minute
    #: of tightenings never makes them wait (Events spend no budget at all).
    safety_write_rate_per_second: float = 5.0
    safety_write_burst: int = 20
    #: Health lost within this long after an automatic tightening rolls it back.
    rollback_window_seconds: float = 300.0
    #: After a rollback, no automatic tightening of that workload for this long.
    rollback_cooldown_seconds: float = 3600.0
    #: Declarations (allow-from grammar) still allowed into a quarantined pod, e.g. "namespace=monitoring:9090".
    quarantine_exceptions: tuple[str, ...] = ()

    # --- history and what-if ------------------------------------------------------------------
    #: Previous specs kept per policy for rollback.
    max_history: int = 10
    #: Byte budget of the history annotation (the whole object's annotations must fit 256 KiB).
    history_max_bytes: int = 64 * 1024
    #: Distinct recent edges kept per workload for what-if checks.
    what_if_window: int = 128
    #: Only edges seen within this long count as recent traffic in a what-if.
    what_if_horizon_seconds: float = 3600.0

    #: Mode of a namespace that does not say (learn | dry-run | enforce | approve).
    default_mode: str = names.DEFAULT_MODE

    def __post_init__(self) -> None:
        problems = _check_ranges(self)
        if problems:
            raise ConfigError("invalid netwarden core config: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "CoreConfig":
        """Build from a YAML/JSON mapping, rejecting unknown keys and wrong types with clear messages."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        defaults = cls()
        problems: list[str] = []
        values: dict[str, Any] = {}
        for key, raw in data.items():
            if key not in fields:
                problems.append(f"unknown key {key!r}")
                continue
            try:
                values[key] = _coerce(key, raw, getattr(defaults, key))
            except ConfigError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigError("invalid netwarden core config: " + "; ".join(sorted(problems)))
        return cls(**values)


def _coerce(key: str, raw: Any, default: Any) -> Any:
    """Check one value against the type of its default."""
    if isinstance(default, bool):
        if not isinstance(raw, bool):
            raise ConfigError(f"{key}: expected true/false, got {raw!r}")
        return raw
    if isinstance(default, int):
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(f"{key}: expected an integer, got {raw!r}")
        return raw
    if isinstance(default, float):
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {raw!r}")
        return float(raw)
    if isinstance(default, str):
        if not isinstance(raw, str):
            raise ConfigError(f"{key}: expected a string, got {raw!r}")
        return raw
    if isinstance(default, tuple):
        if not isinstance(raw, (list, tuple)) or not all(isinstance(v, str) for v in raw):
            raise ConfigError(f"{key}: expected a list of strings, got {raw!r}")
        return tuple(raw)
    if isinstance(default, Mapping):
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{key}: expected a mapping of name to number, got {raw!r}")
        merged = dict(default)
        for name, weight in raw.items():
            if name not in default:
                raise ConfigError(f"{key}: unknown name {name!r} (known: {', '.join(sorted(default))})")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise ConfigError(f"{key}.{name}: expected a number, got {weight!r}")
            merged[name] = float(weight)
        return _frozen(merged)
    raise ConfigError(f"{key}: unsupported setting type")  # pragma: no cover - every field is covered above


def _check_ranges(c: CoreConfig) -> list[str]:
    problems: list[str] = []
    positive = (
        "learning_seconds",
        "rate_bucket_seconds",
        "half_life_seconds",
        "drop_burst_window_seconds",
        "blast_window_seconds",
        "tighten_expiry_seconds",
        "quarantine_expiry_seconds",
        "write_rate_per_second",
        "safety_write_rate_per_second",
        "what_if_horizon_seconds",
        "alert_max_age_seconds",
        "alert_dedup_seconds",
    )
    for name in positive:
        value = getattr(c, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            problems.append(f"{name} must be a positive number, got {value!r}")
    at_least_one = (
        "learning_max_flows",
        "max_peers_per_workload",
        "max_namespaces_per_workload",
        "max_novel_per_workload",
        "max_evidence",
        "max_history",
        "what_if_window",
        "write_burst",
        "safety_write_burst",
        "drop_burst_flows",
        "rate_min_buckets",
        "rate_spike_gap_buckets",
        "alert_dedup_max",
    )
    for name in at_least_one:
        if getattr(c, name) < 1:
            problems.append(f"{name} must be at least 1, got {getattr(c, name)!r}")
    if not 0 < c.rate_alpha <= 1:
        problems.append(f"rate_alpha must be in (0, 1], got {c.rate_alpha!r}")
    if not 0 <= c.blast_max_pod_fraction <= 1:
        problems.append(f"blast_max_pod_fraction must be in [0, 1], got {c.blast_max_pod_fraction!r}")
    if c.blast_max_workloads < 0:
        problems.append("blast_max_workloads must be >= 0")
    if not 0 <= c.relax_threshold < c.tighten_threshold:
        problems.append("relax_threshold must be >= 0 and below tighten_threshold (hysteresis)")
    if not c.tighten_threshold <= c.quarantine_threshold:
        problems.append("tighten_threshold must not exceed quarantine_threshold")
    if not c.lift_threshold < c.quarantine_threshold:
        problems.append("lift_threshold must be below quarantine_threshold (hysteresis)")
    if c.history_max_bytes < 1024 or c.history_max_bytes > 200 * 1024:
        problems.append("history_max_bytes must be between 1 KiB and 200 KiB (annotations total 256 KiB)")
    if c.default_mode not in names.MODES:
        problems.append(f"default_mode must be one of {', '.join(names.MODES)}, got {c.default_mode!r}")
    for label, mapping, known in (
        ("deviation_weights", c.deviation_weights, FLOW_DEVIATION_KINDS),
        ("falco_priority_weights", c.falco_priority_weights, FALCO_PRIORITIES),
    ):
        missing = [k for k in known if k not in mapping]
        if missing:
            problems.append(f"{label} is missing {', '.join(missing)}")
    for label, mapping in (
        ("deviation_weights", c.deviation_weights),
        ("falco_priority_weights", c.falco_priority_weights),
        ("alert_severity_weights", c.alert_severity_weights),
    ):
        if any(not math.isfinite(v) or v < 0 for v in mapping.values()):
            problems.append(f"{label} must be finite and non-negative")
    return problems
