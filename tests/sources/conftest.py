"""Shared pieces of the gRPC source tests: certificates, a collecting sink, flows with distinct times."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Sequence

import pytest

from netwarden.reconciler.core.types import Flow
from netwarden.reconciler.sources.proto import observer_pb2
from netwarden.tools.replay_server import client_secret_dir as client_dir, hubble_response, write_pki  # noqa: F401
from tests.support.data import PAYLOADS

HUBBLE_LINES = [json.loads(line) for path in sorted((PAYLOADS / "hubble").glob("*.jsonl"))
                for line in path.read_text().splitlines() if line.strip()]


class CollectingSink:
    """The engine's place: keeps what it is given; `gate`, when set, holds every batch (a slow engine)."""

    def __init__(self) -> None:
        self.flows: list[Flow] = []
        self.lock = threading.Lock()
        self.gate: threading.Event | None = None

    def accept_flows(self, flows: Sequence[Flow]) -> None:
        if self.gate is not None:
            self.gate.wait(30)
        with self.lock:
            self.flows.extend(flows)

    def count(self) -> int:
        with self.lock:
            return len(self.flows)


def numbered_flows(count: int, start_ns: int = 1_780_000_000_000_000_000) -> list[observer_pb2.GetFlowsResponse]:
    """Real exported flows (the L3/L4 ones, cycled) re-timed 1 ms apart, each with its own uuid."""
    l3l4 = [line for line in HUBBLE_LINES if line["flow"].get("Type") == "L3_L4"]
    out = []
    for i in range(count):
        response = hubble_response(l3l4[i % len(l3l4)])
        response.flow.time.FromNanoseconds(start_ns + i * 1_000_000)
        response.time.CopyFrom(response.flow.time)
        response.flow.uuid = str(uuid.UUID(int=i + 1))
        out.append(response)
    return out


@pytest.fixture
def sink() -> CollectingSink:
    return CollectingSink()
