"""The few controllers a bare API server needs to look real: garbage collector, namespace lifecycle,
the service-account controller's `default` ServiceAccount, and the root-ca-cert-publisher's
`kube-root-ca.crt` ConfigMap (kube-controller-manager puts one in every namespace)."""

from __future__ import annotations

import copy
import threading
import time
from typing import Callable

from localkube.errors import ApiError
from localkube.resources import RESOURCES, Catalog, ResourceType, lookup
from localkube.store import Change, Obj, Store

NAMESPACES = lookup("", "v1", "namespaces")
SERVICE_ACCOUNTS = lookup("", "v1", "serviceaccounts")
CONFIG_MAPS = lookup("", "v1", "configmaps")
ROOT_CA_CONFIG_MAP = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
ROOT_CA_DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
                       "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
                       "guaranteed across distributions of Kubernetes clusters.")
BY_KEY = {r.key: r for r in RESOURCES}


class Controllers:
    """A background thread that reconciles after every change (and every `interval` seconds)."""

    def __init__(self, store: Store, stamp: Callable[[Obj], None], interval: float = 0.5,
                 root_ca_pem: bytes = b"", catalog: Catalog | None = None) -> None:
        self.store = store
        self.catalog = catalog or Catalog()
        self._root_ca = root_ca_pem.decode()
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
            started = time.perf_counter()
            try:
                self.reconcile()
            except ApiError:
                self._wake.set()  # lost a race with a client write; go again
            # A pass scans every object (~1 ms per 1,000) while holding the GIL the request threads need:
            # rest ten times as long as the pass took, so the controllers take at most ~10% of the time.
            self._stop.wait(min(self._interval, 10 * (time.perf_counter() - started)))

    def reconcile(self) -> None:
        objects = list(self.store.all_objects())
        objects = self._custom_resources_of_deleted_crds(objects)
        uids = {o["metadata"].get("uid") for _, o in objects}
        self._service_accounts(objects)
        self._root_ca_config_maps(objects)
        self._namespaces(objects)
        for key, obj in objects:
            self._collect(key, obj, uids, objects)

    def _type(self, key: str) -> ResourceType:
        return BY_KEY.get(key) or self.catalog.by_key(key) or _gone_type(key)

    def _custom_resources_of_deleted_crds(self, objects: list[tuple[str, Obj]]) -> list[tuple[str, Obj]]:
        """Deleting a CRD deletes its objects (as the apiextensions server does)."""
        served = self.catalog.keys()
        kept = []
        for key, obj in objects:
            if key in served:
                kept.append((key, obj))
                continue
            meta = obj["metadata"]
            try:
                self.store.delete(_gone_type(key, bool(meta.get("namespace"))), meta.get("namespace", ""), meta["name"])
            except ApiError as err:
                if err.code != 404:
                    raise
        return kept

    def _update(self, key: str, obj: Obj) -> None:
        rt = self._type(key)
        meta = obj["metadata"]
        current = self.store.get(rt, meta.get("namespace", ""), meta["name"])
        if current is None:
            return
        self.store.update(rt, obj, meta["resourceVersion"])

    def _delete_or_mark(self, key: str, obj: Obj, now: str) -> None:
        rt = self._type(key)
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
                       and self._type(k).namespaced]
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

    def _root_ca_config_maps(self, objects: list[tuple[str, Obj]]) -> None:
        """root-ca-cert-publisher: create kube-root-ca.crt where missing, put back its data and annotation."""
        if not self._root_ca:
            return
        have = {o["metadata"].get("namespace"): o for k, o in objects
                if k == CONFIG_MAPS.key and o["metadata"]["name"] == ROOT_CA_CONFIG_MAP}  # type: ignore[union-attr]
        data = {"ca.crt": self._root_ca}
        for key, ns in objects:
            if key != NAMESPACES.key or ns["metadata"].get("deletionTimestamp"):  # type: ignore[union-attr]
                continue
            name = ns["metadata"]["name"]
            current = have.get(name)
            try:
                if current is None:
                    cm: Obj = {"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": ROOT_CA_CONFIG_MAP, "namespace": name,
                                            "annotations": {DESCRIPTION_ANNOTATION: ROOT_CA_DESCRIPTION}},
                               "data": data}
                    self._stamp(cm)
                    self.store.create(CONFIG_MAPS, cm)  # type: ignore[arg-type]
                elif current.get("data") != data or not (current["metadata"].get("annotations") or {}).get(
                        DESCRIPTION_ANNOTATION):
                    fixed = copy.deepcopy(current)
                    fixed["data"] = data
                    fixed["metadata"].setdefault("annotations", {})[DESCRIPTION_ANNOTATION] = ROOT_CA_DESCRIPTION
                    self._update(CONFIG_MAPS.key, fixed)  # type: ignore[union-attr]
            except ApiError:
                pass


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _gone_type(key: str, namespaced: bool = False) -> ResourceType:
    """A stand-in type for a store key whose CRD is gone (only its key and scope matter to the store)."""
    group, _, plural = key.partition("/")
    return ResourceType(group, "", plural, "", namespaced, "", custom=True)
