"""Certificates in the cluster: the TLS and CA Secrets, and caBundle of netwarden's webhooks.

Pure helpers (Secret data, JSON patches, reading Secrets back) sit beside the thin adapter
functions that call `KubeClient`; the adapters re-read and retry on conflicts and are idempotent
(equal data is not written again). Every write happens in the order that keeps admissions working:

  CA Secret  ->  caBundle of every webhook  ->  TLS Secret

The CA key is never lost (written first), the API server learns a new CA before a webhook pod can
present a certificate from it, and the TLS Secret (what the pods mount) changes last.
This runs as the chart's certificate hook Job, under its own service account; its calls are listed
in `CERT_JOB_API_CALLS` (the webhook and reconciler never make them).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from cryptography.hazmat.primitives import serialization

from netwarden.certs import pki, store
from netwarden.certs.pki import KeyPair
from netwarden.certs.store import StoredTLS
from netwarden.model import names, patches
from netwarden.model.errors import Conflict, Invalid, NetwardenError
from netwarden.platform.kube import KubeClient

#: (apiGroup, resource, verb) for every call the certificate hook Job makes; its RBAC must match.
CERT_JOB_API_CALLS: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("", "secrets", "get"),
        ("", "secrets", "create"),
        ("", "secrets", "update"),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "get"),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "patch"),
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations", "get"),
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations", "patch"),
    }
)

TLS_SECRET_TYPE = "kubernetes.io/tls"
CA_SECRET_TYPE = "Opaque"
CONFLICT_ATTEMPTS = 8

#: Outcomes, as logged.
CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"
PATCHED = "patched"
MISSING = "missing"

Log = Callable[..., None]


class InjectError(NetwardenError, RuntimeError):
    """A write that cannot succeed (wrong Secret type, conflicts that do not settle)."""


@dataclass(frozen=True)
class ObjectRef:
    """NAMESPACE/NAME of a Secret."""

    namespace: str
    name: str

    @classmethod
    def parse(cls, text: str) -> "ObjectRef":
        namespace, sep, name = text.partition("/")
        if not sep or not namespace or not name or "/" in name:
            raise ValueError(f"expected NAMESPACE/NAME, got {text!r}")
        return cls(namespace, name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Targets:
    """Where certificates go: the TLS Secret, the CA Secret (optional) and the webhook configurations."""

    secret: ObjectRef
    ca_secret: ObjectRef | None = None
    mutating: tuple[str, ...] = ()
    validating: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


# --- pure ------------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def tls_secret_data(ca_bundle_pem: bytes, serving: KeyPair) -> dict[str, str]:
    """What the webhook pods mount: never the CA key."""
    return {store.CERT_FILE: _b64(serving.cert_pem), store.KEY_FILE: _b64(serving.key_pem),
            store.CA_CERT_FILE: _b64(ca_bundle_pem)}


def ca_secret_data(ca_bundle_pem: bytes, ca_key_pem: bytes) -> dict[str, str]:
    """What only the certificate Job reads: the bundle and the signing CA's key."""
    return {store.CA_CERT_FILE: _b64(ca_bundle_pem), store.CA_KEY_FILE: _b64(ca_key_pem)}


def decode_secret_data(secret: Mapping[str, Any] | None) -> dict[str, bytes]:
    """A Secret's data, decoded; keys that do not decode are left out (treated as missing)."""
    decoded: dict[str, bytes] = {}
    for key, value in ((secret or {}).get("data") or {}).items():
        try:
            decoded[key] = base64.b64decode(value or "", validate=True)
        except (binascii.Error, ValueError):
            continue
    return decoded


def union_bundle(*bundles: bytes) -> bytes:
    """Every distinct CA of the given bundles, oldest first (empty or unreadable bundles add nothing)."""
    seen: list[Any] = []
    for bundle in bundles:
        try:
            certs = pki.load_certificates(bundle) if bundle else []
        except ValueError:
            continue
        seen.extend(cert for cert in certs if cert not in seen)
    seen.sort(key=lambda cert: cert.not_valid_before_utc)
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in seen)


def stored_from_secrets(tls: Mapping[str, bytes], ca: Mapping[str, bytes]) -> StoredTLS | None:
    """The state kept in the two Secrets, or None when the TLS Secret has no complete pair."""
    if not (tls.get(store.CERT_FILE) and tls.get(store.KEY_FILE)):
        return None
    bundle = union_bundle(ca.get(store.CA_CERT_FILE, b""), tls.get(store.CA_CERT_FILE, b""))
    return StoredTLS(ca_bundle_pem=bundle, serving=KeyPair(tls[store.CERT_FILE], tls[store.KEY_FILE]),
                     ca_key_pem=ca.get(store.CA_KEY_FILE) or None)


def secret_manifest(ref: ObjectRef, secret_type: str, data: Mapping[str, str], labels: Mapping[str, str],
                    existing: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The Secret to write, or None when `existing` already holds exactly this data and these labels."""
    wanted_labels = {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE, **labels}
    if existing is None:
        return {"apiVersion": "v1", "kind": "Secret", "type": secret_type,
                "metadata": {"name": ref.name, "namespace": ref.namespace, "labels": wanted_labels},
                "data": dict(data)}
    if existing.get("type", "Opaque") != secret_type:
        raise InjectError(f"secret {ref} has type {existing.get('type')!r}, expected {secret_type!r} "
                          "(the type cannot be changed; delete the Secret to let netwarden recreate it)")
    meta = dict(existing.get("metadata") or {})
    labels_now = dict(meta.get("labels") or {})
    if (existing.get("data") or {}) == dict(data) and all(labels_now.get(k) == v for k, v in wanted_labels.items()):
        return None
    meta["labels"] = {**labels_now, **wanted_labels}
    return {**existing, "apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": dict(data)}


def published_ca_bundles(configuration: Mapping[str, Any]) -> list[bytes]:
    """The caBundle of every webhook in a configuration, decoded (b"" where none is set)."""
    bundles: list[bytes] = []
    for webhook in configuration.get("webhooks") or []:
        value = (webhook.get("clientConfig") or {}).get("caBundle") or ""
        try:
            bundles.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            bundles.append(b"")
    return bundles


def ca_bundle_patch(configuration: Mapping[str, Any], ca_bundle_pem: bytes) -> list[dict[str, Any]]:
    """JSON patch setting caBundle on every webhook; [] when all are already equal.

    Each change is guarded by a `test` of the webhook's name at that index, so a configuration
    edited in between (webhooks reordered) makes the patch fail instead of writing the wrong entry.
    """
    value = _b64(ca_bundle_pem)
    operations: list[dict[str, Any]] = []
    for index, webhook in enumerate(configuration.get("webhooks") or []):
        client_config = webhook.get("clientConfig") or {}
        if client_config.get("caBundle") == value:
            continue
        operations.append(patches.test(("webhooks", index, "name"), webhook.get("name")))
        operations.append(patches.add(("webhooks", index, "clientConfig", "caBundle"), value))
    return operations


# --- adapters --------------------------------------------------------------------------------
def write_secret(kube: KubeClient, ref: ObjectRef, secret_type: str, data: Mapping[str, str],
                 labels: Mapping[str, str], *, attempts: int = CONFLICT_ATTEMPTS) -> str:
    """Create or update a Secret to hold `data`; returns created / updated / unchanged."""
    for _attempt in range(attempts):
        existing = kube.get_secret(ref.namespace, ref.name)
        manifest = secret_manifest(ref, secret_type, data, labels, existing)
        if manifest is None:
            return UNCHANGED
        try:
            if existing is None:
                kube.create_secret(manifest)
                return CREATED
            kube.replace_secret(manifest)
            return UPDATED
        except Conflict:
            continue
    raise InjectError(f"secret {ref}: still conflicting after {attempts} attempts")


def write_ca_bundle(kube: KubeClient, name: str, ca_bundle_pem: bytes, *, mutating: bool,
                    attempts: int = CONFLICT_ATTEMPTS) -> str:
    """Set caBundle on every webhook of one configuration; patched / unchanged / missing."""
    for _attempt in range(attempts):
        configuration = kube.get_webhook_configuration(name, mutating=mutating)
        if configuration is None:
            return MISSING
        operations = ca_bundle_patch(configuration, ca_bundle_pem)
        if not operations:
            return UNCHANGED
        try:
            kube.json_patch_webhook_configuration(name, operations, mutating=mutating)
            return PATCHED
        except (Conflict, Invalid):  # Invalid: a `test` op failed, the configuration changed under us
            continue
    raise InjectError(f"webhook configuration {name}: still conflicting after {attempts} attempts")


def read_published_bundles(kube: KubeClient, targets: Targets) -> list[bytes]:
    """caBundles the API server holds now, from every named configuration that exists."""
    bundles: list[bytes] = []
    for mutating, configuration_names in ((True, targets.mutating), (False, targets.validating)):
        for name in configuration_names:
            configuration = kube.get_webhook_configuration(name, mutating=mutating)
            if configuration is not None:
                bundles.extend(published_ca_bundles(configuration))
    return bundles


def inject(kube: KubeClient, targets: Targets, stored: StoredTLS, log: Log) -> dict[str, str]:
    """Write the Secrets and caBundles (in the safe order); returns what happened to each object."""
    outcomes: dict[str, str] = {}
    if targets.ca_secret is not None:
        if stored.ca_key_pem is None:
            raise InjectError(f"no CA key to store in {targets.ca_secret}")
        outcome = write_secret(kube, targets.ca_secret, CA_SECRET_TYPE,
                               ca_secret_data(stored.ca_bundle_pem, stored.ca_key_pem), targets.labels)
        outcomes[f"secret/{targets.ca_secret}"] = outcome
        log("ca_secret_synced", secret=str(targets.ca_secret), outcome=outcome)
    for mutating, configuration_names in ((True, targets.mutating), (False, targets.validating)):
        kind = "mutatingwebhookconfiguration" if mutating else "validatingwebhookconfiguration"
        for name in configuration_names:
            outcome = write_ca_bundle(kube, name, stored.ca_bundle_pem, mutating=mutating)
            outcomes[f"{kind}/{name}"] = outcome
            log("ca_bundle_synced", kind=kind, name=name, outcome=outcome)
    outcome = write_secret(kube, targets.secret, TLS_SECRET_TYPE,
                           tls_secret_data(stored.ca_bundle_pem, stored.serving), targets.labels)
    outcomes[f"secret/{targets.secret}"] = outcome
    log("tls_secret_synced", secret=str(targets.secret), outcome=outcome)
    return outcomes


def load_from_secrets(kube: KubeClient, targets: Targets) -> tuple[StoredTLS | None, dict[str, bytes]]:
    """The stored state (None when there is no serving pair yet) and the CA Secret's decoded data."""
    tls = decode_secret_data(kube.get_secret(targets.secret.namespace, targets.secret.name))
    ca: dict[str, bytes] = {}
    if targets.ca_secret is not None:
        ca = decode_secret_data(kube.get_secret(targets.ca_secret.namespace, targets.ca_secret.name))
    return stored_from_secrets(tls, ca), ca


def parse_labels(pairs: Sequence[str]) -> dict[str, str]:
    """KEY=VALUE strings (from --label) as a dict."""
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        labels[key] = value
    return labels
