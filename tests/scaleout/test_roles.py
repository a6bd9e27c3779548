"""The two roles as `netwarden reconciler` runs them: ingest and decide on the local API server and a real broker.

Ingest attributes flows through its own pod watch and produces them; decide learns, then decides on the
deviation and records the decision in the cluster through the reconciler's writer.
"""

from __future__ import annotations

from dataclasses import replace
from threading import Event

from kubernetes import client

from localkube import LocalKube
from localkube.kafka_broker import KafkaBroker
from netwarden.model import names
from netwarden.platform.config import ReconcilerConfig
from netwarden.platform.kube import KubeClient
from netwarden.reconciler.controller import ControllerSettings
from netwarden.reconciler.core.config import CoreConfig
from netwarden.reconciler.core.types import Endpoint, Flow
from netwarden.reconciler.runtime import ReconcilerRuntime, RuntimeSettings
from netwarden.reconciler.scaleout.roles import start_decide, start_ingest
from netwarden.reconciler.scaleout.wire import Topics
from netwarden.reconciler.watch import Backoff
from tests.reconciler.conftest import FAST_RETRY, make_namespace, make_pod
from tests.support.waiting import wait_for

#: Learning ends 60 s after the first flow; the flows below carry their own (past) times, and decide scores by them.
CORE = CoreConfig(default_mode=names.MODE_ENFORCE, learning_seconds=60.0)


def test_ingest_and_decide_roles_carry_a_deviation_to_a_decision_in_the_cluster(kafka_broker: KafkaBroker, topics: Topics) -> None:
    with LocalKube(bookmark_interval=0.5) as cluster:
        kube = KubeClient(cluster.api_client(), FAST_RETRY)
        core = client.CoreV1Api(cluster.api_client())
        net = client.NetworkingV1Api(cluster.api_client())
        make_namespace(core, "shop")
        for name, ip in (("api", "10.0.1.10"), ("db", "10.0.2.10")):
            make_pod(core, "shop", name, ip=ip, labels={names.LABEL_IDENTITY: f"shop.pod.{name}",
                                                        names.LABEL_INSTANCE: f"inst-{name}"})
        settings = RuntimeSettings(ControllerSettings(cleanup_grace_seconds=3600, default_mode=names.MODE_ENFORCE,
                                                      write_rate_per_second=100, write_burst=100),
                                   tick_seconds=0.2, sync_timeout_seconds=10)

        def make_runtime(gate, _):
            return ReconcilerRuntime(kube, settings, CORE, gate=gate, backoff=Backoff(0.01, 0.1))

        rc = replace(ReconcilerConfig(), role="decide", kafka_brokers=kafka_broker.bootstrap,
                     kafka_observations_topic=topics.observations, kafka_state_topic=topics.state,
                     kafka_partitions=topics.partitions, kafka_group=f"{topics.observations}-roles", fold_seconds=0.2)
        stop = Event()
        decide_runtime, decider = start_decide(make_runtime, rc, "decide-0", stop)
        ingest_runtime = ingest = None
        try:
            ingest_runtime, ingest = start_ingest(make_runtime, replace(rc, role="ingest"))
            wait_for(lambda: len(decider.owned) == topics.partitions, "the decide engine owning every partition")
            wait_for(lambda: ingest.index.by_ip.get("10.0.2.10"), "ingest's pod watch")
            now = ingest_runtime.clock()
            for t in range(100, 0, -1):  # 100 s of learning, one fold bucket per second
                ingest.accept_flows([Flow(now - t, Endpoint("10.0.1.10"), Endpoint("10.0.2.10"), 5432, "TCP")] * 3)
                ingest.flush()
            wait_for(lambda: decider.counters.records >= 100, "the learning flows decided on")
            ingest.accept_flows([Flow(ingest_runtime.clock(), Endpoint("10.0.1.10"), Endpoint(f"203.0.113.{k}", world=True),
                                      443, "TCP") for k in (1, 2)])
            ingest.flush()

            def recorded() -> list:
                # The tightening is refused by the what-if here (the learned edge to the db would be cut on this
                # API server), so the decision is an Event on the workload: written by the decide role all the same.
                return [e for e in core.list_namespaced_event("shop").items if e.reason == "NetwardenGuardRail"
                        and "tighten" in (e.message or "")]

            wait_for(recorded, "the decide role's decision recorded in the cluster")
            with decider.lock:
                assert not decider.engine.baseline_of("shop.pod.api").is_learning(now + 100)
            assert decider.counters.written >= 1 and decider.counters.fenced == 0
            assert ingest.counters.dropped == {}
        finally:
            stop.set()
            if ingest is not None:
                ingest.stop()
                ingest_runtime.stop()
            decide_runtime.stop()
