"""Single mode: a new leader (or a restarted one) keeps the baselines the old leader learned.

Two runtimes against the local API server: the first learns and steps down (saving its state to the
`netwarden-state-*` Secrets), the second wins the Lease and restores it before it acts.
"""

from __future__ import annotations

from kubernetes import client

from localkube import LocalKube
from netwarden.model import names
from netwarden.platform.kube import KubeClient
from netwarden.reconciler.controller import ControllerSettings
from netwarden.reconciler.core.config import CoreConfig
from netwarden.reconciler.core.types import Endpoint, Flow
from netwarden.reconciler.leader import WriterGate
from netwarden.reconciler.metrics import REGISTRY
from netwarden.reconciler.runtime import ReconcilerRuntime, RuntimeSettings
from netwarden.reconciler.scaleout.statestore import StateStoreSettings, secret_name, shard_of
from netwarden.reconciler.watch import Backoff

from .conftest import make_namespace, make_pod, wait_until

API, DB = "shop.pod.api", "shop.pod.db"
#: Learning ends after 20 flows, so the test needs no clock of its own.
CORE = CoreConfig(default_mode=names.MODE_ENFORCE, learning_max_flows=20)
SHARDS = 4


class Gate(WriterGate):
    def __init__(self, open_: bool) -> None:
        self.open = open_

    def is_open(self) -> bool:
        return self.open


def runtime(kube: KubeClient, gate: Gate, *, state: bool = True) -> ReconcilerRuntime:
    settings = RuntimeSettings(ControllerSettings(cleanup_grace_seconds=3600, default_mode=names.MODE_ENFORCE,
                                                  write_rate_per_second=100, write_burst=100),
                               tick_seconds=0.2, sync_timeout_seconds=10,
                               state=StateStoreSettings("netwarden", SHARDS, 3600.0) if state else None)
    return ReconcilerRuntime(kube, settings, CORE, gate=gate, backoff=Backoff(0.01, 0.1))


def populate(core: client.CoreV1Api) -> None:
    make_namespace(core, "netwarden", opted_in=False)
    make_namespace(core, "shop")
    for name, ip in (("api", "10.0.1.10"), ("db", "10.0.2.10")):
        make_pod(core, "shop", name, ip=ip, labels={names.LABEL_IDENTITY: f"shop.pod.{name}",
                                                    names.LABEL_INSTANCE: f"inst-{name}"})


def learn(rt: ReconcilerRuntime) -> None:
    assert wait_until(lambda: rt.engine.index.by_ip.get("10.0.2.10") is not None)
    now = rt.clock()
    rt.accept_flows([Flow(now, Endpoint("10.0.1.10"), Endpoint("10.0.2.10"), 5432, "TCP") for _ in range(30)])
    assert not rt.engine.baseline_of(API).is_learning(rt.clock())


def new_peer(rt: ReconcilerRuntime) -> float:
    rt.accept_flows([Flow(rt.clock(), Endpoint("10.0.1.10"), Endpoint("203.0.113.9", world=True), 443, "TCP")])
    return rt.engine.risk_of(API).score_at(rt.clock())


def test_a_new_leader_restores_the_baselines_the_old_one_saved_and_does_not_learn_again(
        kube: KubeClient, core: client.CoreV1Api) -> None:
    populate(core)
    old = runtime(kube, Gate(True)).start()
    try:
        learn(old)
        learned = old.engine.baseline_of(API).learned_edges()
    finally:
        old.stop()  # stepping down saves
    stored = core.read_namespaced_secret(secret_name(shard_of(API, SHARDS)), "netwarden")
    assert API in stored.data and stored.metadata.labels[names.LABEL_APP_COMPONENT] == names.STATE_COMPONENT

    gate = Gate(False)
    new = runtime(kube, gate).start()
    try:
        standby = new.engine.baseline_of(API)
        assert standby is None or standby.flows_seen == 0  # a standby has learned nothing of its own
        gate.open = True
        new.on_leadership()
        baseline = new.engine.baseline_of(API)
        assert baseline is not None and baseline.learned_edges() == learned
        assert not baseline.is_learning(new.clock())
        assert new_peer(new) > 0  # the first unknown peer is a deviation at once, not something to learn
    finally:
        new.stop()


def test_without_a_state_store_a_new_leader_learns_again(kube: KubeClient, core: client.CoreV1Api) -> None:
    """The gap the store closes, shown on the same story."""
    populate(core)
    old = runtime(kube, Gate(True), state=False).start()
    try:
        learn(old)
    finally:
        old.stop()
    new = runtime(kube, Gate(True), state=False).start()
    try:
        assert new_peer(new) == 0  # the unknown peer is learned as if it were normal
        assert new.engine.baseline_of(API).is_learning(new.clock())
    finally:
        new.stop()


def test_stepping_down_after_the_api_server_is_gone_counts_the_state_as_unsaved_and_raises_nothing(
        cluster: LocalKube, kube: KubeClient, core: client.CoreV1Api) -> None:
    """The demo's and a node drain's shutdown order: the API server can go before the reconciler does."""
    populate(core)
    rt = runtime(kube, Gate(True)).start()
    learn(rt)
    before = unsaved()
    cluster.stop()
    rt.stop()  # must not raise; one shard tried, not every shard after the first got no answer
    assert unsaved() == before + 1


def unsaved() -> float:
    return REGISTRY.get_sample_value("netwarden_state_snapshots_total",
                                     {"operation": "save", "result": "unreachable"}) or 0.0
