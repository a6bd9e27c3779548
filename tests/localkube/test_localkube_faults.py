"""Fault injection, in-process and over HTTP, as the client experiences it."""

from __future__ import annotations

import json

import pytest
import requests
from kubernetes import client, watch

from localkube import LocalKube


def test_injected_500_is_a_status_and_is_used_up(kube: LocalKube, core: client.CoreV1Api) -> None:
    kube.faults.add(method="GET", path_regex=r"/namespaces/default/configmaps$", status=500, times=1)
    with pytest.raises(client.ApiException) as err:
        core.list_namespaced_config_map("default")
    body = json.loads(err.value.body)
    assert err.value.status == 500 and body["kind"] == "Status" and body["reason"] == "InternalError"
    assert core.list_namespaced_config_map("default").kind == "ConfigMapList"


def test_injected_429_sets_retry_after(kube: LocalKube) -> None:
    kube.faults.add(path_regex="/api/v1/pods", status=429, retry_after=3)
    resp = requests.get(f"{kube.url}/api/v1/pods", timeout=5)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "3"
    assert resp.json()["reason"] == "TooManyRequests" and resp.json()["details"]["retryAfterSeconds"] == 3


def test_injected_409_only_hits_the_chosen_method(kube: LocalKube, core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    kube.faults.add(method="PATCH", path_regex="configmaps/c", status=409, times=2)
    assert core.read_namespaced_config_map("c", "default").metadata.name == "c"
    for _ in range(2):
        with pytest.raises(client.ApiException) as err:
            core.patch_namespaced_config_map("c", "default", {"data": {"a": "b"}})
        assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "Conflict"
    assert core.patch_namespaced_config_map("c", "default", {"data": {"a": "b"}}).data == {"a": "b"}


def test_http_endpoint_injects_faults_for_other_processes(kube: LocalKube) -> None:
    resp = requests.post(f"{kube.url}/_localkube/faults", json={"path_regex": "namespaces$", "status": 503,
                                                                "times": 1}, timeout=5)
    assert resp.status_code == 201
    assert requests.get(f"{kube.url}/api/v1/namespaces", timeout=5).status_code == 503
    assert requests.get(f"{kube.url}/api/v1/namespaces", timeout=5).status_code == 200
    bad = requests.post(f"{kube.url}/_localkube/faults", json={"nonsense": 1}, timeout=5)
    assert bad.status_code == 400 and bad.json()["kind"] == "Status"


def test_forced_410_on_watch_is_an_expired_error_event(kube: LocalKube, core: client.CoreV1Api) -> None:
    kube.faults.add(path_regex="watch=", status=410, times=1)
    rv = core.list_namespaced_pod("default").metadata.resource_version
    with pytest.raises(client.ApiException) as err:
        for _ in watch.Watch().stream(core.list_namespaced_pod, "default", resource_version=rv,
                                      timeout_seconds=2):
            pass
    assert err.value.status == 410


def test_dropped_watch_closes_the_stream_abruptly(kube: LocalKube, core: client.CoreV1Api) -> None:
    for i in range(3):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"d{i}"}})
    kube.faults.add(path_regex="watch=", drop_watch_after=1)
    resp = requests.get(f"{kube.url}/api/v1/namespaces/default/configmaps",
                        params={"watch": "1", "resourceVersion": "0"}, stream=True, timeout=5)
    lines = []
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for line in resp.iter_lines():
            lines.append(line)
    assert len([line for line in lines if line]) == 1


def test_delay_fault_still_answers(kube: LocalKube, core: client.CoreV1Api) -> None:
    kube.faults.add(path_regex="/api/v1/namespaces/default$", delay=0.2)
    assert core.read_namespace("default").metadata.name == "default"
    assert kube.faults.list() == []
