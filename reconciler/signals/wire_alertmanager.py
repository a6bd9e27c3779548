"""Prometheus Alertmanager webhook body (`version: "4"`). Types only, no logic."""

from __future__ import annotations

from typing import Literal, TypedDict

Status = Literal["firing", "resolved"]


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
