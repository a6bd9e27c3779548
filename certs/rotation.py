"""Deciding and performing certificate rotation (pure: time passed in, no files).

The serving certificate is renewed under the same CA, so the caBundle registered with the API
server stays valid. When the CA itself nears expiry a new CA is made and the bundle holds old + new
until the old one expires (overlap): certificates from either verify against the bundle. Expired
CAs are dropped from the bundle on the next rotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs import pki
from certs.pki import KeyPair

#: Why something is due or wrong; printed by `certs check` and returned by `rotate`.
RENEW_SERVING = "serving certificate within renewal window"
SERVING_EXPIRED = "serving certificate expired"
SERVING_KEY_MISMATCH = "serving key does not match serving certificate"
SERVING_UNTRUSTED = "serving certificate not issued by any CA in the bundle"
SERVING_NOT_FROM_CURRENT_CA = "serving certificate not issued by the current CA"
RENEW_CA = "CA within renewal window"
CA_KEY_MISMATCH = "CA key does not match any CA in the bundle"
FORCED = "forced"
DROPPED_EXPIRED_CA = "dropped expired CA from bundle"


@dataclass(frozen=True)
class Rotation:
    """The outcome of `rotate`: what to write, and why (empty `actions` means nothing changed)."""

    ca_bundle_pem: bytes
    ca: KeyPair
    serving: KeyPair
    actions: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.actions)


def _pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def ca_common_name(base: str, now: datetime) -> str:
    """CA names carry their creation time so old and new CAs in one bundle have distinct subjects."""
    return f"{base.split('@', 1)[0]}@{int(now.timestamp())}"


def serving_problems(
    ca_bundle_pem: bytes, serving: KeyPair, *, now: datetime, window: timedelta
) -> list[str]:
    """Reasons the serving certificate needs attention; empty when it is fine."""
    problems: list[str] = []
    if not pki.key_matches_certificate(serving.cert_pem, serving.key_pem):
        problems.append(SERVING_KEY_MISMATCH)
    if not pki.is_issued_by(serving.cert_pem, ca_bundle_pem):
        problems.append(SERVING_UNTRUSTED)
    if pki.is_expired(serving.cert_pem, now=now):
        problems.append(SERVING_EXPIRED)
    elif pki.needs_renewal(serving.cert_pem, now=now, window=window):
        problems.append(RENEW_SERVING)
    return problems


def bundle_problems(ca_bundle_pem: bytes, *, now: datetime, window: timedelta) -> list[str]:
    """The newest CA nearing expiry is due; an older one expiring during overlap is expected."""
    newest = max(pki.load_certificates(ca_bundle_pem), key=lambda cert: cert.not_valid_after_utc)
    newest_pem = newest.public_bytes(serialization.Encoding.PEM)
    return [RENEW_CA] if pki.needs_renewal(newest_pem, now=now, window=window) else []


def _renew_serving(ca: KeyPair, previous: KeyPair, *, now: datetime, valid_for: timedelta) -> KeyPair:
    """Same names and usages as the previous certificate, new key, signed by `ca`."""
    info = pki.describe(previous.cert_pem)
    cert = previous.certificate
    try:
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        usages = {ExtendedKeyUsageOID.SERVER_AUTH}
    return pki.issue_certificate(
        ca,
        info.common_name,
        now=now,
        valid_for=valid_for,
        dns_names=info.dns_names,
        ip_addresses=info.ip_addresses,
        server=ExtendedKeyUsageOID.SERVER_AUTH in usages,
        client=ExtendedKeyUsageOID.CLIENT_AUTH in usages,
        organizations=info.organizations,
    )


def rotate(
    ca_bundle_pem: bytes,
    ca: KeyPair,
    serving: KeyPair,
    *,
    now: datetime,
    window: timedelta,
    serving_valid_for: timedelta,
    ca_valid_for: timedelta,
    force: bool = False,
) -> Rotation:
    """Renew what is due. `ca` is the current (signing) CA and must be in the bundle."""
    if not pki.key_matches_certificate(ca.cert_pem, ca.key_pem):
        raise ValueError(CA_KEY_MISMATCH)
    bundle = pki.load_certificates(ca_bundle_pem)
    current = ca.certificate
    if current not in bundle:
        raise ValueError(CA_KEY_MISMATCH)
    actions: list[str] = []

    if pki.needs_renewal(ca.cert_pem, now=now, window=window):
        info = pki.describe(ca.cert_pem)
        ca = pki.generate_ca(
            ca_common_name(info.common_name, now), now=now, valid_for=ca_valid_for, organizations=info.organizations
        )
        bundle.append(ca.certificate)
        actions.append(RENEW_CA)

    kept = [cert for cert in bundle if not pki.is_expired(cert.public_bytes(serialization.Encoding.PEM), now=now)]
    if len(kept) < len(bundle):
        actions.append(DROPPED_EXPIRED_CA)
    new_bundle_pem = _pem(kept)

    reasons = serving_problems(ca_bundle_pem, serving, now=now, window=window)
    if not pki.is_issued_by(serving.cert_pem, ca.cert_pem):
        reasons.append(SERVING_NOT_FROM_CURRENT_CA)
    if force:
        reasons.append(FORCED)
    if reasons:
        serving = _renew_serving(ca, serving, now=now, valid_for=serving_valid_for)
        actions.extend(reason for reason in reasons if reason not in actions)
    return Rotation(ca_bundle_pem=new_bundle_pem, ca=ca, serving=serving, actions=tuple(actions))
