"""Run the pods the real control plane makes for a Helm release as local processes.

`helm install` creates Jobs (hooks) and Deployments on the real kube-apiserver; its controllers make
the pods, and nothing would run them. `ProcessRuntime` is the `localkube.kubelet.FakeKubelet`
runtime that does, for the release namespace: each pod's first container is started exactly as
the API server holds it (tests/chart/install.py `Release.start`: volumes written from the Secrets,
ConfigMaps and a pod-bound ServiceAccount token; KUBECONFIG pointing at the API with that token).

All pods share this host's one network, so each pod gets its own free host port for each
containerPort (args and env naming the port are given it), and - as the endpointslice controller
would for a pod on a node - one EndpointSlice per Service that selects the pod, at the test's host
address and those ports, written once the pod's readinessProbe passes (HTTPS probes do not verify
the certificate, like a kubelet's). That lets a rolling update start the new webhook pod beside the
old one. A process that exits is reported through `FakeKubelet.finish` (Job pods: Succeeded/Failed,
which the Job controller and Helm's hook wait act on). `stop_all()` ends every process it started.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

from localkube.kubelet import FakeKubelet, Pod
from netwarden.tools.stack import free_port
from tests.chart.chartkit import NAMESPACE
from tests.chart.install import Process, Release

#: Seconds between the supervisor's looks at processes (exits) and probes (readiness).
POLL_SECONDS = 0.2
SLICE_MANAGER = "tests.chart.pod_runtime"
log = logging.getLogger(__name__)


@dataclass
class RunningPod:
    pod: Pod
    process: Process
    #: containerPort -> host port
    ports: dict[int, int]
    ready: bool = False
    slices: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])


@dataclass
class ProcessRuntime:
    """A PodRuntime running `namespace`'s pods as processes; other namespaces' pods just get a status."""

    release: Release
    namespace: str = NAMESPACE
    kubelet: FakeKubelet | None = None
    running: dict[str, RunningPod] = field(default_factory=dict)  # by pod uid
    #: (pod name, exit code, log tail) of every process that exited by itself
    exits: list[tuple[str, int, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopped: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _stoppers: list[threading.Thread] = field(default_factory=list)

    def attach(self, kubelet: FakeKubelet) -> ProcessRuntime:
        self.kubelet = kubelet
        self._thread = threading.Thread(target=self._supervise, name="pod-runtime", daemon=True)
        self._thread.start()
        return self

    # -- PodRuntime -------------------------------------------------------------------------------
    def start(self, pod: Pod) -> bool:
        metadata = pod["metadata"]
        if metadata.get("namespace") != self.namespace:
            return True
        with self._lock:
            if metadata["uid"] in self.running or self._stopped.is_set():
                return False
            container = pod["spec"]["containers"][0]
            ports = {int(port["containerPort"]): free_port() for port in container.get("ports") or []}
            process = self.release.start(pod, pod_name=metadata["name"], port_map=ports)
            self.running[metadata["uid"]] = RunningPod(pod, process, ports)
        return False  # Ready once its readinessProbe passes (see _supervise)

    def stop(self, pod: Pod) -> None:
        """Take the pod out of its Services at once; its process stops in the background (a graceful
        shutdown takes seconds, and the kubelet's watch must not wait on it to start the next pod)."""
        with self._lock:
            running = self.running.pop(pod["metadata"].get("uid", ""), None)
        if running is not None:
            self._delete_slices(running)
            stopper = threading.Thread(target=running.process.stop, name=f"stop-{running.name}", daemon=True)
            stopper.start()
            self._stoppers.append(stopper)

    # -- supervision ------------------------------------------------------------------------------
    def _supervise(self) -> None:
        while not self._stopped.wait(POLL_SECONDS):
            with self._lock:
                pods = list(self.running.items())
            for uid, running in pods:
                try:
                    self._look_at(uid, running)
                except (ApiException, requests.RequestException, OSError) as exc:  # the next look retries
                    log.warning("pod runtime: %s: %r", running.name, exc)

    def _look_at(self, uid: str, running: RunningPod) -> None:
        assert self.kubelet is not None
        code = running.process.popen.poll()
        if code is not None:
            with self._lock:
                self.running.pop(uid, None)
            self.exits.append((running.name, code, running.process.tail()))
            self._delete_slices(running)
            self.kubelet.finish(self.namespace, running.name, code)
            return
        if not running.ready and self._probe(running):
            self._write_slices(running)
            self.kubelet.set_ready(self.namespace, running.name, True)
            running.ready = True

    def _probe(self, running: RunningPod) -> bool:
        container = running.pod["spec"]["containers"][0]
        probe = (container.get("readinessProbe") or {}).get("httpGet")
        if probe is None:
            return True
        port = probe["port"]
        if isinstance(port, str):
            (port,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
        scheme = probe.get("scheme", "HTTP").lower()
        url = f"{scheme}://127.0.0.1:{running.ports.get(int(port), int(port))}{probe['path']}"
        try:
            with urllib3.warnings.catch_warnings():
                urllib3.warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                return requests.get(url, verify=False, timeout=2).status_code < 400  # noqa: S501 - as a kubelet probes
        except requests.RequestException:
            return False

    # -- EndpointSlices -------------------------------------------------------------------------------
    def _services(self) -> list[Any]:
        return client.CoreV1Api(self.release.admin_api()).list_namespaced_service(self.namespace).items

    def _write_slices(self, running: RunningPod) -> None:
        labels = running.pod["metadata"].get("labels") or {}
        container = running.pod["spec"]["containers"][0]
        named = {p.get("name"): int(p["containerPort"]) for p in container.get("ports") or []}
        discovery = client.DiscoveryV1Api(self.release.admin_api())
        for service in self._services():
            selector = service.spec.selector or {}
            if not selector or not selector.items() <= labels.items():
                continue
            ports = []
            for port in service.spec.ports:
                target = port.target_port if port.target_port is not None else port.port
                container_port = named.get(target) if isinstance(target, str) else int(target)
                if container_port in running.ports:
                    ports.append({"name": port.name or "", "protocol": port.protocol or "TCP",
                                  "port": running.ports[container_port]})
            name = f"{running.name}-{service.metadata.name}"[:253]
            discovery.create_namespaced_endpoint_slice(self.namespace, {
                "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service.metadata.name,
                                                      "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER},
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": running.name,
                                                  "uid": running.pod["metadata"]["uid"]}]},
                "addressType": "IPv4", "ports": ports,
                "endpoints": [{"addresses": [self.release.host], "conditions": {"ready": True},
                               "targetRef": {"kind": "Pod", "name": running.name, "namespace": self.namespace}}]})
            running.slices.append(name)

    def _delete_slices(self, running: RunningPod) -> None:
        discovery = client.DiscoveryV1Api(self.release.admin_api())
        for name in running.slices:
            try:
                discovery.delete_namespaced_endpoint_slice(name, self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        running.slices.clear()

    def stop_all(self) -> None:
        """Stop supervising and end every process (the release's own list included)."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            pods = list(self.running.values())
            self.running.clear()
        for running in pods:
            running.process.stop()
        for stopper in self._stoppers:
            stopper.join()
        self.release.stop()
