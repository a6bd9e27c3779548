"""The few controllers a bare API server needs to look real: garbage collector, namespace lifecycle,
and the service-account controller's `default` ServiceAccount."""

from __future__ import annotations

import copy
import threading
from typing import Callable

from localkube.errors import ApiError
from localkube.resources import RESOURCES, lookup
from localkube.store import Change, Obj, Store

NAMESPACES = lookup("", "v1", "namespaces")
SERVICE_ACCOUNTS = lookup("", "v1", "serviceaccounts")
BY_KEY = {r.key: r for r in RESOURCES}


class Controllers:
    """A background thread that reconciles after every change (and every `interval` seconds)."""

    def __init__(self, store: Store, stamp: Callable[[Obj], None], interval: float = 0.5) -> None:
        self.store = store
        self._stamp = stamp  # fills uid/creationTimestamp for objects the controllers create
        self._interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="localkube-controllers", daemon=True)
        store.add_listener(self._on_change)

    def _on_change(self, change: Change) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.reconcile()
            except ApiError:
                self._wake.set()  # lost a race with a client write; go again

    def reconcile(self) -> None:
        objects = list(self.store.all_objects())
        uids = {o["metadata"].get("uid") for _, o in objects}
        self._service_accounts(objects)
        self._namespaces(objects)
        for key, obj in objects:
            self._collect(key, obj, uids, objects)

    def _update(self, key: str, obj: Obj) -> None:
        rt = BY_KEY[key]
        meta = obj["metadata"]
        current = self.store.get(rt, meta.get("namespace", ""), meta["name"])
        if current is None:
            return
        self.store.update(rt, obj, meta["resourceVersion"])

    def _delete_or_mark(self, key: str, obj: Obj, now: str) -> None:
        rt = BY_KEY[key]
        meta = obj["metadata"]
        try:
            if meta.get("finalizers"):
                if not meta.get("deletionTimestamp"):
                    marked = copy.deepcopy(obj)
                    marked["metadata"]["deletionTimestamp"] = now
                    self._update(key, marked)
            else:
                self.store.delete(rt, meta.get("namespace", ""), meta["name"], meta["resourceVersion"])
        except ApiError as err:
            if err.code != 404:
                raise

    def _collect(self, key: str, obj: Obj, uids: set[str], objects: list[tuple[str, Obj]]) -> None:
        meta = obj["metadata"]
        refs = meta.get("ownerReferences") or []
        if refs and not meta.get("deletionTimestamp") and not any(r.get("uid") in uids for r in refs):
            self._delete_or_mark(key, obj, _now())
            return
        finalizers = meta.get("finalizers") or []
        if not meta.get("deletionTimestamp"):
            return
        uid = meta.get("uid")
        dependents = [(k, o) for k, o in objects if any(r.get("uid") == uid for r in
                                                       o["metadata"].get("ownerReferences") or [])]
        if "orphan" in finalizers:
            for k, o in dependents:
                freed = copy.deepcopy(o)
                freed["metadata"]["ownerReferences"] = [r for r in o["metadata"]["ownerReferences"]
                                                        if r.get("uid") != uid]
                if not freed["metadata"]["ownerReferences"]:
                    del freed["metadata"]["ownerReferences"]
                self._update(k, freed)
            done = copy.deepcopy(obj)
            done["metadata"]["finalizers"] = [f for f in finalizers if f != "orphan"]
            self._update(key, done)
        elif "foregroundDeletion" in finalizers:
            if dependents:
                for k, o in dependents:
                    self._delete_or_mark(k, o, _now())
            else:
                done = copy.deepcopy(obj)
                done["metadata"]["finalizers"] = [f for f in finalizers if f != "foregroundDeletion"]
                self._update(key, done)

    def _namespaces(self, objects: list[tuple[str, Obj]]) -> None:
        for key, ns in objects:
            if key != NAMESPACES.key or not ns["metadata"].get("deletionTimestamp"):  # type: ignore[union-attr]
                continue
            name = ns["metadata"]["name"]
            content = [(k, o) for k, o in objects if o["metadata"].get("namespace") == name
                       and BY_KEY[k].namespaced]
            for k, o in content:
                self._delete_or_mark(k, o, _now())
            if content:
                continue
            if (ns.get("spec") or {}).get("finalizers"):
                done = copy.deepcopy(ns)
                done["spec"]["finalizers"] = []
                self._update(key, done)
                ns = self.store.get(NAMESPACES, "", name) or ns  # type: ignore[arg-type]
            if not ns["metadata"].get("finalizers") and self.store.get(NAMESPACES, "", name):  # type: ignore[arg-type]
                try:
                    self.store.delete(NAMESPACES, "", name)  # type: ignore[arg-type]
                except ApiError:
                    pass

    def _service_accounts(self, objects: list[tuple[str, Obj]]) -> None:
        have = {o["metadata"].get("namespace") for k, o in objects
                if k == SERVICE_ACCOUNTS.key and o["metadata"]["name"] == "default"}  # type: ignore[union-attr]
        for key, ns in objects:
            if key != NAMESPACES.key or ns["metadata"].get("deletionTimestamp"):  # type: ignore[union-attr]
                continue
            name = ns["metadata"]["name"]
            if name in have:
                continue
            sa: Obj = {"apiVersion": "v1", "kind": "ServiceAccount",
                       "metadata": {"name": "default", "namespace": name}}
            self._stamp(sa)
            try:
                self.store.create(SERVICE_ACCOUNTS, sa)  # type: ignore[arg-type]
            except ApiError:
                pass


def _now() -> str:
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
