"""The Kubernetes adapter raises the project's errors (netwarden/model/errors.py), never only the client's.

Against the local API server over real HTTP: a second create is a Conflict, a replace of what is not
there is NotFound, a stale resourceVersion is a Conflict; each also still reads as the client's
ApiException for code not yet moved (the scale-out state store).
"""

from __future__ import annotations

import pytest
from kubernetes.client.rest import ApiException

from netwarden.model.errors import ApiError, Conflict, NotFound, api_error_class
from netwarden.platform.kube import KubeClient

from .conftest import make_namespace


def secret(name: str, resource_version: str | None = None, value: str = "") -> dict:
    meta = {"name": name, "namespace": "vault"}
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "data": {"k": value}}


def test_a_second_create_is_a_conflict_and_a_missing_object_is_not_found(kube: KubeClient, core) -> None:
    make_namespace(core, "vault")
    kube.create_secret(secret("s"))
    with pytest.raises(Conflict) as created_twice:
        kube.create_secret(secret("s"))
    assert created_twice.value.status == 409 and isinstance(created_twice.value, ApiException)
    with pytest.raises(NotFound):
        kube.replace_secret(secret("absent", resource_version="1"))


def test_a_stale_resource_version_is_a_conflict(kube: KubeClient, core) -> None:
    make_namespace(core, "vault")
    created = kube.create_secret(secret("s"))
    kube.replace_secret(secret("s", resource_version=created["metadata"]["resourceVersion"], value="djE="))
    with pytest.raises(Conflict):
        kube.replace_secret(secret("s", resource_version=created["metadata"]["resourceVersion"]))


@pytest.mark.parametrize("status,meaning", [(404, "NotFound"), (409, "Conflict"), (422, "Invalid"), (403, "Forbidden"),
                                            (429, "Transient"), (503, "Transient"), (0, "Transient"), (400, "ApiError")])
def test_each_status_has_one_meaning(status: int, meaning: str) -> None:
    assert api_error_class(status).__name__ == meaning and issubclass(api_error_class(status), ApiError)
