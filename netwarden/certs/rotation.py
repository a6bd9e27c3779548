"""Deciding certificate rotation, including a CA rollover that never fails an admission (pure).

Time is passed in, nothing touches files or the network. The API server trusts the caBundle it was
given the last time certificates were injected, so a serving certificate may only come from a CA
that was published in an EARLIER run. A CA rollover therefore takes three runs of `rotate`:

1. The newest CA is within its renewal window: a new CA is appended to the bundle (old + new). The
   serving certificate stays on the old CA; if it is itself due (or broken) it is renewed from the
   OLD CA, whose key is still in hand during this run.
2. A later run, once the new CA has been in the bundle for `min_overlap` (its publication time is
   its not_before + the clock-skew allowance) and, when known, every published caBundle holds it:
   the serving certificate is re-issued from the new CA.
3. A CA nothing depends on is dropped: once it has expired, or once the serving certificate in use
   has not come from it for `min_overlap` (time for every webhook pod to reload the new pair).

The CA key stored next to the bundle is always the newest CA's (the signer).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from netwarden.certs import pki
from netwarden.certs.pki import KeyPair

#: How long a new CA sits in the published bundle before certificates from it are served, and how
#: long an unused CA stays after the serving certificate moved off it.
DEFAULT_MIN_OVERLAP = timedelta(hours=1)
#: X.509 upper bound for a CommonName (RFC 5280 ub-common-name).
MAX_COMMON_NAME = 64

#: Why something is due or wrong; printed by `certs check` and returned by `rotate`.
RENEW_SERVING = "serving certificate within renewal window"
SERVING_EXPIRED = "serving certificate expired"
SERVING_KEY_MISMATCH = "serving key does not match serving certificate"
SERVING_UNTRUSTED = "serving certificate not issued by any CA in the bundle"
SERVING_NOT_FROM_CURRENT_CA = "serving certificate not issued by the current CA"
ROLLOVER_IN_PROGRESS = "CA rollover in progress: serving certificate not yet from the newest CA"
RENEW_CA = "CA within renewal window"
CA_KEY_MISMATCH = "CA key does not match any CA in the bundle"
FORCED = "forced"
#: Step 1, 2 and 3 of a rollover, and the repairs in between.
NEW_CA_ADDED = "CA within renewal window: new CA added to the bundle, serving stays on the old CA"
RENEWED_FROM_OLD_CA = "serving certificate renewed from the old CA while the new CA propagates"
SWITCHED_TO_NEW_CA = "serving certificate switched to the new CA"
DROPPED_EXPIRED_CA = "dropped expired CA from bundle"
DROPPED_UNUSED_CA = "dropped CA no longer used by the serving certificate"

_BROKEN = frozenset({SERVING_KEY_MISMATCH, SERVING_UNTRUSTED, SERVING_EXPIRED})


@dataclass(frozen=True)
class Rotation:
    """The outcome of `rotate`: what to write, and why (empty `actions` means nothing changed).

    `waiting` says what is held back (and until when, in `next_step_at`): run `rotate` again then.
    """

    ca_bundle_pem: bytes
    ca: KeyPair
    serving: KeyPair
    actions: tuple[str, ...]
    waiting: str | None = None
    next_step_at: datetime | None = None

    @property
    def changed(self) -> bool:
        return bool(self.actions)


def _pem(certs: Sequence[x509.Certificate]) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def ca_common_name(base: str, now: datetime) -> str:
    """`<base>@<unix time>.<random hex>`: distinct subjects even for two CAs made in the same second.

    The random part matters: old and new CA in one bundle must never share a subject, or clients
    pick the wrong issuer. The base is shortened so the name fits X.509's 64 characters.
    """
    suffix = f"@{int(now.timestamp())}.{secrets.token_hex(4)}"
    return base.split("@", 1)[0][: MAX_COMMON_NAME - len(suffix)] + suffix


def issued_at(cert: x509.Certificate) -> datetime:
    """When a certificate made by `pki` was issued (its not_before is back-dated by the skew allowance)."""
    return cert.not_valid_before_utc + pki.CLOCK_SKEW_ALLOWANCE


def issuer_in(cert_pem: bytes, bundle: Sequence[x509.Certificate]) -> x509.Certificate | None:
    """The CA in `bundle` that signed the certificate, if any."""
    for ca in bundle:
        if pki.is_issued_by(cert_pem, _cert_pem(ca)):
            return ca
    return None


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


def _newest(bundle: Sequence[x509.Certificate]) -> x509.Certificate:
    return max(bundle, key=lambda cert: cert.not_valid_after_utc)


def bundle_problems(ca_bundle_pem: bytes, *, now: datetime, window: timedelta) -> list[str]:
    """The newest CA nearing expiry is due; an older one expiring during overlap is expected."""
    newest = _newest(pki.load_certificates(ca_bundle_pem))
    return [RENEW_CA] if pki.needs_renewal(_cert_pem(newest), now=now, window=window) else []


def rollover_problems(ca_bundle_pem: bytes, serving_cert_pem: bytes) -> list[str]:
    """A serving certificate trusted by the bundle but not from its newest CA: step 2 is still to run."""
    bundle = pki.load_certificates(ca_bundle_pem)
    issuer = issuer_in(serving_cert_pem, bundle)
    return [ROLLOVER_IN_PROGRESS] if issuer is not None and issuer != _newest(bundle) else []


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


def _published_everywhere(ca: x509.Certificate, published_bundles: Sequence[bytes] | None) -> bool:
    """Whether every caBundle the API server holds trusts `ca` (None: unknown, time alone decides)."""
    if published_bundles is None:
        return True
    for bundle_pem in published_bundles:
        try:
            if ca not in pki.load_certificates(bundle_pem):
                return False
        except ValueError:  # empty or garbage caBundle trusts nothing
            return False
    return True


def rotate(
    ca_bundle_pem: bytes,
    ca: KeyPair,
    serving: KeyPair,
    *,
    now: datetime,
    window: timedelta,
    serving_valid_for: timedelta,
    ca_valid_for: timedelta,
    min_overlap: timedelta = DEFAULT_MIN_OVERLAP,
    published_bundles: Sequence[bytes] | None = None,
    force: bool = False,
) -> Rotation:
    """Renew what is due, one rollover step at a time (see module docstring).

    `ca` is the signing CA (the one whose key is stored) and must be in the bundle.
    `published_bundles` are the caBundles the API server currently holds, when the caller knows
    them: the serving certificate moves to a new CA only once each of them trusts it.
    """
    if not pki.key_matches_certificate(ca.cert_pem, ca.key_pem):
        raise ValueError(CA_KEY_MISMATCH)
    bundle = pki.load_certificates(ca_bundle_pem)
    if ca.certificate not in bundle:
        raise ValueError(CA_KEY_MISMATCH)
    actions: list[str] = []
    waiting: str | None = None
    next_steps: list[datetime] = []

    # Step 1: a new CA joins the bundle; the old one's key is only in hand during this run.
    old_signer: KeyPair | None = None
    signer = ca
    if pki.needs_renewal(ca.cert_pem, now=now, window=window):
        info = pki.describe(ca.cert_pem)
        old_signer = ca
        signer = pki.generate_ca(
            ca_common_name(info.common_name, now), now=now, valid_for=ca_valid_for, organizations=info.organizations
        )
        bundle.append(signer.certificate)
        actions.append(NEW_CA_ADDED)

    problems = serving_problems(ca_bundle_pem, serving, now=now, window=window)
    if force:
        problems.append(FORCED)
    issuer = issuer_in(serving.cert_pem, bundle)
    new_serving = serving
    if issuer == signer.certificate:
        if problems:
            new_serving = _renew_serving(signer, serving, now=now, valid_for=serving_valid_for)
            actions.extend(problems)
    else:
        switch_at = issued_at(signer.certificate) + min_overlap
        published = _published_everywhere(signer.certificate, published_bundles)
        if old_signer is None and now >= switch_at and published:
            # Step 2: the new CA has been trusted long enough.
            new_serving = _renew_serving(signer, serving, now=now, valid_for=serving_valid_for)
            actions.append(SWITCHED_TO_NEW_CA)
            actions.extend(problems)
        elif problems and old_signer is not None and not pki.is_expired(old_signer.cert_pem, now=now + min_overlap):
            new_serving = _renew_serving(old_signer, serving, now=now, valid_for=serving_valid_for)
            actions.append(RENEWED_FROM_OLD_CA)
            actions.extend(problems)
        elif _BROKEN.intersection(problems):
            # Nothing the API server trusts can be issued; a certificate it will trust soon beats a broken one.
            new_serving = _renew_serving(signer, serving, now=now, valid_for=serving_valid_for)
            actions.extend(problems)
        if not pki.is_issued_by(new_serving.cert_pem, signer.cert_pem):
            waiting = (f"serving certificate moves to the new CA once it has been in the bundle for {min_overlap}"
                       + ("" if published else " and every published caBundle holds it"))
            if now < switch_at:
                next_steps.append(switch_at)

    # Step 3: drop what nothing depends on any more.
    serving_since = issued_at(serving.certificate)
    kept: list[x509.Certificate] = []
    for cert in bundle:
        pem = _cert_pem(cert)
        if cert == signer.certificate:
            kept.append(cert)
        elif pki.is_expired(pem, now=now):
            actions.append(DROPPED_EXPIRED_CA)
        elif pki.is_issued_by(new_serving.cert_pem, pem):
            kept.append(cert)
        elif pki.is_issued_by(serving.cert_pem, pem):  # moved off it in this run: pods may still serve it
            kept.append(cert)
            next_steps.append(issued_at(new_serving.certificate) + min_overlap)
        elif now >= serving_since + min_overlap:
            actions.append(DROPPED_UNUSED_CA)
        else:
            kept.append(cert)
            next_steps.append(serving_since + min_overlap)
    return Rotation(
        ca_bundle_pem=_pem(kept),
        ca=signer,
        serving=new_serving,
        actions=tuple(dict.fromkeys(actions)),
        waiting=waiting,
        next_step_at=min(next_steps) if next_steps else None,
    )
