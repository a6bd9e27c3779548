"""Normalised signals: what every receiver turns its wire format into. Plain values, no logic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping

import msgspec

from netwarden.model.errors import NetwardenError

Verdict = Literal["forwarded", "dropped", "unknown"]
Priority = Literal["emergency", "alert", "critical", "error", "warning", "notice", "informational", "debug"]


class SignalError(NetwardenError, ValueError):
    """A record that cannot be used; `reason` is a short machine-friendly code for the rejected-signals metric."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Endpoint(msgspec.Struct, frozen=True, gc=False):
    """One end of a flow, as much as the source told us. Identity is filled in by the pod index.

    A frozen msgspec Struct rather than a frozen dataclass: built for every flow end, and a frozen
    dataclass costs ~10x more to construct. Change one with `msgspec.structs.replace`."""

    ip: str | None = None
    namespace: str | None = None
    pod: str | None = None
    identity: str | None = None
    labels: Mapping[str, str] = msgspec.field(default_factory=dict)
    #: True when the source says the peer is outside the cluster (Hubble reserved:world, Calico "net").
    world: bool = False
    #: Calico's aggregated name ("nginx-86c57db685-*") when aggregation hid the pod name.
    pod_prefix: str | None = None


class Flow(msgspec.Struct, frozen=True, gc=False):
    """The internal flow record every source becomes (Hubble, Calico, Goldmane, generic, gRPC
    streams): what the engine scores. A frozen msgspec Struct, like Endpoint."""

    time: float  # epoch seconds
    source: Endpoint
    destination: Endpoint
    port: int | None
    protocol: str  # TCP, UDP, SCTP, ICMP, ...
    verdict: Verdict = "forwarded"
    #: Dropped by a network policy (Hubble POLICY_DENIED / Calico deny).
    policy_dropped: bool = False
    reply: bool = False
    bytes: int = 0
    packets: int = 1
    source_format: str = "generic"
    #: Which end observed it: "src" or "dst" (Calico reporter; Hubble EGRESS/INGRESS), None if
    #: unknown. Both ends may report one connection; consumers count it once.
    reporter: str | None = None


@dataclass(frozen=True)
class AlertTarget:
    """The Kubernetes object an alert names when it names no pod by `pod` (a Falco k8s_audit alert's
    `ka.target.*`, an Alertmanager alert's `deployment` label): `resource` is the API resource, plural
    and lowercase ("pods", "deployments", "secrets"), as the sender wrote it."""

    resource: str
    name: str | None = None


@dataclass(frozen=True)
class SecurityAlert:
    time: float
    namespace: str | None
    pod: str | None
    rule: str
    priority: Priority
    output: str = ""
    source_format: str = "falco"
    tags: tuple[str, ...] = ()
    #: The sender's id of this alert (falcosidekick's `uuid`); "" when it sent none.
    alert_id: str = ""
    #: What a k8s_audit alert is about (`ka.target.resource`/`ka.target.name`); None for a syscall alert.
    target: AlertTarget | None = None


@dataclass(frozen=True)
class MetricAlert:
    time: float
    firing: bool
    alertname: str
    severity: str
    namespace: str | None
    pod: str | None
    fingerprint: str = ""
    summary: str = ""
    description: str = ""
    starts_at: float | None = None
    #: None while firing with no end known (Alertmanager sends year 0001).
    ends_at: float | None = None
    #: The workload its labels name (`deployment`, `statefulset`, `daemonset`, `job_name`, `cronjob`).
    target: AlertTarget | None = None


@dataclass(frozen=True)
class HealthSignal:
    time: float
    namespace: str
    pod: str
    ready: bool
    restarts: int


@dataclass(frozen=True)
class RestoredPolicy:
    """What a previous leader wrote, read back from a managed policy's annotations at start-up or
    failover: enough to end its quarantines and steps when they were meant to end."""

    identity: str
    namespace: str
    role: str  # baseline | quarantine
    step: str
    #: When the change was made (the quarantine policy's creation; epoch seconds).
    since: float
    expires_at: float | None = None
    #: Quarantine role: the pod instance it isolates, and the pod's name when known.
    instance: str | None = None
    pod: str | None = None
