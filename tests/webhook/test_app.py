"""The HTTP adapter's handling of what arrives on the wire (no API server: kube=None)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from netwarden.model import names
from netwarden.platform.config import NetwardenConfig, WebhookConfig
from netwarden.webhook.app import create_app
from tests.support.data import PAYLOADS

DATA = PAYLOADS / "admission"


@pytest.fixture()
def http() -> FlaskClient:
    return create_app(NetwardenConfig(), None).test_client()


def post(http: FlaskClient, path: str, body: Any) -> Any:
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return http.post(path, data=raw, content_type="application/json")


def opted_in(name: str) -> dict[str, Any]:
    body = json.loads((DATA / name).read_text())
    body["request"]["object"]["metadata"].setdefault("annotations", {})[names.ANNOTATION_INJECT] = "enabled"
    return body


def test_v1beta1_review_gets_a_v1beta1_answer_with_a_patch() -> None:
    http = create_app(NetwardenConfig(), None).test_client()
    answer = post(http, "/mutate", opted_in("v1beta1_pod-create_replicaset-controller_k8s-2018.json"))
    assert answer.status_code == 200
    review = answer.get_json()
    assert review["apiVersion"] == "admission.k8s.io/v1beta1" and review["kind"] == "AdmissionReview"
    assert review["response"]["uid"] == "9e9322a0-85f0-11e8-b78d-080027d242b4" and review["response"]["allowed"]
    ops = json.loads(base64.b64decode(review["response"]["patch"]))
    assert {op["path"] for op in ops} >= {"/metadata/labels/netwarden.io~1identity"}


def test_request_only_body_is_http_400_with_a_json_error(http: FlaskClient) -> None:
    answer = post(http, "/mutate", (DATA / "v1_pod-update_kubectl-apply_label-change_request-only.json").read_text())
    assert answer.status_code == 400
    assert "envelope" in answer.get_json()["error"]


@pytest.mark.parametrize("raw", ["not json", "[]", '{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}'])
def test_unreadable_bodies_without_uid_are_http_400(http: FlaskClient, raw: str) -> None:
    answer = post(http, "/validate", raw)
    assert answer.status_code == 400 and answer.get_json()["error"]


def test_malformed_review_with_uid_gets_a_well_formed_refusal(http: FlaskClient) -> None:
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "abc", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE"}}
    answer = post(http, "/mutate", body)
    assert answer.status_code == 200
    response = answer.get_json()["response"]
    assert response["uid"] == "abc" and response["allowed"] is False
    assert response["status"]["code"] == 400 and "no object" in response["status"]["message"]


def test_update_spoof_is_refused_on_validate(http: FlaskClient) -> None:
    request = json.loads((DATA / "v1_pod-update_kubectl-apply_label-change_request-only.json").read_text())
    request["object"]["metadata"]["labels"][names.LABEL_WORKLOAD] = "payments"
    answer = post(http, "/validate", {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
    response = answer.get_json()["response"]
    assert response["allowed"] is False and response["status"]["code"] == 403
    assert names.LABEL_WORKLOAD in response["status"]["message"]


def test_metrics_count_reviews_by_outcome(http: FlaskClient) -> None:
    post(http, "/mutate", opted_in("v1_pod-create_kubectl-apply_c7n-server-log.json"))
    post(http, "/mutate", "nope")
    text = http.get("/metrics").get_data(as_text=True)
    assert 'netwarden_admission_reviews_total{outcome="labelled",webhook="mutate"} 1.0' in text
    assert 'netwarden_admission_reviews_total{outcome="malformed",webhook="mutate"} 1.0' in text
    assert "netwarden_admission_review_duration_seconds_bucket" in text


def test_readyz_is_503_when_the_certificate_files_cannot_be_loaded(tmp_path: Path) -> None:
    config = NetwardenConfig(webhook=WebhookConfig(cert=str(tmp_path / "missing.crt"), key=str(tmp_path / "missing.key")))
    http = create_app(config, None).test_client()
    answer = http.get("/readyz")
    assert answer.status_code == 503 and answer.get_json()["ready"] is False
    assert http.get("/healthz").status_code == 200
