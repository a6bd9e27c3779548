"""Wire shapes localkube speaks: metav1.Status, watch events, and the AdmissionReview it sends (no logic)."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

# The AdmissionReview format has one home, shared with the webhook.
from netwarden.wire_admission import AdmissionRequest, AdmissionResponse, UserInfo  # noqa: F401 - re-exported

WatchEventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]


class StatusCause(TypedDict, total=False):
    reason: str
    message: str
    field: str


class StatusDetails(TypedDict, total=False):
    name: str
    group: str
    kind: str
    uid: str
    causes: list[StatusCause]
    retryAfterSeconds: int


class Status(TypedDict):
    kind: Literal["Status"]
    apiVersion: Literal["v1"]
    metadata: dict[str, Any]
    status: Literal["Success", "Failure"]
    message: str
    reason: str
    code: int
    details: NotRequired[StatusDetails]


class WatchEvent(TypedDict):
    type: WatchEventType
    object: dict[str, Any]


class AdmissionReview(TypedDict, total=False):
    """What the local API server sends a webhook (and reads its answer from)."""

    apiVersion: Literal["admission.k8s.io/v1"]
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest
    response: AdmissionResponse
