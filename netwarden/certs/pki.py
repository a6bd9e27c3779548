"""X.509 building blocks: CAs, leaf certificates, inspection, renewal decisions.

Pure apart from key generation and serial numbers (randomness): the clock is always passed in,
nothing touches the filesystem. Kept general on purpose: the same functions make the webhook's
serving certificate and a local kube-apiserver's PKI (client certs with `system:masters`, ...).
Keys are ECDSA P-256, signatures SHA-256.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Certificates start this long before `now` so peers with a slightly slow clock accept them.
CLOCK_SKEW_ALLOWANCE = timedelta(minutes=5)

PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM; the unit that is written, loaded and rotated."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def private_key(self) -> PrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("only ECDSA keys are supported")
        return key

    @property
    def serial(self) -> int:
        return self.certificate.serial_number


@dataclass(frozen=True)
class CertInfo:
    """What an operator wants to see about a certificate (plain data, printable)."""

    subject: str
    issuer: str
    common_name: str
    organizations: tuple[str, ...]
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    is_ca: bool
    serial: int
    fingerprint_sha256: str


def _utc_seconds(moment: datetime) -> datetime:
    """X.509 times have one-second resolution and must be UTC; refuse naive datetimes."""
    if moment.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return moment.astimezone(timezone.utc).replace(microsecond=0)


def _new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organizations: Sequence[str]) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def generate_ca(
    common_name: str,
    *,
    now: datetime,
    valid_for: timedelta,
    organizations: Sequence[str] = (),
) -> KeyPair:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    now = _utc_seconds(now)
    key = _new_key()
    name = _name(common_name, organizations)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue_certificate(
    ca: KeyPair,
    common_name: str,
    *,
    now: datetime,
    valid_for: timedelta,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    server: bool = True,
    client: bool = False,
    organizations: Sequence[str] = (),
) -> KeyPair:
    """A leaf certificate signed by `ca`.

    Its expiry is clamped to the CA's: a leaf that outlives its issuer would only fail later and
    less obviously. `organizations` become O= attributes (Kubernetes reads them as groups).
    """
    if not (server or client):
        raise ValueError("a certificate must be usable for server or client authentication")
    now = _utc_seconds(now)
    ca_cert = ca.certificate
    ca_key = ca.private_key
    key = _new_key()
    not_after = min(now + valid_for, ca_cert.not_valid_after_utc)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    )
    alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def service_dns_names(service: str, namespace: str) -> list[str]:
    """Every name a client inside the cluster may use to reach a Service (the API server uses S.N.svc)."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    """All certificates in a PEM blob, in order (a CA bundle holds several during a CA rollover)."""
    certs = x509.load_pem_x509_certificates(pem)
    if not certs:
        raise ValueError("no certificate found")
    return certs


def _info(cert: x509.Certificate) -> CertInfo:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(sans.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in sans.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = (), ()
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        common_name=str(cns[0].value) if cns else "",
        organizations=tuple(str(o.value) for o in orgs),
        dns_names=dns,
        ip_addresses=ips,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        is_ca=is_ca,
        serial=cert.serial_number,
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
    )


def describe(cert_pem: bytes) -> CertInfo:
    """The first certificate in `cert_pem`, as plain data."""
    return _info(load_certificates(cert_pem)[0])


def describe_bundle(bundle_pem: bytes) -> list[CertInfo]:
    """Every certificate in a bundle, as plain data, in bundle order."""
    return [_info(cert) for cert in load_certificates(bundle_pem)]


def needs_renewal(cert_pem: bytes, *, now: datetime, window: timedelta) -> bool:
    """True once `now` is within `window` of the (first) certificate's expiry, or past it."""
    return _utc_seconds(now) + window >= describe(cert_pem).not_after


def is_expired(cert_pem: bytes, *, now: datetime) -> bool:
    return _utc_seconds(now) >= describe(cert_pem).not_after


def key_matches_certificate(cert_pem: bytes, key_pem: bytes) -> bool:
    """Whether the private key belongs to the (first) certificate: guards against half-rotated pairs."""
    try:
        cert = load_certificates(cert_pem)[0]
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return False
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def is_issued_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    """Whether the (first) certificate in `cert_pem` is signed by any CA in the bundle `ca_pem`."""
    cert = load_certificates(cert_pem)[0]
    for ca in load_certificates(ca_pem):
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False
