"""Wire shapes localkube speaks: metav1.Status, watch events, and the AdmissionReview it sends (no logic).

The AdmissionReview types are localkube's own (the API server's side of the wire), not netwarden's
netwarden/model/wire_admission.py: the local API server is the oracle the webhook is tested against.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

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


class UserInfo(TypedDict, total=False):
    username: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]]


class AdmissionRequest(TypedDict, total=False):
    """What the API server sends (admission.k8s.io/v1), as much as localkube fills in."""

    uid: str
    kind: dict[str, str]
    resource: dict[str, str]
    subResource: str
    requestKind: dict[str, str]
    requestResource: dict[str, str]
    name: str
    namespace: str
    operation: Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
    userInfo: UserInfo
    object: dict[str, Any] | None
    oldObject: dict[str, Any] | None
    dryRun: bool
    options: dict[str, Any] | None


class AdmissionResponse(TypedDict, total=False):
    """What a webhook answers: the verdict, a base64 JSONPatch, warnings, a metav1.Status when refused."""

    uid: str
    allowed: bool
    status: dict[str, Any]
    patch: str
    patchType: Literal["JSONPatch"]
    warnings: list[str]
    auditAnnotations: dict[str, str]


class AdmissionReview(TypedDict, total=False):
    """What the local API server sends a webhook (and reads its answer from)."""

    apiVersion: Literal["admission.k8s.io/v1"]
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest
    response: AdmissionResponse
