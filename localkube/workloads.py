"""Stand-in for kube-controller-manager's workload controllers on the local engine.

Deployment -> ReplicaSet -> Pods and StatefulSet -> Pods, done as the real controllers do it:
as an API client, so every pod it creates goes through admission (the webhook sees a pod created by
`system:serviceaccount:kube-system:replicaset-controller` or `...:statefulset-controller`, by
impersonation, with generateName,
pod-template-hash and controller ownerReferences). On the real engine the real controllers run
instead; the demo and tests do not care which.

Deliberately simple: rollouts recreate (old ReplicaSets are scaled to zero at once), no
maxSurge/maxUnavailable, no status beyond replica counts.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import threading
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

log = logging.getLogger("localkube.workloads")
Obj = dict[str, Any]


def template_hash(template: Obj) -> str:
    """A stable pod-template-hash (the real one is a fnv hash rendered in a safe alphabet)."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    number = int(digest[:16], 16)
    out = []
    for _ in range(10):
        number, rem = divmod(number, len(alphabet))
        out.append(alphabet[rem])
    return "".join(out)


def owner_ref(obj: Obj) -> Obj:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


#: The user each upstream controller creates its pods as (kube-controller-manager with
#: --use-service-account-credentials); this stand-in sends the same, by impersonation.
CONTROLLER_USERS = {
    "ReplicaSet": "system:serviceaccount:kube-system:replicaset-controller",
    "StatefulSet": "system:serviceaccount:kube-system:statefulset-controller",
}


def owned_by(obj: Obj, owner: Obj) -> bool:
    uid = owner["metadata"]["uid"]
    return any(ref.get("uid") == uid and ref.get("controller") for ref in obj["metadata"].get("ownerReferences") or [])


class WorkloadController:
    """Watches Deployments, ReplicaSets, StatefulSets and Pods; converges on every change."""

    def __init__(self, api_client: client.ApiClient, resync: float = 2.0) -> None:
        self.api = api_client
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.resync = resync
        #: Pods are created as their controller's user (Impersonate-User), as the real controllers do:
        #: an admission webhook sees the same userInfo on both engines.
        self._pod_creators: dict[str, client.CoreV1Api] = {}
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: list[watch.Watch] = []

    def _dict(self, obj: Any) -> Obj:
        return self.api.sanitize_for_serialization(obj)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "WorkloadController":
        for name, lister in (
            ("deployments", self.apps.list_deployment_for_all_namespaces),
            ("replicasets", self.apps.list_replica_set_for_all_namespaces),
            ("statefulsets", self.apps.list_stateful_set_for_all_namespaces),
            ("pods", self.core.list_pod_for_all_namespaces),
        ):
            thread = threading.Thread(target=self._watch_loop, args=(lister,), name=f"workloads-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        loop = threading.Thread(target=self._reconcile_loop, name="workloads-reconcile", daemon=True)
        loop.start()
        self._threads.append(loop)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        for w in self._watches:
            w.stop()
        # Watch threads blocked in a read notice the stop at their next event or timeout; they are
        # daemons, so do not wait them out (the reconcile thread exits at once).
        for thread in self._threads:
            thread.join(timeout=0.1)

    def __enter__(self) -> "WorkloadController":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _watch_loop(self, lister: Any) -> None:
        w = watch.Watch()
        self._watches.append(w)
        while not self._stop.is_set():
            try:
                for _ in w.stream(lister, timeout_seconds=10, _request_timeout=15):
                    self._dirty.set()
                    if self._stop.is_set():
                        return
            except Exception as exc:  # noqa: BLE001 - a dropped watch is retried
                if self._stop.is_set():
                    return
                log.debug("workload watch restarting: %s", exc)
                self._stop.wait(0.5)

    def _reconcile_loop(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait(self.resync)
            self._dirty.clear()
            if self._stop.is_set():
                return
            try:
                self.reconcile()
            except ApiException as exc:
                log.debug("workload reconcile retrying after %s", exc.status)
                self._dirty.set()
                self._stop.wait(0.2)
            except Exception:  # noqa: BLE001
                log.exception("workload reconcile failed")
                self._stop.wait(0.5)

    # -- convergence --------------------------------------------------------------------------
    def reconcile(self) -> None:
        deployments = [self._dict(d) for d in self.apps.list_deployment_for_all_namespaces().items]
        replicasets = [self._dict(r) for r in self.apps.list_replica_set_for_all_namespaces().items]
        statefulsets = [self._dict(s) for s in self.apps.list_stateful_set_for_all_namespaces().items]
        pods = [self._dict(p) for p in self.core.list_pod_for_all_namespaces().items]
        for deployment in deployments:
            self._sync_deployment(deployment, [r for r in replicasets if owned_by(r, deployment)])
        replicasets = [self._dict(r) for r in self.apps.list_replica_set_for_all_namespaces().items]
        for rs in replicasets:
            self._sync_pods(rs, [p for p in pods if owned_by(p, rs)], stateful=False)
        for sts in statefulsets:
            self._sync_pods(sts, [p for p in pods if owned_by(p, sts)], stateful=True)

    def _sync_deployment(self, deployment: Obj, owned: list[Obj]) -> None:
        if deployment["metadata"].get("deletionTimestamp"):
            return
        namespace = deployment["metadata"]["namespace"]
        template = deployment["spec"]["template"]
        wanted_hash = template_hash(template)
        replicas = deployment["spec"].get("replicas", 1)
        current = next((r for r in owned if r["metadata"].get("labels", {}).get("pod-template-hash") == wanted_hash), None)
        if current is None:
            rs_template = copy.deepcopy(template)
            rs_template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = wanted_hash
            selector = copy.deepcopy(deployment["spec"]["selector"])
            selector.setdefault("matchLabels", {})["pod-template-hash"] = wanted_hash
            body = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{deployment['metadata']['name']}-{wanted_hash}",
                    "namespace": namespace,
                    "labels": dict(rs_template["metadata"]["labels"]),
                    "ownerReferences": [owner_ref(deployment)],
                },
                "spec": {"replicas": replicas, "selector": selector, "template": rs_template},
            }
            try:
                self.apps.create_namespaced_replica_set(namespace, body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
        elif current["spec"].get("replicas") != replicas:
            self.apps.patch_namespaced_replica_set(current["metadata"]["name"], namespace, {"spec": {"replicas": replicas}})
        for old in owned:
            if old is not current and old["metadata"].get("labels", {}).get("pod-template-hash") != wanted_hash:
                if old["spec"].get("replicas", 0) != 0:
                    self.apps.patch_namespaced_replica_set(old["metadata"]["name"], namespace, {"spec": {"replicas": 0}})

    def _sync_pods(self, owner: Obj, pods: list[Obj], *, stateful: bool) -> None:
        if owner["metadata"].get("deletionTimestamp"):
            return
        namespace = owner["metadata"]["namespace"]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        wanted = owner["spec"].get("replicas", 1)
        if stateful:
            names = {p["metadata"]["name"] for p in live}
            base = owner["metadata"]["name"]
            for index in range(wanted):
                if f"{base}-{index}" not in names:
                    self._create_pod(owner, namespace, name=f"{base}-{index}")
            for pod in live:
                suffix = pod["metadata"]["name"].rsplit("-", 1)[-1]
                if not suffix.isdigit() or int(suffix) >= wanted:
                    self._delete_pod(namespace, pod["metadata"]["name"])
            return
        for _ in range(wanted - len(live)):
            self._create_pod(owner, namespace, generate_name=f"{owner['metadata']['name']}-")
        for pod in sorted(live, key=lambda p: p["metadata"]["name"])[wanted:]:
            self._delete_pod(namespace, pod["metadata"]["name"])

    def _create_pod(self, owner: Obj, namespace: str, *, name: str | None = None, generate_name: str | None = None) -> None:
        template = copy.deepcopy(owner["spec"]["template"])
        metadata = template.get("metadata") or {}
        metadata["namespace"] = namespace
        metadata["ownerReferences"] = [owner_ref(owner)]
        if name:
            metadata["name"] = name
            metadata.setdefault("labels", {})["statefulset.kubernetes.io/pod-name"] = name
        else:
            metadata["generateName"] = generate_name
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}
        try:
            self._creator_for(owner["kind"]).create_namespaced_pod(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def _creator_for(self, kind: str) -> client.CoreV1Api:
        api = self._pod_creators.get(kind)
        if api is None:
            impersonating = client.ApiClient(self.api.configuration)
            impersonating.set_default_header("Impersonate-User", CONTROLLER_USERS[kind])
            api = self._pod_creators[kind] = client.CoreV1Api(impersonating)
        return api

    def _delete_pod(self, namespace: str, name: str) -> None:
        try:
            self.core.delete_namespaced_pod(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
