"""Chart: scale-out on Kafka runs the reconciler as two Deployments, ingest and decide, of the same image."""

from __future__ import annotations

import pytest

pytest.importorskip("helm_python", reason="pip install helm-python-sdk")

from helm_python import HelmError  # noqa: E402

from tests.chart.chartkit import of_kind, one, render  # noqa: E402

KAFKA = {"scaleOut": {"enabled": True, "kafka": {"brokers": "kafka-0.kafka:9093", "partitions": 24,
                                                  "tls": {"secretName": "kafka-client-tls"},
                                                  "sasl": {"mechanism": "SCRAM-SHA-512", "username": "netwarden",
                                                           "passwordSecret": {"name": "kafka-pass"}}}}}


def env_of(deployment: dict) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_single_mode_is_the_default_one_deployment_no_kafka() -> None:
    deployments = [d["metadata"]["name"] for d in of_kind(render(), "Deployment")]
    assert [n for n in deployments if "reconciler" in n] == ["nw-netwarden-reconciler"]
    assert "NETWARDEN_RECONCILER_ROLE" not in env_of(one(render(), "Deployment", "-reconciler"))


def test_scale_out_runs_ingest_behind_the_service_and_decide_as_its_own_deployment() -> None:
    docs = render(KAFKA)
    names = sorted(d["metadata"]["name"] for d in of_kind(docs, "Deployment") if "reconciler" in d["metadata"]["name"])
    assert names == ["nw-netwarden-reconciler-decide", "nw-netwarden-reconciler-ingest"]
    ingest, decide = one(docs, "Deployment", "-reconciler-ingest"), one(docs, "Deployment", "-reconciler-decide")
    assert (env_of(ingest)["NETWARDEN_RECONCILER_ROLE"], env_of(decide)["NETWARDEN_RECONCILER_ROLE"]) == ("ingest", "decide")
    assert (ingest["spec"]["replicas"], decide["spec"]["replicas"]) == (2, 3)
    service = one(docs, "Service", "-reconciler")
    selected = service["spec"]["selector"].items()
    assert selected <= ingest["spec"]["template"]["metadata"]["labels"].items()  # signals reach ingest
    assert not selected <= decide["spec"]["template"]["metadata"]["labels"].items()
    env = env_of(decide)
    assert env["NETWARDEN_RECONCILER_KAFKA_BROKERS"] == "kafka-0.kafka:9093"
    assert env["NETWARDEN_RECONCILER_KAFKA_PARTITIONS"] == "24"
    assert env["NETWARDEN_RECONCILER_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    volumes = {v["name"]: v for v in decide["spec"]["template"]["spec"]["volumes"]}
    assert volumes["kafka-tls"]["secret"]["secretName"] == "kafka-client-tls"
    assert volumes["kafka-sasl"]["secret"] == {"secretName": "kafka-pass", "items": [{"key": "password", "path": "password"}]}


def test_scale_out_without_brokers_fails_the_install() -> None:
    with pytest.raises(HelmError, match="scaleOut.kafka.brokers is required"):
        render({"scaleOut": {"enabled": True}})
    with pytest.raises(HelmError, match="scaleOut"):
        render({"scaleOut": {"enabled": True, "kafka": {"brokers": "k:9092", "sasl": {"mechanism": "GSSAPI"}}}})
