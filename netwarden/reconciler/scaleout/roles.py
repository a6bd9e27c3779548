"""`netwarden reconciler` with `role: ingest | decide`: the two scale-out roles on the reconciler's own parts.

Both run the reconciler runtime for its pod watch (the pod index is how flows and alerts are
attributed to workloads). The ingest role keeps its writer gate closed (it never writes) and serves
the same signal receivers, with `Ingest` as their sink. The decide role opens its gate and hands the
runtime's engine to a `Decider`: the engine then holds only the workloads of its partitions, and a
decision reaches the cluster writer only while that partition is owned (`ClusterSink`).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from netwarden.platform.logs import log_event
from netwarden.reconciler.core.decision import Decision
from netwarden.reconciler.leader import AlwaysOpen, WriterGate
from netwarden.reconciler.scaleout.decide import Decider, Sequence_
from netwarden.reconciler.scaleout.ingest import Ingest
from netwarden.reconciler.scaleout.topics import ensure_topics
from netwarden.reconciler.scaleout.wire import Topics, partition_of

log = logging.getLogger("netwarden.scaleout.roles")


class Closed(WriterGate):
    """The ingest role writes nothing to the cluster."""

    def is_open(self) -> bool:
        return False


def client_config(rc: Any) -> dict[str, Any]:
    """librdkafka settings for TLS and SASL from the reconciler section (values of the chart's Secrets)."""
    conf: dict[str, Any] = {"log_level": 4}
    tls = Path(rc.kafka_tls_dir) if rc.kafka_tls_dir else None
    if tls is not None:
        conf["ssl.ca.location"] = str(tls / "ca.crt")
        if (tls / "tls.crt").exists() and (tls / "tls.key").exists():
            conf["ssl.certificate.location"] = str(tls / "tls.crt")
            conf["ssl.key.location"] = str(tls / "tls.key")
    if rc.kafka_sasl_mechanism:
        conf["sasl.mechanism"] = rc.kafka_sasl_mechanism
        conf["sasl.username"] = rc.kafka_sasl_username or ""
        conf["sasl.password"] = Path(rc.kafka_sasl_password_file).read_text().strip() if rc.kafka_sasl_password_file else ""
    conf["security.protocol"] = {(False, False): "PLAINTEXT", (True, False): "SSL", (False, True): "SASL_PLAINTEXT",
                                 (True, True): "SASL_SSL"}[(tls is not None, bool(rc.kafka_sasl_mechanism))]
    return conf


def topics_of(rc: Any) -> Topics:
    return Topics(rc.kafka_observations_topic, rc.kafka_state_topic, rc.kafka_partitions)


class ClusterSink:
    """Decisions to the cluster writer, in order, each workload's sequence only forward (a replay after a
    crash recomputes what was written: skipped here, and the writer's own spec comparison skips the rest)."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.last: dict[str, Sequence_] = {}

    def write(self, decision: Decision, sequence: Sequence_) -> bool:
        seen = self.last.get(decision.identity)
        if seen is not None and sequence <= seen:
            return False
        self.last[decision.identity] = sequence
        self.runtime.apply([decision])
        return True


def owned_only(accept: Any, engine: Any, decider: Decider) -> Any:
    def accept_health(signal: Any) -> None:
        ref = engine.index.by_pod.get((signal.namespace, signal.pod))
        if ref is not None and partition_of(ref.identity, decider.topics.partitions) in decider.owned:
            accept(signal)

    return accept_health


def start_ingest(runtime_factory: Any, rc: Any) -> tuple[Any, Ingest]:
    runtime = runtime_factory(Closed(), None)
    extra = client_config(rc)
    ensure_topics(rc.kafka_brokers, topics_of(rc), extra=extra)
    ingest = Ingest(rc.kafka_brokers, runtime.engine.index, topics_of(rc), fold_seconds=rc.fold_seconds,
                    max_buffered=rc.ingest_buffer, extra=extra)
    runtime.start(collect_garbage=False)
    ingest.start()
    log_event(log, "info", {"event": "ingest_started", "brokers": rc.kafka_brokers, "topic": rc.kafka_observations_topic})
    return runtime, ingest


def start_decide(runtime_factory: Any, rc: Any, name: str, stop: threading.Event) -> tuple[Any, Decider]:
    runtime = runtime_factory(AlwaysOpen(), None)
    extra = client_config(rc)
    ensure_topics(rc.kafka_brokers, topics_of(rc), extra=extra)
    decider = Decider(rc.kafka_brokers, runtime.engine, ClusterSink(runtime), topics_of(rc), group=rc.kafka_group,
                      name=name, extra=extra, tick=False)
    decider.lock = runtime._engine_lock  # one lock for the engine: the runtime's ticker and pod facts take it too
    # Pod health comes from this engine's own pod watch; it counts only for the workloads of its partitions.
    runtime.controller.on_health = owned_only(runtime.accept_health, runtime.engine, decider)
    runtime.start()
    threading.Thread(target=decider.run, args=(stop,), name="decide", daemon=True).start()
    log_event(log, "info", {"event": "decide_started", "brokers": rc.kafka_brokers, "group": rc.kafka_group, "name": name})
    return runtime, decider


def run_role(rc: Any, make_runtime: Any, *, token: Any, tls: Any) -> int:
    """Run the ingest or decide role until SIGTERM (called by `netwarden reconciler` when role is not single)."""
    import os
    import signal
    import socket

    from netwarden.reconciler import metrics
    from netwarden.reconciler.receivers import ReceiverServer, create_receiver_app
    from netwarden.reconciler.signals.streams import SignalCounters
    from netwarden.reconciler.sources import start_flow_sources

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if rc.role == "ingest":
        runtime, ingest = start_ingest(make_runtime, rc)
        counters = SignalCounters()
        app = create_receiver_app(ingest, token=token, counters=counters, ready=runtime.ready,
                                  max_body_bytes=rc.max_body_bytes, sources=rc.signal_sources, tls=tls)
        server = ReceiverServer(app, rc.host, rc.port, tls=tls).start()
        sources = start_flow_sources(rc, ingest, counters, active=lambda: True, registry=metrics.REGISTRY)
        stop.wait()
        for source in sources:
            source.stop()
        server.stop()
        ingest.stop()
        runtime.stop()
        return 0
    name = os.environ.get("NETWARDEN_POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    runtime, decider = start_decide(make_runtime, rc, name, stop)
    # /metrics, /healthz and /readyz as in single mode; signals reach this role through Kafka only.
    app = create_receiver_app(runtime, token=token, ready=runtime.ready, sources=(), tls=tls)
    server = ReceiverServer(app, rc.host, rc.port, tls=tls).start()
    stop.wait()
    decider.stop()
    server.stop()
    runtime.stop()
    return 0
