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
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Mapping

from netwarden.model import names
from netwarden.platform.kube import KubeClient, WatchExpired, WatchStream
from netwarden.model.labels import NamespaceFacts, is_opted_in, namespace_mode
from netwarden.reconciler.core.pods import PodIndex, PodRef

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
class NamespaceView:
    facts: NamespaceFacts
    opted_in: bool
    mode: str


class ClusterIndex:
    """The cluster as the reconciler sees it: the pod index (netwarden/reconciler/core/pods.py, shared with
    the engine), namespaces and managed policies.

    Written by the informer threads, read by the controller, the engine and the signal receivers; one
    lock (the runtime passes the engine's, since the engine reads the same pod index).
    """

    def __init__(self, default_mode: str = names.DEFAULT_MODE, *, pods: PodIndex | None = None,
                 lock: ContextManager[Any] | None = None) -> None:
        self.default_mode = default_mode
        self._lock = lock if lock is not None else threading.RLock()
        self._pods = pods if pods is not None else PodIndex()
        self._namespaces: dict[str, NamespaceView] = {}
        self._policies: dict[Key, Obj] = {}

    # -- writes (from informers) ---------------------------------------------------------------
    def put_pod(self, obj: Obj) -> tuple[PodRef | None, PodRef]:
        ref = PodRef.from_obj(obj)
        with self._lock:
            return self._pods.add(ref), ref

    def remove_pod(self, obj: Obj) -> PodRef | None:
        with self._lock:
            return self._pods.remove(*obj_key(obj))

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
    def pod(self, namespace: str, name: str) -> PodRef | None:
        with self._lock:
            return self._pods.pod(namespace, name)

    def pod_by_instance(self, instance: str) -> PodRef | None:
        with self._lock:
            return self._pods.pod_by_instance(instance)

    def pods_of(self, identity: str) -> list[PodRef]:
        with self._lock:
            return self._pods.pods_of(identity)

    def pods(self) -> list[PodRef]:
        with self._lock:
            return list(self._pods.every.values())

    def identities(self) -> list[str]:
        with self._lock:
            return sorted(self._pods.members)

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
