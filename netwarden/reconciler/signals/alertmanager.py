"""Prometheus Alertmanager webhook bodies (`version: "4"`): the wire type and its parser.

Mapping: one MetricAlert per alert; `time` is startsAt (firing) or endsAt (resolved); endsAt
`0001-01-01…` (Go's zero time: no end yet) -> None; workload labels (`deployment`, `statefulset`,
`daemonset`, `replicaset`, `job_name`, `cronjob`) -> `target`.
"""

from __future__ import annotations

from typing import Literal, Mapping, TypedDict

from netwarden.reconciler.core.types import AlertTarget, MetricAlert, SignalError
from netwarden.reconciler.signals.common import obj, parse_rfc3339, require_dict_root

Status = Literal["firing", "resolved"]
#: Alertmanager's "no end yet" (Go's zero time).
_GO_ZERO_TIME_PREFIX = "0001-01-01T00:00:00"


class Alert(TypedDict, total=False):
    status: Status
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: str  # RFC 3339
    #: "0001-01-01T00:00:00Z" while firing with no end known.
    endsAt: str
    generatorURL: str
    fingerprint: str


class WebhookMessage(TypedDict, total=False):
    version: Literal["4"]
    groupKey: str
    truncatedAlerts: int
    status: Status
    receiver: str
    groupLabels: dict[str, str]
    commonLabels: dict[str, str]
    commonAnnotations: dict[str, str]
    externalURL: str
    alerts: list[Alert]


def _string_map(value: object, path: str) -> dict[str, str]:
    if value is None:
        return {}
    mapping = obj(value, path)
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


def parse_alertmanager_payload(value: object) -> list[MetricAlert]:
    """An Alertmanager webhook body (version "4") -> one MetricAlert per alert.

    `time` is when the alert's current state began: startsAt when firing, endsAt when resolved.
    """
    body = require_dict_root(value)
    if body.get("version") != "4":
        raise SignalError("bad-version", f"Alertmanager webhook version must be \"4\": {body.get('version')!r:.20}")
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise SignalError("missing-field:alerts", "Alertmanager body has no alerts list")
    group_status = body.get("status")
    out = []
    for index, raw in enumerate(alerts):
        alert = obj(raw, "alerts")
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
