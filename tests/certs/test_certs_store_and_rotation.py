"""Certificates on disk and their rotation, driven through the CLI functions with a passed-in clock."""

from __future__ import annotations

import io
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cryptography.hazmat.primitives import serialization

from netwarden.certs import cli, pki, store

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def generate(out: Path, *, ca_days: int = 3650, days: int = 365, **kwargs: object) -> int:
    return cli.run_generate(out, service="netwarden", namespace="netwarden-system", now=NOW,
                            ca_valid_for=ca_days * DAY, serving_valid_for=days * DAY,
                            stdout=io.StringIO(), stderr=io.StringIO(), **kwargs)  # type: ignore[arg-type]


def check(out: Path, *, now: datetime, window_days: int = 30) -> tuple[int, str]:
    buffer = io.StringIO()
    return cli.run_check(out, now=now, window=window_days * DAY, stdout=buffer, stderr=buffer), buffer.getvalue()


def rotate(out: Path, *, now: datetime, window_days: int = 30, force: bool = False, ca_days: int = 3650) -> int:
    return cli.run_rotate(out, now=now, window=window_days * DAY, force=force, ca_valid_for=ca_days * DAY,
                          serving_valid_for=365 * DAY, stdout=io.StringIO(), stderr=io.StringIO())


def test_generate_writes_keys_owner_only_and_certs_world_readable(tmp_path: Path) -> None:
    assert generate(tmp_path, ips=("10.0.0.1",)) == 0
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"ca.crt": 0o644, "ca.key": 0o600, "tls.crt": 0o644, "tls.key": 0o600}
    stored = store.read_tls(tmp_path)
    info = pki.describe(stored.serving.cert_pem)
    assert info.dns_names == tuple(pki.service_dns_names("netwarden", "netwarden-system"))
    assert info.ip_addresses == ("10.0.0.1",)
    assert pki.is_issued_by(stored.serving.cert_pem, stored.ca_bundle_pem)


def test_generate_refuses_to_overwrite_an_existing_directory(tmp_path: Path) -> None:
    assert generate(tmp_path) == 0
    before = (tmp_path / "ca.crt").read_bytes()
    assert generate(tmp_path) == cli.EXIT_USAGE
    assert (tmp_path / "ca.crt").read_bytes() == before
    assert generate(tmp_path, force=True) == 0
    assert (tmp_path / "ca.crt").read_bytes() != before


def test_atomic_write_leaves_no_temp_files_and_replaces_the_inode(tmp_path: Path) -> None:
    target = tmp_path / "tls.key"
    store.atomic_write(target, b"one", store.PRIVATE_MODE)
    inode = target.stat().st_ino
    store.atomic_write(target, b"two", store.PRIVATE_MODE)
    assert target.read_bytes() == b"two" and target.stat().st_ino != inode
    assert [p.name for p in tmp_path.iterdir()] == ["tls.key"]


def test_read_pair_retries_until_key_matches_then_gives_up(tmp_path: Path) -> None:
    ca = pki.generate_ca("ca", now=NOW, valid_for=DAY)
    old = pki.issue_certificate(ca, "old", now=NOW, valid_for=DAY)
    new = pki.issue_certificate(ca, "new", now=NOW, valid_for=DAY)
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(old.cert_pem)
    key.write_bytes(new.key_pem)  # writer is between tls.key and tls.crt

    def finish_rotation(_delay: float) -> None:
        cert.write_bytes(new.cert_pem)

    assert store.read_pair(cert, key, sleep=finish_rotation) == new
    key.write_bytes(old.key_pem)
    cert.write_bytes(new.cert_pem)
    with pytest.raises(store.MismatchedPairError):
        store.read_pair(cert, key, attempts=3, sleep=lambda _d: None)


def test_check_passes_outside_the_window_and_fails_inside_it(tmp_path: Path) -> None:
    generate(tmp_path, days=90)
    code, output = check(tmp_path, now=NOW + 10 * DAY)
    assert code == 0 and "status: OK" in output
    assert "DNS:netwarden.netwarden-system.svc" in output and "ca.crt[0]" in output
    code, output = check(tmp_path, now=NOW + 70 * DAY)
    assert code == 1 and "renewal window" in output


def test_check_fails_on_missing_files_mismatched_key_and_foreign_ca(tmp_path: Path) -> None:
    assert check(tmp_path / "nothing", now=NOW)[0] == 1
    generate(tmp_path)
    other = pki.generate_ca("other", now=NOW, valid_for=3650 * DAY)
    (tmp_path / "ca.crt").write_bytes(other.cert_pem)
    code, output = check(tmp_path, now=NOW)
    assert code == 1 and "not issued by any CA" in output
    generate(tmp_path, force=True)
    (tmp_path / "tls.key").write_bytes(other.key_pem)
    code, output = check(tmp_path, now=NOW)
    assert code == 1 and "does not match" in output


def test_rotate_renews_the_serving_cert_under_the_same_ca(tmp_path: Path) -> None:
    generate(tmp_path, days=90)
    before = store.read_tls(tmp_path)
    assert rotate(tmp_path, now=NOW + 10 * DAY) == 0
    assert store.read_tls(tmp_path) == before  # not due: untouched
    assert rotate(tmp_path, now=NOW + 70 * DAY) == 0
    after = store.read_tls(tmp_path)
    assert after.ca_bundle_pem == before.ca_bundle_pem and after.ca_key_pem == before.ca_key_pem
    assert after.serving.serial != before.serving.serial
    assert pki.is_issued_by(after.serving.cert_pem, before.ca_bundle_pem)
    old_info, new_info = pki.describe(before.serving.cert_pem), pki.describe(after.serving.cert_pem)
    assert (new_info.dns_names, new_info.common_name) == (old_info.dns_names, old_info.common_name)
    assert new_info.not_after == (NOW + 70 * DAY) + 365 * DAY
    assert check(tmp_path, now=NOW + 70 * DAY)[0] == 0


def test_forced_rotate_renews_a_serving_cert_that_is_not_due(tmp_path: Path) -> None:
    generate(tmp_path)
    before = store.read_tls(tmp_path)
    assert rotate(tmp_path, now=NOW, force=True) == 0
    after = store.read_tls(tmp_path)
    assert after.serving.serial != before.serving.serial and after.ca_bundle_pem == before.ca_bundle_pem


def test_ca_rollover_through_the_cli_adds_the_ca_then_switches_then_drops_the_old_one(tmp_path: Path) -> None:
    generate(tmp_path, ca_days=100, days=50)
    first = store.read_tls(tmp_path)
    old_ca = first.ca_bundle_pem
    step1 = NOW + 80 * DAY
    assert rotate(tmp_path, now=step1, ca_days=1000) == 0
    rolled = store.read_tls(tmp_path)
    cas = pki.load_certificates(rolled.ca_bundle_pem)
    assert len(cas) == 2 and cas[0] == pki.load_certificates(old_ca)[0]
    new_ca_pem = cas[1].public_bytes(serialization.Encoding.PEM)
    assert pki.key_matches_certificate(new_ca_pem, rolled.ca_key_pem or b"")
    # Step 1 keeps serving from the old CA (renewed: it was due), so holders of the old bundle still verify it.
    assert pki.is_issued_by(rolled.serving.cert_pem, old_ca)
    code, output = check(tmp_path, now=step1)
    assert code == 1 and "rollover in progress" in output
    # Step 2, an hour later: the serving cert comes from the new CA.
    assert rotate(tmp_path, now=step1 + timedelta(hours=1)) == 0
    switched = store.read_tls(tmp_path)
    switched.serving.certificate.verify_directly_issued_by(cas[1])
    assert switched.ca_bundle_pem == rolled.ca_bundle_pem
    # The old CA expiring during the overlap is not a problem to report.
    assert check(tmp_path, now=NOW + 99 * DAY)[0] == 0
    # After the old CA expired, the next rotation drops it.
    assert rotate(tmp_path, now=NOW + 101 * DAY) == 0
    final = store.read_tls(tmp_path)
    assert pki.load_certificates(final.ca_bundle_pem) == [cas[1]]
    assert final.serving == switched.serving


def test_rotate_cli_takes_min_overlap_as_a_duration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    assert cli.parse_duration("1h30m") == timedelta(minutes=90)
    assert cli.parse_duration("45") == timedelta(seconds=45) and cli.parse_duration("2d") == 2 * DAY
    with pytest.raises(argparse.ArgumentTypeError):
        cli.parse_duration("1 hour")
    parser = argparse.ArgumentParser()
    cli.add_certs_parser(parser.add_subparsers())
    args = parser.parse_args(["certs", "rotate", str(tmp_path), "--min-overlap", "10m"])
    assert args.min_overlap == timedelta(minutes=10)


def test_rotate_without_the_ca_key_fails_and_writes_nothing(tmp_path: Path) -> None:
    generate(tmp_path, days=10)
    (tmp_path / "ca.key").unlink()
    before = (tmp_path / "tls.crt").read_bytes()
    assert rotate(tmp_path, now=NOW + 5 * DAY) == 1
    assert (tmp_path / "tls.crt").read_bytes() == before


def test_argparse_registration_exposes_generate_check_rotate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    cli.add_certs_parser(parser.add_subparsers())
    args = parser.parse_args(["certs", "generate", "--service", "s", "--namespace", "n", "--out", str(tmp_path),
                              "--dns", "extra.example", "--ip", "127.0.0.1", "--days", "40"])
    assert args.func(args) == 0
    assert "DNS:extra.example" in capsys.readouterr().out
    args = parser.parse_args(["certs", "check", str(tmp_path), "--renew-within", "39"])
    assert args.func(args) == 0
    args = parser.parse_args(["certs", "check", str(tmp_path), "--renew-within", "41"])
    assert args.func(args) == 1
    args = parser.parse_args(["certs", "rotate", str(tmp_path), "--renew-within", "41"])
    assert args.func(args) == 0
    args = parser.parse_args(["certs", "check", str(tmp_path), "--renew-within", "41"])
    assert args.func(args) == 0


def test_rotate_repairs_a_directory_whose_key_does_not_match_its_certificate(tmp_path: Path) -> None:
    generate(tmp_path)
    stray = pki.generate_ca("stray", now=NOW, valid_for=DAY)
    store.atomic_write(tmp_path / "tls.key", stray.key_pem, store.PRIVATE_MODE)
    assert check(tmp_path, now=NOW)[0] == 1
    assert rotate(tmp_path, now=NOW) == 0
    repaired = store.read_tls(tmp_path)
    assert pki.key_matches_certificate(repaired.serving.cert_pem, repaired.serving.key_pem)
    assert check(tmp_path, now=NOW)[0] == 0
