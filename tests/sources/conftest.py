"""Shared pieces of the gRPC source tests: certificates, a collecting sink, flows with distinct times."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

import pytest

from certs import pki
from reconciler.core.types import Flow
from reconciler.sources.proto import observer_pb2
from reconciler.sources.replay_server import hubble_response
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


def write_pki(folder: Path, name: str, *, client: bool = False) -> dict[str, Path]:
    """A fresh CA and a certificate for 127.0.0.1 (and a client certificate when asked), as Secret files."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    ca = pki.generate_ca(f"{name}-ca", now=now, valid_for=timedelta(days=1))
    leaf = pki.issue_certificate(ca, name, now=now, valid_for=timedelta(hours=2), dns_names=["localhost", name],
                                 ip_addresses=["127.0.0.1"])
    files = {"ca": folder / "ca.crt", "cert": folder / "server.crt", "key": folder / "server.key"}
    files["ca"].write_bytes(ca.cert_pem)
    files["cert"].write_bytes(leaf.cert_pem)
    files["key"].write_bytes(leaf.key_pem)
    if client:
        mine = pki.issue_certificate(ca, "netwarden-reconciler", now=now, valid_for=timedelta(hours=2),
                                     server=False, client=True)
        files["client_cert"], files["client_key"] = folder / "client.crt", folder / "client.key"
        files["client_cert"].write_bytes(mine.cert_pem)
        files["client_key"].write_bytes(mine.key_pem)
    return files


def client_dir(folder: Path, files: dict[str, Path], *, mtls: bool = False) -> Path:
    """The Secret netwarden mounts: ca.crt, and tls.crt + tls.key for mTLS."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.crt").write_bytes(files["ca"].read_bytes())
    if mtls:
        (folder / "tls.crt").write_bytes(files["client_cert"].read_bytes())
        (folder / "tls.key").write_bytes(files["client_key"].read_bytes())
    return folder


@pytest.fixture
def sink() -> CollectingSink:
    return CollectingSink()
