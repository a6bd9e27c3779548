"""A real Apache Kafka broker (KRaft) for the scale-out tests; skipped with the build command when it is not fetched."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator

import pytest

from localkube.kafka_broker import KafkaBroker
from localkube.kafka_build import KafkaNotBuilt, find, java_binary
from netwarden.reconciler.scaleout.wire import Topics

_names = itertools.count()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    try:
        dist = find()
        java_binary()
    except KafkaNotBuilt as exc:
        pytest.skip(str(exc))
    broker = KafkaBroker(dist, tmp_path_factory.mktemp("kafka")).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def topics() -> Topics:
    """Fresh topics per test: one test's records and committed offsets never reach another's engines."""
    n = next(_names)
    return Topics(f"obs-{n}", f"state-{n}", 12)
