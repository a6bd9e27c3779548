"""`netwarden certs generate|check|rotate`: thin adapter from argparse to pki, rotation and store.

The `run_*` functions take the clock as an argument so tests drive them through time; the argparse
handlers pass the real UTC time.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TextIO

from cryptography.hazmat.primitives import serialization

from certs import pki, rotation, store
from certs.pki import CertInfo, KeyPair

DEFAULT_SERVING_DAYS = 365
DEFAULT_CA_DAYS = 3650
DEFAULT_RENEW_WITHIN_DAYS = 30

EXIT_OK = 0
EXIT_DUE = 1
EXIT_USAGE = 2


def run_generate(
    out: Path,
    *,
    service: str,
    namespace: str,
    now: datetime,
    extra_dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    ca_valid_for: timedelta = timedelta(days=DEFAULT_CA_DAYS),
    serving_valid_for: timedelta = timedelta(days=DEFAULT_SERVING_DAYS),
    force: bool = False,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """A fresh CA and a serving certificate for a Service; refuses to overwrite unless forced."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    out = Path(out)
    if (out / store.CERT_FILE).exists() and not force:
        print(f"{out / store.CERT_FILE} exists; use `certs rotate` (or --force to start over)", file=stderr)
        return EXIT_USAGE
    ca, serving = new_ca_and_serving(service=service, namespace=namespace, now=now, extra_dns=extra_dns, ips=ips,
                                     ca_valid_for=ca_valid_for, serving_valid_for=serving_valid_for)
    store.write_tls(out, ca_bundle_pem=ca.cert_pem, serving=serving, ca_key_pem=ca.key_pem)
    _print_summary(out, stdout, now)
    return EXIT_OK


def new_ca_and_serving(
    *,
    service: str,
    namespace: str,
    now: datetime,
    extra_dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    ca_valid_for: timedelta = timedelta(days=DEFAULT_CA_DAYS),
    serving_valid_for: timedelta = timedelta(days=DEFAULT_SERVING_DAYS),
) -> tuple[KeyPair, KeyPair]:
    """A fresh CA and a serving certificate for every name of a Service (+ extra SANs)."""
    ca = pki.generate_ca(rotation.ca_common_name(f"{service}.{namespace}-ca", now), now=now, valid_for=ca_valid_for)
    dns = pki.service_dns_names(service, namespace) + [name for name in extra_dns if name]
    common_name = f"{service}.{namespace}.svc"  # clients verify SANs; the CN only has to fit in 64
    serving = pki.issue_certificate(
        ca,
        common_name if len(common_name) <= rotation.MAX_COMMON_NAME else service[: rotation.MAX_COMMON_NAME],
        now=now,
        valid_for=serving_valid_for,
        dns_names=list(dict.fromkeys(dns)),
        ip_addresses=ips,
    )
    return ca, serving


def _remaining(info: CertInfo, now: datetime) -> str:
    left = info.not_after - now
    return f"expired {-left.days} days ago" if left.total_seconds() <= 0 else f"in {left.days} days"


def _print_cert(label: str, info: CertInfo, out: TextIO, now: datetime) -> None:
    sans = [f"DNS:{name}" for name in info.dns_names] + [f"IP:{ip}" for ip in info.ip_addresses]
    print(f"{label}: subject={info.subject} serial={info.serial:x}", file=out)
    if sans:
        print(f"  SANs: {', '.join(sans)}", file=out)
    print(f"  issuer: {info.issuer}", file=out)
    print(f"  expires: {info.not_after.isoformat()} ({_remaining(info, now)})", file=out)


def _print_summary(directory: Path, out: TextIO, now: datetime) -> None:
    _print_cert(store.CERT_FILE, pki.describe((directory / store.CERT_FILE).read_bytes()), out, now)
    for index, info in enumerate(pki.describe_bundle((directory / store.CA_CERT_FILE).read_bytes())):
        _print_cert(f"{store.CA_CERT_FILE}[{index}]", info, out, now)


def run_check(
    directory: Path, *, now: datetime, window: timedelta, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """0 when the serving cert and the newest CA are valid and outside the window, else 1."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    directory = Path(directory)
    try:
        bundle = (directory / store.CA_CERT_FILE).read_bytes()
        cert_pem = (directory / store.CERT_FILE).read_bytes()
        key_pem = (directory / store.KEY_FILE).read_bytes()
        _print_summary(directory, stdout, now)
        problems = rotation.serving_problems(bundle, KeyPair(cert_pem, key_pem), now=now, window=window)
        problems += rotation.bundle_problems(bundle, now=now, window=window)
        problems += rotation.rollover_problems(bundle, cert_pem)
    except (OSError, ValueError) as exc:
        print(f"status: INVALID: {exc}", file=stdout)
        return EXIT_DUE
    if problems:
        print(f"status: ACTION NEEDED: {'; '.join(problems)}", file=stdout)
        return EXIT_DUE
    print("status: OK", file=stdout)
    return EXIT_OK


def run_rotate(
    directory: Path,
    *,
    now: datetime,
    window: timedelta,
    force: bool = False,
    ca_valid_for: timedelta = timedelta(days=DEFAULT_CA_DAYS),
    serving_valid_for: timedelta = timedelta(days=DEFAULT_SERVING_DAYS),
    min_overlap: timedelta = rotation.DEFAULT_MIN_OVERLAP,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Renew what is due (one rollover step per run) and write it back; 0 on success, 1 when it cannot."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    directory = Path(directory)
    try:
        stored = store.read_tls(directory, require_matching_pair=False)
        if stored.ca_key_pem is None:
            print(f"{directory / store.CA_KEY_FILE} missing: cannot sign a new certificate", file=stderr)
            return EXIT_DUE
        ca = _current_ca(stored.ca_bundle_pem, stored.ca_key_pem)
        result = rotation.rotate(
            stored.ca_bundle_pem,
            ca,
            stored.serving,
            now=now,
            window=window,
            serving_valid_for=serving_valid_for,
            ca_valid_for=ca_valid_for,
            min_overlap=min_overlap,
            force=force,
        )
    except (OSError, ValueError) as exc:
        print(f"cannot rotate {directory}: {exc}", file=stderr)
        return EXIT_DUE
    if result.waiting:
        at = f" (run again after {result.next_step_at.isoformat()})" if result.next_step_at else ""
        print(f"waiting: {result.waiting}{at}", file=stdout)
    if not result.changed:
        print("nothing to rotate", file=stdout)
        return EXIT_OK
    store.write_tls(
        directory,
        ca_bundle_pem=result.ca_bundle_pem,
        serving=result.serving,
        ca_key_pem=result.ca.key_pem,
    )
    print(f"rotated: {'; '.join(result.actions)}", file=stdout)
    _print_summary(directory, stdout, now)
    return EXIT_OK


def _current_ca(bundle_pem: bytes, ca_key_pem: bytes) -> KeyPair:
    """The CA in the bundle whose key we hold: the one that signs."""
    for cert in pki.load_certificates(bundle_pem):
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        if pki.key_matches_certificate(cert_pem, ca_key_pem):
            return KeyPair(cert_pem, ca_key_pem)
    raise ValueError(rotation.CA_KEY_MISMATCH)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _generate(args: argparse.Namespace) -> int:
    return run_generate(
        Path(args.out),
        service=args.service,
        namespace=args.namespace,
        now=_now(),
        extra_dns=tuple(args.dns),
        ips=tuple(args.ip),
        ca_valid_for=timedelta(days=args.ca_days),
        serving_valid_for=timedelta(days=args.days),
        force=args.force,
    )


def _check(args: argparse.Namespace) -> int:
    return run_check(Path(args.dir), now=_now(), window=timedelta(days=args.renew_within))


def _rotate(args: argparse.Namespace) -> int:
    return run_rotate(
        Path(args.dir),
        now=_now(),
        window=timedelta(days=args.renew_within),
        force=args.force,
        ca_valid_for=timedelta(days=args.ca_days),
        serving_valid_for=timedelta(days=args.days),
        min_overlap=args.min_overlap,
    )


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `1h`, `1h30m`, `2d` (a bare number is seconds); for --min-overlap."""
    text = text.strip().lower()
    if text.isdigit():
        return timedelta(seconds=int(text))
    parts = re.findall(r"(\d+)([smhd])", text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 90s, 30m, 1h, 1h30m, 2d)")
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return timedelta(seconds=sum(int(number) * seconds[unit] for number, unit in parts))


def add_certs_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `certs generate|check|rotate` on the `netwarden` command."""
    certs = subparsers.add_parser("certs", help="make, check and rotate the webhook's TLS certificates")
    actions = certs.add_subparsers(dest="certs_command", metavar="ACTION", required=True)

    generate = actions.add_parser("generate", help="new CA + serving certificate for a Service")
    generate.add_argument("--service", required=True, help="Service name the API server calls")
    generate.add_argument("--namespace", required=True, help="namespace of that Service")
    generate.add_argument("--out", required=True, help="directory for ca.crt, ca.key, tls.crt, tls.key")
    generate.add_argument("--dns", action="append", default=[], metavar="NAME", help="extra DNS SAN (repeatable)")
    generate.add_argument("--ip", action="append", default=[], metavar="IP", help="IP SAN (repeatable)")
    generate.add_argument("--ca-days", type=int, default=DEFAULT_CA_DAYS, help="CA lifetime (default %(default)s)")
    generate.add_argument("--days", type=int, default=DEFAULT_SERVING_DAYS, help="serving cert lifetime (default %(default)s)")
    generate.add_argument("--force", action="store_true", help="overwrite an existing directory with a new CA")
    generate.set_defaults(func=_generate)

    check = actions.add_parser("check", help="print certificates; exit 1 when renewal is due or they are invalid")
    check.add_argument("dir", help="certificate directory")
    check.add_argument("--renew-within", type=int, default=DEFAULT_RENEW_WITHIN_DAYS, metavar="DAYS")
    check.set_defaults(func=_check)

    rotate = actions.add_parser("rotate", help="renew the serving cert (and roll the CA when it is due)")
    rotate.add_argument("dir", help="certificate directory")
    rotate.add_argument("--renew-within", type=int, default=DEFAULT_RENEW_WITHIN_DAYS, metavar="DAYS")
    rotate.add_argument("--force", action="store_true", help="renew the serving cert even if not due")
    rotate.add_argument("--ca-days", type=int, default=DEFAULT_CA_DAYS, help="lifetime of a new CA")
    rotate.add_argument("--days", type=int, default=DEFAULT_SERVING_DAYS, help="lifetime of the new serving cert")
    rotate.add_argument("--min-overlap", type=parse_duration, default=rotation.DEFAULT_MIN_OVERLAP, metavar="DURATION",
                        help="a new CA is in the bundle this long before the serving cert moves to it (default 1h)")
    rotate.set_defaults(func=_rotate)
