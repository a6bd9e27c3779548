"""List + watch informers and the in-memory index of the cluster the reconciler acts on.

An informer lists a resource once, then watches from the list's resourceVersion with bookmarks,
resuming from the last resourceVersion it saw whenever a watch ends (server timeout, dropped
connection). Only a 410 Gone (the version was compacted away) makes it list again; the re-list is
diffed against what it held, so consumers see the DELETED events they missed. Errors back off
exponentially with full jitter. There is no polling loop: a thread blocks on the watch stream.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from netwarden.model import names
from netwarden.model.admission import PodFacts, container_ports, service_account_of
from netwarden.model.identity import OwnerRef
from netwarden.platform.kube import KubeClient, WatchExpired, WatchStream
from netwarden.model.labels import NamespaceFacts, is_opted_in, namespace_mode
from netwarden.model.policy import PortSpec, named_container_ports
from netwarden.model.reach import outside_policy_reach

log = logging.getLogger("netwarden.reconciler.watch")

Obj = dict[str, Any]
Key = tuple[str, str]
#: (event type, new object, previous object or None)
EventHandler = Callable[[str, Obj, "Obj | None"], None]

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
MANAGED_SELECTOR = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY_VALUE}"


def obj_key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


def resource_version_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**(n-1)))."""

    base: float = 0.2
    cap: float = 30.0

    def delay(self, attempt: int, rng: Callable[[float, float], float] = random.uniform) -> float:
        return rng(0.0, min(self.cap, self.base * 2 ** max(0, attempt - 1)))


@dataclass
class InformerStats:
    lists: int = 0
    watches: int = 0
    relists_after_410: int = 0
    errors: int = 0
    events: int = 0
    bookmarks: int = 0
    resource_version: str = ""


class Informer:
    """Keeps a local copy of one resource current and reports every change to `handler`."""

    def __init__(self, kube: KubeClient, resource: str, handler: EventHandler, *,
                 label_selector: str | None = None, timeout_seconds: int = 300,
                 backoff: Backoff = Backoff(), min_healthy_watch: float = 1.0) -> None:
        self.kube = kube
        self.resource = resource
        self.handler = handler
        self.label_selector = label_selector
        self.timeout_seconds = timeout_seconds
        self.backoff = backoff
        self.min_healthy_watch = min_healthy_watch
        self.stats = InformerStats()
        self.synced = threading.Event()
        self._objects: dict[Key, Obj] = {}
        self._stop = threading.Event()
        self._stream: WatchStream | None = None
        self._thread: threading.Thread | None = None
        #: Where the next watch resumes; None: list first.
        self.resource_version: str | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "Informer":
        """Start (or restart after `stop`) the loop; a restart resumes from the last resourceVersion."""
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=f"informer-{self.resource}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def snapshot(self) -> list[Obj]:
        return list(self._objects.values())

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    self.resource_version = self._relist()
                started = time.monotonic()
                events_before = self.stats.events + self.stats.bookmarks
                self._watch_once(self.resource_version)
                quiet_drop = (time.monotonic() - started < self.min_healthy_watch
                              and self.stats.events + self.stats.bookmarks == events_before)
                # A watch the server ended on time resumes at once; one cut straight away backs off.
                failures = failures + 1 if quiet_drop else 0
            except WatchExpired:
                self.stats.relists_after_410 += 1
                log.info("watch %s expired (410); re-listing", self.resource)
                self.resource_version = None  # re-list at once; a failing list backs off below
            except Exception as exc:  # noqa: BLE001 - any fault: back off, resume from the last version
                if self._stop.is_set():
                    break
                failures += 1
                self.stats.errors += 1
                log.warning("watch %s failed (%s: %s); attempt %d", self.resource, type(exc).__name__, exc, failures)
            if failures and not self._stop.is_set():
                self._stop.wait(self.backoff.delay(failures))

    def _relist(self) -> str:
        items, resource_version = self.kube.list_objects(self.resource, label_selector=self.label_selector)
        self.stats.lists += 1
        fresh = {obj_key(item): item for item in items}
        for key, old in list(self._objects.items()):
            if key not in fresh:
                del self._objects[key]
                self._emit(DELETED, old, old)
        for key, obj in fresh.items():
            old = self._objects.get(key)
            self._objects[key] = obj
            if old is None:
                self._emit(ADDED, obj, None)
            elif resource_version_of(old) != resource_version_of(obj):
                self._emit(MODIFIED, obj, old)
        self.stats.resource_version = resource_version
        self.synced.set()
        return resource_version

    def _watch_once(self, resource_version: str) -> str:
        stream = self.kube.watch_objects(self.resource, resource_version, label_selector=self.label_selector,
                                         timeout_seconds=self.timeout_seconds)
        self._stream = stream
        self.stats.watches += 1
        if self._stop.is_set():
            stream.close()
            return resource_version
        for event in stream:
            kind, obj = event.get("type"), event.get("object") or {}
            resource_version = resource_version_of(obj) or resource_version
            self.resource_version = self.stats.resource_version = resource_version
            if kind == "BOOKMARK":
                self.stats.bookmarks += 1
                continue
            self.stats.events += 1
            key = obj_key(obj)
            if kind == DELETED:
                old = self._objects.pop(key, None)
                self._emit(DELETED, obj, old)
            elif kind in (ADDED, MODIFIED):
                old = self._objects.get(key)
                self._objects[key] = obj
                self._emit(ADDED if old is None else MODIFIED, obj, old)
        return resource_version

    def _emit(self, kind: str, obj: Obj, old: Obj | None) -> None:
        try:
            self.handler(kind, obj, old)
        except Exception:  # noqa: BLE001 - one bad handler call must not kill the watch
            log.exception("handler for %s %s %s failed", self.resource, kind, obj_key(obj))


# --- the index ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodView:
    """The facts about a pod the reconciler uses, lifted once out of the wire object."""

    namespace: str
    name: str
    uid: str
    ip: str | None
    phase: str
    ready: bool
    restarts: int
    identity: str | None
    instance: str | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    owner_refs: tuple[OwnerRef, ...]
    service_account: str
    container_ports: tuple[PortSpec, ...]
    deleting: bool = False
    raw: Obj = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        """A Job pod that ran to completion (or failed) no longer needs a policy."""
        return self.phase in ("Succeeded", "Failed")

    @property
    def live(self) -> bool:
        return not self.finished and not self.deleting

    @property
    def facts(self) -> PodFacts:
        """The pod as pod admission reads it (netwarden/model/admission.py)."""
        meta = self.raw.get("metadata") or {}
        return PodFacts(namespace=self.namespace, name=self.name, generate_name=str(meta.get("generateName") or ""),
                        labels=dict(self.labels), annotations=dict(self.annotations), owner_refs=self.owner_refs,
                        service_account=self.service_account, ports=self.container_ports,
                        port_names=named_container_ports(self.raw), outside_reach=outside_policy_reach(self.raw))

    @classmethod
    def from_obj(cls, obj: Obj) -> "PodView":
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        labels = meta.get("labels") or {}
        conditions = status.get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        restarts = sum(int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or [])
        return cls(
            namespace=meta.get("namespace") or "",
            name=meta.get("name") or "",
            uid=meta.get("uid") or "",
            ip=status.get("podIP") or None,
            phase=status.get("phase") or "Pending",
            ready=ready,
            restarts=restarts,
            identity=labels.get(names.LABEL_IDENTITY),
            instance=labels.get(names.LABEL_INSTANCE),
            labels=dict(labels),
            annotations=dict(meta.get("annotations") or {}),
            owner_refs=tuple(OwnerRef.from_dict(r) for r in meta.get("ownerReferences") or []),
            service_account=service_account_of(obj),
            container_ports=container_ports(obj),  # native sidecars' too: the same ports admission reads
            deleting=bool(meta.get("deletionTimestamp")),
            raw=obj,
        )


@dataclass(frozen=True)
class NamespaceView:
    facts: NamespaceFacts
    opted_in: bool
    mode: str


class ClusterIndex:
    """Pods by IP, by (namespace, name), by workload identity and instance; namespaces; managed policies.

    Written by the informer threads, read by the controller and the signal receivers; one lock.
    """

    def __init__(self, default_mode: str = names.DEFAULT_MODE) -> None:
        self.default_mode = default_mode
        self._lock = threading.RLock()
        self._pods: dict[Key, PodView] = {}
        self._by_ip: dict[str, Key] = {}
        self._by_identity: dict[str, set[Key]] = {}
        self._by_instance: dict[str, Key] = {}
        self._namespaces: dict[str, NamespaceView] = {}
        self._policies: dict[Key, Obj] = {}

    # -- writes (from informers) ---------------------------------------------------------------
    def put_pod(self, obj: Obj) -> tuple[PodView | None, PodView]:
        view = PodView.from_obj(obj)
        key = (view.namespace, view.name)
        with self._lock:
            old = self._pods.get(key)
            if old is not None:
                self._unindex_pod(old)
            self._pods[key] = view
            if view.ip and view.live:
                self._by_ip[view.ip] = key
            if view.identity:
                self._by_identity.setdefault(view.identity, set()).add(key)
            if view.instance:
                self._by_instance[view.instance] = key
        return old, view

    def remove_pod(self, obj: Obj) -> PodView | None:
        key = obj_key(obj)
        with self._lock:
            old = self._pods.pop(key, None)
            if old is not None:
                self._unindex_pod(old)
            return old

    def _unindex_pod(self, view: PodView) -> None:
        key = (view.namespace, view.name)
        if view.ip and self._by_ip.get(view.ip) == key:
            del self._by_ip[view.ip]
        if view.identity:
            members = self._by_identity.get(view.identity)
            if members is not None:
                members.discard(key)
                if not members:
                    del self._by_identity[view.identity]
        if view.instance and self._by_instance.get(view.instance) == key:
            del self._by_instance[view.instance]

    def put_namespace(self, obj: Obj) -> NamespaceView:
        meta = obj.get("metadata") or {}
        facts = NamespaceFacts(meta.get("name") or "", dict(meta.get("labels") or {}),
                               dict(meta.get("annotations") or {}))
        view = NamespaceView(facts, is_opted_in(facts, {}, {}), namespace_mode(facts, self.default_mode))
        with self._lock:
            self._namespaces[facts.name] = view
        return view

    def remove_namespace(self, obj: Obj) -> None:
        with self._lock:
            self._namespaces.pop(obj_key(obj)[1], None)

    def put_policy(self, obj: Obj) -> None:
        with self._lock:
            self._policies[obj_key(obj)] = obj

    def remove_policy(self, obj: Obj) -> None:
        with self._lock:
            self._policies.pop(obj_key(obj), None)

    # -- reads --------------------------------------------------------------------------------
    def pod(self, namespace: str, name: str) -> PodView | None:
        with self._lock:
            return self._pods.get((namespace, name))

    def pod_by_ip(self, ip: str) -> PodView | None:
        with self._lock:
            key = self._by_ip.get(ip)
            return self._pods.get(key) if key else None

    def pod_by_instance(self, instance: str) -> PodView | None:
        with self._lock:
            key = self._by_instance.get(instance)
            return self._pods.get(key) if key else None

    def pods_of(self, identity: str) -> list[PodView]:
        with self._lock:
            return [self._pods[k] for k in sorted(self._by_identity.get(identity, ()))]

    def pods(self) -> list[PodView]:
        with self._lock:
            return list(self._pods.values())

    def identities(self) -> list[str]:
        with self._lock:
            return sorted(self._by_identity)

    def namespace(self, name: str) -> NamespaceView | None:
        with self._lock:
            return self._namespaces.get(name)

    def mode_of(self, namespace: str) -> str:
        view = self.namespace(namespace)
        return view.mode if view is not None else self.default_mode

    def policy(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._policies.get((namespace, name))

    def policies(self) -> list[Obj]:
        with self._lock:
            return list(self._policies.values())

    def policies_of(self, identity: str) -> list[Obj]:
        with self._lock:
            return [p for p in self._policies.values()
                    if ((p.get("metadata") or {}).get("labels") or {}).get(names.LABEL_IDENTITY) == identity]


class ClusterWatcher:
    """Three informers (pods, namespaces, managed NetworkPolicies) feeding one ClusterIndex.

    Subscribers get (resource, event type, object, previous object) after the index is updated.
    """

    def __init__(self, kube: KubeClient, index: ClusterIndex, *, timeout_seconds: int = 300,
                 backoff: Backoff = Backoff()) -> None:
        self.index = index
        self._subscribers: list[Callable[[str, str, Obj, Obj | None], None]] = []
        self.informers = {
            "namespaces": Informer(kube, "namespaces", self._on_namespace, timeout_seconds=timeout_seconds,
                                   backoff=backoff),
            "pods": Informer(kube, "pods", self._on_pod, timeout_seconds=timeout_seconds, backoff=backoff),
            "networkpolicies": Informer(kube, "networkpolicies", self._on_policy, label_selector=MANAGED_SELECTOR,
                                        timeout_seconds=timeout_seconds, backoff=backoff),
        }

    def subscribe(self, callback: Callable[[str, str, Obj, Obj | None], None]) -> None:
        self._subscribers.append(callback)

    def start(self) -> "ClusterWatcher":
        for informer in self.informers.values():
            informer.start()
        return self

    def wait_synced(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for informer in self.informers.values():
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not informer.synced.wait(remaining):
                return False
        return True

    def stop(self) -> None:
        for informer in self.informers.values():
            informer._stop.set()
        for informer in self.informers.values():
            informer.stop()

    def _notify(self, resource: str, kind: str, obj: Obj, old: Obj | None) -> None:
        for callback in self._subscribers:
            try:
                callback(resource, kind, obj, old)
            except Exception:  # noqa: BLE001
                log.exception("subscriber failed on %s %s", resource, kind)

    def _on_namespace(self, kind: str, obj: Obj, old: Obj | None) -> None:
        if kind == DELETED:
            self.index.remove_namespace(obj)
        else:
            self.index.put_namespace(obj)
        self._notify("namespaces", kind, obj, old)

    def _on_pod(self, kind: str, obj: Obj, old: Obj | None) -> None:
        if kind == DELETED:
            self.index.remove_pod(obj)
        else:
            self.index.put_pod(obj)
        self._notify("pods", kind, obj, old)

    def _on_policy(self, kind: str, obj: Obj, old: Obj | None) -> None:
        if kind == DELETED:
            self.index.remove_policy(obj)
        else:
            self.index.put_policy(obj)
        self._notify("networkpolicies", kind, obj, old)
