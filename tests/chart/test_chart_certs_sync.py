"""charts/netwarden/files/certs-sync.py: the commands it runs work with the real `netwarden certs`,
the certificate covers both Services, and the caBundle patch is minimal."""

from __future__ import annotations

import base64
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "charts" / "netwarden" / "files" / "certs-sync.py"


@pytest.fixture(scope="module")
def sync() -> ModuleType:
    spec = importlib.util.spec_from_file_location("certs_sync", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def job_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment the chart gives the Jobs (values from a default render)."""
    pytest.importorskip("helm_python", reason="pip install helm-python-sdk")
    from tests.chart.chartkit import one, render

    container = one(render(), "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    for item in container["env"]:
        monkeypatch.setenv(item["name"], item["value"])


def netwarden(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from netwarden.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_ca_bundle_patch_sets_missing_and_changed_bundles_only(sync: ModuleType) -> None:
    config = {"webhooks": [
        {"name": "a", "clientConfig": {"service": {}}},
        {"name": "b", "clientConfig": {"caBundle": "T0xE"}},
        {"name": "c", "clientConfig": {"caBundle": "TkVX"}},
    ]}
    assert sync.ca_bundle_patch(config, "TkVX") == [
        {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "TkVX"},
        {"op": "replace", "path": "/webhooks/1/clientConfig/caBundle", "value": "TkVX"},
    ]
    assert sync.ca_bundle_patch({"webhooks": [{"clientConfig": {"caBundle": "TkVX"}}]}, "TkVX") == []


def test_generated_certificate_covers_webhook_and_signal_services(sync: ModuleType, job_env: None, tmp_path: Path) -> None:
    pytest.importorskip("certs.cli", reason="certs package not importable")
    out = tmp_path / "certs"
    result = netwarden(*sync.generate_args(out))
    assert result.returncode == 0, result.stderr
    from certs import pki

    info = pki.describe((out / "tls.crt").read_bytes())
    for service in ("nw-netwarden-webhook", "nw-netwarden-reconciler"):
        assert f"{service}.netwarden-system.svc" in info.dns_names
    files = sync.read_dir(out)
    assert set(sync.TLS_KEYS) | set(sync.CA_KEYS) <= set(files)
    # What the Secrets hold round-trips back to the same files.
    assert sync.secret_files(sync.encode(files, sync.TLS_KEYS), sync.TLS_KEYS) == {k: files[k] for k in sync.TLS_KEYS}


def test_rotation_of_a_fresh_certificate_changes_nothing(sync: ModuleType, job_env: None, tmp_path: Path) -> None:
    pytest.importorskip("certs.cli", reason="certs package not importable")
    out = tmp_path / "certs"
    assert netwarden(*sync.generate_args(out)).returncode == 0
    before = sync.read_dir(out)
    # The CronJob rebuilds the directory from the two Secrets, then rotates it.
    rebuilt = tmp_path / "rebuilt"
    rebuilt.mkdir()
    sync.write_dir(rebuilt, {k: before[k] for k in (*sync.TLS_KEYS, "ca.key")})
    result = netwarden(*sync.rotate_args(rebuilt))
    assert result.returncode == 0, result.stderr
    assert "nothing to rotate" in result.stdout
    assert sync.read_dir(rebuilt) == {k: before[k] for k in (*sync.TLS_KEYS, "ca.key")}


def test_forced_rotation_renews_the_serving_certificate(sync: ModuleType, job_env: None, tmp_path: Path) -> None:
    pytest.importorskip("certs.cli", reason="certs package not importable")
    out = tmp_path / "certs"
    assert netwarden(*sync.generate_args(out)).returncode == 0
    before = sync.read_dir(out)
    result = netwarden(*sync.rotate_args(out), "--force")
    assert result.returncode == 0, result.stderr
    assert sync.read_dir(out)["tls.crt"] != before["tls.crt"]


def test_the_script_rejects_an_unknown_phase(sync: ModuleType) -> None:
    assert sync.main(["explode"]) == 2
    assert sync.main([]) == 2


def test_the_jobs_run_the_script_as_shipped_in_the_chart() -> None:
    pytest.importorskip("helm_python", reason="pip install helm-python-sdk")
    from tests.chart.chartkit import of_kind, pod_specs, render

    docs = render()
    phases = {}
    for name, spec in pod_specs(of_kind(docs, "Job") + of_kind(docs, "CronJob")):
        command = spec["containers"][0]["command"]
        assert command[:2] == ["python", "-c"] and command[2] == SCRIPT.read_text()
        phases[name] = command[3]
    assert phases == {"nw-netwarden-certs-secret": "secret", "nw-netwarden-certs-cabundle": "cabundle", "nw-netwarden-certs-rotate": "rotate"}
    hooks = {d["metadata"]["name"]: d["metadata"]["annotations"]["helm.sh/hook"] for d in of_kind(docs, "Job")}
    assert hooks == {"nw-netwarden-certs-secret": "pre-install,pre-upgrade", "nw-netwarden-certs-cabundle": "post-install,post-upgrade"}


def test_base64_of_ca_is_what_the_webhooks_receive(sync: ModuleType) -> None:
    assert sync.encode({"ca.crt": b"PEM"}, ("ca.crt",)) == {"ca.crt": base64.b64encode(b"PEM").decode()}
