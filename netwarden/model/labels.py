"""Which pods netwarden handles, and the labels it gives them. Pure.

Every value comes from a trusted source: the namespace (from the request and the namespace
object), the service account the pod runs as, and the workload resolved through the API. What
the pod says about itself under netwarden's prefix is ignored and overwritten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from netwarden.model import names
from netwarden.model.identity import Workload
from netwarden.model.labelvalues import fit_label_value, is_valid_label_value

UNSPECIFIED = "unspecified"
_INSTANCE_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@dataclass(frozen=True)
class NamespaceFacts:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelDecision:
    labels: dict[str, str]
    #: Human-readable warnings for the AdmissionResponse (spoofed labels, bad declarations).
    warnings: tuple[str, ...] = ()


def is_opted_in(namespace: NamespaceFacts, pod_labels: Mapping[str, str], pod_annotations: Mapping[str, str]) -> bool:
    """Namespace label or annotation, or pod annotation, opts in; a pod opt-out always wins."""
    pod_choice = pod_annotations.get(names.ANNOTATION_INJECT) or pod_labels.get(names.LABEL_INJECT)
    if pod_choice == names.INJECT_DISABLED:
        return False
    if pod_choice == names.INJECT_ENABLED:
        return True
    return (
        namespace.labels.get(names.LABEL_INJECT) == names.INJECT_ENABLED
        or namespace.annotations.get(names.ANNOTATION_INJECT) == names.INJECT_ENABLED
    )


def namespace_mode(namespace: NamespaceFacts, default: str) -> str:
    mode = namespace.annotations.get(names.ANNOTATION_MODE, "")
    return mode if mode in names.MODES else default


def environment_of(namespace: NamespaceFacts) -> str:
    for source in (namespace.labels, namespace.annotations):
        for key in (names.ANNOTATION_ENVIRONMENT, names.LABEL_ENVIRONMENT_PLAIN):
            value = source.get(key)
            if value and is_valid_label_value(value):
                return value
    return UNSPECIFIED


def purpose_of(pod_labels: Mapping[str, str], pod_annotations: Mapping[str, str]) -> tuple[str, list[str]]:
    """The declared purpose: annotation, else app.kubernetes.io/component, else unspecified."""
    warnings: list[str] = []
    declared = pod_annotations.get(names.ANNOTATION_PURPOSE)
    if declared is not None:
        if is_valid_label_value(declared) and declared:
            return declared, warnings
        warnings.append(f"annotation {names.ANNOTATION_PURPOSE}={declared!r} is not a valid label value; ignored")
    component = pod_labels.get(names.LABEL_APP_COMPONENT)
    if component and is_valid_label_value(component):
        return component, warnings
    return UNSPECIFIED, warnings


def derive_pod_labels(
    workload: Workload,
    namespace: NamespaceFacts,
    service_account: str,
    pod_labels: Mapping[str, str],
    pod_annotations: Mapping[str, str],
    instance: str,
) -> LabelDecision:
    """netwarden's labels for a pod, and warnings for any the pod tried to set itself."""
    purpose, warnings = purpose_of(pod_labels, pod_annotations)
    derived = {
        names.LABEL_IDENTITY: workload.identity,
        names.LABEL_WORKLOAD_KIND: fit_label_value(workload.kind.lower()),
        names.LABEL_WORKLOAD: fit_label_value(workload.name),
        names.LABEL_SERVICE_ACCOUNT: fit_label_value(service_account or "default"),
        names.LABEL_PURPOSE: purpose,
        names.LABEL_ENVIRONMENT: environment_of(namespace),
        names.LABEL_INSTANCE: instance,
    }
    for key, claimed in sorted(pod_labels.items()):
        if is_reserved_label(key) and derived.get(key) != claimed:
            warnings.append(
                f"label {key}={claimed!r} is reserved for netwarden and was replaced by {derived.get(key, '<removed>')!r}"
            )
    return LabelDecision(derived, tuple(warnings))


def is_instance_value(value: str) -> bool:
    """The instance label netwarden generates: a lowercase canonical uuid4 (36 characters)."""
    return _INSTANCE_RE.fullmatch(value) is not None


def netwarden_labels_of(pod_labels: Mapping[str, str]) -> dict[str, str]:
    """The reserved labels a pod carries (netwarden's, or claimed)."""
    return {k: v for k, v in pod_labels.items() if is_reserved_label(k)}


def is_reserved_label(key: str) -> bool:
    """Labels under netwarden's prefix are netwarden's to give; only the opt-in switch is the user's."""
    return key.startswith(names.PREFIX + "/") and key != names.LABEL_INJECT


def spoofed_label_keys(pod_labels: Mapping[str, str]) -> list[str]:
    """Reserved labels a pod carries that netwarden does not set (removed on admission)."""
    return sorted(k for k in pod_labels if is_reserved_label(k) and k not in names.POD_LABELS)
