"""One generic object store: a lock, a global resourceVersion, bounded event history, watcher queues."""

from __future__ import annotations

import copy
import queue
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from localkube.errors import already_exists, conflict, expired, not_found
from localkube.resources import RESOURCES, ResourceType

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped


def obj_key(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


@dataclass(frozen=True)
class Change:
    """One committed write: what the watch history and watchers see."""

    rv: int
    resource: str  # ResourceType.key
    type: str  # ADDED / MODIFIED / DELETED
    obj: Obj
    old: Obj | None


@dataclass(eq=False)
class Watcher:
    """A registered watch: changes of one resource type land in its queue."""

    resource: str
    queue: "queue.Queue[Change | None]" = field(default_factory=queue.Queue)


class Store:
    """Thread-safe storage for every resource type; every write bumps the global resourceVersion."""

    def __init__(self, history_size: int = 10_000) -> None:
        self.lock = threading.RLock()
        self._rv = 0
        self._objects: dict[str, dict[Key, Obj]] = defaultdict(dict, {r.key: {} for r in RESOURCES})
        self._history: deque[Change] = deque(maxlen=history_size)
        self._watchers: set[Watcher] = set()
        self._listeners: list[Callable[[Change], None]] = []

    # --- reads ------------------------------------------------------------------------------
    @property
    def resource_version(self) -> int:
        with self.lock:
            return self._rv

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        with self.lock:
            found = self._objects[rt.key].get((namespace if rt.namespaced else "", name))
            return copy.deepcopy(found) if found is not None else None

    def require(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        found = self.get(rt, namespace, name)
        if found is None:
            raise not_found(rt.group, rt.plural, name)
        return found

    def list(self, rt: ResourceType, namespace: str | None = None) -> tuple[list[Obj], int]:
        """Objects sorted by (namespace, name) and the resourceVersion the list is consistent at."""
        with self.lock:
            items = [copy.deepcopy(o) for (ns, _), o in sorted(self._objects[rt.key].items())
                     if namespace is None or ns == namespace]
            return items, self._rv

    def all_objects(self) -> Iterator[tuple[str, Obj]]:
        """(resource key, object) for everything; a snapshot, safe to iterate without the lock."""
        with self.lock:
            snapshot = [(k, o) for k, objs in self._objects.items() for o in objs.values()]
        return iter(snapshot)

    # --- writes -----------------------------------------------------------------------------
    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _emit(self, change: Change) -> None:
        self._history.append(change)
        for w in self._watchers:
            if w.resource == change.resource:
                w.queue.put(change)
        for listener in self._listeners:
            listener(change)

    def create(self, rt: ResourceType, obj: Obj) -> Obj:
        with self.lock:
            key = obj_key(obj)
            if key in self._objects[rt.key]:
                raise already_exists(rt.group, rt.plural, key[1])
            rv = self._next_rv()
            stored = copy.deepcopy(obj)
            stored["metadata"]["resourceVersion"] = str(rv)
            self._objects[rt.key][key] = stored
            self._emit(Change(rv, rt.key, "ADDED", copy.deepcopy(stored), None))
            return copy.deepcopy(stored)

    def update(self, rt: ResourceType, obj: Obj, expected_rv: str) -> Obj:
        """Replace obj if its stored resourceVersion is still expected_rv (optimistic concurrency)."""
        with self.lock:
            key = obj_key(obj)
            current = self._objects[rt.key].get(key)
            if current is None:
                raise not_found(rt.group, rt.plural, key[1])
            if current["metadata"]["resourceVersion"] != expected_rv:
                raise conflict(rt.group, rt.plural, key[1],
                               "the object has been modified; please apply your changes to the latest version "
                               "and try again")
            meta = obj["metadata"]
            spec_finalizers = rt.kind == "Namespace" and (obj.get("spec") or {}).get("finalizers")
            if meta.get("deletionTimestamp") and not meta.get("finalizers") and not spec_finalizers:
                return self._remove(rt, key)
            rv = self._next_rv()
            stored = copy.deepcopy(obj)
            stored["metadata"]["resourceVersion"] = str(rv)
            self._objects[rt.key][key] = stored
            self._emit(Change(rv, rt.key, "MODIFIED", copy.deepcopy(stored), copy.deepcopy(current)))
            return copy.deepcopy(stored)

    def delete(self, rt: ResourceType, namespace: str, name: str, expected_rv: str | None = None) -> Obj:
        with self.lock:
            key = (namespace if rt.namespaced else "", name)
            current = self._objects[rt.key].get(key)
            if current is None:
                raise not_found(rt.group, rt.plural, name)
            if expected_rv is not None and current["metadata"]["resourceVersion"] != expected_rv:
                raise conflict(rt.group, rt.plural, name,
                               "the object has been modified; please apply your changes to the latest version "
                               "and try again")
            return self._remove(rt, key)

    def _remove(self, rt: ResourceType, key: Key) -> Obj:
        current = self._objects[rt.key].pop(key)
        rv = self._next_rv()
        gone = copy.deepcopy(current)
        gone["metadata"]["resourceVersion"] = str(rv)
        self._emit(Change(rv, rt.key, "DELETED", copy.deepcopy(gone), copy.deepcopy(current)))
        return gone

    # --- watch ------------------------------------------------------------------------------
    def watch(self, rt: ResourceType, since: int | None) -> tuple[Watcher, list[Change], list[Obj]]:
        """Register a watcher atomically with its backlog.

        since=None: the backlog is the current objects (synthetic ADDED, as for RV "" or "0").
        since=N: the backlog is every change after N; 410 Expired if history no longer reaches back to N.
        """
        with self.lock:
            w = Watcher(rt.key)
            if since is None:
                items = [copy.deepcopy(o) for _, o in sorted(self._objects[rt.key].items())]
                self._watchers.add(w)
                return w, [], items
            oldest = self._history[0].rv if self._history else self._rv + 1
            if since < oldest - 1 and since < self._rv:
                raise expired(f"too old resource version: {since} ({oldest - 1})")
            backlog = [c for c in self._history if c.rv > since and c.resource == rt.key]
            self._watchers.add(w)
            return w, backlog, []

    def unwatch(self, w: Watcher) -> None:
        with self.lock:
            self._watchers.discard(w)

    def close_all_watchers(self) -> None:
        with self.lock:
            for w in self._watchers:
                w.queue.put(None)
            self._watchers.clear()

    def add_listener(self, listener: Callable[[Change], None]) -> None:
        """Called under the lock for every change (keep it cheap: e.g. set an Event)."""
        with self.lock:
            self._listeners.append(listener)

