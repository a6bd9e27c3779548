"""The RBAC netwarden's chart grants, as (apiGroup, resource, verb) per ServiceAccount role.

Kept by hand next to charts/netwarden/templates/_rbac-rules.tpl: test_chart_security.py checks the
rendered chart grants exactly this (fast), and test_rbac_coverage.py checks it is exactly what each
ServiceAccount was observed calling while the installed chart ran (and that netwarden.platform.kube.API_CALLS
and netwarden.certs.inject.CERT_JOB_API_CALLS are the unions). Keys are ServiceAccount names without the "<release>-netwarden-" prefix. "" is the core group.
"""

from __future__ import annotations

Triple = tuple[str, str, str]


def _grant(group: str, resources: tuple[str, ...], verbs: tuple[str, ...]) -> set[Triple]:
    return {(group, resource, verb) for resource in resources for verb in verbs}


#: Admission webhook (ClusterRole): namespace opt-in, owner verification, DNS Service, baseline policy, Events.
WEBHOOK: frozenset[Triple] = frozenset(
    _grant("", ("namespaces",), ("get",))
    | _grant("apps", ("replicasets", "statefulsets", "daemonsets", "deployments"), ("get",))
    | _grant("batch", ("jobs", "cronjobs"), ("get",))
    | _grant("", ("services",), ("get",))
    | _grant("networking.k8s.io", ("networkpolicies",), ("create",))
    | _grant("", ("events",), ("create",))
)

#: Reconciler: ClusterRole (informers, backfill + owner checks, policies, Events, DNS Service) + Role for its Lease.
RECONCILER: frozenset[Triple] = frozenset(
    _grant("", ("pods",), ("list", "watch", "patch"))
    | _grant("", ("namespaces",), ("list", "watch"))
    | _grant("apps", ("replicasets", "statefulsets", "daemonsets", "deployments"), ("get",))
    | _grant("batch", ("jobs", "cronjobs"), ("get",))
    | _grant("networking.k8s.io", ("networkpolicies",), ("get", "list", "watch", "create", "update", "patch", "delete"))
    | _grant("", ("events",), ("create",))
    | _grant("", ("services",), ("get",))
    | _grant("coordination.k8s.io", ("leases",), ("get", "create", "update"))
    | _grant("", ("secrets",), ("get", "update"))  # the learned-state Secrets, by name
)

#: Certificate rotation CronJob (built-in certificates only): the TLS/CA Secrets (get/update by
#: name) and caBundle of netwarden's own two webhook configurations (by name).
CERTS: frozenset[Triple] = frozenset(
    _grant("", ("secrets",), ("get", "update"))
    | _grant("admissionregistration.k8s.io", ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"), ("get", "patch"))
)

#: Install/upgrade hook Jobs: the CronJob's rules, plus creating the Secrets the first time.
CERTS_HOOK: frozenset[Triple] = CERTS | _grant("", ("secrets",), ("create",))

#: Per ServiceAccount. "certs" runs the rotation CronJob; "certs-hook" the install/upgrade hooks.
EXPECTED_RBAC: dict[str, frozenset[Triple]] = {
    "webhook": WEBHOOK,
    "reconciler": RECONCILER,
    "certs": CERTS,
    "certs-hook": CERTS_HOOK,
}

#: Added to the reconciler's ClusterRole only when an admin-tier quarantine backend is on
#: (config.quarantine.backend, or "auto" with the resource served), by the resource it writes.
#: netwarden.platform.kube.admin_policy_api_calls is the same; tests/reconciler/test_admin_backend.py observes it.
RECONCILER_ADMIN_POLICIES: dict[str, frozenset[Triple]] = {
    plural: frozenset(_grant("policy.networking.k8s.io", (plural,), ("get", "list", "create", "update", "delete")))
    for plural in ("clusternetworkpolicies", "adminnetworkpolicies")
}

#: Which component's code each ServiceAccount runs (for the coverage test).
CODE_OF: dict[str, str] = {"webhook": "webhook", "reconciler": "reconciler", "certs": "certs", "certs-hook": "certs"}
