"""The chart's certificate Jobs run the real `netwarden certs sync`: its parser accepts exactly the
rendered args, the names they carry are the chart's own objects, and run against the local API
server the hook creates a pair covering both Services that the rotation CronJob then keeps."""

from __future__ import annotations

import argparse
import base64
import io
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any, Iterator

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

pytest.importorskip("helm_python", reason="pip install helm-python-sdk")

from netwarden.certs import pki  # noqa: E402
from localkube import LocalKube  # noqa: E402
from netwarden.cli import build_parser  # noqa: E402
from tests.chart.chartkit import CHART_DIR, NAMESPACE, Manifest, of_kind, one, pod_specs, render  # noqa: E402

HOOK_JOBS = {"nw-netwarden-certs-secret": "pre-install,pre-upgrade",
             "nw-netwarden-certs-cabundle": "post-install,post-upgrade"}


def certs_args(docs: list[Manifest]) -> dict[str, list[str]]:
    """Object name -> container args of every certificate Job and the CronJob."""
    jobs = of_kind(docs, "Job") + of_kind(docs, "CronJob")
    return {name: spec["containers"][0]["args"] for name, spec in pod_specs(jobs)}


def parse(args: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(args)


def run(args: list[str], kubeconfig: str) -> int:
    parsed = parse([*args, "--kubeconfig", kubeconfig])
    with redirect_stdout(io.StringIO()):
        return int(parsed.func(parsed))


@pytest.fixture()
def kube() -> Iterator[LocalKube]:
    with LocalKube() as server:
        client.CoreV1Api(server.api_client()).create_namespace({"metadata": {"name": NAMESPACE}})
        yield server


def secret(kube: LocalKube, name: str) -> dict[str, Any] | None:
    core = client.CoreV1Api(kube.api_client())
    try:
        return kube.api_client().sanitize_for_serialization(core.read_namespaced_secret(name, NAMESPACE))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_every_certificate_job_runs_netwarden_certs_sync_with_args_its_parser_accepts() -> None:
    docs = render()
    args = certs_args(docs)
    assert set(args) == {*HOOK_JOBS, "nw-netwarden-certs-rotate"}
    for name, spec in pod_specs(of_kind(docs, "Job") + of_kind(docs, "CronJob")):
        assert "command" not in spec["containers"][0], f"{name}: the image's ENTRYPOINT (netwarden) runs"
        parsed = parse(args[name])
        assert (parsed.command, parsed.certs_command) == ("certs", "sync"), name
    hooks = {d["metadata"]["name"]: d["metadata"]["annotations"]["helm.sh/hook"] for d in of_kind(docs, "Job")}
    assert hooks == HOOK_JOBS


def test_the_jobs_name_the_chart_s_own_secrets_and_webhook_configurations() -> None:
    docs = render()
    webhook = one(docs, "Deployment", "-webhook")["spec"]["template"]["spec"]
    tls_volume = next(v for v in webhook["volumes"] if v["name"] == "tls")["secret"]
    for name, args in certs_args(docs).items():
        parsed = parse(args)
        assert parsed.secret == f"{NAMESPACE}/{tls_volume['secretName']}", name
        assert {item["key"] for item in tls_volume["items"]} == {"tls.crt", "tls.key", "ca.crt"}
        assert parsed.ca_secret == f"{NAMESPACE}/nw-netwarden-webhook-ca", name
        assert parsed.mutating == [one(docs, "MutatingWebhookConfiguration")["metadata"]["name"]], name
        assert parsed.validating == [one(docs, "ValidatingWebhookConfiguration")["metadata"]["name"]], name
        assert "app.kubernetes.io/managed-by=Helm" not in parsed.label, "netwarden writes the Secrets, not Helm"


def test_only_the_install_hook_may_generate_a_pair() -> None:
    for name, args in certs_args(render()).items():
        parsed = parse(args)
        if name in HOOK_JOBS:
            assert (parsed.service, parsed.namespace) == ("nw-netwarden-webhook", NAMESPACE), name
        else:
            assert parsed.service is None and parsed.namespace is None, name


def test_builtin_certificate_values_reach_the_command_line() -> None:
    values = {"certificates": {"builtin": {"validityDays": 90, "caValidityDays": 700, "renewWithinDays": 10}}}
    for name, args in certs_args(render(values)).items():
        parsed = parse(args)
        assert (parsed.days, parsed.ca_days, parsed.renew_within) == (90, 700, 10), name


def test_the_hook_creates_a_pair_covering_both_services_and_the_cronjob_keeps_it(kube: LocalKube, tmp_path: Path) -> None:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    args = certs_args(render())
    assert run(args["nw-netwarden-certs-secret"], kubeconfig) == 0
    tls, ca = secret(kube, "nw-netwarden-webhook-tls"), secret(kube, "nw-netwarden-webhook-ca")
    assert tls is not None and ca is not None
    assert tls["type"] == "kubernetes.io/tls" and set(tls["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    assert set(ca["data"]) == {"ca.crt", "ca.key"}
    assert tls["metadata"]["labels"]["app.kubernetes.io/instance"] == "nw"
    assert tls["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "netwarden"
    info = pki.describe(base64.b64decode(tls["data"]["tls.crt"]))
    for service in ("nw-netwarden-webhook", "nw-netwarden-reconciler"):
        assert f"{service}.{NAMESPACE}.svc" in info.dns_names
    # Post-install (webhook configurations absent here) and a fresh CronJob run change nothing.
    assert run(args["nw-netwarden-certs-cabundle"], kubeconfig) == 0
    assert run(args["nw-netwarden-certs-rotate"], kubeconfig) == 0
    assert secret(kube, "nw-netwarden-webhook-tls")["metadata"]["resourceVersion"] == tls["metadata"]["resourceVersion"]
    assert secret(kube, "nw-netwarden-webhook-ca")["metadata"]["resourceVersion"] == ca["metadata"]["resourceVersion"]


def test_the_cronjob_never_generates_a_missing_pair(kube: LocalKube, tmp_path: Path) -> None:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    assert run(certs_args(render())["nw-netwarden-certs-rotate"], kubeconfig) != 0
    assert secret(kube, "nw-netwarden-webhook-tls") is None and secret(kube, "nw-netwarden-webhook-ca") is None


def test_no_script_ships_with_the_chart() -> None:
    assert not (CHART_DIR / "files").exists()
    for path in (CHART_DIR / "templates").rglob("*"):
        assert path.is_dir() or ".Files.Get" not in path.read_text(), path.name
