"""A kubelet stand-in: makes pods Running so health-signal code has real pod statuses to read.

Neither engine has a scheduler or a kubelet, so pods would stay Pending forever. `FakeKubelet`
watches pods through the API (the same on the in-process engine and the real kube-apiserver) and,
for each unscheduled Pending pod, writes what a kubelet would: phase Running, a pod IP from
10.244.0.0/16, container statuses, and Ready/ContainersReady/Initialized/PodScheduled conditions,
all through the pods/status subresource. It also finishes graceful deletions (a kubelet's job) so
deleted pods do not linger. The kube-apiserver accepts status updates on pods without
spec.nodeName, so no Node object and no binding are needed.

Tests drive health signals with `set_ready(ns, name, False)` and `restart(ns, name)`.

Network-namespace mode (`network=PodNetwork`, `node_name=`): the kubelet registers a Node, binds
Pending pods to it (a one-node scheduler) and gives each a real network stack
(`localkube.podnet`: a namespace, a veth, a /32 from 198.19.64.0/20, a real listener per declared
containerPort) before reporting it Running with that podIP; a deleted pod's namespace goes with it.
A NetworkPolicy enforcer on that node then filters real packets between the pods.

With a `runtime` (PodRuntime) the stand-in also runs the pods it starts (tests/chart/pod_runtime.py
runs a chart's containers as local processes): it reports them not Ready until the runtime calls
`set_ready`, stops them on deletion, and `finish` reports a container's exit (Succeeded/Failed).
The status-building functions are pure (time passed in); the class is the thin adapter.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import logging
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException

if TYPE_CHECKING:
    from localkube.podnet import PodNetwork

log = logging.getLogger("localkube.kubelet")

Pod = dict[str, Any]
Clock = Callable[[], datetime]

POD_CIDR = ipaddress.ip_network("10.244.0.0/16")
#: A fixed host IP: there is no node, but status.hostIP is what peers would see for hostNetwork.
HOST_IP = "10.0.0.1"
CONDITION_TYPES = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready", "PodScheduled")
WATCH_TIMEOUT_SECONDS = 30


class PodIPAllocator:
    """Hands out distinct addresses from 10.244.0.0/16 (skipping network, .0 and .255), reusing freed ones."""

    def __init__(self, network: ipaddress.IPv4Network = POD_CIDR) -> None:
        self._hosts: Iterator[ipaddress.IPv4Address] = (
            ip for ip in network.hosts() if ip.packed[-1] not in (0, 255)
        )
        self._by_key: dict[str, str] = {}
        self._free: list[str] = []

    def allocate(self, key: str) -> str:
        """The address for `key` (a pod UID); the same key always gets the same address."""
        if key not in self._by_key:
            if self._free:
                self._by_key[key] = self._free.pop(0)
            else:
                try:
                    self._by_key[key] = str(next(self._hosts))
                except StopIteration:
                    raise RuntimeError(f"pod network {POD_CIDR} exhausted") from None
        return self._by_key[key]

    def release(self, key: str) -> None:
        ip = self._by_key.pop(key, None)
        if ip is not None:
            self._free.append(ip)


# --- pure status construction -------------------------------------------------------------------


def _timestamp(now: datetime) -> str:
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def needs_start(pod: Pod) -> bool:
    """An unscheduled pod nobody has started: no nodeName, phase Pending (or unset), not deleting."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    return (
        not (pod.get("spec") or {}).get("nodeName")
        and status.get("phase", "Pending") == "Pending"
        and not metadata.get("deletionTimestamp")
    )


def pending_for_node(pod: Pod, node_name: str) -> bool:
    """A Pending pod, not deleting, unscheduled or bound to `node_name` (network-namespace mode)."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    return (
        (pod.get("spec") or {}).get("nodeName") in (None, "", node_name)
        and status.get("phase", "Pending") == "Pending"
        and not metadata.get("deletionTimestamp")
    )


def declared_ports(pod: Pod) -> tuple[list[int], list[int]]:
    """(TCP ports, UDP ports) the pod's containers declare: where its listeners go."""
    tcp: list[int] = []
    udp: list[int] = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            number = port.get("containerPort")
            if isinstance(number, int):
                (udp if port.get("protocol") == "UDP" else tcp).append(number)
    return sorted(set(tcp)), sorted(set(udp))


def _condition(kind: str, ready: bool, now: datetime) -> dict[str, Any]:
    return {"type": kind, "status": "True" if ready else "False", "lastProbeTime": None,
            "lastTransitionTime": _timestamp(now)}


def running_status(pod: Pod, pod_ip: str, now: datetime) -> dict[str, Any]:
    """The status a kubelet reports once every container has started and passed readiness."""
    started = _timestamp(now)
    containers = (pod.get("spec") or {}).get("containers") or []
    uid = (pod.get("metadata") or {}).get("uid", "")
    status: dict[str, Any] = {
        "phase": "Running",
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": started,
        "conditions": [_condition(kind, True, now) for kind in CONDITION_TYPES],
        "containerStatuses": [
            {
                "name": container["name"],
                "image": container.get("image", ""),
                "imageID": f"fake://{container.get('image', '')}",
                "containerID": f"fake://{uid}/{container['name']}",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": started}},
                "lastState": {},
            }
            for container in containers
        ],
    }
    qos_class = (pod.get("status") or {}).get("qosClass")
    if qos_class:  # immutable once the API server has set it; never invent one
        status["qosClass"] = qos_class
    return status


def with_readiness(status: dict[str, Any], ready: bool, now: datetime) -> dict[str, Any]:
    """`status` with Ready/ContainersReady and every container's `ready` set; transition time kept if unchanged."""
    new = copy.deepcopy(status)
    wanted = "True" if ready else "False"
    for condition in new.get("conditions") or []:
        if condition.get("type") in ("Ready", "ContainersReady") and condition.get("status") != wanted:
            condition["status"] = wanted
            condition["lastTransitionTime"] = _timestamp(now)
    for container in new.get("containerStatuses") or []:
        container["ready"] = ready
    return new


def with_restart(status: dict[str, Any], container_name: str | None, now: datetime) -> dict[str, Any]:
    """`status` after one container (default: the first) crashed and was restarted."""
    new = copy.deepcopy(status)
    containers = new.get("containerStatuses") or []
    targets = [c for c in containers if container_name in (None, c.get("name"))][:1]
    if not targets:
        raise KeyError(f"no container status named {container_name!r}")
    container = targets[0]
    previous_start = ((container.get("state") or {}).get("running") or {}).get("startedAt", _timestamp(now))
    container["restartCount"] = int(container.get("restartCount", 0)) + 1
    container["lastState"] = {
        "terminated": {"exitCode": 1, "reason": "Error", "startedAt": previous_start, "finishedAt": _timestamp(now)}
    }
    container["state"] = {"running": {"startedAt": _timestamp(now)}}
    return new


def terminated_status(status: dict[str, Any], exit_code: int, now: datetime) -> dict[str, Any]:
    """`status` once the pod's (first) container exited: phase Succeeded on 0, else Failed; not Ready.

    A stand-in simplification: restartPolicy OnFailure would restart in place; here the Job
    controller sees the failure and makes a new pod instead (both count against backoffLimit).
    """
    new = with_readiness(status, False, now)
    new["phase"] = "Succeeded" if exit_code == 0 else "Failed"
    for container in (new.get("containerStatuses") or [])[:1]:
        started = ((container.get("state") or {}).get("running") or {}).get("startedAt", _timestamp(now))
        container["started"] = False
        container["state"] = {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                                             "startedAt": started, "finishedAt": _timestamp(now)}}
    return new


class PodRuntime(Protocol):
    """What runs a pod's containers for the stand-in (e.g. as local processes)."""

    def start(self, pod: Pod) -> bool:
        """Start the pod; True when it is Ready at once, False when the runtime calls set_ready later."""

    def stop(self, pod: Pod) -> None:
        """Stop the pod's containers (it is being deleted); idempotent."""


# --- adapter ------------------------------------------------------------------------------------


class FakeKubelet:
    """Watches pods through `api_client` and plays kubelet for them until `stop()`.

    Works with any API server that serves list/watch on pods, PUT pods/status and DELETE with
    gracePeriodSeconds=0. Only pods in `namespaces` are touched when given (default: all).
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        namespaces: tuple[str, ...] | None = None,
        clock: Clock = lambda: datetime.now(timezone.utc),
        start: bool = True,
        network: PodNetwork | None = None,
        node_name: str = "netwarden-node",
        runtime: PodRuntime | None = None,
    ) -> None:
        self._core = client.CoreV1Api(api_client)
        self._network = network
        self.node_name = node_name
        self._runtime = runtime
        self._namespaces = namespaces
        self._clock = clock
        self._ips = PodIPAllocator()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name="fake-kubelet", daemon=True)
        #: Set once the first list has been processed (pods that existed before start are handled).
        self.synced = threading.Event()
        if start:
            self.start()

    def start(self) -> FakeKubelet:
        if self._network is not None:
            self._register_node()
        self._thread.start()
        return self

    def __enter__(self) -> FakeKubelet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop watching; returns once the watch thread has exited (a blocked read is cut)."""
        self._stopped.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown()
            except Exception:  # noqa: BLE001 - best effort: the read is cut or already finished
                pass
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=WATCH_TIMEOUT_SECONDS + 5)

    # --- health-signal controls --------------------------------------------------------------

    def set_ready(self, namespace: str, name: str, ready: bool) -> Pod:
        """Flip the pod's readiness (as a failing or recovering readiness probe would)."""
        now = self._clock()
        return self._update_status(namespace, name, lambda pod: with_readiness(pod.get("status") or {}, ready, now))

    def restart(self, namespace: str, name: str, container: str | None = None) -> Pod:
        """Record one container restart (restartCount + 1, lastState terminated with exit code 1)."""
        now = self._clock()
        return self._update_status(namespace, name, lambda pod: with_restart(pod.get("status") or {}, container, now))

    def finish(self, namespace: str, name: str, exit_code: int) -> Pod:
        """Report that the pod's container exited with `exit_code` (a runtime's process ended)."""
        now = self._clock()
        return self._update_status(namespace, name, lambda pod: terminated_status(pod.get("status") or {}, exit_code, now))

    def wait_running(self, namespace: str, name: str, timeout: float = 30.0) -> Pod:
        """Poll until the pod is Running (for tests; raises TimeoutError)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                pod = self._get(namespace, name)
                if (pod.get("status") or {}).get("phase") == "Running":
                    return pod
            except ApiException as exc:
                if exc.status != 404:
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"pod {namespace}/{name} not Running after {timeout:.0f} s")
            time.sleep(0.1)

    # --- internals ---------------------------------------------------------------------------

    def _get(self, namespace: str, name: str) -> Pod:
        response = self._core.read_namespaced_pod(name, namespace, _preload_content=False)
        return json.loads(response.data)

    def _update_status(self, namespace: str, name: str, change: Callable[[Pod], dict[str, Any]]) -> Pod:
        """Read, change, PUT pods/status; retried on 409 Conflict (another writer got there first)."""
        for _ in range(10):
            pod = self._get(namespace, name)
            pod["status"] = change(pod)
            try:
                response = self._core.replace_namespaced_pod_status(name, namespace, pod, _preload_content=False)
                return json.loads(response.data)
            except ApiException as exc:
                if exc.status != 409:
                    raise
        raise RuntimeError(f"pods/{namespace}/{name}/status: too many conflicts")

    def _register_node(self) -> None:
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": self.node_name, "labels": {"kubernetes.io/hostname": self.node_name}}}
        try:
            self._core.create_node(node)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def _start_in_netns(self, pod: Pod) -> None:
        """Bind to our node (when unscheduled), build the pod's network stack, report it Running."""
        assert self._network is not None
        metadata = pod.get("metadata") or {}
        namespace, name, uid = metadata["namespace"], metadata["name"], metadata["uid"]
        if not (pod.get("spec") or {}).get("nodeName"):
            binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": namespace},
                       "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name}}
            self._core.create_namespaced_pod_binding(name, namespace, binding, _preload_content=False)
        tcp, udp = declared_ports(pod)
        sandbox = self._network.add_pod(uid, namespace, name, tcp, udp)
        now = self._clock()
        self._update_status(namespace, name, lambda current: running_status(current, sandbox.ip, now)
                            if pending_for_node(current, self.node_name) else current.get("status") or {})
        log.debug(json.dumps({"msg": "pod started in netns", "namespace": namespace, "pod": name,
                              "podIP": sandbox.ip, "netns": sandbox.netns}))

    def _wanted(self, pod: Pod) -> bool:
        return self._namespaces is None or (pod.get("metadata") or {}).get("namespace") in self._namespaces

    def _handle(self, event_type: str, pod: Pod) -> None:
        if self._stopped.is_set() or not self._wanted(pod):
            return
        metadata = pod.get("metadata") or {}
        namespace, name, uid = metadata.get("namespace", ""), metadata.get("name", ""), metadata.get("uid", "")
        try:
            if event_type == "DELETED":
                if self._runtime is not None:
                    self._runtime.stop(pod)
                with self._lock:
                    self._ips.release(uid)
                if self._network is not None:
                    self._network.remove_pod(uid)
            elif metadata.get("deletionTimestamp"):
                # A kubelet confirms graceful deletion once containers stopped; ours stop at once.
                if self._runtime is not None:
                    self._runtime.stop(pod)
                self._core.delete_namespaced_pod(
                    name, namespace, grace_period_seconds=0,
                    body=client.V1DeleteOptions(grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)),
                )
            elif self._network is not None:
                if pending_for_node(pod, self.node_name):
                    self._start_in_netns(pod)
            elif needs_start(pod):
                with self._lock:
                    ip = self._ips.allocate(uid)
                ready = self._runtime.start(pod) if self._runtime is not None else True
                now = self._clock()
                self._update_status(namespace, name, lambda current: with_readiness(running_status(current, ip, now), ready, now)
                                    if needs_start(current) else current.get("status") or {})
                log.debug(json.dumps({"msg": "pod started", "namespace": namespace, "pod": name, "podIP": ip}))
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone meanwhile, or a precondition lost a race: both fine
                log.warning(json.dumps({"msg": "fake kubelet update failed", "namespace": namespace,
                                        "pod": name, "status": exc.status, "reason": exc.reason}))

    def _run(self) -> None:
        resource_version = ""
        while not self._stopped.is_set():
            try:
                if not resource_version:
                    resource_version = self._list_and_handle()
                    self.synced.set()
                resource_version = self._watch(resource_version)
            except ApiException as exc:
                if exc.status == 410:
                    resource_version = ""  # too old: relist
                    continue
                if not self._stopped.is_set():
                    log.warning(json.dumps({"msg": "fake kubelet watch failed", "status": exc.status}))
                    time.sleep(0.5)
            except Exception as exc:  # noqa: BLE001 - connection cut by stop() or by the server
                if not self._stopped.is_set():
                    log.warning(json.dumps({"msg": "fake kubelet watch error", "error": repr(exc)}))
                    resource_version = ""
                    time.sleep(0.5)

    def _list_and_handle(self) -> str:
        response = self._core.list_pod_for_all_namespaces(_preload_content=False)
        pod_list = json.loads(response.data)
        for pod in pod_list.get("items") or []:
            self._handle("ADDED", pod)
        return (pod_list.get("metadata") or {}).get("resourceVersion", "")

    def _watch(self, resource_version: str) -> str:
        """One watch request until the server ends it; returns the last resourceVersion seen."""
        response = self._core.list_pod_for_all_namespaces(
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_TIMEOUT_SECONDS,
            _preload_content=False,
        )
        self._response = response
        try:
            if self._stopped.is_set():
                return resource_version
            for line in response:
                if self._stopped.is_set():
                    break
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    if obj.get("code") == 410:
                        return ""
                    raise RuntimeError(f"watch error: {obj}")
                resource_version = (obj.get("metadata") or {}).get("resourceVersion", resource_version)
                if event.get("type") != "BOOKMARK":
                    self._handle(event.get("type", ""), obj)
        finally:
            self._response = None
            response.release_conn()
        return resource_version
