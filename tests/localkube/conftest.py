"""Fixtures for localkube's own features (faults, admission, auth); semantics live in tests/conformance."""

from __future__ import annotations

from typing import Iterator

import pytest
from kubernetes import client

from localkube import LocalKube
from localkube_webhook import Webhook, webhook  # noqa: F401 - the webhook fixture


@pytest.fixture
def kube() -> Iterator[LocalKube]:
    with LocalKube(bookmark_interval=0.2) as k:
        yield k


@pytest.fixture
def core(kube: LocalKube) -> client.CoreV1Api:
    return client.CoreV1Api(kube.api_client())


