"""A scale-out story shared by the tests on real Kafka and the bench: workloads that learn, then some deviate.

`Story` builds pods and flows; `single_mode(story)` is what today's in-process engine decides for the
same flows (the reference the sharded engines must equal); `DecideProcess` runs one decide engine as
`netwarden scaleout decide` so a test can kill -9 it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from netwarden import names
from reconciler.core.behaviour import PodRef
from reconciler.core.config import CoreConfig
from reconciler.core.engine import DecisionEngine
from reconciler.core.snapshot import intent_data
from reconciler.core.types import Endpoint, Flow
from reconciler.scaleout.ingest import Ingest
from reconciler.scaleout.wire import Topics

#: Learning ends 100 s after a workload's first flow; guard rails are cluster-wide and would make a
#: sharded engine differ from one engine only by where the bound is counted, so they are opened here.
CORE: dict[str, Any] = {
    "learning_seconds": 100.0, "rate_bucket_seconds": 10.0, "half_life_seconds": 3600.0,
    "default_mode": names.MODE_ENFORCE, "blast_max_pod_fraction": 1.0, "blast_max_workloads": 100_000,
    "write_burst": 1_000_000, "safety_write_burst": 1_000_000, "rate_spike_min_flows": 1_000_000,
}


def core_config() -> CoreConfig:
    return CoreConfig.from_mapping(CORE)


@dataclass(frozen=True)
class Story:
    workloads: int = 48
    learn_steps: int = 110
    deviate_steps: int = 20

    def identity(self, i: int) -> str:
        return f"ns{i % 6}.deploy.app{i}"

    def ip(self, i: int) -> str:
        return f"10.{i // 250}.{i % 250}.10"

    def pods(self) -> list[PodRef]:
        return [PodRef(self.identity(i), f"ns{i % 6}", f"app{i}-0", f"inst-app{i}", self.ip(i), "backend")
                for i in range(self.workloads)]

    def step(self, t: int) -> list[Flow]:
        """Flows at time t: every workload talks to its two neighbours; after learning every fourth one
        also reaches out to new peers and to the world (enough to tighten, then quarantine)."""
        n, out = self.workloads, []
        for i in range(n):
            out.append(Flow(float(t), Endpoint(self.ip(i)), Endpoint(self.ip((i + 1) % n)), 8080, "TCP"))
            out.append(Flow(float(t), Endpoint(self.ip(i)), Endpoint(self.ip((i + 2) % n)), 5432, "TCP"))
            if t >= self.learn_steps and i % 4 == 0:
                k = t - self.learn_steps
                out.append(Flow(float(t), Endpoint(self.ip(i)), Endpoint(f"203.0.113.{k % 250}", world=True), 443, "TCP"))
                out.append(Flow(float(t), Endpoint(self.ip(i)), Endpoint(self.ip((i + 7 + k) % n)), 9000 + k, "TCP"))
        return out

    def steps(self, start: int, stop: int) -> Iterator[tuple[int, list[Flow]]]:
        for t in range(start, stop):
            yield t, self.step(t)

    @property
    def total_steps(self) -> int:
        return self.learn_steps + self.deviate_steps


def decision_row(decision: Any) -> tuple:
    """What must match between modes: what was decided and what it writes (not when, to the millisecond)."""
    return (decision.action, decision.effect, decision.step_after,
            json.dumps([intent_data(i) for i in decision.intents], sort_keys=True))


def file_row(record: dict[str, Any]) -> tuple:
    return (record["action"], record["effect"], record["step_after"], json.dumps(record["intents"], sort_keys=True))


def single_mode(story: Story) -> dict[str, list[tuple]]:
    """identity -> its decisions in order, from one in-process engine fed every flow (today's path)."""
    engine = DecisionEngine(core_config())
    for ref in story.pods():
        engine.upsert_pod(ref)
    out: dict[str, list[tuple]] = {}
    for t, flows in story.steps(0, story.total_steps):
        for flow in flows:
            for decision in engine.ingest_flow(flow, float(t)):
                out.setdefault(decision.identity, []).append(decision_row(decision))
    return out


def produce(ingest: Ingest, story: Story, start: int, stop: int) -> None:
    """One fold bucket per time step, as a 1 s bucket would close between seconds of flows."""
    for _, flows in story.steps(start, stop):
        ingest.accept_flows(flows)
        ingest.flush()
    ingest.poll(0)


class DecideProcess:
    """`netwarden scaleout decide` in its own process group (so kill -9 takes it down and nothing else)."""

    def __init__(self, bootstrap: str, name: str, workdir: Path, story: Story, topics: Topics,
                 group: str = "decide") -> None:
        self.name = name
        self.status_path = workdir / f"status-{name}.json"
        pods = workdir / "pods.json"
        if not pods.exists():
            pods.write_text(json.dumps([asdict(p) for p in story.pods()]))
        core = workdir / "core.json"
        if not core.exists():
            core.write_text(json.dumps(CORE))
        self.log = open(workdir / f"decide-{name}.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reconciler.scaleout.cli", "decide", "--bootstrap", bootstrap, "--name", name,
             "--pods", str(pods), "--core", str(core), "--sink-dir", str(workdir / "sink"), "--status",
             str(self.status_path), "--partitions", str(topics.partitions), "--checkpoint-seconds", "1",
             "--observations-topic", topics.observations, "--state-topic", topics.state, "--group", group],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=Path(__file__).resolve().parents[2])

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()
