"""The audit record: who made which request, in the terms RBAC authorizes it by.

Every authenticated request is recorded as kube-apiserver's authorizer sees it: username, verb
(get/list/watch/create/update/patch/delete/deletecollection), apiGroup, resource, subresource,
namespace and name; a non-resource request (discovery, /version) has no resource and carries its
path. `LocalKube.audit` is the list of records, in order; GET /_localkube/audit serves them as JSON.
Tests compare what a component actually called with what its RBAC grants.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

#: HTTP method -> RBAC verb for a request on one named object / on a collection.
_NAMED_VERBS = {"GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "POST": "create"}
_COLLECTION_VERBS = {"GET": "list", "HEAD": "list", "POST": "create", "DELETE": "deletecollection", "PUT": "update",
                     "PATCH": "patch"}
#: Subresources of a Namespace object (/api/v1/namespaces/NAME/<sub>), not namespaced collections.
NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True)
class AuditRecord:
    """One request, as RBAC would authorize it (`resource` is "" for a non-resource URL)."""

    user: str
    verb: str
    api_group: str
    resource: str
    subresource: str
    namespace: str
    name: str
    path: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def resource_attributes(path: str) -> tuple[str, str, str, str, str] | None:
    """(apiGroup, resource, subresource, namespace, name) of a resource URL; None for anything else.

    Follows the apiserver's RequestInfoFactory: /api/v1/... is the core group, /apis/G/V/... a named
    group, `namespaces/NS/<resource>` scopes a namespaced resource, and a namespace object's own URL
    (/api/v1/namespaces/NS[/status]) is the `namespaces` resource named NS.
    """
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return None
    if rest[0] == "namespaces" and (len(rest) == 2 or (len(rest) == 3 and rest[2] in NAMESPACE_SUBRESOURCES)):
        return group, "namespaces", rest[2] if len(rest) == 3 else "", "", rest[1]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    return group, resource, subresource, namespace, name


def record_for(user: str, method: str, path: str, params: Mapping[str, str]) -> AuditRecord:
    """The audit record of one request (watch is a GET with watch=true, as RBAC counts it)."""
    attributes = resource_attributes(path)
    if attributes is None:
        return AuditRecord(user, _NAMED_VERBS.get(method, method.lower()), "", "", "", "", "", path)
    group, resource, subresource, namespace, name = attributes
    if method in ("GET", "HEAD") and params.get("watch") in ("1", "true", "True"):
        verb = "watch"
    else:
        verb = (_NAMED_VERBS if name else _COLLECTION_VERBS).get(method, method.lower())
    return AuditRecord(user, verb, group, resource, subresource, namespace, name, path)
