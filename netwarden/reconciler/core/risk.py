"""Deviations (what was seen, with evidence) and the decaying risk score they add up to.

A score is a sum of weights, each halved every `half_life_seconds`, so old evidence fades without a
timer. Firing Alertmanager alerts are the exception: they hold their full weight while firing and
stop contributing the moment they resolve. Scores are kept per workload and per pod instance, so
the action step can tell "one pod misbehaves" from "the whole workload does".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from netwarden.reconciler.core.config import (
    DEFAULT_SEVERITY,
    FLOW_DEVIATION_KINDS,
    METRIC_ALERT,
    NEW_NAMESPACE,
    NEW_PEER,
    POLICY_DROPS,
    RATE_SPIKE,
    SECURITY_ALERT,
    WORLD_EGRESS,
    CoreConfig,
)
from netwarden.reconciler.core.types import MetricAlert, SecurityAlert

__all__ = [
    "Deviation",
    "RiskState",
    "decay_factor",
    "security_alert_deviation",
    "metric_alert_deviation",
    "NEW_PEER",
    "NEW_NAMESPACE",
    "WORLD_EGRESS",
    "RATE_SPIKE",
    "POLICY_DROPS",
    "SECURITY_ALERT",
    "METRIC_ALERT",
    "FLOW_DEVIATION_KINDS",
]

#: Below this a decayed score is treated as zero (and its per-pod entry forgotten).
NEGLIGIBLE = 1e-3


@dataclass(frozen=True)
class Deviation:
    """One piece of evidence: what kind, how much it weighs, and what exactly was seen.

    `instance` names the pod instance when the evidence is about one pod; None means it is about the
    workload as a whole (a rate spike, a burst of drops, an alert without a pod).
    """

    kind: str
    weight: float
    time: float
    identity: str
    namespace: str
    summary: str
    instance: str | None = None
    pod: str | None = None
    direction: str | None = None
    peer: str | None = None
    port: int | None = None
    protocol: str | None = None
    #: Structured extras: the flow's endpoints, alert rule, counts, thresholds.
    details: Mapping[str, Any] = field(default_factory=dict)
    #: Alerts: the key that a later "resolved" matches (Alertmanager fingerprint).
    key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "weight": self.weight,
            "time": self.time,
            "identity": self.identity,
            "namespace": self.namespace,
            "summary": self.summary,
        }
        for name in ("instance", "pod", "direction", "peer", "port", "protocol", "key"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.details:
            out["details"] = dict(self.details)
        return out


def decay_factor(elapsed: float, half_life: float) -> float:
    """Fraction of a weight left after `elapsed` seconds (1.0 for negative elapsed: no growth)."""
    if elapsed <= 0:
        return 1.0
    return 0.5 ** (elapsed / half_life)


@dataclass
class _Decaying:
    value: float = 0.0
    as_of: float = 0.0

    def at(self, now: float, half_life: float) -> float:
        return self.value * decay_factor(now - self.as_of, half_life)

    def add(self, weight: float, now: float, half_life: float) -> None:
        self.value = self.at(now, half_life) + weight
        self.as_of = max(now, self.as_of)


class RiskState:
    """Decaying score of one workload and of each of its pod instances, plus the evidence behind it."""

    __slots__ = ("identity", "half_life", "max_evidence", "_workload", "_workload_level", "_instances", "_alerts", "_evidence")

    def __init__(self, identity: str, config: CoreConfig) -> None:
        self.identity = identity
        self.half_life = config.half_life_seconds
        self.max_evidence = config.max_evidence
        #: Everything about this workload (pod-level evidence included).
        self._workload = _Decaying()
        #: Only evidence about the workload as a whole.
        self._workload_level = _Decaying()
        self._instances: dict[str, _Decaying] = {}
        #: Firing metric alerts by key: full weight while firing.
        self._alerts: dict[str, Deviation] = {}
        self._evidence: list[Deviation] = []

    # --- updates ------------------------------------------------------------------------------
    def add(self, deviations: Iterable[Deviation], now: float) -> None:
        for dev in deviations:
            if dev.kind == METRIC_ALERT and dev.key is not None:
                self._alerts[dev.key] = dev  # a re-sent firing alert replaces, never stacks
            else:
                self._workload.add(dev.weight, now, self.half_life)
                if dev.instance is None:
                    self._workload_level.add(dev.weight, now, self.half_life)
                else:
                    self._instances.setdefault(dev.instance, _Decaying(0.0, now)).add(dev.weight, now, self.half_life)
            self._remember(dev, now)

    def is_firing(self, key: str) -> bool:
        return key in self._alerts

    def resolve_alert(self, key: str) -> bool:
        """A resolved alert stops contributing at once. True when it was firing."""
        return self._alerts.pop(key, None) is not None

    def forget_instance(self, instance: str, now: float) -> None:
        """A pod is gone: its evidence no longer counts, for the pod or for its workload."""
        entry = self._instances.pop(instance, None)
        if entry is not None:
            current = self._workload.at(now, self.half_life)
            self._workload.value = max(0.0, current - entry.at(now, self.half_life))
            self._workload.as_of = max(now, self._workload.as_of)
        for key in [k for k, a in self._alerts.items() if a.instance == instance]:
            del self._alerts[key]

    def prune(self, now: float) -> None:
        """Drop per-pod entries and evidence that decayed to nothing (keeps memory bounded)."""
        for instance in [i for i, d in self._instances.items() if d.at(now, self.half_life) < NEGLIGIBLE]:
            del self._instances[instance]
        self._evidence = [e for e in self._evidence if self._contribution(e, now) >= NEGLIGIBLE]

    # --- reads --------------------------------------------------------------------------------
    def score_at(self, now: float) -> float:
        score = self._workload.at(now, self.half_life) + self._alert_weight()
        return score if score >= NEGLIGIBLE else 0.0

    def workload_level_score(self, now: float) -> float:
        """Evidence about the workload as a whole (the part that justifies isolating every replica)."""
        return self._workload_level.at(now, self.half_life) + self._alert_weight(only_workload=True)

    def instance_score(self, instance: str, now: float) -> float:
        entry = self._instances.get(instance)
        own = entry.at(now, self.half_life) if entry is not None else 0.0
        return own + sum(a.weight for a in self._alerts.values() if a.instance == instance)

    def instances(self) -> tuple[str, ...]:
        named = set(self._instances) | {a.instance for a in self._alerts.values() if a.instance is not None}
        return tuple(sorted(named))

    def explain(self, now: float | None = None) -> list[dict[str, Any]]:
        """The evidence behind the score, strongest current contribution first."""
        at = now if now is not None else max((e.time for e in self._evidence), default=0.0)
        rows = []
        for dev in self._evidence:
            row = dev.to_dict()
            row["contribution"] = round(self._contribution(dev, at), 4)
            row["active"] = dev.kind != METRIC_ALERT or dev.key in self._alerts
            rows.append(row)
        rows.sort(key=lambda r: (-r["contribution"], -r["time"]))
        return rows

    def evidence(self) -> tuple[Deviation, ...]:
        return tuple(self._evidence)

    # --- internals ----------------------------------------------------------------------------
    def _alert_weight(self, *, only_workload: bool = False) -> float:
        if only_workload:
            return sum(a.weight for a in self._alerts.values() if a.instance is None)
        return sum(a.weight for a in self._alerts.values())

    def _contribution(self, dev: Deviation, now: float) -> float:
        if dev.kind == METRIC_ALERT and dev.key is not None:
            return dev.weight if self._alerts.get(dev.key) is dev else 0.0
        return dev.weight * decay_factor(now - dev.time, self.half_life)

    def _remember(self, dev: Deviation, now: float) -> None:
        self._evidence.append(dev)
        if len(self._evidence) > self.max_evidence:
            weakest = min(range(len(self._evidence)), key=lambda i: (self._contribution(self._evidence[i], now), self._evidence[i].time))
            del self._evidence[weakest]


# --- alerts -> deviations -----------------------------------------------------------------------


def security_alert_deviation(
    alert: SecurityAlert, identity: str, namespace: str, instance: str | None, config: CoreConfig, *,
    about: str | None = None,
) -> Deviation:
    """A Falco alert weighs by its priority; naming a pod makes it evidence about that pod only.
    `about` names the workload it counts against as a whole (then no pod is its subject)."""
    weight = config.falco_priority_weights.get(alert.priority, 0.0)
    pod = None if about else alert.pod
    return Deviation(
        kind=SECURITY_ALERT,
        weight=weight,
        time=alert.time,
        identity=identity,
        namespace=namespace,
        summary=f"{alert.source_format} {alert.priority}: {alert.rule}" + (f" on {about}" if about else "")
        + (f" on pod {pod}" if pod else ""),
        instance=instance,
        pod=pod,
        details={"rule": alert.rule, "priority": alert.priority, "output": alert.output[:512], "tags": list(alert.tags)},
    )


def metric_alert_key(alert: MetricAlert) -> str:
    """Alertmanager's fingerprint when sent, else the labels that identify the alert."""
    target = alert.target
    named = f"{target.resource}/{target.name or ''}" if target is not None else ""
    return alert.fingerprint or f"{alert.alertname}/{alert.namespace or ''}/{alert.pod or ''}" + (f"/{named}" if named else "")


def metric_alert_deviation(
    alert: MetricAlert, identity: str, namespace: str, instance: str | None, config: CoreConfig, *,
    about: str | None = None,
) -> Deviation:
    """A firing Alertmanager alert weighs by its severity; `about` as for security_alert_deviation."""
    pod = None if about else alert.pod
    weights = config.alert_severity_weights
    severity = (alert.severity or "").lower()
    weight = weights.get(severity, weights.get(DEFAULT_SEVERITY, 0.0))
    return Deviation(
        kind=METRIC_ALERT,
        weight=weight,
        time=alert.time,
        identity=identity,
        namespace=namespace,
        summary=f"alert {alert.alertname} ({alert.severity or 'no severity'}) firing"
        + (f" for {about}" if about else "") + (f" for pod {pod}" if pod else ""),
        instance=instance,
        pod=pod,
        details={"alertname": alert.alertname, "severity": alert.severity, "summary": alert.summary[:512]},
        key=metric_alert_key(alert),
    )
