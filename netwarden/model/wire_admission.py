"""The AdmissionReview wire format (admission.k8s.io v1 and v1beta1), typed once. No logic.

One home for both sides of the wire: the webhook answers these, the local API server sends them.

Modelled on kopf's `structs/reviews.py`. v1beta1 has the same shape minus a few optional fields
(`requestKind`, `requestResource`, `name`, `dryRun`, `options` may be absent), so one set of
TypedDicts with `total=False` covers both; the response must answer in the request's apiVersion.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

API_VERSION_V1 = "admission.k8s.io/v1"
API_VERSION_V1BETA1 = "admission.k8s.io/v1beta1"
KIND_ADMISSION_REVIEW = "AdmissionReview"

ApiVersion = Literal["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]
Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
PatchType = Literal["JSONPatch"]
PatchOpName = Literal["add", "remove", "replace", "move", "copy", "test"]


class GroupVersionKind(TypedDict):
    group: str
    version: str
    kind: str


class GroupVersionResource(TypedDict):
    group: str
    version: str
    resource: str


class UserInfo(TypedDict, total=False):
    username: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]]


class AdmissionRequest(TypedDict, total=False):
    uid: str
    kind: GroupVersionKind
    resource: GroupVersionResource
    subResource: str
    requestKind: GroupVersionKind
    requestResource: GroupVersionResource
    requestSubResource: str
    name: str
    namespace: str
    operation: Operation
    userInfo: UserInfo
    object: dict[str, Any] | None
    oldObject: dict[str, Any] | None
    dryRun: bool
    options: dict[str, Any] | None


class AdmissionReviewRequest(TypedDict):
    apiVersion: ApiVersion
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest


class ResponseStatus(TypedDict, total=False):
    """A metav1.Status, as much of it as a webhook sets."""

    status: Literal["Success", "Failure"]
    code: int
    reason: str
    message: str


class AdmissionResponse(TypedDict, total=False):
    uid: str
    allowed: bool
    status: ResponseStatus
    patch: str  # base64 of a JSON array of JSONPatchOp
    patchType: PatchType
    warnings: list[str]
    auditAnnotations: dict[str, str]


class AdmissionReviewResponse(TypedDict):
    apiVersion: ApiVersion
    kind: Literal["AdmissionReview"]
    response: AdmissionResponse


class JSONPatchOp(TypedDict, total=False):
    """One RFC 6902 operation (netwarden emits add/remove only); `path` is an RFC 6901 pointer ("/" in a key is "~1")."""

    op: PatchOpName
    path: str
    value: Any
