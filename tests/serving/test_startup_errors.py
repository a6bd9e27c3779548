"""Fresh-start errors: each process that cannot reach Kubernetes or read its certificates says so in one
line naming what is missing and how to give it, exits non-zero, and prints no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PATIENCE = 60
#: Where a process that did start anyway would listen (these ones must not get that far).
LOOPBACK = ["--host", "127.0.0.1", "--port", "18443"]


def run(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
             and not k.startswith("NETWARDEN_")}
    return subprocess.run([sys.executable, "-m", "netwarden.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=PATIENCE, env={**clean, "HOME": str(home), **env})


def assert_one_line(result: subprocess.CompletedProcess[str], *mentions: str) -> None:
    assert result.returncode != 0, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for mention in mentions:
        assert mention in lines[0], lines[0]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


@pytest.fixture
def certs(tmp_path: Path, home: Path) -> Path:
    out = tmp_path / "certs"
    assert run(["certs", "generate", "--service", "netwarden", "--namespace", "ns", "--out", str(out)],
               home).returncode == 0
    return out


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig that loads (nothing needs to answer: these processes fail before calling it)."""
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return path


def test_webhook_without_a_kubeconfig_says_so_in_one_line(home: Path, certs: Path) -> None:
    result = run(["webhook", "--cert", str(certs / "tls.crt"), "--key", str(certs / "tls.key"), *LOOPBACK], home)
    assert_one_line(result, "netwarden webhook:", "kubeconfig", "--kubeconfig FILE")


def test_webhook_with_unreadable_certificates_says_so_in_one_line(home: Path, tmp_path: Path,
                                                                  kubeconfig: Path) -> None:
    result = run(["webhook", "--cert", str(tmp_path / "missing.crt"), "--key", str(tmp_path / "missing.key"),
                  "--kubeconfig", str(kubeconfig), *LOOPBACK], home)
    assert_one_line(result, "netwarden webhook:", "missing.crt", "--cert FILE --key FILE")


def test_reconciler_without_a_kubeconfig_says_so_in_one_line(home: Path) -> None:
    assert_one_line(run(["reconciler", "--no-auth"], home), "netwarden reconciler:", "kubeconfig", "KUBECONFIG")


def test_reconciler_with_a_broken_kubeconfig_names_it(home: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_text("not: [a kubeconfig")
    assert_one_line(run(["reconciler", "--no-auth", "--kubeconfig", str(broken)], home), str(broken))


def test_reconciler_with_unreadable_certificates_says_so_in_one_line(home: Path, tmp_path: Path,
                                                                     kubeconfig: Path) -> None:
    result = run(["reconciler", "--no-auth", "--kubeconfig", str(kubeconfig), "--cert", str(tmp_path / "none.crt"),
                  "--key", str(tmp_path / "none.key")], home)
    assert_one_line(result, "netwarden reconciler:", "none.crt", "--cert FILE --key FILE")


@pytest.mark.parametrize("action", [["sync", "--secret", "ns/tls", "--ca-secret", "ns/ca"],
                                    ["inject", "--dir", "CERTS", "--secret", "ns/tls"]])
def test_certs_commands_without_a_kubeconfig_say_so_in_one_line(home: Path, certs: Path, action: list[str]) -> None:
    args = [str(certs) if a == "CERTS" else a for a in action]
    assert_one_line(run(["certs", *args], home), "netwarden certs:", "kubeconfig")


def test_certs_rotate_on_a_missing_directory_says_so_in_one_line(home: Path, tmp_path: Path) -> None:
    assert_one_line(run(["certs", "rotate", str(tmp_path / "nowhere")], home), "nowhere")


def test_local_cluster_on_a_taken_port_says_so_in_one_line(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run(["local-cluster", "--port", str(taken.getsockname()[1])], home)
    assert_one_line(result, "netwarden local-cluster:", "--port")


def test_local_cluster_kube_engine_not_built_says_so_in_one_line(home: Path) -> None:
    result = run(["local-cluster", "--engine", "kube"], home)  # an empty HOME: no build cache
    assert_one_line(result, "netwarden local-cluster:", "netwarden controlplane build")


def test_reconciler_without_a_token_file_says_so_in_one_line(home: Path) -> None:
    assert_one_line(run(["reconciler"], home), "netwarden reconciler:", "--token-file FILE")
