"""`netwarden certs generate|check|rotate`: thin adapter from argparse to pki, rotation and store.

The `run_*` functions take the clock as an argument so tests drive them through time; the argparse
handlers pass the real UTC time.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TextIO

from cryptography.hazmat.primitives import serialization

from netwarden.certs import pki, rotation, store
from netwarden.certs.pki import CertInfo, KeyPair
from netwarden.model.errors import ApiError

if TYPE_CHECKING:
    from netwarden.certs.inject import Targets
    from netwarden.platform.kube import KubeClient

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
    return ca, serving_for(ca, service=service, namespace=namespace, now=now, extra_dns=extra_dns, ips=ips,
                           valid_for=serving_valid_for)


def serving_for(
    ca: KeyPair,
    *,
    service: str,
    namespace: str,
    now: datetime,
    extra_dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    valid_for: timedelta = timedelta(days=DEFAULT_SERVING_DAYS),
) -> KeyPair:
    """A serving certificate from `ca` for every name of a Service (+ extra SANs)."""
    dns = pki.service_dns_names(service, namespace) + [name for name in extra_dns if name]
    common_name = f"{service}.{namespace}.svc"  # clients verify SANs; the CN only has to fit in 64
    return pki.issue_certificate(
        ca,
        common_name if len(common_name) <= rotation.MAX_COMMON_NAME else service[: rotation.MAX_COMMON_NAME],
        now=now,
        valid_for=valid_for,
        dns_names=list(dict.fromkeys(dns)),
        ip_addresses=ips,
    )


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


def _json_log(out: TextIO) -> Callable[..., None]:
    """One JSON object per line, like every netwarden component (sync and inject run as Jobs)."""

    def log(event: str, **fields: Any) -> None:
        print(json.dumps({"event": event, "component": "certs", **fields}, default=str), file=out, flush=True)

    return log


def run_inject(kube: "KubeClient", directory: Path, targets: "Targets", *, stdout: TextIO | None = None) -> int:
    """Publish a certificate directory: CA Secret, caBundle of the webhooks, TLS Secret (in that order)."""
    from netwarden.certs import inject

    log = _json_log(stdout or sys.stdout)
    try:
        stored = store.read_tls(Path(directory))
        inject.inject(kube, targets, stored, log)
    except (OSError, ValueError, inject.InjectError, ApiError) as exc:
        log("inject_failed", error=str(exc))
        return EXIT_DUE
    return EXIT_OK


def run_sync(
    kube: "KubeClient",
    targets: "Targets",
    *,
    now: datetime,
    window: timedelta,
    service: str | None = None,
    namespace: str | None = None,
    extra_dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    ca_valid_for: timedelta = timedelta(days=DEFAULT_CA_DAYS),
    serving_valid_for: timedelta = timedelta(days=DEFAULT_SERVING_DAYS),
    min_overlap: timedelta = rotation.DEFAULT_MIN_OVERLAP,
    force: bool = False,
    stdout: TextIO | None = None,
) -> int:
    """Secrets -> (generate or rotate one step) -> Secrets + caBundles; safe to run any number of times."""
    from netwarden.certs import inject
    from netwarden.certs.store import StoredTLS

    log = _json_log(stdout or sys.stdout)
    try:
        stored, ca_data = inject.load_from_secrets(kube, targets)
        if stored is None:
            if not (service and namespace):
                log("sync_failed", error=f"no serving certificate in {targets.secret}; "
                                         "pass --service and --namespace to generate one")
                return EXIT_USAGE
            ca_key = ca_data.get(store.CA_KEY_FILE)
            ca_bundle = ca_data.get(store.CA_CERT_FILE)
            if ca_key and ca_bundle:  # the CA survived, the pair did not: keep the CA the API server trusts
                ca = _current_ca(ca_bundle, ca_key)
                log("serving_issued_from_stored_ca", ca_secret=str(targets.ca_secret))
            else:
                ca = pki.generate_ca(rotation.ca_common_name(f"{service}.{namespace}-ca", now), now=now,
                                     valid_for=ca_valid_for)
                ca_bundle = ca.cert_pem
                log("generated", service=service, namespace=namespace)
            serving = serving_for(ca, service=service, namespace=namespace, now=now, extra_dns=extra_dns, ips=ips,
                                  valid_for=serving_valid_for)
            stored = StoredTLS(ca_bundle_pem=ca_bundle, serving=serving, ca_key_pem=ca.key_pem)
        else:
            if stored.ca_key_pem is None:
                log("sync_failed", error=f"no {store.CA_KEY_FILE} in {targets.ca_secret}: cannot sign; "
                                         "restore it, or delete both Secrets to start over with a new CA")
                return EXIT_DUE
            published = inject.read_published_bundles(kube, targets)
            result = rotation.rotate(
                stored.ca_bundle_pem,
                _current_ca(stored.ca_bundle_pem, stored.ca_key_pem),
                stored.serving,
                now=now,
                window=window,
                serving_valid_for=serving_valid_for,
                ca_valid_for=ca_valid_for,
                min_overlap=min_overlap,
                published_bundles=published or None,
                force=force,
            )
            log("rotation", actions=list(result.actions), waiting=result.waiting,
                next_step_at=result.next_step_at.isoformat() if result.next_step_at else None)
            stored = StoredTLS(ca_bundle_pem=result.ca_bundle_pem, serving=result.serving, ca_key_pem=result.ca.key_pem)
        inject.inject(kube, targets, stored, log)
    except (OSError, ValueError, inject.InjectError, ApiError) as exc:
        log("sync_failed", error=str(exc))
        return EXIT_DUE
    serving_info = pki.describe(stored.serving.cert_pem)
    log("synced", serving_serial=f"{serving_info.serial:x}", serving_expires=serving_info.not_after.isoformat(),
        ca_bundle=[info.common_name for info in pki.describe_bundle(stored.ca_bundle_pem)])
    return EXIT_OK


def _targets(args: argparse.Namespace) -> "Targets":
    from netwarden.certs.inject import ObjectRef, Targets, parse_labels

    return Targets(
        secret=ObjectRef.parse(args.secret),
        ca_secret=ObjectRef.parse(args.ca_secret) if args.ca_secret else None,
        mutating=tuple(args.mutating),
        validating=tuple(args.validating),
        labels=parse_labels(args.label),
    )


def _kube(args: argparse.Namespace) -> "KubeClient":
    from netwarden.platform.kube import KubeClient, load_api_client

    return KubeClient(load_api_client(args.kubeconfig))


def _inject(args: argparse.Namespace) -> int:
    return run_inject(_kube(args), Path(args.dir), _targets(args))


def _sync(args: argparse.Namespace) -> int:
    return run_sync(
        _kube(args),
        _targets(args),
        now=_now(),
        window=timedelta(days=args.renew_within),
        service=args.service,
        namespace=args.namespace,
        extra_dns=tuple(args.dns),
        ips=tuple(args.ip),
        ca_valid_for=timedelta(days=args.ca_days),
        serving_valid_for=timedelta(days=args.days),
        min_overlap=args.min_overlap,
        force=args.force,
    )


def _add_cluster_arguments(parser: argparse.ArgumentParser, *, ca_secret_required: bool) -> None:
    parser.add_argument("--kubeconfig", metavar="FILE", help="default: in-cluster, then KUBECONFIG / ~/.kube/config")
    parser.add_argument("--secret", required=True, metavar="NAMESPACE/NAME",
                        help="kubernetes.io/tls Secret the webhook mounts (tls.crt, tls.key, ca.crt; never ca.key)")
    parser.add_argument("--ca-secret", required=ca_secret_required, metavar="NAMESPACE/NAME",
                        help="Opaque Secret holding ca.crt and ca.key (the signing key stays out of --secret)")
    parser.add_argument("--mutating", action="append", default=[], metavar="NAME",
                        help="MutatingWebhookConfiguration whose webhooks get caBundle (repeatable)")
    parser.add_argument("--validating", action="append", default=[], metavar="NAME",
                        help="ValidatingWebhookConfiguration whose webhooks get caBundle (repeatable)")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                        help="label on the Secrets netwarden writes (repeatable)")


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

    inject = actions.add_parser("inject", help="write a certificate directory into Secrets and webhook caBundles")
    inject.add_argument("--dir", required=True, help="certificate directory (ca.crt, tls.crt, tls.key, ca.key)")
    _add_cluster_arguments(inject, ca_secret_required=False)
    inject.set_defaults(func=_inject)

    sync = actions.add_parser(
        "sync", help="load from the Secrets (or generate), rotate one step, write Secrets and caBundles",
        description="The one command the chart's hook Job and CronJob run. Idempotent; exit 0 when in sync.")
    _add_cluster_arguments(sync, ca_secret_required=True)
    sync.add_argument("--service", help="Service name the API server calls (needed to generate the first time)")
    sync.add_argument("--namespace", help="namespace of that Service (needed to generate the first time)")
    sync.add_argument("--dns", action="append", default=[], metavar="NAME", help="extra DNS SAN (repeatable)")
    sync.add_argument("--ip", action="append", default=[], metavar="IP", help="IP SAN (repeatable)")
    sync.add_argument("--renew-within", type=int, default=DEFAULT_RENEW_WITHIN_DAYS, metavar="DAYS")
    sync.add_argument("--days", type=int, default=DEFAULT_SERVING_DAYS, help="serving cert lifetime (default %(default)s)")
    sync.add_argument("--ca-days", type=int, default=DEFAULT_CA_DAYS, help="CA lifetime (default %(default)s)")
    sync.add_argument("--min-overlap", type=parse_duration, default=rotation.DEFAULT_MIN_OVERLAP, metavar="DURATION",
                      help="a new CA is in the caBundle this long before the serving cert moves to it (default 1h)")
    sync.add_argument("--force", action="store_true", help="renew the serving cert even if not due")
    sync.set_defaults(func=_sync)
