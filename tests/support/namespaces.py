"""Namespaces the tests make through the official client."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Iterator, Mapping

from kubernetes import client

from netwarden.model import names
from tests.support.waiting import wait_for

#: A namespace opted in to netwarden in enforce mode.
OPTED_IN_ENFORCE = {names.ANNOTATION_INJECT: names.INJECT_ENABLED, names.ANNOTATION_MODE: names.MODE_ENFORCE}


@contextmanager
def fresh_namespace(api: client.ApiClient, prefix: str, annotations: Mapping[str, str] | None = None) -> Iterator[str]:
    """A new namespace, once its default ServiceAccount exists (the real API server refuses pods before that);
    deleted afterwards."""
    core = client.CoreV1Api(api)
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name, "annotations": dict(annotations or {})}})
    wait_for(lambda: core.list_namespaced_service_account(name, field_selector="metadata.name=default").items,
             f"default ServiceAccount in {name}")
    try:
        yield name
    finally:
        core.delete_namespace(name)
