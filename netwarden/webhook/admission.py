"""The admission envelope, pure: AdmissionReview in, labels patch + baseline policy + verdict out.

The pod's labels and baseline come from netwarden/model/admission.py (`admit_pod`, which the reconciler's
backfill calls too); this module reads and answers the AdmissionReview around it. No I/O and no clock: the adapter looks up the namespace and the owner chain (netwarden/webhook/runtime.py) and
generates the pod's instance value (netwarden/webhook/app.py), then passes them in. That keeps every rule here testable with
real AdmissionReview payloads and nothing else.

Two webhooks use this module:
* mutating `/mutate` (`decide_admission`): on pod CREATE, gives opted-in pods netwarden's labels
  (removing any reserved label the pod set itself) and renders the workload's baseline policy;
* validating `/validate`: on pod CREATE (`decide_create`), the final object's netwarden labels
  must be exactly what `decide_admission` gives for that object; on pod UPDATE, including the
  `status` subresource (`decide_update`), only netwarden may change them. It is a *validating*
  webhook because it must judge the final object, after every mutating webhook (which run in an
  unspecified order and may be reinvoked) has had its say.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import orjson

from netwarden.model import names, patches
from netwarden.model.admission import AdmissionSettings, PodFacts, admit_pod
from netwarden.model.containment import allow_all_policies
from netwarden.model.policy import changed_policy_marks, is_managed
from netwarden.model.errors import NetwardenError
from netwarden.model.identity import OwnerRef, Parents, PodOrigin, Workload
from netwarden.model.labels import NamespaceFacts, is_instance_value, is_reserved_label, netwarden_labels_of
from netwarden.model.wire_admission import (
    API_VERSION_V1,
    API_VERSION_V1BETA1,
    KIND_ADMISSION_REVIEW,
    AdmissionRequest,
    AdmissionResponse,
    AdmissionReviewResponse,
    JSONPatchOp,
)

#: The labels that name the workload (judged only when the owners could be verified).
IDENTITY_LABELS = frozenset({names.LABEL_IDENTITY, names.LABEL_WORKLOAD_KIND, names.LABEL_WORKLOAD})

#: The API server truncates longer warnings; we cut them ourselves so the cut is visible.
MAX_WARNING_LENGTH = 256
MAX_WARNINGS = 16

# Outcomes: the `outcome` label of METRIC_REVIEWS and the `outcome` field of the review log line.
OUTCOME_LABELLED = "labelled"
OUTCOME_SKIPPED = "skipped"  # not opted in (or not a pod CREATE): admitted unchanged
OUTCOME_ALLOWED = "allowed"  # validating: nothing to object to
OUTCOME_REFUSED = "refused"
OUTCOME_MALFORMED = "malformed"
#: The review's API budget ran out (or the API failed) before every owner was verified: mutating,
#: admitted with labels from what was verified; validating, allowed without the full check.
OUTCOME_DEGRADED = "degraded"


@dataclass(frozen=True)
class AdmissionDecision:
    allowed: bool
    outcome: str
    #: RFC 6902 operations on the pod (empty: no change).
    patch: tuple[JSONPatchOp, ...] = ()
    warnings: tuple[str, ...] = ()
    #: Shown to the user when refused (prefixed by the API server with the webhook's name).
    message: str = ""
    code: int = 200
    #: The workload's baseline NetworkPolicy to create (None: nothing to write).
    policy_manifest: dict[str, Any] | None = None
    workload: Workload | None = None
    #: The labels the pod ends up with under netwarden's prefix (for logs and tests).
    labels: Mapping[str, str] = field(default_factory=dict)


class MalformedReview(NetwardenError, ValueError):
    """The body is not an AdmissionReview we can answer. `uid` set: answer with a refusal; unset: HTTP 400."""

    def __init__(self, message: str, uid: str | None = None, api_version: str = API_VERSION_V1) -> None:
        super().__init__(message)
        self.message = message
        self.uid = uid
        self.api_version = api_version


# --- reading the envelope ----------------------------------------------------------------------


def read_review(body: Any) -> tuple[str, AdmissionRequest]:
    """(apiVersion to answer in, the request) from a decoded JSON body, or MalformedReview."""
    if not isinstance(body, dict):
        raise MalformedReview("expected a JSON object: an admission.k8s.io/v1 AdmissionReview")
    if "request" not in body and "uid" in body and ("operation" in body or "object" in body):
        raise MalformedReview(
            "the body is a bare AdmissionRequest without its envelope; send "
            '{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {...}}'
        )
    request = body.get("request")
    uid = request.get("uid") if isinstance(request, dict) else None
    uid = uid if isinstance(uid, str) and uid else None
    api_version = body.get("apiVersion")
    answer_in = api_version if api_version in (API_VERSION_V1, API_VERSION_V1BETA1) else API_VERSION_V1
    if body.get("kind") != KIND_ADMISSION_REVIEW:
        raise MalformedReview(f"expected kind AdmissionReview, got {body.get('kind')!r}", uid, answer_in)
    if api_version not in (API_VERSION_V1, API_VERSION_V1BETA1):
        raise MalformedReview(
            f"unsupported apiVersion {api_version!r}; expected {API_VERSION_V1} or {API_VERSION_V1BETA1}", uid, answer_in
        )
    if not isinstance(request, dict):
        raise MalformedReview("AdmissionReview has no request", None, answer_in)
    if uid is None:
        raise MalformedReview("AdmissionReview request has no uid", None, answer_in)
    if not isinstance(request.get("operation"), str):
        raise MalformedReview("AdmissionReview request has no operation", uid, answer_in)
    problem = request_shape_error(request)
    if problem:
        raise MalformedReview(problem, uid, answer_in)
    return answer_in, request  # type: ignore[return-value]


def _is_str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _optional(value: Any, kind: type | tuple[type, ...]) -> bool:
    return value is None or isinstance(value, kind)


def request_shape_error(request: Mapping[str, Any]) -> str | None:
    """Why this request is not shaped like one the API server sends (None: it is).

    Only the fields netwarden reads are checked, with the types the API server gives them, so
    nothing downstream meets a list where it expects a mapping.
    """
    for key in ("kind", "resource", "requestKind", "requestResource"):
        value = request.get(key)
        if not _optional(value, dict) or (value is not None and not all(isinstance(v, str) for v in value.values())):
            return f"request.{key} must be an object of strings"
    for key in ("name", "namespace", "subResource"):
        if not _optional(request.get(key), str):
            return f"request.{key} must be a string"
    user = request.get("userInfo")
    if not _optional(user, dict) or (user is not None and not _optional(user.get("username"), str)):
        return "request.userInfo must be an object with a string username"
    if not _optional(request.get("dryRun"), bool):
        return "request.dryRun must be a boolean"
    for key in ("object", "oldObject"):
        if not _optional(request.get(key), dict):
            return f"request.{key} must be an object"
    if _is_pod(request):
        for key in ("object", "oldObject"):
            if request.get(key) is not None:
                problem = pod_shape_error(request[key])
                if problem:
                    return f"request.{key}.{problem}"
    return None


def pod_shape_error(pod: Mapping[str, Any]) -> str | None:
    """The Pod fields netwarden reads, checked against their API types."""
    meta = pod.get("metadata")
    if not _optional(meta, dict):
        return "metadata must be an object"
    meta = meta or {}
    for key in ("name", "generateName", "namespace"):
        if not _optional(meta.get(key), str):
            return f"metadata.{key} must be a string"
    for key in ("labels", "annotations"):
        if meta.get(key) is not None and not _is_str_map(meta[key]):
            return f"metadata.{key} must map strings to strings"
    refs = meta.get("ownerReferences")
    if not _optional(refs, list):
        return "metadata.ownerReferences must be a list"
    for ref in refs or []:
        if not isinstance(ref, dict) or not all(_optional(ref.get(k), str) for k in ("apiVersion", "kind", "name", "uid")) \
                or not _optional(ref.get("controller"), bool):
            return "metadata.ownerReferences holds an entry that is not an ownerReference"
    spec = pod.get("spec")
    if not _optional(spec, dict):
        return "spec must be an object"
    spec = spec or {}
    for key in ("serviceAccountName", "serviceAccount"):
        if not _optional(spec.get(key), str):
            return f"spec.{key} must be a string"
    for key in ("containers", "initContainers"):
        containers = spec.get(key)
        if not _optional(containers, list):
            return f"spec.{key} must be a list"
        for container in containers or []:
            if not isinstance(container, dict) or not _optional(container.get("ports"), list):
                return f"spec.{key} holds an entry that is not a container"
            if not _optional(container.get("restartPolicy"), str):
                return f"spec.{key}[].restartPolicy must be a string"
            for port in container.get("ports") or []:
                if not isinstance(port, dict) or not _optional(port.get("protocol"), str):
                    return f"spec.{key}[].ports holds an entry that is not a containerPort"
    return None


def build_response(api_version: str, uid: str, decision: AdmissionDecision) -> AdmissionReviewResponse:
    """The AdmissionReview to send back, in the request's apiVersion."""
    response: AdmissionResponse = {"uid": uid, "allowed": decision.allowed}
    if decision.patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(list(decision.patch))).decode()
    if decision.warnings:
        response["warnings"] = list(decision.warnings)
    if not decision.allowed:
        response["status"] = {"status": "Failure", "code": decision.code, "message": decision.message}
        if decision.code == 400:
            response["status"]["reason"] = "BadRequest"
        elif decision.code == 403:
            response["status"]["reason"] = "Forbidden"
    return {"apiVersion": api_version, "kind": KIND_ADMISSION_REVIEW, "response": response}  # type: ignore[typeddict-item]


def malformed_decision(message: str) -> AdmissionDecision:
    return AdmissionDecision(False, OUTCOME_MALFORMED, message=f"netwarden cannot read this AdmissionReview: {message}", code=400)


# --- the pod ------------------------------------------------------------------------------------


def _is_pod(request: Mapping[str, Any]) -> bool:
    kind = request.get("kind") or {}
    return kind.get("kind") == "Pod" and kind.get("group", "") == ""


def _metadata(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    meta = (obj or {}).get("metadata")
    return meta if isinstance(meta, dict) else {}


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def request_namespace(request: Mapping[str, Any]) -> str:
    """The request's namespace is authoritative; the object's is only a fallback (it may be absent)."""
    return str(request.get("namespace") or _metadata(request.get("object")).get("namespace") or "")


def pod_origin(request: Mapping[str, Any], namespace: str) -> PodOrigin:
    """The pod's owners and names as the request gives them (the adapter verifies the owners through the API).

    The same origin as `PodFacts.of_pod(...).origin`, read from the metadata alone (not the ports and
    declarations too): the adapter asks for it on every review, before the decision reads the rest."""
    meta = _metadata(request.get("object"))
    return PodOrigin(
        namespace=namespace,
        name=str(meta.get("name") or request.get("name") or ""),
        generate_name=str(meta.get("generateName") or ""),
        labels=_str_map(meta.get("labels")),
        owner_refs=tuple(OwnerRef.from_dict(r) for r in meta.get("ownerReferences") or [] if isinstance(r, dict)),
        creator=request_user(request),
    )


def request_user(request: Mapping[str, Any]) -> str | None:
    """The username the API server authenticated for the request (None when it sends none)."""
    user = request.get("userInfo")
    name = user.get("username") if isinstance(user, dict) else None
    return str(name) if name else None


def label_patch(pod: Mapping[str, Any], set_labels: Mapping[str, str], remove: Iterable[str]) -> tuple[JSONPatchOp, ...]:
    """JSONPatch setting `set_labels` and removing `remove`, valid whether or not metadata.labels exists."""
    meta = pod.get("metadata")
    current = _str_map(meta.get("labels")) if isinstance(meta, dict) else {}
    remove = [key for key in remove if key in current]
    if not isinstance(meta, dict):
        return (patches.add(("metadata",), {"labels": dict(set_labels)}),) if set_labels else ()
    if not isinstance(meta.get("labels"), dict):
        return (patches.add(("metadata", "labels"), dict(set_labels)),) if set_labels else ()
    ops: list[JSONPatchOp] = [
        patches.remove(("metadata", "labels", key)) for key in sorted(remove)
    ]
    for key, value in sorted(set_labels.items()):
        if current.get(key) != value:
            # "add" on an existing object member replaces it (RFC 6902 4.1).
            ops.append(patches.add(("metadata", "labels", key), value))
    return tuple(ops)


def _cap_warnings(warnings: Iterable[str]) -> tuple[str, ...]:
    out = []
    for warning in warnings:
        text = " ".join(warning.split())  # one line: warnings travel as HTTP headers
        out.append(text if len(text) <= MAX_WARNING_LENGTH else text[: MAX_WARNING_LENGTH - 3] + "...")
    if len(out) > MAX_WARNINGS:
        out = out[: MAX_WARNINGS - 1] + [f"... and {len(out) - MAX_WARNINGS + 1} more netwarden warnings"]
    return tuple(out)


# --- the decisions -----------------------------------------------------------------------------


def decide_admission(
    request: AdmissionRequest | Mapping[str, Any],
    namespace: NamespaceFacts,
    parents: Parents,
    instance: str,
    config: AdmissionSettings,
) -> AdmissionDecision:
    """Mutating webhook: labels for an opted-in pod being created, and its workload's baseline policy."""
    if not _is_pod(request) or request.get("operation") != "CREATE":
        return AdmissionDecision(True, OUTCOME_SKIPPED)
    pod = request.get("object")
    if not isinstance(pod, dict):
        return malformed_decision("a pod CREATE request carries no object")
    facts = PodFacts.of_pod(pod, namespace.name, str(request.get("name") or ""), request_user(request))
    admitted = admit_pod(facts, namespace, parents, instance, config)
    if admitted is None:
        # Not ours to label; but a pod outside netwarden must not wear netwarden's identity either,
        # or it would match other workloads' allow rules.
        reserved = sorted(key for key in facts.labels if is_reserved_label(key))
        if not reserved:
            return AdmissionDecision(True, OUTCOME_SKIPPED)
        warnings = [f"label {key} is reserved for netwarden and was removed (this pod is not opted in)" for key in reserved]
        return AdmissionDecision(True, OUTCOME_SKIPPED, label_patch(pod, {}, reserved), _cap_warnings(warnings))
    return AdmissionDecision(
        allowed=True,
        outcome=OUTCOME_LABELLED,
        patch=label_patch(pod, admitted.labels, admitted.spoofed),
        warnings=_cap_warnings(admitted.warnings),
        policy_manifest=admitted.policy_manifest,
        workload=admitted.workload,
        labels=dict(admitted.labels),
    )


def decide_create(
    request: AdmissionRequest | Mapping[str, Any],
    namespace: NamespaceFacts,
    parents: Parents,
    config: AdmissionSettings,
    *,
    owners_checked: bool = True,
) -> AdmissionDecision:
    """Validating webhook on pod CREATE: the final object's netwarden labels must be exactly what
    `decide_admission` gives for that same object, so a later mutating webhook cannot add or change one.

    An opted-in pod with no netwarden label at all is allowed (`degraded`): the mutating webhook
    did not run for it, as when netwarden is down, and the reconciler backfills. Otherwise the
    instance label is random per pod: it must be present and be a well-formed uuid4; it is then taken as the decision's instance, so every other label is compared
    exactly. Also accepted: the labels of the same decision with no owner verified (the pod as its
    own workload), which the mutating webhook gives when its API budget ran out; that never names
    another workload. `owners_checked` False (the adapter could not verify owners itself): the
    identity is not judged, only the reserved labels that no decision gives.
    """
    if not _is_pod(request) or request.get("operation") != "CREATE":
        return AdmissionDecision(True, OUTCOME_ALLOWED)
    pod = request.get("object")
    if not isinstance(pod, dict):
        return malformed_decision("a pod CREATE request carries no object")
    actual = netwarden_labels_of(_str_map(_metadata(pod).get("labels")))
    instance = actual.get(names.LABEL_INSTANCE, "")
    decision = decide_admission(request, namespace, parents, instance, config)
    want: Mapping[str, str] = decision.labels if decision.outcome == OUTCOME_LABELLED else {}
    if decision.outcome == OUTCOME_LABELLED:
        if not actual:
            # The mutating webhook did not label it (it failed under failurePolicy Ignore, or its
            # namespaceSelector does not send this namespace): admitted as if netwarden were down; the
            # reconciler backfills. A pod without netwarden labels matches nobody's allow rule.
            return AdmissionDecision(True, OUTCOME_DEGRADED, warnings=(
                "netwarden's mutating webhook did not label this pod; the reconciler will label it",))
        if not is_instance_value(instance):
            return _refuse_labels(
                [names.LABEL_INSTANCE],
                f"label {names.LABEL_INSTANCE} must be netwarden's uuid4 for this pod, got {instance!r}",
            )
        if not owners_checked:
            def unjudged(labels: Mapping[str, str]) -> dict[str, str]:
                return {k: v for k, v in labels.items() if k not in IDENTITY_LABELS}

            if set(actual) == set(decision.labels) and unjudged(actual) == unjudged(decision.labels):
                return AdmissionDecision(True, OUTCOME_DEGRADED, labels=actual)
    if dict(actual) == dict(want):
        return AdmissionDecision(True, OUTCOME_ALLOWED, labels=actual)
    unverified = {key: None for key in parents}
    if decision.outcome == OUTCOME_LABELLED and unverified != parents:
        # The no-owner-verified decision, made only when needed: it costs as much as the first, and
        # with no verified owner (bare pods) it is the first.
        fallback = decide_admission(request, namespace, unverified, instance, config)
        if dict(actual) == dict(fallback.labels):
            return AdmissionDecision(True, OUTCOME_ALLOWED, labels=actual)
    differing = sorted(k for k in set(actual) | set(want) if actual.get(k) != want.get(k))
    wanted = ", ".join(f"{k}={want.get(k, '<absent>')!r}" for k in differing)
    return _refuse_labels(
        differing,
        f"netwarden.io/* labels on a new pod must be exactly netwarden's own ({wanted}); "
        "another admission webhook or the pod itself set them",
    )


def _refuse_labels(keys: Sequence[str], message: str) -> AdmissionDecision:
    return AdmissionDecision(False, OUTCOME_REFUSED, message=f"labels {', '.join(keys)}: {message}", code=403)


def changed_reserved_labels(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """netwarden-owned label keys added, removed or changed between two label sets."""
    keys = {k for k in old if is_reserved_label(k)} | {k for k in new if is_reserved_label(k)}
    return sorted(k for k in keys if old.get(k) != new.get(k))


def decide_managed_policy(request: AdmissionRequest | Mapping[str, Any], config: AdmissionSettings) -> AdmissionDecision:
    """Validating webhook: netwarden's own NetworkPolicies are written by netwarden only. Anyone else may
    approve, reject or adopt one, and edit its spec (restored unless adopted), but not create one or
    forge the marks netwarden trusts on it (`changed_policy_marks`)."""
    username = request_user(request) or ""
    if username in config.trusted_usernames or username in config.policy_writers:
        return AdmissionDecision(True, OUTCOME_ALLOWED)
    old, new = request.get("oldObject"), request["object"]
    for obj in (old, new):
        meta = obj.get("metadata") if isinstance(obj, dict) else {}
        if not isinstance(meta, dict) or not all(_is_str_map(meta.get(k) or {}) for k in ("labels", "annotations")):
            return malformed_decision("the NetworkPolicy object is not shaped as the API server sends it")
    changed = changed_policy_marks(old if isinstance(old, dict) else None, new)
    if not changed:
        return AdmissionDecision(True, OUTCOME_ALLOWED)
    who = username or "an anonymous user"
    if request.get("operation") == "CREATE":
        message = (f"NetworkPolicies labelled {names.LABEL_MANAGED_BY}={names.MANAGED_BY_VALUE} are written by "
                   f"netwarden only, not by {who} (label your own policy otherwise)")
    else:
        message = (f"{', '.join(changed)} on a netwarden policy cannot be changed by {who}: they are netwarden's "
                   f"record of its own decision; yours to set are {names.ANNOTATION_APPROVE}, "
                   f"{names.ANNOTATION_ADOPTED} and removing {names.ANNOTATION_PENDING}")
    message += " (an operator running netwarden's CLI is listed in webhook.policy_writers)"
    return AdmissionDecision(False, OUTCOME_REFUSED, message=message, code=403)


def decide_update(request: AdmissionRequest | Mapping[str, Any], config: AdmissionSettings) -> AdmissionDecision:
    """Validating webhook: only netwarden may change netwarden.io/* pod labels (the opt-in switch is the user's).

    A NetworkPolicy of the user's is never refused; an allow-all one gets a Warning. One of netwarden's
    own is judged by `decide_managed_policy`.
    """
    if (request.get("kind") or {}).get("kind") == "NetworkPolicy" and isinstance(request.get("object"), dict):
        if is_managed(request["object"]) or is_managed(request.get("oldObject")):
            return decide_managed_policy(request, config)
        try:
            found = allow_all_policies([request["object"]])
        except (AttributeError, TypeError, ValueError, KeyError):  # not shaped as the API sends one
            return malformed_decision("the NetworkPolicy object is not shaped as the API server sends it")
        return AdmissionDecision(True, OUTCOME_ALLOWED, warnings=_cap_warnings(a.message() for a in found))
    if not _is_pod(request) or request.get("operation") != "UPDATE":
        return AdmissionDecision(True, OUTCOME_ALLOWED)
    new, old = request.get("object"), request.get("oldObject")
    if not isinstance(new, dict) or not isinstance(old, dict):
        return malformed_decision("a pod UPDATE request needs both object and oldObject")
    changed = changed_reserved_labels(_str_map(_metadata(old).get("labels")), _str_map(_metadata(new).get("labels")))
    if not changed:
        return AdmissionDecision(True, OUTCOME_ALLOWED)
    username = request_user(request) or ""
    if username in config.trusted_usernames:
        return AdmissionDecision(True, OUTCOME_ALLOWED)
    return AdmissionDecision(
        False,
        OUTCOME_REFUSED,
        message=(
            f"labels {', '.join(changed)} are managed by netwarden and cannot be changed by {username or 'an anonymous user'}; "
            f"only {names.LABEL_INJECT} is yours to set (revert the change to these labels)"
        ),
        code=403,
    )
