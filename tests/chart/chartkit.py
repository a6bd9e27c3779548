"""Render and lint charts/netwarden in-process, and read what the render grants and runs.

Helm runs through helm-python-sdk (Helm v4's Go SDK behind a C ABI, shipped as a wheel), so the
tests need no helm binary and no cluster: `pip install helm-python-sdk kubernetes-validate`.
Offline rendering has no cluster to `lookup`, which is what a first install sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

import helm_python as helm

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "netwarden"
RELEASE = "nw"
NAMESPACE = "netwarden-system"
#: Oldest and newest Kubernetes versions kubernetes-validate knows within Chart.yaml's kubeVersion.
KUBE_VERSIONS = ("1.27.0", "1.37.0")

Manifest = dict[str, Any]


def render_files(values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would produce for an install."""
    with helm.Chart.load(CHART_DIR) as chart:
        return chart.render(values or {}, name=name, namespace=namespace, is_install=True)


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE) -> list[Manifest]:
    """Every object the chart would create, hooks included, as plain dicts (NOTES.txt left out)."""
    docs: list[Manifest] = []
    for path, text in sorted(render_files(values, name=name, namespace=namespace).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def notes(values: dict[str, Any] | None = None) -> str:
    return next(text for path, text in render_files(values).items() if path.endswith("NOTES.txt"))


def lint(values: dict[str, Any] | None = None, *, kube_version: str | None = None) -> list[dict[str, Any]]:
    """`helm lint --strict` findings of severity warning or error (info findings are left out)."""
    report = helm.lint(CHART_DIR, values, strict=True, namespace=NAMESPACE, kube_version=kube_version)
    findings = [m for m in report["messages"] if m["severity"] >= 2]
    return findings + [{"severity": 3, "path": "", "error": e} for e in report.get("errors") or []]


def of_kind(docs: Iterable[Manifest], kind: str) -> list[Manifest]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: Iterable[Manifest], kind: str, name_suffix: str = "") -> Manifest:
    matches = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"].endswith(name_suffix)]
    assert len(matches) == 1, f"expected one {kind} ending in {name_suffix!r}, got {[m['metadata']['name'] for m in matches]}"
    return matches[0]


def pod_specs(docs: Iterable[Manifest]) -> Iterator[tuple[str, Manifest]]:
    """(object name, pod spec) for every Deployment, Job and CronJob."""
    for doc in docs:
        kind = doc["kind"]
        if kind in ("Deployment", "Job", "DaemonSet", "StatefulSet"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield doc["metadata"]["name"], doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


Triple = tuple[str, str, str]


def granted_rbac(docs: list[Manifest], release_name: str = RELEASE) -> dict[str, set[Triple]]:
    """(apiGroup, resource, verb) granted to each netwarden ServiceAccount, keyed by role.

    The key is the ServiceAccount name without the "<release>-netwarden-" prefix ("webhook",
    "reconciler", "certs", "certs-hook"). Roles and ClusterRoles are both counted: the triple says
    what may be called, the template says where.
    """
    roles = {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs if doc["kind"] in ("Role", "ClusterRole")}
    prefix = f"{release_name}-netwarden-"
    granted: dict[str, set[Triple]] = {}
    for binding in docs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount", subject
            key = subject["name"].removeprefix(prefix)
            triples = granted.setdefault(key, set())
            for rule in role["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            triples.add((group, resource, verb))
    return granted
