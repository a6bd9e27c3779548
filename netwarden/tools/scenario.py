"""Demo scenarios: a documented YAML/JSON file describing a cluster and a story. Pure parsing.

A scenario has `namespaces`, `workloads` and `steps`. Each step is one mapping with exactly one
action key (plus an optional `title`):

- `deploy: {}`: create every namespace and workload of the scenario.
- `traffic: {seconds, rate, edges: [{from, to, port, protocol, verdict}]}`: stream Hubble flows.
  `from`/`to` name a workload (`namespace/name`, `namespace/name#N` for its N-th pod) or an IP.
- `falco: {target, pod, rule, priority}`: post a falcosidekick alert about one pod.
- `alertmanager: {target, pod, alertname, severity, status}`: post an Alertmanager alert.
- `set_ready: {target, pod, ready}`: the kubelet reports a pod (un)ready.
- `restart: {target, pod, count}`: the kubelet restarts a pod's container.
- `scale: {target, replicas}` / `delete_workload: {target}` / `delete_namespace: {name}`.
- `wait: SECONDS`.
- `expect: {within, checks: [...]}`: poll the cluster until every check holds (or fail). Checks:
  `{policies: N}` managed policies in total, `{step: {target, is}}` the workload policy's step,
  `{quarantined: {target, pod}}` a quarantine policy isolates that pod, `{not_quarantined: {target}}`,
  `{labelled: target}` every pod of the workload has netwarden's labels,
  `{allowed: {from, to, port, protocol}}` / `{denied: {...}}` evaluated with NetworkPolicy semantics,
  `{event: REASON}` an Event with that reason exists.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Mapping

from netwarden.model.errors import NetwardenError

STEP_KINDS = (
    "deploy", "traffic", "falco", "alertmanager", "set_ready", "restart", "scale",
    "delete_workload", "delete_namespace", "wait", "expect",
)
CHECK_KINDS = ("policies", "step", "quarantined", "not_quarantined", "labelled", "allowed", "denied", "event")


class ScenarioError(NetwardenError, ValueError):
    """A scenario file that does not describe a playable story; the message says where."""


@dataclass(frozen=True)
class NamespaceSpec:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkloadSpec:
    namespace: str
    name: str
    kind: str = "Deployment"
    replicas: int = 1
    image: str = "registry.k8s.io/pause:3.9"
    ports: tuple[int, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Endpoint:
    """A flow end in a scenario: a workload's pod (by index) or a literal IP."""

    workload: str | None = None
    pod: int | None = None
    ip: str | None = None


@dataclass(frozen=True)
class Step:
    kind: str
    args: Mapping[str, Any]
    title: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    namespaces: tuple[NamespaceSpec, ...]
    workloads: tuple[WorkloadSpec, ...]
    steps: tuple[Step, ...]

    def workload(self, key: str) -> WorkloadSpec:
        for workload in self.workloads:
            if workload.key == key:
                return workload
        raise ScenarioError(f"unknown workload {key!r} (expected namespace/name of a declared workload)")


def parse_endpoint(text: str) -> Endpoint:
    """`ns/name`, `ns/name#2`, or an IP address."""
    try:
        ipaddress.ip_address(text)
        return Endpoint(ip=text)
    except ValueError:
        pass
    workload, _, index = text.partition("#")
    if workload.count("/") != 1:
        raise ScenarioError(f"endpoint {text!r}: expected namespace/workload[#pod] or an IP")
    if index and not index.isdigit():
        raise ScenarioError(f"endpoint {text!r}: pod index must be a number")
    return Endpoint(workload=workload, pod=int(index) if index else None)


def parse_scenario(data: Any) -> Scenario:
    if not isinstance(data, Mapping):
        raise ScenarioError("a scenario is a mapping with namespaces, workloads and steps")
    namespaces = tuple(
        NamespaceSpec(_req(ns, "name", f"namespaces[{i}]"), dict(ns.get("labels") or {}), dict(ns.get("annotations") or {}))
        for i, ns in enumerate(_list(data, "namespaces"))
    )
    known_namespaces = {ns.name for ns in namespaces}
    workloads = []
    for i, raw in enumerate(_list(data, "workloads")):
        where = f"workloads[{i}]"
        kind = raw.get("kind", "Deployment")
        if kind not in ("Deployment", "StatefulSet"):
            raise ScenarioError(f"{where}: kind must be Deployment or StatefulSet")
        namespace = _req(raw, "namespace", where)
        if namespace not in known_namespaces:
            raise ScenarioError(f"{where}: namespace {namespace!r} is not declared under namespaces")
        ports = raw.get("ports") or []
        if not all(isinstance(p, int) and 0 < p < 65536 for p in ports):
            raise ScenarioError(f"{where}: ports must be numbers 1-65535")
        workloads.append(
            WorkloadSpec(
                namespace=namespace, name=_req(raw, "name", where), kind=kind, replicas=int(raw.get("replicas", 1)),
                image=raw.get("image", WorkloadSpec.image), ports=tuple(ports), labels=dict(raw.get("labels") or {}),
                annotations=dict(raw.get("annotations") or {}), service_account=raw.get("serviceAccount", "default"),
            )
        )
    scenario = Scenario(str(data.get("name", "scenario")), namespaces, tuple(workloads), ())
    steps = []
    for i, raw in enumerate(_list(data, "steps")):
        if not isinstance(raw, Mapping):
            raise ScenarioError(f"steps[{i}]: a step is a mapping")
        actions = [k for k in raw if k != "title"]
        if len(actions) != 1 or actions[0] not in STEP_KINDS:
            raise ScenarioError(f"steps[{i}]: exactly one of {', '.join(STEP_KINDS)} (got {actions})")
        kind = actions[0]
        args = raw[kind] if isinstance(raw[kind], Mapping) else {"value": raw[kind]}
        _validate_step(scenario, kind, args, f"steps[{i}] ({kind})")
        steps.append(Step(kind, args, str(raw.get("title", ""))))
    if not steps:
        raise ScenarioError("a scenario needs at least one step")
    return Scenario(scenario.name, namespaces, tuple(workloads), tuple(steps))


def _validate_step(scenario: Scenario, kind: str, args: Mapping[str, Any], where: str) -> None:
    def target(key: str = "target") -> None:
        if key not in args:
            raise ScenarioError(f"{where}: missing {key}")
        scenario.workload(str(args[key]).partition("#")[0])

    if kind == "traffic":
        edges = args.get("edges")
        if not isinstance(edges, list) or not edges:
            raise ScenarioError(f"{where}: edges must be a non-empty list")
        for edge in edges:
            for side in ("from", "to"):
                end = parse_endpoint(str(edge.get(side, "")))
                if end.workload:
                    scenario.workload(end.workload)
        if float(args.get("seconds", 1)) <= 0 or float(args.get("rate", 1)) <= 0:
            raise ScenarioError(f"{where}: seconds and rate must be positive")
    elif kind in ("falco", "alertmanager", "set_ready", "restart", "scale", "delete_workload"):
        target()
    elif kind == "expect":
        checks = args.get("checks")
        if not isinstance(checks, list) or not checks:
            raise ScenarioError(f"{where}: checks must be a non-empty list")
        for check in checks:
            if not isinstance(check, Mapping) or len(check) != 1 or next(iter(check)) not in CHECK_KINDS:
                raise ScenarioError(f"{where}: each check is one of {', '.join(CHECK_KINDS)}")
    elif kind == "wait" and not isinstance(args.get("value"), (int, float)):
        raise ScenarioError(f"{where}: wait takes a number of seconds")


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise ScenarioError(f"{key} must be a list")
    return value


def _req(data: Mapping[str, Any], key: str, where: str) -> str:
    if not isinstance(data, Mapping) or not data.get(key):
        raise ScenarioError(f"{where}: missing {key}")
    return str(data[key])
