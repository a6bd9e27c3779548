"""The table of resource types localkube serves: one generic store, one row per type."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any, Iterable

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One REST resource: where it lives on the wire and which generic behaviours apply."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str
    short_names: tuple[str, ...] = ()
    #: has a /status subresource; main-resource writes then ignore .status
    status_subresource: bool = False
    #: metadata.generation tracks spec changes
    generation: bool = False
    #: served because a CustomResourceDefinition says so (apiVersion follows the URL's version)
    custom: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """Store key: unique per group+resource."""
        return f"{self.group}/{self.plural}"

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


def _r(group: str, version: str, plural: str, kind: str, namespaced: bool = True, short: tuple[str, ...] = (),
       status: bool = False, generation: bool = False) -> ResourceType:
    return ResourceType(group, version, plural, kind, namespaced, kind.lower(), short, status, generation)


RESOURCES: tuple[ResourceType, ...] = (
    _r("", "v1", "namespaces", "Namespace", namespaced=False, short=("ns",), status=True),
    _r("", "v1", "pods", "Pod", short=("po",), status=True),
    _r("", "v1", "services", "Service", short=("svc",), status=True),
    _r("", "v1", "endpoints", "Endpoints", short=("ep",)),
    _r("", "v1", "serviceaccounts", "ServiceAccount", short=("sa",)),
    _r("", "v1", "secrets", "Secret"),
    _r("", "v1", "configmaps", "ConfigMap", short=("cm",)),
    _r("", "v1", "events", "Event", short=("ev",)),
    _r("", "v1", "nodes", "Node", namespaced=False, short=("no",), status=True),
    _r("events.k8s.io", "v1", "events", "Event", short=("ev",)),
    _r("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short=("netpol",), generation=True),
    _r("coordination.k8s.io", "v1", "leases", "Lease"),
    _r("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration",
       namespaced=False, generation=True),
    _r("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration",
       namespaced=False, generation=True),
    _r("apps", "v1", "deployments", "Deployment", short=("deploy",), status=True, generation=True),
    _r("apps", "v1", "replicasets", "ReplicaSet", short=("rs",), status=True, generation=True),
    _r("apps", "v1", "statefulsets", "StatefulSet", short=("sts",), status=True, generation=True),
    _r("apps", "v1", "daemonsets", "DaemonSet", short=("ds",), status=True, generation=True),
    _r("batch", "v1", "jobs", "Job", status=True, generation=True),
    _r("batch", "v1", "cronjobs", "CronJob", short=("cj",), status=True, generation=True),
    _r("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    _r("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    _r("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    _r("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    _r("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short=("pdb",), status=True, generation=True),
    _r("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", namespaced=False,
       short=("crd", "crds"), status=True, generation=True),
)

#: (group, version, plural) -> type
BY_PATH: dict[tuple[str, str, str], ResourceType] = {(r.group, r.version, r.plural): r for r in RESOURCES}
#: group -> versions served (first is preferred)
GROUP_VERSIONS: dict[str, list[str]] = {}
for _res in RESOURCES:
    GROUP_VERSIONS.setdefault(_res.group, [])
    if _res.version not in GROUP_VERSIONS[_res.group]:
        GROUP_VERSIONS[_res.group].append(_res.version)

#: fields a fieldSelector may use for every type, plus per-kind extras (as the real server allows)
FIELD_SELECTORS: dict[str, tuple[str, ...]] = {
    "Pod": ("status.phase", "spec.nodeName", "spec.serviceAccountName", "spec.restartPolicy", "status.podIP"),
    "Event": ("involvedObject.kind", "involvedObject.name", "involvedObject.namespace", "involvedObject.uid",
              "reason", "type", "source", "regarding.kind", "regarding.name", "regarding.namespace"),
    "Secret": ("type",),
    "Namespace": ("status.phase",),
    "Job": ("status.successful",),
}


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    return BY_PATH.get((group, version, plural))


CRDS = BY_PATH[("apiextensions.k8s.io", "v1", "customresourcedefinitions")]


def custom_types(crd: dict[str, Any]) -> list[tuple[ResourceType, dict[str, Any] | None]]:
    """The resource types (with their openAPIV3Schema) a CustomResourceDefinition serves."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for version in spec.get("versions") or []:
        if not version.get("served"):
            continue
        rt = ResourceType(spec.get("group", ""), version.get("name", ""), names.get("plural", ""),
                          names.get("kind", ""), spec.get("scope") == "Namespaced",
                          names.get("singular") or names.get("kind", "").lower(), tuple(names.get("shortNames") or ()),
                          status_subresource="status" in (version.get("subresources") or {}), generation=True,
                          custom=True)
        out.append((rt, (version.get("schema") or {}).get("openAPIV3Schema")))
    return out


class Catalog:
    """What this server serves: the built-in table plus the types of every stored CRD (kept current
    through the store's change listener, as the real server's discovery follows CRDs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._crds: dict[str, dict[str, Any]] = {}
        self._custom: dict[tuple[str, str, str], ResourceType] = {}
        self._schemas: dict[tuple[str, str, str], dict[str, Any] | None] = {}

    def crd_changed(self, name: str, crd: dict[str, Any] | None) -> None:
        with self._lock:
            if crd is None:
                self._crds.pop(name, None)
            else:
                self._crds[name] = crd
            self._custom, self._schemas = {}, {}
            for stored in self._crds.values():
                for rt, schema in custom_types(stored):
                    path = (rt.group, rt.version, rt.plural)
                    if path not in BY_PATH:
                        self._custom[path], self._schemas[path] = rt, schema

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return BY_PATH.get((group, version, plural)) or self._custom.get((group, version, plural))

    def schema(self, rt: ResourceType) -> dict[str, Any] | None:
        return self._schemas.get((rt.group, rt.version, rt.plural))

    def types(self) -> list[ResourceType]:
        with self._lock:
            return [*RESOURCES, *self._custom.values()]

    def keys(self) -> set[str]:
        return {rt.key for rt in self.types()}

    def by_key(self, key: str) -> ResourceType | None:
        return next((rt for rt in self.types() if rt.key == key), None)

    def group_versions(self) -> dict[str, list[str]]:
        """group -> versions served (built-in groups first, in table order)."""
        out: dict[str, list[str]] = {}
        for rt in self.types():
            versions = out.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        return {group: sorted(versions, key=version_priority) for group, versions in out.items()}


def version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes' version order (v1 > v1beta2 > v1beta1 > v1alpha1 > other): sort key, best first."""
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if match is None:
        return (3, 0, 0)
    stage = {None: 0, "beta": 1, "alpha": 2}[match[2]]
    return (stage, -int(match[1]), -int(match[3] or 0))


def served_in(types: Iterable[ResourceType], group: str, version: str) -> list[ResourceType]:
    return [r for r in types if r.group == group and r.version == version]


def discovery_entry(r: ResourceType) -> list[dict[str, object]]:
    """APIResource entries for r (the resource and its status subresource)."""
    entry: dict[str, object] = {
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": list(ALL_VERBS),
    }
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    out = [entry]
    if r.status_subresource:
        out.append({"name": f"{r.plural}/status", "singularName": "", "namespaced": r.namespaced,
                    "kind": r.kind, "verbs": ["get", "patch", "update"]})
    return out
