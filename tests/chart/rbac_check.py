"""Observed requests per ServiceAccount against the chart's rendered RBAC: one comparison, two engines.

tests/chart/test_rbac_coverage.py feeds it LocalKube's audit; tests/kube/test_kube_least_privilege.py
feeds it the real kube-apiserver's audit log. Both ask the same two questions per ServiceAccount:
which requests would no rendered rule allow (namespace and resourceNames included), and which
rules did nothing use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from localkube.audit import AuditRecord
from tests.chart.chartkit import NAMESPACE, RELEASE, Manifest, of_kind

PREFIX = f"{RELEASE}-netwarden-"
Triple = tuple[str, str, str]


@dataclass(frozen=True)
class Grant:
    """One (apiGroup, resource, verb[, resourceName]) of a rendered rule, where it applies."""

    service_account: str
    role: str  # "ClusterRole/NAME" or "Role/NAME"
    api_group: str
    resource: str
    verb: str
    resource_name: str  # "" = any name
    namespace: str  # "" = every namespace (ClusterRole via ClusterRoleBinding)

    def allows(self, record: AuditRecord) -> bool:
        resource = f"{record.resource}/{record.subresource}" if record.subresource else record.resource
        return (self.api_group == record.api_group and self.resource == resource and self.verb == record.verb
                and (not self.namespace or self.namespace == record.namespace)
                and (not self.resource_name or self.resource_name == record.name))

    def row(self) -> tuple[str, str, str, str, str, str]:
        return (self.service_account, self.role, self.api_group or '""', self.resource, self.verb,
                self.resource_name or "*")


def grants(docs: list[Manifest]) -> list[Grant]:
    roles = {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs if doc["kind"] in ("Role", "ClusterRole")}
    out: list[Grant] = []
    for binding in docs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
        namespace = binding["metadata"].get("namespace", "") if binding["kind"] == "RoleBinding" else ""
        for subject in binding["subjects"]:
            account = subject["name"].removeprefix(PREFIX)
            for rule in role["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            for name in rule.get("resourceNames") or [""]:
                                out.append(Grant(account, f"{role['kind']}/{role['metadata']['name']}", group,
                                                 resource, verb, name, namespace))
    return out


def accounts(docs: list[Manifest]) -> dict[str, str]:
    """Username -> ServiceAccount key ("webhook", "reconciler", "certs", "certs-hook")."""
    return {f"system:serviceaccount:{NAMESPACE}:{doc['metadata']['name']}": doc["metadata"]["name"].removeprefix(PREFIX)
            for doc in of_kind(docs, "ServiceAccount")}


def records_by_account(docs: list[Manifest], records: Sequence[AuditRecord]) -> dict[str, list[tuple[int, AuditRecord]]]:
    """ServiceAccount key -> (index in `records`, record) of its resource requests (discovery is everyone's)."""
    users = accounts(docs)
    per: dict[str, list[tuple[int, AuditRecord]]] = {key: [] for key in users.values()}
    for index, record in enumerate(records):
        if record.user in users and record.resource:
            per[users[record.user]].append((index, record))
    return per


@dataclass(frozen=True)
class RbacComparison:
    """What the observed requests say about the rendered RBAC."""

    #: ServiceAccount key -> sorted (verb, apiGroup, resource, subresource, namespace, name) no rule allows
    denied: dict[str, list[tuple[str, ...]]]
    #: rows (Grant.row()) of rendered rules no request used
    unused: list[tuple[str, ...]]
    #: ServiceAccount key -> (apiGroup, resource, verb) it was seen calling (as expected_rbac.py lists them)
    called: dict[str, set[Triple]]


def compare(docs: list[Manifest], records: Sequence[AuditRecord]) -> RbacComparison:
    """Per ServiceAccount: requests the rendered rules refuse, and rules nothing used."""
    granted = grants(docs)
    per = records_by_account(docs, records)
    denied: dict[str, list[tuple[str, ...]]] = {}
    for account, seen in per.items():
        rules = [grant for grant in granted if grant.service_account == account]
        refused = sorted({(r.verb, r.api_group, r.resource, r.subresource, r.namespace, r.name)
                          for _, r in seen if not any(rule.allows(r) for rule in rules)})
        if refused:
            denied[account] = refused
    unused = [grant.row() for grant in granted
              if not any(grant.allows(record) for _, record in per.get(grant.service_account, []))]
    called = {account: {(r.api_group, r.resource, r.verb) for _, r in seen} for account, seen in per.items()}
    return RbacComparison(denied, unused, called)


# --- kube-apiserver's audit log ------------------------------------------------------------------
@dataclass(frozen=True)
class AuditEvent:
    """One request from kube-apiserver's JSON audit log: the RBAC view of it and its response code."""

    record: AuditRecord
    code: int
    #: the authorizer's verdict ("allow", "forbid"; "" before authorization, e.g. an unauthenticated request)
    decision: str = ""
    #: responseStatus.message of a failed request
    message: str = ""


def read_audit_log(lines: Iterable[str]) -> list[AuditEvent]:
    """kube-apiserver audit JSON lines -> one event per request (auditID), in order of arrival.

    A watch logs ResponseStarted when it opens and ResponseComplete when it ends; the first line
    seen for an auditID places the request, the last carries its final code.
    """
    order: list[str] = []
    by_id: dict[str, dict[str, object]] = {}
    for line in lines:
        if not line.strip():
            continue
        event = json.loads(line)
        audit_id = event["auditID"]
        if audit_id not in by_id:
            order.append(audit_id)
        by_id[audit_id] = event
    out: list[AuditEvent] = []
    for audit_id in order:
        event = by_id[audit_id]
        ref = event.get("objectRef") or {}
        assert isinstance(ref, dict)
        record = AuditRecord(
            user=str((event.get("user") or {}).get("username", "")),  # type: ignore[union-attr]
            verb=str(event.get("verb", "")),
            api_group=str(ref.get("apiGroup", "")),
            resource=str(ref.get("resource", "")),
            subresource=str(ref.get("subresource", "")),
            namespace=str(ref.get("namespace", "")),
            name=str(ref.get("name", "")),
            path=str(event.get("requestURI", "")),
        )
        status: dict[str, object] = event.get("responseStatus") or {}  # type: ignore[assignment]
        annotations: dict[str, str] = event.get("annotations") or {}  # type: ignore[assignment]
        out.append(AuditEvent(record, int(status.get("code", 0)),  # type: ignore[call-overload]
                              annotations.get("authorization.k8s.io/decision", ""), str(status.get("message", ""))))
    return out


def read_audit_file(path: Path) -> list[AuditEvent]:
    try:
        return read_audit_log(path.read_text().splitlines())
    except FileNotFoundError:
        return []
