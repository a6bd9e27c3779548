"""Keep the webhook's serving certificate in its Secrets and its CA in the webhook configurations.

Runs inside the netwarden image (`python -c <this file> PHASE`) from the chart's certificate Jobs:

  secret    pre-install/pre-upgrade: when the TLS Secret is absent, `netwarden certs generate`
            and store the pair (TLS Secret: tls.crt, tls.key, ca.crt; CA Secret: ca.crt, ca.key).
            An existing Secret is left alone: rotation is the CronJob's business.
  cabundle  post-install/post-upgrade: copy ca.crt from the TLS Secret into caBundle of both webhooks.
  rotate    CronJob: `netwarden certs rotate`; when something changed, write the new CA bundle into
            the webhooks FIRST, then the Secrets, so the API server trusts the new CA before the
            webhook (which reloads its certificate from the mounted Secret) presents a cert from it.

Why a Job and not the webhook itself: patching webhook configurations lets the patcher redirect
every admission request in the cluster; that right stays with a short-lived Job limited by
resourceNames to netwarden's two configurations, not with the long-running, network-facing webhook.

Settings come from the environment (the chart sets them): NAMESPACE, TLS_SECRET, CA_SECRET,
SERVICE, EXTRA_DNS (comma-separated), VALIDITY_DAYS, CA_VALIDITY_DAYS, RENEW_WITHIN_DAYS,
MUTATING_WEBHOOK, VALIDATING_WEBHOOK.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

TLS_KEYS = ("tls.crt", "tls.key", "ca.crt")
CA_KEYS = ("ca.crt", "ca.key")


def log(event: str, **fields: Any) -> None:
    """One JSON object per line, like every netwarden component."""
    print(json.dumps({"event": event, "component": "certs-sync", **fields}), flush=True)


def ca_bundle_patch(webhook_configuration: Mapping[str, Any], ca_bundle_b64: str) -> list[dict[str, Any]]:
    """JSON patch setting caBundle on every webhook of one configuration; [] when already equal."""
    patch: list[dict[str, Any]] = []
    for index, webhook in enumerate(webhook_configuration.get("webhooks") or []):
        client_config = webhook.get("clientConfig") or {}
        if client_config.get("caBundle") == ca_bundle_b64:
            continue
        op = "replace" if "caBundle" in client_config else "add"
        patch.append({"op": op, "path": f"/webhooks/{index}/clientConfig/caBundle", "value": ca_bundle_b64})
    return patch


def secret_files(secret_data: Mapping[str, str] | None, keys: tuple[str, ...]) -> dict[str, bytes]:
    """Decode the named keys of a Secret's data; missing keys are left out."""
    data = secret_data or {}
    return {key: base64.b64decode(data[key]) for key in keys if data.get(key)}


def encode(files: Mapping[str, bytes], keys: tuple[str, ...]) -> dict[str, str]:
    return {key: base64.b64encode(files[key]).decode("ascii") for key in keys}


def read_dir(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}


def write_dir(directory: Path, files: Mapping[str, bytes]) -> None:
    for name, content in files.items():
        path = directory / name
        path.write_bytes(content)
        path.chmod(0o600 if name.endswith(".key") else 0o644)


def run_netwarden(*args: str) -> None:
    log("run", command=["netwarden", *args])
    subprocess.run(["netwarden", *args], check=True)


class Cluster:
    """The few API calls this script makes, in one place."""

    def __init__(self) -> None:
        from kubernetes import client, config  # imported here so the pure helpers need no client

        config.load_incluster_config()
        self.client = client
        self.core = client.CoreV1Api()
        self.admission = client.AdmissionregistrationV1Api()
        self.namespace = os.environ["NAMESPACE"]

    def read_secret(self, name: str) -> dict[str, str] | None:
        try:
            secret = self.core.read_namespaced_secret(name, self.namespace)
        except self.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(secret.data or {})

    def create_secret(self, name: str, data: dict[str, str], secret_type: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": secret_type,
            "metadata": {"name": name, "namespace": self.namespace, "labels": chart_labels()},
            "data": data,
        }
        self.core.create_namespaced_secret(self.namespace, body)
        log("secret_created", secret=name)

    def replace_secret_data(self, name: str, data: dict[str, str]) -> None:
        secret = self.core.read_namespaced_secret(name, self.namespace)
        secret.data = data
        self.core.replace_namespaced_secret(name, self.namespace, secret)
        log("secret_updated", secret=name)

    def patch_ca_bundle(self, ca_bundle_b64: str) -> None:
        targets = (
            (os.environ["MUTATING_WEBHOOK"], self.admission.read_mutating_webhook_configuration,
             self.admission.patch_mutating_webhook_configuration),
            (os.environ["VALIDATING_WEBHOOK"], self.admission.read_validating_webhook_configuration,
             self.admission.patch_validating_webhook_configuration),
        )
        for name, read, patch_call in targets:
            current = self.client.ApiClient().sanitize_for_serialization(read(name))
            patch = ca_bundle_patch(current, ca_bundle_b64)
            if patch:
                patch_call(name, patch)
            log("ca_bundle_synced", webhook_configuration=name, changed=bool(patch))


def chart_labels() -> dict[str, str]:
    raw = os.environ.get("SECRET_LABELS", "{}")
    return dict(json.loads(raw))


def generate_args(out: Path) -> list[str]:
    """Arguments of `netwarden certs generate` for the webhook Service (+ the reconciler's SANs)."""
    args = [
        "certs", "generate",
        "--service", os.environ["SERVICE"],
        "--namespace", os.environ["NAMESPACE"],
        "--out", str(out),
        "--days", os.environ.get("VALIDITY_DAYS", "365"),
        "--ca-days", os.environ.get("CA_VALIDITY_DAYS", "3650"),
    ]
    for name in filter(None, os.environ.get("EXTRA_DNS", "").split(",")):
        args += ["--dns", name.strip()]
    return args


def rotate_args(directory: Path) -> list[str]:
    return [
        "certs", "rotate", str(directory),
        "--renew-within", os.environ.get("RENEW_WITHIN_DAYS", "30"),
        "--days", os.environ.get("VALIDITY_DAYS", "365"),
        "--ca-days", os.environ.get("CA_VALIDITY_DAYS", "3650"),
    ]


def phase_secret(cluster: Cluster) -> None:
    tls_name, ca_name = os.environ["TLS_SECRET"], os.environ["CA_SECRET"]
    if cluster.read_secret(tls_name) is not None:
        log("secret_present", secret=tls_name)
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "certs"
        run_netwarden(*generate_args(out))
        files = read_dir(out)
    # CA Secret first: a TLS Secret without its CA key could never be rotated.
    if cluster.read_secret(ca_name) is None:
        cluster.create_secret(ca_name, encode(files, CA_KEYS), "Opaque")
    else:
        cluster.replace_secret_data(ca_name, encode(files, CA_KEYS))
    cluster.create_secret(tls_name, encode(files, TLS_KEYS), "kubernetes.io/tls")


def phase_cabundle(cluster: Cluster) -> None:
    data = cluster.read_secret(os.environ["TLS_SECRET"])
    if not data or not data.get("ca.crt"):
        raise SystemExit(f"secret {os.environ['TLS_SECRET']} has no ca.crt")
    cluster.patch_ca_bundle(data["ca.crt"])


def phase_rotate(cluster: Cluster) -> None:
    tls_name, ca_name = os.environ["TLS_SECRET"], os.environ["CA_SECRET"]
    tls = secret_files(cluster.read_secret(tls_name), TLS_KEYS)
    ca = secret_files(cluster.read_secret(ca_name), CA_KEYS)
    if "ca.key" not in ca or len(tls) != len(TLS_KEYS):
        raise SystemExit(f"cannot rotate: {tls_name} or {ca_name} is missing or incomplete")
    before = {**tls, "ca.key": ca["ca.key"]}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_dir(directory, before)
        run_netwarden(*rotate_args(directory))
        after = read_dir(directory)
    if after == before:
        cluster.patch_ca_bundle(encode(after, ("ca.crt",))["ca.crt"])  # heal drift, if any
        log("rotation_not_due")
        return
    cluster.patch_ca_bundle(encode(after, ("ca.crt",))["ca.crt"])
    cluster.replace_secret_data(ca_name, encode(after, CA_KEYS))
    cluster.replace_secret_data(tls_name, encode(after, TLS_KEYS))
    log("rotated")


PHASES = {"secret": phase_secret, "cabundle": phase_cabundle, "rotate": phase_rotate}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in PHASES:
        print(f"usage: certs-sync {'|'.join(PHASES)}", file=sys.stderr)
        return 2
    PHASES[argv[0]](Cluster())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
