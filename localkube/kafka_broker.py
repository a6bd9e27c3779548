"""Start, stop, kill and restart one real Apache Kafka broker (KRaft, combined broker + controller).

Used by the scale-out tests, the bench and `netwarden demo --scale-out`. The broker listens on two
loopback ports chosen free (clients, controller), keeps its log in a directory of the caller's, and
is formatted once with the StorageTool; `restart` keeps the log and the ports, so a client sees the
same broker come back. The JVM is sized for a laptop (heap 512 MiB, C1 only: it starts in ~5 s).
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from localkube.kafka_build import BROKER_MAIN, STORAGE_TOOL, KafkaDist, java_binary
from localkube.kube_engine import free_ports

JVM_FLAGS = ("-Xms128m", "-Xmx512m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Djava.awt.headless=true")


def _properties(workdir: Path, port: int, controller_port: int, partitions: int) -> str:
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={workdir / 'data'}",
        f"num.partitions={partitions}",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        # A test's consumer group should form at once, not after the 3 s production default.
        "group.initial.rebalance.delay.ms=0",
        "group.consumer.session.timeout.ms=6000",
        "group.consumer.min.session.timeout.ms=1000",
        "group.consumer.heartbeat.interval.ms=500",
        "group.consumer.min.heartbeat.interval.ms=200",
        "log.cleaner.backoff.ms=1000",
        "",
    ])


@dataclass
class KafkaBroker:
    """One broker process; `bootstrap` is what clients connect to."""

    dist: KafkaDist
    workdir: Path
    partitions: int = 12
    #: 0: a free loopback port, chosen with the other so the two cannot collide (kept across restarts)
    port: int = 0
    controller_port: int = 0
    process: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        free = free_ports(2)
        self.port = self.port or free[0]
        self.controller_port = self.controller_port or free[1]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "broker.log"

    def start(self, timeout: float = 60.0) -> "KafkaBroker":
        """Format the log directory (first start only) and start the broker; returns once it answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        properties = self.workdir / "server.properties"
        if not (self.workdir / "data" / "meta.properties").exists():
            properties.write_text(_properties(self.workdir, self.port, self.controller_port, self.partitions))
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            result = subprocess.run([java_binary(), *JVM_FLAGS, "-cp", self.dist.classpath, STORAGE_TOOL, "format",
                                     "-t", cluster_id, "-c", str(properties)],
                                    capture_output=True, text=True, timeout=120)
            if result.returncode != 0:
                raise RuntimeError(f"kafka storage format failed: {(result.stdout + result.stderr)[-2000:]}")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [java_binary(), *JVM_FLAGS, "-cp", self.dist.classpath, BROKER_MAIN, str(properties)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Until the broker answers a metadata request (its port opens a little before it can serve)."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0, "logger": _quiet})
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"kafka broker exited ({self.process.returncode}); see {self.log_path}")
            try:
                if admin.list_topics(timeout=2).brokers:
                    return
            except Exception:  # noqa: BLE001 - not up yet: KafkaException / transport errors
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"kafka broker not ready after {timeout:.0f} s; see {self.log_path}")
            time.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> None:
        """A clean shutdown (SIGTERM), then SIGKILL if it does not end in time."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def kill(self) -> None:
        """kill -9: no shutdown, as a crashed node."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def restart(self, timeout: float = 60.0) -> None:
        self.stop()
        self.start(timeout)


class _QuietLogger:
    """librdkafka logs every refused connection while a broker starts; nobody needs those lines."""

    def log(self, *args: object, **kwargs: object) -> None:
        return None


_quiet = _QuietLogger()
