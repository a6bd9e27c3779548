"""PKI building blocks: names, key type, usages, validity, inspection."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from netwarden.certs import pki

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def ca() -> pki.KeyPair:
    return pki.generate_ca("test-ca", now=NOW, valid_for=365 * DAY)


def test_ca_is_self_signed_ecdsa_p256_ca_restricted_to_leaves(ca: pki.KeyPair) -> None:
    cert = ca.certificate
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    cert.verify_directly_issued_by(cert)
    assert pki.describe(ca.cert_pem).is_ca


def test_serving_cert_carries_service_names_ip_and_server_usage_only(ca: pki.KeyPair) -> None:
    names = pki.service_dns_names("netwarden", "netwarden-system")
    leaf = pki.issue_certificate(ca, "netwarden.netwarden-system.svc", now=NOW, valid_for=30 * DAY,
                                 dns_names=names, ip_addresses=["127.0.0.1", "::1"])
    cert = leaf.certificate
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == names
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.signature_hash_algorithm.name == "sha256"
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    cert.verify_directly_issued_by(ca.certificate)
    assert pki.key_matches_certificate(leaf.cert_pem, leaf.key_pem)


def test_client_cert_for_kubernetes_carries_groups_as_organizations_and_no_sans(ca: pki.KeyPair) -> None:
    leaf = pki.issue_certificate(ca, "admin", now=NOW, valid_for=DAY, server=False, client=True,
                                 organizations=["system:masters"])
    cert = leaf.certificate
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["system:masters"]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    info = pki.describe(leaf.cert_pem)
    assert info.common_name == "admin" and info.organizations == ("system:masters",)


def test_certificate_for_neither_server_nor_client_is_refused(ca: pki.KeyPair) -> None:
    with pytest.raises(ValueError):
        pki.issue_certificate(ca, "x", now=NOW, valid_for=DAY, server=False, client=False)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError):
        pki.generate_ca("ca", now=datetime(2030, 1, 1), valid_for=DAY)


def test_leaf_never_outlives_its_ca(ca: pki.KeyPair) -> None:
    leaf = pki.issue_certificate(ca, "long", now=NOW, valid_for=1000 * DAY, dns_names=["long"])
    assert pki.describe(leaf.cert_pem).not_after == pki.describe(ca.cert_pem).not_after


def test_key_of_another_certificate_does_not_match(ca: pki.KeyPair) -> None:
    one = pki.issue_certificate(ca, "one", now=NOW, valid_for=DAY)
    two = pki.issue_certificate(ca, "two", now=NOW, valid_for=DAY)
    assert not pki.key_matches_certificate(one.cert_pem, two.key_pem)
    assert not pki.key_matches_certificate(one.cert_pem, b"not a key")


def test_certificate_from_another_ca_is_not_issued_by_it(ca: pki.KeyPair) -> None:
    other = pki.generate_ca("other", now=NOW, valid_for=DAY)
    leaf = pki.issue_certificate(other, "x", now=NOW, valid_for=DAY)
    assert not pki.is_issued_by(leaf.cert_pem, ca.cert_pem)
    assert pki.is_issued_by(leaf.cert_pem, ca.cert_pem + other.cert_pem)


def test_needs_renewal_turns_true_exactly_at_the_window_edge(ca: pki.KeyPair) -> None:
    leaf = pki.issue_certificate(ca, "x", now=NOW, valid_for=30 * DAY)
    expiry = pki.describe(leaf.cert_pem).not_after
    window = 10 * DAY
    assert not pki.needs_renewal(leaf.cert_pem, now=expiry - window - timedelta(seconds=1), window=window)
    assert pki.needs_renewal(leaf.cert_pem, now=expiry - window, window=window)
    assert pki.needs_renewal(leaf.cert_pem, now=expiry + DAY, window=window)


service_label = st.from_regex(r"[a-z]([a-z0-9-]{0,30}[a-z0-9])?", fullmatch=True)


@given(service=service_label, namespace=service_label)
def test_service_dns_names_are_four_nested_suffixes_of_the_same_service(service: str, namespace: str) -> None:
    names = pki.service_dns_names(service, namespace)
    assert names[0] == service
    assert names[-1] == f"{service}.{namespace}.svc.cluster.local"
    assert len(set(names)) == 4
    for shorter, longer in zip(names, names[1:]):
        assert longer.startswith(shorter + ".")


@settings(max_examples=25, deadline=None)
@given(
    seconds=st.integers(min_value=1, max_value=5 * 365 * 86400),
    offset=st.integers(min_value=0, max_value=20 * 365 * 86400),
    micros=st.integers(min_value=0, max_value=999_999),
)
def test_validity_spans_from_skew_allowance_before_now_to_now_plus_lifetime(
    seconds: int, offset: int, micros: int
) -> None:
    now = NOW + timedelta(seconds=offset, microseconds=micros)
    valid_for = timedelta(seconds=seconds)
    ca = pki.generate_ca("p", now=now, valid_for=valid_for)
    info = pki.describe(ca.cert_pem)
    start = now.replace(microsecond=0)
    assert info.not_before == start - pki.CLOCK_SKEW_ALLOWANCE
    assert info.not_after == start + valid_for
    assert not pki.needs_renewal(ca.cert_pem, now=now, window=timedelta(0))
    assert pki.needs_renewal(ca.cert_pem, now=start + valid_for, window=timedelta(0))

