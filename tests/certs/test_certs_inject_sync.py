"""`certs inject` and `certs sync` against the local API server, over real HTTP with the official client."""

from __future__ import annotations

import base64
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography.x509 import verification

from netwarden.certs import cli, inject, pki, store
from netwarden.certs.inject import ObjectRef, Targets
from localkube.server import LocalKube
from netwarden.model import names
from netwarden.cli import build_parser
from netwarden.platform.kube import KubeClient

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
NS = "netwarden-system"
SERVICE = "netwarden-webhook"
TARGETS = Targets(secret=ObjectRef(NS, "netwarden-webhook-tls"), ca_secret=ObjectRef(NS, "netwarden-webhook-ca"),
                  mutating=("netwarden-mutate",), validating=("netwarden-validate",),
                  labels={"app.kubernetes.io/instance": "netwarden"})
SECRETS_PATH = rf"/api/v1/namespaces/{NS}/secrets"
MUTATING_PATH = r"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
VALIDATING_PATH = r"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


def webhook_configuration(kind: str, name: str, webhook_names: list[str]) -> dict[str, Any]:
    """Rules on pods only (so our Secret writes are never sent to these webhooks), failurePolicy Ignore."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": [
            {"name": webhook_name, "admissionReviewVersions": ["v1"], "sideEffects": "None",
             "failurePolicy": "Ignore",
             "clientConfig": {"service": {"name": SERVICE, "namespace": NS, "path": "/x", "port": 443}},
             "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]}
            for webhook_name in webhook_names
        ],
    }


@pytest.fixture
def kube() -> Iterator[LocalKube]:
    with LocalKube() as server:
        client = KubeClient(server.api_client())
        client.core.create_namespace({"metadata": {"name": NS}})
        client.admission.create_mutating_webhook_configuration(
            webhook_configuration("MutatingWebhookConfiguration", "netwarden-mutate", ["labels.netwarden.io"]))
        client.admission.create_validating_webhook_configuration(
            webhook_configuration("ValidatingWebhookConfiguration", "netwarden-validate",
                                  ["policy.netwarden.io", "identity.netwarden.io"]))
        yield server


def client_of(server: LocalKube) -> KubeClient:
    return KubeClient(server.api_client())


def secret_files(client: KubeClient, ref: ObjectRef) -> dict[str, bytes]:
    return inject.decode_secret_data(client.get_secret(ref.namespace, ref.name))


def ca_bundles(client: KubeClient) -> list[bytes]:
    return inject.read_published_bundles(client, TARGETS)


def resource_versions(client: KubeClient) -> list[str]:
    objects = [client.get_secret(NS, TARGETS.secret.name), client.get_secret(NS, "netwarden-webhook-ca"),
               client.get_webhook_configuration("netwarden-mutate", mutating=True),
               client.get_webhook_configuration("netwarden-validate", mutating=False)]
    return [obj["metadata"]["resourceVersion"] for obj in objects if obj]


def events(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def sync(server: LocalKube, at: datetime, **kwargs: Any) -> tuple[int, list[dict[str, Any]]]:
    out = io.StringIO()
    kwargs.setdefault("service", SERVICE)
    kwargs.setdefault("namespace", NS)
    code = cli.run_sync(client_of(server), TARGETS, now=at, window=10 * DAY, ca_valid_for=100 * DAY,
                        serving_valid_for=40 * DAY, stdout=out, **kwargs)
    return code, events(out.getvalue())


def verifies(serving_cert_pem: bytes, bundle_pem: bytes, at: datetime) -> bool:
    store_ = verification.Store(pki.load_certificates(bundle_pem))
    verifier = (verification.PolicyBuilder().store(store_).time(at.replace(microsecond=0))
                .build_server_verifier(verification.DNSName(f"{SERVICE}.{NS}.svc")))
    try:
        verifier.verify(pki.load_certificates(serving_cert_pem)[0], [])
    except verification.VerificationError:
        return False
    return True


def test_inject_writes_tls_secret_without_ca_key_ca_secret_and_every_webhooks_ca_bundle(
        kube: LocalKube, tmp_path: Path) -> None:
    assert cli.run_generate(tmp_path, service=SERVICE, namespace=NS, now=NOW, stdout=io.StringIO()) == 0
    client = client_of(kube)
    out = io.StringIO()
    assert cli.run_inject(client, tmp_path, TARGETS, stdout=out) == 0
    tls = client.get_secret(NS, TARGETS.secret.name)
    assert tls is not None and tls["type"] == "kubernetes.io/tls"
    assert sorted(tls["data"]) == ["ca.crt", "tls.crt", "tls.key"]
    assert tls["metadata"]["labels"][names.LABEL_MANAGED_BY] == names.MANAGED_BY_VALUE
    assert tls["metadata"]["labels"]["app.kubernetes.io/instance"] == "netwarden"
    on_disk = store.read_tls(tmp_path)
    assert secret_files(client, TARGETS.secret) == {"ca.crt": on_disk.ca_bundle_pem, "tls.crt": on_disk.serving.cert_pem,
                                                    "tls.key": on_disk.serving.key_pem}
    ca_secret = client.get_secret(NS, "netwarden-webhook-ca")
    assert ca_secret is not None and ca_secret["type"] == "Opaque"
    assert secret_files(client, TARGETS.ca_secret) == {"ca.crt": on_disk.ca_bundle_pem, "ca.key": on_disk.ca_key_pem}
    assert ca_bundles(client) == [on_disk.ca_bundle_pem] * 3  # one mutating + two validating webhooks
    outcomes = {(e["event"], e["outcome"]) for e in events(out.getvalue())}
    assert outcomes == {("ca_secret_synced", "created"), ("ca_bundle_synced", "patched"), ("tls_secret_synced", "created")}


def test_inject_twice_writes_nothing_the_second_time(kube: LocalKube, tmp_path: Path) -> None:
    cli.run_generate(tmp_path, service=SERVICE, namespace=NS, now=NOW, stdout=io.StringIO())
    client = client_of(kube)
    assert cli.run_inject(client, tmp_path, TARGETS, stdout=io.StringIO()) == 0
    before = resource_versions(client)
    out = io.StringIO()
    assert cli.run_inject(client, tmp_path, TARGETS, stdout=out) == 0
    assert resource_versions(client) == before
    assert {e["outcome"] for e in events(out.getvalue())} == {"unchanged"}


def test_inject_rereads_and_retries_conflicting_writes(kube: LocalKube, tmp_path: Path) -> None:
    client = client_of(kube)
    cli.run_generate(tmp_path, service=SERVICE, namespace=NS, now=NOW, stdout=io.StringIO())
    assert cli.run_inject(client, tmp_path, TARGETS, stdout=io.StringIO()) == 0
    cli.run_rotate(tmp_path, now=NOW, window=30 * DAY, force=True, stdout=io.StringIO())
    client.json_patch_webhook_configuration(  # drift: one webhook lost its caBundle
        "netwarden-validate", [{"op": "remove", "path": "/webhooks/1/clientConfig/caBundle"}], mutating=False)
    # Another writer got in between: two stale-resourceVersion updates and one conflicting patch.
    kube.faults.add(method="PUT", path_regex=SECRETS_PATH + r"/netwarden-webhook-tls(\?|$)", status=409, times=2)
    kube.faults.add(method="PATCH", path_regex=VALIDATING_PATH + r"/netwarden-validate(\?|$)", status=409, times=1)
    assert cli.run_inject(client, tmp_path, TARGETS, stdout=io.StringIO()) == 0
    assert kube.faults.list() == []  # every injected conflict was met, and retried past
    rotated = store.read_tls(tmp_path)
    assert secret_files(client, TARGETS.secret)["tls.crt"] == rotated.serving.cert_pem
    assert ca_bundles(client) == [rotated.ca_bundle_pem] * 3


def test_ca_bundle_patch_is_guarded_by_the_webhook_name_at_each_index() -> None:
    configuration = webhook_configuration("ValidatingWebhookConfiguration", "v", ["a", "b"])
    configuration["webhooks"][1]["clientConfig"]["caBundle"] = base64.b64encode(b"same").decode()
    patch = inject.ca_bundle_patch(configuration, b"same")
    assert patch == [{"op": "test", "path": "/webhooks/0/name", "value": "a"},
                     {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": base64.b64encode(b"same").decode()}]


def test_inject_skips_webhook_configurations_that_do_not_exist_yet(kube: LocalKube, tmp_path: Path) -> None:
    """The pre-install hook runs before Helm creates the configurations; the post-install run fills them."""
    cli.run_generate(tmp_path, service=SERVICE, namespace=NS, now=NOW, stdout=io.StringIO())
    targets = Targets(secret=TARGETS.secret, mutating=("not-installed-yet",))
    out = io.StringIO()
    assert cli.run_inject(client_of(kube), tmp_path, targets, stdout=out) == 0
    assert ("ca_bundle_synced", "missing") in {(e["event"], e["outcome"]) for e in events(out.getvalue())}


def test_inject_refuses_to_turn_an_opaque_secret_into_a_tls_secret(kube: LocalKube, tmp_path: Path) -> None:
    client = client_of(kube)
    client.core.create_namespaced_secret(NS, {"metadata": {"name": TARGETS.secret.name}, "type": "Opaque",
                                              "data": {"x": "eA=="}})
    cli.run_generate(tmp_path, service=SERVICE, namespace=NS, now=NOW, stdout=io.StringIO())
    out = io.StringIO()
    assert cli.run_inject(client, tmp_path, Targets(secret=TARGETS.secret), stdout=out) == cli.EXIT_DUE
    assert "cannot be changed" in events(out.getvalue())[-1]["error"]


def test_sync_generates_once_then_is_a_no_op(kube: LocalKube) -> None:
    client = client_of(kube)
    code, log = sync(kube, NOW)
    assert code == 0 and log[0]["event"] == "generated"
    tls, ca = secret_files(client, TARGETS.secret), secret_files(client, TARGETS.ca_secret)
    assert "ca.key" not in tls and pki.key_matches_certificate(ca["ca.crt"], ca["ca.key"])
    assert f"{SERVICE}.{NS}.svc" in pki.describe(tls["tls.crt"]).dns_names
    assert ca_bundles(client) == [tls["ca.crt"]] * 3
    assert verifies(tls["tls.crt"], tls["ca.crt"], NOW)
    before = resource_versions(client)
    code, log = sync(kube, NOW + DAY)
    assert code == 0 and resource_versions(client) == before
    assert log[0] == {"event": "rotation", "component": "certs", "actions": [], "waiting": None, "next_step_at": None}


def test_sync_without_service_and_without_secrets_fails_with_a_usage_error(kube: LocalKube) -> None:
    code, log = sync(kube, NOW, service=None, namespace=None)
    assert code == cli.EXIT_USAGE and "--service" in log[-1]["error"]
    assert client_of(kube).get_secret(NS, TARGETS.secret.name) is None


def test_sync_reissues_a_lost_tls_secret_from_the_stored_ca(kube: LocalKube) -> None:
    client = client_of(kube)
    sync(kube, NOW)
    ca_before = secret_files(client, TARGETS.ca_secret)
    client.core.delete_namespaced_secret(TARGETS.secret.name, NS)
    code, log = sync(kube, NOW + HOUR)
    assert code == 0 and log[0]["event"] == "serving_issued_from_stored_ca"
    assert secret_files(client, TARGETS.ca_secret) == ca_before
    assert pki.is_issued_by(secret_files(client, TARGETS.secret)["tls.crt"], ca_before["ca.crt"])


def test_sync_rolls_the_ca_over_without_a_moment_the_api_server_would_reject_the_serving_cert(kube: LocalKube) -> None:
    """The CronJob every 6 hours for 250 days (two CA lifetimes): at each run the cert the pods may
    serve (before or after) verifies against the caBundle the API server may hold (before or after)."""
    client = client_of(kube)
    assert sync(kube, NOW)[0] == 0
    at, actions = NOW, []
    while at < NOW + 250 * DAY:
        at += 6 * HOUR
        published, serving_before = ca_bundles(client), secret_files(client, TARGETS.secret)["tls.crt"]
        code, log = sync(kube, at)
        assert code == 0
        actions += log[0]["actions"]
        published_after, serving_after = ca_bundles(client), secret_files(client, TARGETS.secret)["tls.crt"]
        for serving in (serving_before, serving_after):
            for bundle in published + published_after:
                assert verifies(serving, bundle, at), (at, log[0])
    assert actions.count("CA within renewal window: new CA added to the bundle, serving stays on the old CA") == 2
    assert actions.count("serving certificate switched to the new CA") == 2


def test_sync_holds_the_switch_until_every_webhook_trusts_the_new_ca(kube: LocalKube) -> None:
    client = client_of(kube)
    sync(kube, NOW)
    old_bundle = ca_bundles(client)[0]
    sync(kube, NOW + 91 * DAY)  # step 1: every webhook now trusts old + new
    # Someone reverts one webhook's caBundle to the old CA only, and the job cannot patch it back.
    client.json_patch_webhook_configuration(
        "netwarden-validate",
        [{"op": "replace", "path": "/webhooks/1/clientConfig/caBundle", "value": base64.b64encode(old_bundle).decode()}],
        mutating=False)
    kube.faults.add(method="PATCH", path_regex=VALIDATING_PATH, status=403, times=None)
    code, log = sync(kube, NOW + 92 * DAY)
    assert code == cli.EXIT_DUE  # the caBundle could not be written ...
    assert log[0]["actions"] == [] and "published caBundle" in log[0]["waiting"]  # ... and nothing switched
    kube.faults.clear()
    code, log = sync(kube, NOW + 92 * DAY)
    assert code == 0 and log[0]["actions"] == []  # this run heals the caBundle ...
    code, log = sync(kube, NOW + 92 * DAY + HOUR)
    assert "serving certificate switched to the new CA" in log[0]["actions"]  # ... the next one switches


def test_sync_makes_only_the_calls_listed_in_cert_job_api_calls(kube: LocalKube) -> None:
    """Counting faults (no status) see every request; the catch-all last one must see none."""
    verbs = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch"}
    paths = {"secrets": SECRETS_PATH, "mutatingwebhookconfigurations": MUTATING_PATH,
             "validatingwebhookconfigurations": VALIDATING_PATH}
    counters = {(group, resource, verb): kube.faults.add(method=method, path_regex=paths[resource], times=None)
                for group, resource, verb in sorted(inject.CERT_JOB_API_CALLS)
                for method, name in verbs.items() if name == verb}
    anything_else = kube.faults.add(path_regex=".*", times=None)
    assert sync(kube, NOW)[0] == 0
    assert sync(kube, NOW + 91 * DAY)[0] == 0
    assert sync(kube, NOW + 91 * DAY + HOUR)[0] == 0
    assert anything_else.hits == 0
    used = {call for call, counter in counters.items() if counter.hits}
    assert used == set(inject.CERT_JOB_API_CALLS)


def test_netwarden_certs_sync_and_inject_command_lines_work_with_a_kubeconfig(
        kube: LocalKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    common = ["--kubeconfig", kubeconfig, "--secret", f"{NS}/netwarden-webhook-tls",
              "--ca-secret", f"{NS}/netwarden-webhook-ca", "--mutating", "netwarden-mutate",
              "--validating", "netwarden-validate", "--label", "app.kubernetes.io/instance=netwarden"]
    parser = build_parser()
    args = parser.parse_args(["certs", "sync", *common, "--service", SERVICE, "--namespace", NS,
                              "--dns", "netwarden-reconciler.netwarden-system.svc", "--renew-within", "30",
                              "--days", "365", "--ca-days", "3650", "--min-overlap", "1h"])
    assert args.func(args) == 0
    client = client_of(kube)
    tls = secret_files(client, TARGETS.secret)
    assert "netwarden-reconciler.netwarden-system.svc" in pki.describe(tls["tls.crt"]).dns_names
    assert events(capsys.readouterr().out)[-1]["event"] == "synced"
    certs_dir = tmp_path / "certs"
    cli.run_generate(certs_dir, service=SERVICE, namespace=NS, now=datetime.now(timezone.utc), stdout=io.StringIO())
    args = parser.parse_args(["certs", "inject", "--dir", str(certs_dir), *common])
    assert args.func(args) == 0
    assert secret_files(client, TARGETS.secret)["tls.crt"] == (certs_dir / "tls.crt").read_bytes()
    assert ca_bundles(client) == [(certs_dir / "ca.crt").read_bytes()] * 3
