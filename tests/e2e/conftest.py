"""Shared fixtures of the end-to-end tests: one real stack per module, torn down with its processes."""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from netwarden.tools.stack import Stack
from netwarden.tools.traffic import PodEnd, WorldEnd
from tests.support.nca import nca_available

from .harness import (E2E_CONFIG, LATENCIES, LEARNING_SECONDS, Cluster, PolicyRecorder, edge_flows, flows_body, latency_table,
                      running_stack)

Edge = tuple[PodEnd | WorldEnd, PodEnd | WorldEnd, int, int]  # source, destination, port, flows per tick


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not nca_available():
        skip = pytest.mark.skip(reason="nca (network-config-analyzer) is not installed: .tools/nca, see tests/support/nca.py")
        for item in items:
            if "tests/e2e" in str(item.fspath):
                item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if LATENCIES:
        terminalreporter.write_line(latency_table())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = running_stack(tmp_path_factory.mktemp("stack"), E2E_CONFIG)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def cluster(stack: Stack) -> Cluster:
    return Cluster(stack)


@pytest.fixture(scope="module")
def recorder(cluster: Cluster) -> Iterator[PolicyRecorder]:
    rec = PolicyRecorder(cluster).start()
    yield rec
    rec.stop()


def learn(stack: Stack, edges: list[Edge], *, url: str | None = None, seconds: float = LEARNING_SECONDS + 0.6,
          tick: float = 0.2) -> None:
    """Steady traffic on `edges` for longer than the learning window (a batch every `tick`)."""
    from .harness import post

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        records = [r for src, dst, port, count in edges for r in edge_flows(src, dst, port, count)]
        response = post(url or stack.signals_url, "/signals/flows", flows_body(records), stack.signal_token, stack.ca_file)
        assert response.status_code == 200 and not response.json()["rejected"], response.text[:300]
        time.sleep(max(0.0, tick - (time.monotonic() - started)))  # steady traffic over time is what is learned
