"""CA rollover in three runs, walked through time: no instant at which an admission would fail.

The model of the world: the API server trusts the caBundle injected by the PREVIOUS run until this
run's bundle reaches it, while webhook pods may already serve this run's certificate (or still the
previous one). So after every run both (new cert, old bundle) and (old cert, new bundle) must verify.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification
from hypothesis import given, settings
from hypothesis import strategies as st

from netwarden.certs import cli, pki, rotation
from netwarden.certs.pki import KeyPair

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
SERVICE_NAME = "netwarden.netwarden-system.svc"


def verifies(serving: KeyPair, bundle_pem: bytes, at: datetime) -> bool:
    """What the API server does: chain to a trusted CA, valid at `at`, SAN matches the Service name."""
    store = verification.Store(pki.load_certificates(bundle_pem))
    verifier = (verification.PolicyBuilder().store(store).time(at.replace(microsecond=0))
                .build_server_verifier(verification.DNSName(SERVICE_NAME)))
    try:
        verifier.verify(serving.certificate, [])
    except verification.VerificationError:
        return False
    return True


@dataclass
class World:
    """What is stored after the last run (the published bundle is this bundle once injected)."""

    bundle: bytes
    ca: KeyPair
    serving: KeyPair


def start(*, ca_days: int, days: int) -> World:
    ca, serving = cli.new_ca_and_serving(service="netwarden", namespace="netwarden-system", now=NOW,
                                         ca_valid_for=ca_days * DAY, serving_valid_for=days * DAY)
    return World(ca.cert_pem, ca, serving)


def run(world: World, at: datetime, *, window: timedelta = 10 * DAY, ca_days: int = 100, days: int = 40,
        min_overlap: timedelta = HOUR, published: list[bytes] | None = None) -> rotation.Rotation:
    result = rotation.rotate(world.bundle, world.ca, world.serving, now=at, window=window,
                             serving_valid_for=days * DAY, ca_valid_for=ca_days * DAY, min_overlap=min_overlap,
                             published_bundles=published)
    world.bundle, world.ca, world.serving = result.ca_bundle_pem, result.ca, result.serving
    return result


def cas(bundle_pem: bytes) -> list[x509.Certificate]:
    return pki.load_certificates(bundle_pem)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def test_rollover_takes_three_runs_and_each_run_verifies_against_the_previously_published_bundle() -> None:
    world = start(ca_days=100, days=40)
    old_ca = world.ca
    run(world, NOW + 85 * DAY)  # ordinary renewal; leaves are clamped to their CA: this one ends on day 100
    # Day 91: CA and serving cert are within their 10-day window. Step 1: a new CA joins the bundle,
    # the serving cert is renewed from the OLD CA (the only one the API server trusts yet).
    step1_at = NOW + 91 * DAY
    published, previous_serving = world.bundle, world.serving
    result = run(world, step1_at)
    assert result.actions[:2] == (rotation.NEW_CA_ADDED, rotation.RENEWED_FROM_OLD_CA)
    assert world.serving != previous_serving
    assert [c for c in cas(world.bundle)] == [old_ca.certificate, world.ca.certificate]
    assert world.ca != old_ca and pki.key_matches_certificate(world.ca.cert_pem, world.ca.key_pem)
    assert pki.is_issued_by(world.serving.cert_pem, old_ca.cert_pem)
    assert verifies(world.serving, published, step1_at) and verifies(previous_serving, world.bundle, step1_at)
    assert result.waiting and result.next_step_at == step1_at + HOUR
    # 59 minutes later: still waiting, nothing changes.
    before = (world.bundle, world.serving)
    assert not run(world, step1_at + 59 * 60 * timedelta(seconds=1)).changed
    assert (world.bundle, world.serving) == before
    # An hour after step 1: step 2 switches the serving cert; the bundle keeps both CAs.
    step2_at = step1_at + HOUR
    published, previous_serving = world.bundle, world.serving
    result = run(world, step2_at)
    assert rotation.SWITCHED_TO_NEW_CA in result.actions
    assert world.bundle == published
    assert pki.is_issued_by(world.serving.cert_pem, world.ca.cert_pem)
    assert verifies(world.serving, published, step2_at) and verifies(previous_serving, world.bundle, step2_at)
    assert result.next_step_at == step2_at + HOUR  # when the old CA may go
    # Step 3: once no pod can still serve the old-CA cert (one overlap later), the old CA is dropped.
    assert not run(world, step2_at + 30 * 60 * timedelta(seconds=1)).changed
    step3_at = step2_at + HOUR
    published, previous_serving = world.bundle, world.serving
    result = run(world, step3_at)
    assert result.actions == (rotation.DROPPED_UNUSED_CA,)
    assert cas(world.bundle) == [world.ca.certificate] and world.serving == previous_serving
    assert verifies(world.serving, published, step3_at) and verifies(world.serving, world.bundle, step3_at)
    assert not run(world, step3_at + DAY).changed


def test_after_step_1_a_due_serving_cert_waits_for_step_2_instead_of_churning() -> None:
    world = start(ca_days=100, days=100)  # serving expires with the CA: due in the same run as the CA
    old_ca = world.ca
    at = NOW + 95 * DAY
    published = world.bundle
    result = run(world, at)
    assert rotation.NEW_CA_ADDED in result.actions and rotation.RENEWED_FROM_OLD_CA in result.actions
    assert pki.is_issued_by(world.serving.cert_pem, old_ca.cert_pem)
    assert verifies(world.serving, published, at)
    # The old CA's key is gone after this run; the renewed cert, though "due", waits for step 2.
    result = run(world, at + 30 * 60 * timedelta(seconds=1))
    assert not result.changed and result.waiting
    assert rotation.SWITCHED_TO_NEW_CA in run(world, at + HOUR).actions


def test_switch_waits_until_every_published_ca_bundle_holds_the_new_ca() -> None:
    world = start(ca_days=100, days=40)
    stale = world.bundle
    run(world, NOW + 91 * DAY)
    late = NOW + 92 * DAY
    result = run(world, late, published=[world.bundle, stale])  # one webhook configuration not patched yet
    assert not result.changed and result.waiting and "published caBundle" in result.waiting
    assert rotation.SWITCHED_TO_NEW_CA in run(world, late, published=[world.bundle, world.bundle]).actions


def test_a_broken_serving_pair_during_the_wait_is_replaced_from_the_new_ca() -> None:
    world = start(ca_days=100, days=40)
    run(world, NOW + 91 * DAY)  # step 1: the old CA's key is not kept
    stray_key = pki.generate_ca("stray", now=NOW, valid_for=DAY).key_pem
    world.serving = KeyPair(world.serving.cert_pem, stray_key)  # a half-written Secret, say
    result = run(world, NOW + 91 * DAY + 60 * timedelta(seconds=1))
    assert rotation.SERVING_KEY_MISMATCH in result.actions
    assert pki.key_matches_certificate(world.serving.cert_pem, world.serving.key_pem)
    assert pki.is_issued_by(world.serving.cert_pem, world.ca.cert_pem)


def test_an_old_ca_that_expires_is_dropped_even_if_nothing_else_happens() -> None:
    world = start(ca_days=100, days=40)
    run(world, NOW + 91 * DAY)
    old = cas(world.bundle)[0]
    result = run(world, NOW + 101 * DAY)  # a long outage: no run between step 1 and the old CA's expiry
    assert rotation.DROPPED_EXPIRED_CA in result.actions and rotation.SWITCHED_TO_NEW_CA in result.actions
    assert old not in cas(world.bundle)


def test_two_cas_made_in_the_same_second_have_different_names() -> None:
    names = {rotation.ca_common_name("netwarden.netwarden-system-ca", NOW) for _ in range(50)}
    assert len(names) == 50
    assert all(name.startswith(f"netwarden.netwarden-system-ca@{int(NOW.timestamp())}.") for name in names)
    long = rotation.ca_common_name("x" * 100 + "@123", NOW)
    assert len(long) == rotation.MAX_COMMON_NAME and "@123" not in long
    pki.generate_ca(long, now=NOW, valid_for=DAY)  # fits X.509


@settings(max_examples=15, deadline=None)
@given(gaps=st.lists(st.integers(min_value=60, max_value=3 * 86400), min_size=80, max_size=200),
       overlap_minutes=st.sampled_from([0, 10, 60, 240]))
def test_at_every_run_old_and_new_certs_verify_against_old_and_new_bundles(gaps: list[int], overlap_minutes: int) -> None:
    """Runs at arbitrary intervals (1 minute to 3 days; window 10 days) across several CA lifetimes."""
    min_overlap = timedelta(minutes=overlap_minutes)
    world = start(ca_days=30, days=12)
    at = NOW
    first_published: dict[bytes, datetime] = {pem(world.ca.certificate): NOW}
    last_served: dict[bytes, datetime] = {}
    rollovers = 0
    for gap in gaps:
        at += timedelta(seconds=gap)
        published, previous_serving, previous_cas = world.bundle, world.serving, cas(world.bundle)
        result = run(world, at, ca_days=30, days=12, min_overlap=min_overlap)
        rollovers += rotation.NEW_CA_ADDED in result.actions
        # The instant after this run, whichever of old/new cert meets whichever of old/new bundle:
        for serving in (world.serving, previous_serving):
            for bundle in (world.bundle, published):
                assert verifies(serving, bundle, at), (result.actions, at)
        # A cert from a CA is served only after that CA was published for min_overlap.
        issuer = rotation.issuer_in(world.serving.cert_pem, cas(world.bundle))
        assert issuer is not None
        assert at - first_published[pem(issuer)] >= min_overlap or issuer in cas(published) and \
            rotation.issuer_in(previous_serving.cert_pem, previous_cas) == issuer
        # A CA leaves the bundle only once it expired or no cert from it was served for min_overlap.
        for ca in previous_cas:
            if ca not in cas(world.bundle):
                assert at >= ca.not_valid_after_utc or at - last_served[pem(ca)] >= min_overlap
        for ca in cas(world.bundle):
            first_published.setdefault(pem(ca), at)
        previous_issuer = rotation.issuer_in(previous_serving.cert_pem, previous_cas)
        if previous_issuer is not None and previous_issuer != issuer:
            last_served[pem(previous_issuer)] = at
    assert rollovers >= 1 or at - NOW < 25 * DAY
