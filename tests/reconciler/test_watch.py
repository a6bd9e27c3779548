"""Informers against LocalKube: list once, resume watches from the last resourceVersion, re-list on 410."""

from __future__ import annotations

import threading

from kubernetes import client

from netwarden.platform.kube import KubeClient
from netwarden.reconciler.core.pods import PodIndex
from netwarden.reconciler.watch import DELETED, Backoff, ClusterIndex, ClusterWatcher, Informer

from .conftest import make_namespace, make_pod, set_pod_status, wait_until


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, kind: str, obj: dict, old: dict | None) -> None:
        with self.lock:
            self.events.append((kind, obj["metadata"]["name"]))

    def names(self, kind: str) -> set[str]:
        with self.lock:
            return {name for k, name in self.events if k == kind}


def test_informer_lists_then_streams_changes(kube: KubeClient, core: client.CoreV1Api) -> None:
    make_namespace(core, "shop")
    make_pod(core, "shop", "before")
    recorder = Recorder()
    informer = Informer(kube, "pods", recorder, backoff=Backoff(0.01, 0.1)).start()
    try:
        wait_until(lambda: "before" in recorder.names("ADDED"))
        make_pod(core, "shop", "after")
        wait_until(lambda: "after" in recorder.names("ADDED"))
        core.delete_namespaced_pod("before", "shop")
        wait_until(lambda: "before" in recorder.names(DELETED))
        assert informer.stats.lists == 1
    finally:
        informer.stop()


def test_dropped_watch_resumes_from_last_version_without_relisting(cluster, kube: KubeClient,
                                                                   core: client.CoreV1Api) -> None:
    make_namespace(core, "shop")
    recorder = Recorder()
    informer = Informer(kube, "pods", recorder, backoff=Backoff(0.01, 0.05)).start()
    try:
        wait_until(informer.synced.is_set)
        # The next watch connection is cut after one event; everything after must still arrive.
        cluster.faults.add(method="GET", path_regex=r"/api/v1/pods\?.*watch=(true|True)", drop_watch_after=1, times=1)
        # Synced means listed; the watch that follows the list opens a moment later. End it once it is open, so
        # the faulty one is opened next.
        wait_until(lambda: informer._stream).close()
        for i in range(5):
            make_pod(core, "shop", f"p{i}")
        wait_until(lambda: {f"p{i}" for i in range(5)} <= recorder.names("ADDED"))
        assert informer.stats.lists == 1
        assert informer.stats.watches >= 2
        adds = [name for kind, name in recorder.events if kind == "ADDED"]
        assert len(adds) == len(set(adds)), "a resumed watch must not replay what was already seen"
    finally:
        informer.stop()


def test_expired_watch_relists_and_reports_deletions_missed(cluster, kube: KubeClient,
                                                            core: client.CoreV1Api) -> None:
    make_namespace(core, "shop")
    make_pod(core, "shop", "doomed")
    recorder = Recorder()
    informer = Informer(kube, "pods", recorder, backoff=Backoff(0.01, 0.05))
    informer.start()
    try:
        wait_until(lambda: "doomed" in recorder.names("ADDED"))
        informer.stop()  # disconnected; it will resume from the version it saw last
        core.delete_namespaced_pod("doomed", "shop")
        make_pod(core, "shop", "newcomer")
        # That version is now too old (410 Gone) when the watch resumes: it must re-list.
        cluster.faults.add(method="GET", path_regex=r"/api/v1/pods\?.*watch=(true|True)", status=410, times=1)
        informer.start()
        wait_until(lambda: "doomed" in recorder.names(DELETED) and "newcomer" in recorder.names("ADDED"))
        assert informer.stats.relists_after_410 == 1
        assert informer.stats.lists == 2
    finally:
        informer.stop()


def test_cluster_index_answers_by_ip_identity_instance_and_namespace_mode(kube: KubeClient,
                                                                          core: client.CoreV1Api) -> None:
    make_namespace(core, "shop", mode="approve")
    make_pod(core, "shop", "api-1", labels={"netwarden.io/identity": "shop.deploy.api",
                                            "netwarden.io/instance": "i-1"}, ip="10.0.0.7")
    pods = PodIndex()  # the engine's: the watch feeds the one index both read
    index = ClusterIndex(pods=pods)
    watcher = ClusterWatcher(kube, index, backoff=Backoff(0.01, 0.1)).start()
    try:
        assert watcher.wait_synced(10)
        view = wait_until(lambda: pods.by_ip.get("10.0.0.7"))
        assert (view.namespace, view.pod, view.identity, view.instance) == ("shop", "api-1", "shop.deploy.api", "i-1")
        assert [p.pod for p in index.pods_of("shop.deploy.api")] == ["api-1"]
        assert index.pod_by_instance("i-1").pod == "api-1"
        assert pods.replicas("shop.deploy.api") == (view,)
        namespace = index.namespace("shop")
        assert namespace.opted_in and namespace.mode == "approve"
        set_pod_status(core, "shop", "api-1", ip="10.0.0.8", ready=False)
        wait_until(lambda: pods.by_ip.get("10.0.0.8"))
        assert pods.by_ip.get("10.0.0.7") is None
    finally:
        watcher.stop()
