"""The webhook's /readyz fails, with the reason, while its certificate is expired or not yet valid."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from netwarden.certs import pki
from netwarden.platform.config import NetwardenConfig, WebhookConfig
from netwarden.webhook.app import create_app

NOW = datetime.now(timezone.utc)


def webhook_with_certificate(tmp_path: Path, issued: datetime, valid_for: timedelta) -> object:
    ca = pki.generate_ca("readiness-ca", now=issued, valid_for=timedelta(days=30))
    leaf = pki.issue_certificate(ca, "netwarden", now=issued, valid_for=valid_for, dns_names=["netwarden"])
    (tmp_path / "tls.crt").write_bytes(leaf.cert_pem)
    (tmp_path / "tls.key").write_bytes(leaf.key_pem)
    config = NetwardenConfig(webhook=WebhookConfig(cert=str(tmp_path / "tls.crt"), key=str(tmp_path / "tls.key"),
                                                   ready_probe_seconds=0.001))
    return create_app(config, None).test_client()


def test_readyz_is_503_with_the_reason_while_the_certificate_is_expired(tmp_path: Path,
                                                                         capfd: pytest.CaptureFixture[str]) -> None:
    http = webhook_with_certificate(tmp_path, NOW - timedelta(days=3), timedelta(days=1))
    for _ in range(3):
        answer = http.get("/readyz")
        assert answer.status_code == 503
        assert answer.get_json()["certificate"].startswith("serving certificate expired at")
    assert http.get("/healthz").status_code == 200
    events = [json.loads(line).get("event") for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    assert events.count("tls_certificate_not_valid") == 1


def test_readyz_is_503_while_the_certificate_is_not_yet_valid(tmp_path: Path) -> None:
    http = webhook_with_certificate(tmp_path, NOW + timedelta(days=2), timedelta(days=5))
    answer = http.get("/readyz")
    assert answer.status_code == 503 and answer.get_json()["certificate"].startswith("serving certificate not valid")


def test_readyz_reports_a_valid_certificate_as_loaded(tmp_path: Path) -> None:
    http = webhook_with_certificate(tmp_path, NOW, timedelta(days=1))
    assert http.get("/readyz").get_json()["certificate"] == "loaded"
