"""Lifecycle, kubeconfig (client + kubectl), HTTPS, auth, the CLI, concurrency, watch edge cases."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from kubernetes import client, config, watch

from localkube import LocalKube

REPO = Path(__file__).resolve().parents[2]


def test_context_manager_serves_and_stops(tmp_path: Path) -> None:
    with LocalKube() as kube:
        url = kube.url
        assert requests.get(f"{url}/healthz", timeout=5).text == "ok"
        assert requests.get(f"{url}/readyz", timeout=5).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/healthz", timeout=2)


def test_start_stop_methods_and_kubeconfig_load(tmp_path: Path) -> None:
    kube = LocalKube().start()
    try:
        path = kube.write_kubeconfig(tmp_path / "kc")
        assert path == str(tmp_path / "kc")
        api = config.new_client_from_config(config_file=path)
        assert "default" in [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
    finally:
        kube.stop()


def test_https_with_generated_ca_is_trusted_via_kubeconfig(tmp_path: Path) -> None:
    with LocalKube(https=True) as kube:
        assert kube.url.startswith("https://")
        api = config.new_client_from_config(config_file=kube.write_kubeconfig(tmp_path / "kc"))
        assert client.VersionApi(api).get_code().git_version.startswith("v1.")
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{kube.url}/version", timeout=5)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_accepts_the_kubeconfig(tmp_path: Path) -> None:
    with LocalKube(https=True) as kube:
        path = kube.write_kubeconfig(tmp_path / "kc")
        env = {**os.environ, "KUBECONFIG": path, "HOME": str(tmp_path)}
        made = subprocess.run(["kubectl", "create", "configmap", "from-kubectl", "--from-literal=a=b"],
                              env=env, capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
        got = subprocess.run(["kubectl", "get", "configmap", "from-kubectl", "-o", "json"],
                             env=env, capture_output=True, text=True, timeout=60)
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["data"] == {"a": "b"}
        listed = subprocess.run(["kubectl", "get", "namespaces"], env=env, capture_output=True, text=True,
                                timeout=60)
        assert "kube-system" in listed.stdout, listed.stderr


def test_without_a_token_requests_are_401_when_tokens_are_configured() -> None:
    with LocalKube(tokens={"secret": "bob"}) as kube:
        resp = requests.get(f"{kube.url}/api/v1/namespaces", timeout=5)
        assert resp.status_code == 401 and resp.json()["reason"] == "Unauthorized"
        ok = requests.get(f"{kube.url}/api/v1/namespaces", headers={"Authorization": "Bearer secret"}, timeout=5)
        assert ok.status_code == 200


def test_python_dash_m_runs_in_foreground_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    kc = tmp_path / "kc"
    proc = subprocess.Popen([sys.executable, "-m", "localkube", "--kubeconfig", str(kc)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(2)]  # type: ignore[union-attr]
        assert lines[1].strip() == f"kubeconfig: {kc}"
        api = config.new_client_from_config(config_file=str(kc))
        assert client.CoreV1Api(api).read_namespace("default").metadata.name == "default"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "localkube stopped" in out


def test_run_local_cluster_is_importable_for_the_netwarden_cli() -> None:
    from localkube.cli import run_local_cluster

    assert callable(run_local_cluster)


def test_concurrent_writers_get_unique_increasing_resource_versions(kube: LocalKube) -> None:
    versions: list[int] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        core = client.CoreV1Api(kube.api_client())
        for i in range(15):
            cm = core.create_namespaced_config_map("default", {"metadata": {"name": f"w{n}-{i}"}})
            with lock:
                versions.append(int(cm.metadata.resource_version))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(versions) == 90 and len(set(versions)) == 90


def test_concurrent_patches_are_not_lost(kube: LocalKube, core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "shared"}, "data": {}})

    def patcher(n: int) -> None:
        api = client.CoreV1Api(kube.api_client())
        for i in range(10):
            api.patch_namespaced_config_map("shared", "default", {"data": {f"k{n}-{i}": "v"}})

    threads = [threading.Thread(target=patcher, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(core.read_namespaced_config_map("shared", "default").data) == 40


def test_watch_from_expired_resource_version_yields_410_error_event() -> None:
    with LocalKube(history_size=5) as kube:
        core = client.CoreV1Api(kube.api_client())
        for i in range(20):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
        resp = requests.get(f"{kube.url}/api/v1/namespaces/default/configmaps",
                            params={"watch": "1", "resourceVersion": "2"}, stream=True, timeout=5)
        event = json.loads(next(resp.iter_lines()))
        assert resp.status_code == 200 and event["type"] == "ERROR"
        assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
        assert event["object"]["message"].startswith("too old resource version: 2 (")
        with pytest.raises(client.ApiException) as err:
            for _ in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version="2",
                                          timeout_seconds=2):
                pass
        assert err.value.status == 410


def test_bookmarks_carry_only_the_resource_version(kube: LocalKube, core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_pod("default").metadata.resource_version
    resp = requests.get(f"{kube.url}/api/v1/namespaces/default/pods",
                        params={"watch": "true", "resourceVersion": rv, "allowWatchBookmarks": "true",
                                "timeoutSeconds": "2"}, stream=True, timeout=5)
    event = json.loads(next(resp.iter_lines()))
    resp.close()
    assert event["type"] == "BOOKMARK"
    assert event["object"]["metadata"] == {"resourceVersion": event["object"]["metadata"]["resourceVersion"]}
    assert int(event["object"]["metadata"]["resourceVersion"]) >= int(rv)


def test_watch_with_watch_true_and_field_selector(kube: LocalKube, core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "other"}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "mine"}})
    resp = requests.get(f"{kube.url}/api/v1/namespaces/default/configmaps",
                        params={"watch": "true", "resourceVersion": rv, "fieldSelector": "metadata.name=mine",
                                "timeoutSeconds": "1"}, stream=True, timeout=5)
    events = [json.loads(line) for line in resp.iter_lines() if line]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "mine")]


def test_unknown_resource_and_openapi_are_404_status(kube: LocalKube) -> None:
    for path in ("/api/v1/namespaces/default/widgets", "/openapi/v2"):
        resp = requests.get(f"{kube.url}{path}", timeout=5)
        assert resp.status_code == 404 and resp.json()["kind"] == "Status"


def test_events_k8s_io_and_core_events_are_separate_stores(kube: LocalKube) -> None:
    ev = client.EventsV1Api(kube.api_client())
    ev.create_namespaced_event("default", {"metadata": {"name": "e1"}, "eventTime": "2024-01-01T00:00:00.000000Z",
                                           "reportingController": "netwarden.io/reconciler",
                                           "reportingInstance": "r-1", "action": "Tighten", "reason": "Tightened",
                                           "type": "Normal", "regarding": {"kind": "Pod", "name": "p"}})
    assert [e.metadata.name for e in ev.list_namespaced_event("default").items] == ["e1"]
