"""`netwarden demo`: the whole story on this machine, on the real code paths, checked as it goes.

The player drives a running `Stack` through a scenario (see netwarden/tools/scenario.py for the format):
it creates workloads through the API (pods pass through the real admission webhook), streams
Hubble flows and Falco/Alertmanager alerts to the reconciler's authenticated signal endpoints,
plays the kubelet, and after every `expect` step checks the cluster until the claim holds. It is
also an end-to-end test: a claim that does not hold within its time fails the demo loudly.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping

import requests
import yaml
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from netwarden.model import names
from netwarden.model.netpol_eval import ContainerPort, ExternalIP, NamespaceInfo, PodInfo, PolicySet
from netwarden.tools.report import (MapEdge, MapNode, ReportData, TimelineEntry, merge_edges, nodes_from_cluster, render_map_svg,
                              render_report_html, timeline_from_events)
from netwarden.model.identity import namespace_of_identity, workload_identity_value
from netwarden.tools.scenario import Scenario, ScenarioError, Step, WorkloadSpec, parse_endpoint, parse_scenario
from netwarden.tools.stack import Stack, real_packets_missing, start_stack
from netwarden.tools.traffic import PodEnd, WorldEnd, steady_flows
from netwarden.model.errors import NetwardenError

#: Reconciler settings for a story told in seconds rather than hours.
DEMO_RECONCILER_CONFIG: dict[str, Any] = {
    "reconciler": {"cleanup_grace_seconds": 2.0},
    "core": {
        "learning_seconds": 5.0,
        "rate_bucket_seconds": 0.5,
        "rate_min_buckets": 4,
        # The shop has 7 pods: the production default (10% of pods) would refuse any quarantine here.
        "blast_max_pod_fraction": 0.5,
        # The story's false positive: here a sustained spike alone tightens (default weight 8 < threshold 10).
        "deviation_weights": {"rate-spike": 12.0},
    },
}


class DemoFailure(NetwardenError, AssertionError):
    """netwarden did not do what a step claims."""


@dataclass
class Timeline:
    started: float = field(default_factory=time.monotonic)
    entries: list[TimelineEntry] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.started


@dataclass
class PolicyLog:
    """Every change to managed policies, as seen by a watch from the demo's side."""

    created: int = 0
    changed: int = 0
    removed: int = 0
    rolled_back: int = 0
    current: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def load_scenario(path: str | None) -> Scenario:
    if path is None:
        text = resources.files("netwarden.tools").joinpath("scenarios/shop.yaml").read_text()
    else:
        text = Path(path).read_text()
    return parse_scenario(yaml.safe_load(text))


#: Set by Ctrl-C during the story: a step boundary ends the story even when a library swallowed the
#: KeyboardInterrupt raised inside its call.
CTRL_C = threading.Event()


def _remember_ctrl_c(signum: int, frame: Any) -> None:
    CTRL_C.set()
    raise KeyboardInterrupt


class Player:
    """Plays a scenario against a running stack."""

    def __init__(self, stack: Stack, scenario: Scenario, out: Callable[[str], None] = print,
                 relay: "RelayFlows | None" = None) -> None:
        self.stack = stack
        #: With --flows-from hubble-relay: flows go out as Hubble Relay's GetFlows stream, not as POSTs.
        self.relay = relay
        self.scenario = scenario
        self.out = out
        self.api = stack.api_client()
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.net = client.NetworkingV1Api(self.api)
        self.timeline = Timeline()
        self.policy_log = PolicyLog()
        self.edges: list[MapEdge] = []
        self.map_snapshot: list[dict[str, Any]] = []
        self.pods_snapshot: list[dict[str, Any]] = []
        self.last_signal: float | None = None
        self.events_collected = False
        self.latencies: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch_policies, daemon=True, name="demo-policy-watch")

    # -- plumbing -----------------------------------------------------------------------------
    def say(self, text: str) -> None:
        self.out(f"[{self.timeline.now():6.1f}s] {text}")

    def _dict(self, obj: Any) -> dict[str, Any]:
        return self.api.sanitize_for_serialization(obj)

    def _watch_policies(self) -> None:
        """Resumes from the last resourceVersion, so no change is missed between watch calls; 410 re-lists."""
        selector = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY_VALUE}"
        resource_version = ""
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(self.net.list_network_policy_for_all_namespaces, label_selector=selector,
                                      resource_version=resource_version, timeout_seconds=5):
                    obj = self._dict(event["object"])
                    resource_version = obj["metadata"]["resourceVersion"]
                    key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
                    with self.policy_log.lock:
                        if event["type"] == "ADDED" and key not in self.policy_log.current:
                            self.policy_log.created += 1
                        elif event["type"] == "MODIFIED":
                            self.policy_log.changed += 1
                        if event["type"] == "DELETED":
                            self.policy_log.removed += 1
                            self.policy_log.current.pop(key, None)
                        else:
                            self.policy_log.current[key] = obj
                    if self._stop.is_set():
                        break
            except ApiException as exc:
                if exc.status == 410:
                    resource_version = ""  # too old: start again from the current state (known keys are not recounted)
                time.sleep(0.2)
            except Exception:  # noqa: BLE001 - the watch is restarted where it left off
                time.sleep(0.2)

    def pods_of(self, key: str) -> list[dict[str, Any]]:
        workload = self.scenario.workload(key)
        pods = [self._dict(p) for p in self.core.list_namespaced_pod(workload.namespace).items]
        mine = [p for p in pods if p["metadata"].get("labels", {}).get("app") == workload.name
                and not p["metadata"].get("deletionTimestamp")]
        return sorted(mine, key=lambda p: p["metadata"]["name"])

    def pod(self, key: str, index: int | None) -> dict[str, Any]:
        pods = self.pods_of(key)
        if not pods:
            raise DemoFailure(f"workload {key} has no pods")
        return pods[(index or 0) % len(pods)]

    # -- running ------------------------------------------------------------------------------
    def play(self) -> None:
        self._watcher.start()
        try:
            for number, step in enumerate(self.scenario.steps, 1):
                if CTRL_C.is_set():
                    raise KeyboardInterrupt  # one some library swallowed mid-step (it happened inside validation)
                self.stack.check_alive()
                title = step.title or step.kind
                self.say(f"step {number}/{len(self.scenario.steps)}: {title}")
                getattr(self, f"step_{step.kind}")(step)
        finally:
            self._stop.set()

    def step_deploy(self, step: Step) -> None:
        for ns in self.scenario.namespaces:
            body = {"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": ns.name, "labels": dict(ns.labels), "annotations": dict(ns.annotations)}}
            self.core.create_namespace(body)
        for workload in self.scenario.workloads:
            self.create_workload(workload)
        self.say(f"created {len(self.scenario.namespaces)} namespaces and {len(self.scenario.workloads)} workloads")

    def create_workload(self, w: WorkloadSpec) -> None:
        """A Deployment or StatefulSet as the scenario declares it (pods then pass through admission)."""
        labels = {"app": w.name, **w.labels}
        template = {
            "metadata": {"labels": labels, "annotations": dict(w.annotations)},
            "spec": {"serviceAccountName": w.service_account, "containers": [{
                "name": w.name, "image": w.image,
                "ports": [{"containerPort": p, "protocol": "TCP"} for p in w.ports]}]},
        }
        spec = {"replicas": w.replicas, "selector": {"matchLabels": {"app": w.name}}, "template": template}
        meta = {"name": w.name, "namespace": w.namespace, "labels": {"app": w.name}}
        if w.kind == "StatefulSet":
            self.apps.create_namespaced_stateful_set(w.namespace, {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                                                  "metadata": meta, "spec": {**spec, "serviceName": w.name}})
        else:
            self.apps.create_namespaced_deployment(w.namespace, {"apiVersion": "apps/v1", "kind": "Deployment",
                                                                "metadata": meta, "spec": spec})

    def _end(self, text: str) -> PodEnd | WorldEnd:
        end = parse_endpoint(text)
        if end.ip:
            return WorldEnd(end.ip)
        pod = self.pod(end.workload or "", end.pod)
        deadline = time.monotonic() + 30.0  # a pod in a network namespace takes a moment to be Running
        while not (pod.get("status") or {}).get("podIP") and time.monotonic() < deadline:
            time.sleep(0.1)
            pod = self.pod(end.workload or "", end.pod)
        ip = (pod.get("status") or {}).get("podIP")
        if not ip:
            raise DemoFailure(f"pod {pod['metadata']['name']} has no IP yet")
        return PodEnd(pod["metadata"]["namespace"], pod["metadata"]["name"], ip, pod["metadata"].get("labels", {}))

    def step_traffic(self, step: Step) -> None:
        args = step.args
        edges = []
        for edge in args["edges"]:
            source, destination = self._end(str(edge["from"])), self._end(str(edge["to"]))
            verdict = str(edge.get("verdict", "FORWARDED")).upper()
            edges.append((source, destination, int(edge["port"]), str(edge.get("protocol", "TCP")), verdict))
            status = "anomalous" if args.get("anomalous") else ("denied" if verdict == "DROPPED" else "allowed")
            self.edges.append(MapEdge(self._node_id(str(edge["from"])), self._node_id(str(edge["to"])), int(edge["port"]),
                                      str(edge.get("protocol", "TCP")), status,
                                      max(1, int(float(args.get("seconds", 1)) * float(args.get("rate", 1)) / len(args["edges"])))))
        seconds, rate = float(args.get("seconds", 1)), float(args.get("rate", 100))
        batch: list[dict[str, Any]] = []
        sent = 0
        start = time.time()
        for record in steady_flows(edges, start=start, seconds=seconds, rate=rate, seed=len(self.edges)):
            batch.append(record)
            if len(batch) >= 200:
                sent += self._send_flows(batch)
                batch = []
        if batch:
            sent += self._send_flows(batch)
        if self.relay is not None:
            self.relay.settle()
        self.last_signal = time.monotonic()
        via = f"streamed by Hubble Relay ({self.relay.address}, mTLS)" if self.relay is not None else "sent"
        self.say(f"{via} {sent} Hubble flows over {len(edges)} edges ({rate:.0f}/s of traffic)")

    def _send_flows(self, batch: list[dict[str, Any]]) -> int:
        if self.relay is not None:
            return self.relay.send(batch)
        body = "\n".join(json.dumps(r) for r in batch)
        result = self.stack.post_signal("/signals/flows", body)
        rejected = result.get("rejected") or []
        if rejected:
            raise DemoFailure(f"reconciler rejected demo flows: {rejected[:3]}")
        return len(batch)

    def step_falco(self, step: Step) -> None:
        pod = self.pod(str(step.args["target"]), step.args.get("pod"))
        now = time.time()
        body = {
            "uuid": f"demo-{int(now * 1000)}",
            "output": f"Notice A shell was spawned in a container (user=root k8s.ns={pod['metadata']['namespace']} "
                      f"k8s.pod={pod['metadata']['name']} container=api shell=sh)",
            "priority": step.args.get("priority", "Critical"),
            "rule": step.args.get("rule", "Terminal shell in container"),
            "time": _iso(now),
            "output_fields": {"k8s.ns.name": pod["metadata"]["namespace"], "k8s.pod.name": pod["metadata"]["name"],
                              "container.id": "0123456789ab", "proc.name": "sh", "user.name": "root",
                              "evt.time": int(now * 1e9)},
            "source": "syscall",
            "tags": ["container", "shell", "mitre_execution"],
            "hostname": "demo-node",
        }
        peer = self._connected_peer(pod) if self.stack.pod_network is not None else None
        sent = time.monotonic()
        self.stack.post_signal("/signals/falco", body)
        self.last_signal = time.monotonic()
        self.say(f"Falco: {body['rule']} ({body['priority']}) in pod {pod['metadata']['name']}")
        if peer is not None:
            self._until_refused(peer, pod, sent)

    # -- real packets (engine kube with the enforcer) --------------------------------------------
    def _connected_peer(self, target: dict[str, Any]) -> tuple[dict[str, Any], int] | None:
        """A pod with a working connection to `target` right now (a real TCP handshake), and the port."""
        ports = [p["containerPort"] for c in target["spec"].get("containers", []) for p in c.get("ports") or []
                 if p.get("protocol", "TCP") == "TCP"]
        pods = [self._dict(p) for p in self.core.list_namespaced_pod(target["metadata"]["namespace"]).items]
        for port in ports:
            for peer in pods:
                ip = (peer.get("status") or {}).get("podIP")
                if ip and peer["metadata"]["uid"] != target["metadata"]["uid"] and \
                        self.stack.pod_network.probe(ip, target["status"]["podIP"], port, timeout=0.2) == "open":
                    self.say(f"real packets: {peer['metadata']['name']} -> {target['metadata']['name']}:{port} "
                             "connects (TCP handshake through the enforcer)")
                    return peer, port
        return None

    def _until_refused(self, peer: tuple[dict[str, Any], int], target: dict[str, Any], since: float) -> None:
        source, port = peer
        deadline = since + 10.0
        while time.monotonic() < deadline:
            started = time.monotonic()
            if self.stack.pod_network.probe(source["status"]["podIP"], target["status"]["podIP"], port) == "dropped":
                self.say(f"real packets: {source['metadata']['name']} -> {target['metadata']['name']}:{port} refused "
                         f"{(started - since) * 1000:.0f} ms after the alert (the enforcer dropped the SYN)")
                return
        raise DemoFailure(f"real packets: {source['metadata']['name']} -> {target['metadata']['name']}:{port} "
                          "still connects 10 s after the alert")

    def step_alertmanager(self, step: Step) -> None:
        pod = self.pod(str(step.args["target"]), step.args.get("pod"))
        body = alertmanager_body(pod["metadata"]["namespace"], pod["metadata"]["name"],
                                 status=step.args.get("status", "firing"),
                                 severity=step.args.get("severity", "critical"),
                                 alertname=step.args.get("alertname", "PodHighErrorRate"))
        self.stack.post_signal("/signals/alertmanager", body)
        self.last_signal = time.monotonic()

    def step_set_ready(self, step: Step) -> None:
        ready = bool(step.args.get("ready", False))
        for pod in self._targets(step):
            self.stack.kubelet.set_ready(pod["metadata"]["namespace"], pod["metadata"]["name"], ready)
            self.say(f"kubelet: pod {pod['metadata']['name']} ready={ready}")
        self.last_signal = time.monotonic()

    def step_restart(self, step: Step) -> None:
        for pod in self._targets(step):
            for _ in range(int(step.args.get("count", 1))):
                self.stack.kubelet.restart(pod["metadata"]["namespace"], pod["metadata"]["name"])
        self.last_signal = time.monotonic()

    def _targets(self, step: Step) -> list[dict[str, Any]]:
        if "pod" in step.args:
            return [self.pod(str(step.args["target"]), step.args["pod"])]
        return self.pods_of(str(step.args["target"]))

    def step_scale(self, step: Step) -> None:
        self._snapshot_for_map()
        workload = self.scenario.workload(str(step.args["target"]))
        body = {"spec": {"replicas": int(step.args["replicas"])}}
        if workload.kind == "StatefulSet":
            self.apps.patch_namespaced_stateful_set(workload.name, workload.namespace, body)
        else:
            self.apps.patch_namespaced_deployment(workload.name, workload.namespace, body)
        self.last_signal = time.monotonic()

    def step_delete_workload(self, step: Step) -> None:
        self._snapshot_for_map()
        workload = self.scenario.workload(str(step.args["target"]))
        if workload.kind == "StatefulSet":
            self.apps.delete_namespaced_stateful_set(workload.name, workload.namespace, propagation_policy="Background")
        else:
            self.apps.delete_namespaced_deployment(workload.name, workload.namespace, propagation_policy="Background")
        self.last_signal = time.monotonic()

    def step_delete_namespace(self, step: Step) -> None:
        self._snapshot_for_map()
        self.core.delete_namespace(str(step.args.get("name") or step.args.get("value")))
        self.last_signal = time.monotonic()

    def step_wait(self, step: Step) -> None:
        time.sleep(float(step.args["value"]))
        self.last_signal = None  # what follows a wait is a state check, not a reaction to a signal

    # -- expectations -------------------------------------------------------------------------
    def step_expect(self, step: Step) -> None:
        within = float(step.args.get("within", 10))
        checks = step.args["checks"]
        deadline = time.monotonic() + within
        failures: list[str] = []
        while True:
            self.stack.check_alive()
            failures = [f for f in (self._check_safely(c) for c in checks) if f]
            if not failures:
                break
            if time.monotonic() > deadline:
                raise DemoFailure(f"{step.title or 'expectation'} did not hold within {within:.0f}s: " + "; ".join(failures))
            time.sleep(0.05)
        latency = None if self.last_signal is None else (time.monotonic() - self.last_signal) * 1000
        title = step.title or "expectation holds"
        if latency is not None:
            self.latencies.append((title, latency))
        self.timeline.entries.append(TimelineEntry(self.timeline.now(), "check", self.scenario.name, title,
                                                   tuple(_describe(c) for c in checks), latency))
        self.say(f"  ok: {title}" + (f" ({latency:.0f} ms after the signal)" if latency is not None else ""))

    def _snapshot(self) -> tuple[list[dict], list[dict], list[dict]]:
        policies = [self._dict(p) for p in self.net.list_network_policy_for_all_namespaces().items]
        pods = [self._dict(p) for p in self.core.list_pod_for_all_namespaces().items]
        namespaces = [self._dict(n) for n in self.core.list_namespace().items]
        return policies, pods, namespaces

    def _snapshot_for_map(self) -> None:
        """Before the first deletion: the map shows the cluster at its most interesting, and the
        audit trail (Events live in the namespaces about to go) joins the timeline."""
        if not self.map_snapshot:
            policies, pods, _ = self._snapshot()
            self.map_snapshot = policies
            self.pods_snapshot = pods
            self.collect_events()

    def _check_safely(self, check: Mapping[str, Any]) -> str | None:
        """A check that cannot be evaluated yet (pods still starting) is a check that does not hold yet."""
        try:
            return self._check(check)
        except (DemoFailure, KeyError) as exc:
            return str(exc)

    def _check(self, check: Mapping[str, Any]) -> str | None:
        """None when the check holds, else what is wrong."""
        kind, arg = next(iter(check.items()))
        policies, pods, namespaces = self._snapshot()
        managed = [p for p in policies if p["metadata"].get("labels", {}).get(names.LABEL_MANAGED_BY) == names.MANAGED_BY_VALUE]
        if kind == "policies":
            return None if len(managed) == int(arg) else f"{len(managed)} managed policies, expected {arg}"
        if kind == "labelled":
            mine = self.pods_of(str(arg))
            workload = self.scenario.workload(str(arg))
            if len(mine) < workload.replicas:
                return f"{arg}: {len(mine)}/{workload.replicas} pods"
            missing = [p["metadata"]["name"] for p in mine if names.LABEL_IDENTITY not in p["metadata"].get("labels", {})]
            return f"{arg}: pods without identity label {missing}" if missing else None
        if kind == "step":
            identity = self._identity(str(arg["target"]))
            found = [p for p in managed if p["metadata"]["labels"].get(names.LABEL_IDENTITY) == identity
                     and p["metadata"]["labels"].get(names.LABEL_POLICY_ROLE) == names.ROLE_BASELINE]
            steps = [p["metadata"].get("annotations", {}).get(names.ANNOTATION_STEP) for p in found]
            return None if steps == [arg["is"]] else f"{arg['target']} policy step {steps}, expected {arg['is']}"
        if kind in ("quarantined", "not_quarantined"):
            return self._check_quarantine(kind, arg, managed)
        if kind in ("allowed", "denied"):
            verdict = self._evaluate(arg, policies, pods, namespaces)
            want = kind == "allowed"
            return None if verdict == want else f"{arg['from']} -> {arg['to']}:{arg['port']} is {'allowed' if verdict else 'denied'}"
        if kind == "event":
            events = self.core.list_event_for_all_namespaces().items
            return None if any(e.reason == arg for e in events) else f"no Event {arg}"
        return f"unknown check {kind}"

    def _check_quarantine(self, kind: str, arg: Any, managed: list[dict]) -> str | None:
        target = str(arg["target"] if isinstance(arg, Mapping) else arg)
        quarantines = [p for p in managed if p["metadata"]["labels"].get(names.LABEL_POLICY_ROLE) == names.ROLE_QUARANTINE]
        if kind == "not_quarantined":
            identity = self._identity(target)
            hits = [p["metadata"]["name"] for p in quarantines if p["metadata"]["labels"].get(names.LABEL_IDENTITY) == identity]
            return f"{target} still quarantined by {hits}" if hits else None
        pod = self.pod(target, arg.get("pod"))
        instance = pod["metadata"]["labels"].get(names.LABEL_INSTANCE)
        hit = [p for p in quarantines if p["spec"]["podSelector"].get("matchLabels", {}).get(names.LABEL_INSTANCE) == instance]
        return None if hit else f"no quarantine policy selects {pod['metadata']['name']} ({instance})"

    def _evaluate(self, arg: Mapping[str, Any], policies: list[dict], pods: list[dict], namespaces: list[dict]) -> bool:
        infos = {(p["metadata"]["namespace"], p["metadata"]["name"]): _pod_info(p) for p in pods}

        def end(text: str) -> Any:
            e = parse_endpoint(text)
            if e.ip:
                return ExternalIP(e.ip)
            pod = self.pod(e.workload or "", e.pod)
            return infos[(pod["metadata"]["namespace"], pod["metadata"]["name"])]

        policy_set = PolicySet(policies, [NamespaceInfo(n["metadata"]["name"], n["metadata"].get("labels", {}))
                                          for n in namespaces])
        return policy_set.is_allowed(end(str(arg["from"])), end(str(arg["to"])), int(arg["port"]),
                                     str(arg.get("protocol", "TCP")))

    def _node_id(self, text: str) -> str:
        end = parse_endpoint(text)
        return end.ip or self._identity(end.workload or text)

    def _identity(self, key: str) -> str:
        pods = self.pods_of(key)
        for pod in pods:
            identity = pod["metadata"].get("labels", {}).get(names.LABEL_IDENTITY)
            if identity:
                return identity
        workload = self.scenario.workload(key)
        return workload_identity_value(workload.namespace, workload.kind, workload.name)

    # -- the end ------------------------------------------------------------------------------
    def collect_events(self) -> None:
        """netwarden's own audit trail (Events) joins the timeline (once)."""
        if self.events_collected:
            return
        self.events_collected = True
        try:
            events = [self._dict(e) for e in self.core.list_event_for_all_namespaces().items]
        except ApiException:
            return
        wall_start = time.time() - self.timeline.now()
        self.timeline.entries.extend(timeline_from_events(events, wall_start))
        self.policy_log.rolled_back += sum(1 for e in events if e.get("reason") == names.EVENT_POLICY_ROLLED_BACK)

    def report(self) -> ReportData:
        policies = self.map_snapshot or list(self.policy_log.current.values())
        pods = self.pods_snapshot
        if not pods:
            try:
                pods = [self._dict(p) for p in self.core.list_pod_for_all_namespaces().items]
            except ApiException:
                pods = []
        nodes = nodes_from_cluster(pods, policies)
        known = {n.id for n in nodes}
        for edge in self.edges:
            for end in (edge.source, edge.target):
                if end not in known:
                    known.add(end)
                    namespace = namespace_of_identity(end)
                    nodes.append(MapNode(end, namespace or "world", end.rsplit(".", 1)[-1] if namespace else end))
        log = self.policy_log
        summary: dict[str, int | float | str] = {"policies created": log.created, "policy changes": log.changed,
                                                 "rolled back": log.rolled_back, "policies removed": log.removed}
        if self.latencies:
            values = sorted(ms for _, ms in self.latencies)
            summary["signal→policy p50 ms"] = round(values[len(values) // 2])
        return ReportData(
            title=f"netwarden demo: {self.scenario.name}",
            subtitle=f"engine {self.stack.engine}; {len(self.scenario.steps)} steps in {self.timeline.now():.1f}s",
            nodes=nodes, edges=merge_edges(self.edges), timeline=self.timeline.entries,
            policies=[p for p in policies if p["metadata"].get("labels", {}).get(names.LABEL_MANAGED_BY)
                      == names.MANAGED_BY_VALUE],
            summary=summary,
        )


def _describe(check: Mapping[str, Any]) -> str:
    kind, arg = next(iter(check.items()))
    return f"{kind}: {json.dumps(arg, sort_keys=True) if not isinstance(arg, str) else arg}"


def _pod_info(pod: dict[str, Any]) -> PodInfo:
    ports = tuple(ContainerPort(c["containerPort"], c.get("name"), c.get("protocol", "TCP"))
                  for container in pod["spec"].get("containers", []) for c in container.get("ports") or [])
    return PodInfo(namespace=pod["metadata"]["namespace"], name=pod["metadata"]["name"],
                   labels=pod["metadata"].get("labels", {}), ip=(pod.get("status") or {}).get("podIP"),
                   container_ports=ports)


def alertmanager_body(namespace: str, pod: str, *, status: str = "firing", severity: str = "critical",
                      alertname: str = "PodHighErrorRate", fingerprint: str = "demo") -> dict[str, Any]:
    """An Alertmanager webhook (v4) POST naming one pod (the demo's and the soak's alerts)."""
    alert = {"status": status, "labels": {"alertname": alertname, "severity": severity, "namespace": namespace,
             "pod": pod},
             "annotations": {"summary": "demo alert"}, "startsAt": _iso(time.time()),
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint}
    return {"version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": status, "receiver": "netwarden",
            "groupLabels": {}, "commonLabels": alert["labels"], "commonAnnotations": {},
            "externalURL": "http://alertmanager", "alerts": [alert]}


def _iso(epoch: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat().replace("+00:00", "Z")


class RelayFlows:
    """The demo's Hubble Relay: a GetFlows server (mTLS, netwarden/tools/replay_server.py) the
    reconciler subscribes to, as it would to hubble-relay.kube-system.svc; the demo's flows are published
    there, and a step waits until the reconciler's engine has taken them (its signals counter)."""

    def __init__(self, workdir: Path) -> None:
        from netwarden.tools.replay_server import ReplayServer, ServerTls, client_secret_dir, write_pki

        files = write_pki(workdir / "hubble-relay", "hubble-relay", client=True)
        self.secret_dir = client_secret_dir(workdir / "hubble-relay-client", files, mtls=True)
        self.server = ReplayServer(tls=ServerTls(str(files["cert"]), str(files["key"]),
                                                 client_ca=str(files["ca"]))).start()
        self.address = self.server.address
        self.published = 0
        self.stack: Stack | None = None

    def reconciler_settings(self) -> dict[str, Any]:
        return {"hubble_relay_address": self.address, "hubble_relay_tls_dir": str(self.secret_dir),
                "hubble_relay_server_name": "hubble-relay"}

    def send(self, batch: list[dict[str, Any]]) -> int:
        from netwarden.tools.replay_server import hubble_response

        self.server.observer.publish([hubble_response(record) for record in batch])
        self.published += len(batch)
        return len(batch)

    def settle(self, timeout: float = 30.0) -> None:
        """Until the reconciler has scored every flow published so far."""
        deadline = time.monotonic() + timeout
        while (taken := self.taken()) < self.published:
            if time.monotonic() > deadline:
                raise DemoFailure(f"the reconciler took {taken} of {self.published} flows streamed by Hubble Relay")
            time.sleep(0.05)

    def taken(self) -> int:
        from prometheus_client.parser import text_string_to_metric_families

        assert self.stack is not None
        session = self.stack._session or requests.Session()
        text = session.get(f"{self.stack.signals_url}/metrics", verify=self.stack.ca_file, timeout=5).text
        return int(sum(sample.value for family in text_string_to_metric_families(text)
                       if family.name == names.METRIC_SIGNALS.removesuffix("_total")
                       for sample in family.samples
                       if sample.name == names.METRIC_SIGNALS and sample.labels.get("format") == "hubble"))

    def stop(self) -> None:
        self.server.stop()


#: Where `netwarden demo` takes its flows from (--flows-from).
FLOW_SOURCES = ("post", "hubble-relay")


def run_demo(scenario_path: str | None, *, engine: str = "local", keep: bool = False, out_dir: str | None = None,
             out: Callable[[str], None] = print, flows_from: str = "post") -> int:
    scenario = load_scenario(scenario_path)
    workdir = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="netwarden-demo-"))
    out(f"netwarden demo: scenario {scenario.name!r}, engine {engine}, working directory {workdir}")
    relay = RelayFlows(workdir) if flows_from == "hubble-relay" else None
    reconciler_config = DEMO_RECONCILER_CONFIG
    if relay is not None:
        out(f"  Hubble Relay (GetFlows over mTLS) on {relay.address}: the reconciler subscribes to it")
        reconciler_config = {**DEMO_RECONCILER_CONFIG,
                             "reconciler": {**DEMO_RECONCILER_CONFIG["reconciler"], **relay.reconciler_settings()}}
    real_packets = False
    if engine == "kube":
        missing = real_packets_missing(engine)
        real_packets = not missing
        out("  real packets: on (pods in network namespaces, kube-network-policies enforcing)" if real_packets
            else f"  real packets: off (needs {'; '.join(missing)}); policies are checked by evaluation only")
    try:
        stack = start_stack(workdir, engine=engine, reconciler_config=reconciler_config,
                            progress=lambda m: out(f"  {m}"), real_packets=real_packets,
                            admin_network_policy=False)  # the story's quarantine is a NetworkPolicy one
    except BaseException as exc:
        if relay is not None:
            relay.stop()
        if isinstance(exc, KeyboardInterrupt):
            out("interrupted while starting: everything started has been stopped")
            return 130
        raise
    if relay is not None:
        relay.stack = stack
    player = Player(stack, scenario, out, relay=relay)
    failed: BaseException | None = None
    CTRL_C.clear()
    previous = signal.signal(signal.SIGINT, _remember_ctrl_c) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        player.play()
    except (DemoFailure, ScenarioError, RuntimeError, TimeoutError, ApiException) as exc:
        failed = exc
    except KeyboardInterrupt:
        failed = DemoFailure("interrupted (Ctrl-C): everything started has been stopped")
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        player.collect_events()
        data = player.report()
        report_path = workdir / "report.html"
        report_path.write_text(render_report_html(data))
        (workdir / "map.svg").write_text(render_map_svg(data))
        print_summary(player, out)
        temporary = not keep and out_dir is None and failed is None
        if not temporary:
            out(f"report: {report_path} (working directory {workdir} kept)")
        if keep and failed is None:
            out(f"--keep: cluster left running; export KUBECONFIG={stack.kubeconfig}; Ctrl-C to stop")
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        stack.stop()
        if relay is not None:
            relay.stop()
        if temporary:
            kept = Path(tempfile.gettempdir()) / "netwarden-demo-report.html"
            shutil.copy(report_path, kept)
            shutil.rmtree(workdir, ignore_errors=True)
            out(f"report: {kept} (the temporary working directory was removed; --out DIR keeps it)")
    if failed is not None:
        out(f"DEMO FAILED: {failed}")
        return 1
    out("demo passed: every step did what it claims")
    return 0


def print_summary(player: Player, out: Callable[[str], None]) -> None:
    log = player.policy_log
    out("")
    out("timeline (signal -> policy applied):")
    for title, ms in player.latencies:
        out(f"  {ms:8.0f} ms  {title}")
    out(f"policies created {log.created}, changed {log.changed}, rolled back {log.rolled_back}, removed {log.removed}")


def add_demo_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the whole story on an embedded local API server",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", help="a scenario YAML/JSON file (default: the built-in shop story)")
    parser.add_argument("--engine", choices=["local", "kube"], default="local",
                        help="local: netwarden's embedded API server (default); kube: the real upstream control plane")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running for kubectl at the end")
    parser.add_argument("--out", help="working directory to keep (logs, kubeconfig, report.html, map.svg)")
    parser.add_argument("--flows-from", choices=FLOW_SOURCES, default="post",
                        help="post: the demo POSTs flows to /signals/flows (default); hubble-relay: it serves them as "
                             "Hubble Relay's Observer.GetFlows stream over mTLS and the reconciler subscribes")
    parser.add_argument("--scale-out", action="store_true",
                        help="the scale-out story instead: a real Kafka broker, ingest and 3 decide engines over 12 "
                             "partitions, one killed -9 mid-stream; fails unless decisions equal single mode's "
                             "(needs `netwarden controlplane build --component kafka`)")
    parser.set_defaults(func=lambda args: _scale_out_demo() if args.scale_out else
                        run_demo(args.scenario, engine=args.engine, keep=args.keep, out_dir=args.out,
                                 out=lambda line: print(line, flush=True), flows_from=args.flows_from))


def _scale_out_demo() -> int:
    from netwarden.tools.scaleout_story import run_demo as run_scale_out

    return run_scale_out(lambda line: print(line, flush=True))
