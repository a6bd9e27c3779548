"""The serving certificate, reloaded from disk live: one home for the webhook's and the receiver's TLS.

Why live reload: the serving certificate is rotated on disk (`netwarden certs rotate`, or a
Kubernetes Secret update) and restarting a process would drop the API server's in-flight calls.
A `CertificateReloader` hands out the newest good SSLContext (its `sni_callback` also moves a
handshake onto the newest context), so new handshakes present the new pair while established
(keep-alive) connections keep the session they negotiated. A new pair is swapped in only after
OpenSSL accepted it (key matches cert); a bad pair keeps the old context and logs an error.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable

from cryptography import x509

from netwarden.platform.config import WebhookConfig
from netwarden.platform.logs import log_json
from netwarden.platform.startup import StartupError

#: The configured default (config `webhook.reload_interval`), for a reloader built without the configuration.
DEFAULT_RELOAD_INTERVAL = WebhookConfig().reload_interval

# Log event names (one JSON object per line).
EVENT_CERT_LOADED = "tls_certificate_loaded"
EVENT_CERT_RELOAD_FAILED = "tls_certificate_reload_failed"
EVENT_CERT_NOT_VALID = "tls_certificate_not_valid"


def validity_problem(not_before: datetime, not_after: datetime, *, now: datetime) -> str | None:
    """Why a certificate valid from `not_before` to `not_after` must not be served at `now`; None when it may."""
    if now >= not_after:
        return f"serving certificate expired at {not_after.isoformat()}"
    if now < not_before:
        return f"serving certificate not valid before {not_before.isoformat()}"
    return None


@dataclass(frozen=True)
class _FileState:
    """Identity of the files a context was built from: atomic replaces and Secret updates change it."""

    stats: tuple[tuple[int, int, int, int], ...]


def _file_state(paths: Iterable[str]) -> _FileState:
    stats = []
    for path in paths:
        st = os.stat(path)  # follows symlinks: a Secret volume swaps its ..data link
        stats.append((st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size))
    return _FileState(tuple(stats))


@dataclass(frozen=True)
class _Served:
    """What the loaded certificate says about itself: its serial and when it may be served."""

    serial: str
    not_before: datetime
    not_after: datetime


def _served_of(cert_path: str) -> _Served:
    with open(cert_path, "rb") as handle:
        cert = x509.load_pem_x509_certificates(handle.read())[0]
    return _Served(format(cert.serial_number, "x"), cert.not_valid_before_utc, cert.not_valid_after_utc)


class CertificateReloader:
    """Thread-safe holder of the newest valid server SSLContext for a cert/key pair on disk."""

    def __init__(
        self,
        cert: str,
        key: str,
        *,
        extra_ca: str | None = None,
        check_interval: float = DEFAULT_RELOAD_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        attempts: int = 5,
        retry_delay: float = 0.05,
    ) -> None:
        self._cert = cert
        self._key = key
        self._extra_ca = extra_ca
        self._interval = check_interval
        self._clock = clock
        self._attempts = attempts
        self._retry_delay = retry_delay
        self._lock = threading.Lock()
        self._failed_state: _FileState | None = None
        # Fail loudly at start: there is no previous context to fall back on.
        self._state, self._context = self._load()
        self._checked_at = clock()
        self._served = _served_of(cert)
        self.serial = self._served.serial
        self._reported: tuple[str, str] | None = None
        log_json(EVENT_CERT_LOADED, cert=cert, serial=self.serial, initial=True)

    def _paths(self) -> list[str]:
        return [self._cert, self._key] + ([self._extra_ca] if self._extra_ca else [])

    def _build(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
        context.load_cert_chain(self._cert, self._key)  # OpenSSL refuses a key that does not match
        if self._extra_ca:
            # Client certificates are verified when presented (mTLS from the API server) but not
            # required, so kubelet probes without one still work.
            context.load_verify_locations(cafile=self._extra_ca)
            context.verify_mode = ssl.CERT_OPTIONAL
        context.sni_callback = self._sni_callback
        return context

    def _load(self) -> tuple[_FileState, ssl.SSLContext]:
        """Build a context from files that did not change while being read; retry mid-rotation."""
        error: Exception | None = None
        for attempt in range(self._attempts):
            try:
                before = _file_state(self._paths())
                context = self._build()
                if _file_state(self._paths()) == before:
                    return before, context
            except (OSError, ssl.SSLError, ValueError) as exc:
                error = exc
            if attempt + 1 < self._attempts:
                time.sleep(self._retry_delay)
        raise error or RuntimeError("certificate files kept changing while loading")

    def maybe_reload(self, *, force: bool = False) -> bool:
        """Reload when the files changed; True when a new context was swapped in."""
        now = self._clock()
        if not force and now - self._checked_at < self._interval:
            return False
        with self._lock:
            if not force and now - self._checked_at < self._interval:
                return False
            self._checked_at = now
            try:
                current = _file_state(self._paths())
            except OSError as exc:
                log_json(EVENT_CERT_RELOAD_FAILED, level="error", cert=self._cert, error=str(exc))
                return False
            if current == self._state or current == self._failed_state:
                return False
            try:
                state, context = self._load()
                served = _served_of(self._cert)
            except (OSError, ssl.SSLError, ValueError, RuntimeError) as exc:
                self._failed_state = current  # log once per bad pair, not per handshake
                log_json(
                    EVENT_CERT_RELOAD_FAILED,
                    level="error",
                    cert=self._cert,
                    key=self._key,
                    error=str(exc),
                    kept_serial=self.serial,
                )
                return False
            previous = self.serial
            self._state, self._context, self._failed_state = state, context, None
            self._served, self.serial = served, served.serial
        log_json(EVENT_CERT_LOADED, cert=self._cert, serial=served.serial, previous_serial=previous, initial=False)
        return True

    def validity_problem(self, now: datetime | None = None) -> str | None:
        """Why the certificate being served is not valid now (expired, not yet valid), for /readyz; None if it is.

        Logged once per certificate and problem, not once per probe.
        """
        self.maybe_reload()
        served = self._served
        problem = validity_problem(served.not_before, served.not_after, now=now or datetime.now(timezone.utc))
        if problem is not None and self._reported != (served.serial, problem):
            self._reported = (served.serial, problem)
            log_json(EVENT_CERT_NOT_VALID, level="error", cert=self._cert, serial=served.serial, reason=problem)
        return problem

    def context(self) -> ssl.SSLContext:
        """The newest good context (checking the files at most once per interval)."""
        self.maybe_reload()
        return self._context

    def _sni_callback(self, sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        # Runs inside the handshake: moving the socket to the newest context makes it present the new pair.
        newest = self.context()
        if sock.context is not newest:
            sock.context = newest
        return None


_reported_problems: set[tuple[str, str, str]] = set()


def certificate_file_problem(cert_path: str, now: datetime | None = None) -> str | None:
    """Why the certificate in `cert_path` must not be served now (expired, not yet valid), or None.

    For /readyz of a process that reads the files itself (the webhook's workers); logged once per
    process, certificate and problem.
    """
    served = _served_of(cert_path)
    problem = validity_problem(served.not_before, served.not_after, now=now or datetime.now(timezone.utc))
    if problem is not None and (cert_path, served.serial, problem) not in _reported_problems:
        _reported_problems.add((cert_path, served.serial, problem))
        log_json(EVENT_CERT_NOT_VALID, level="error", cert=cert_path, serial=served.serial, reason=problem)
    return problem


def load_serving_certificate(cert: str, key: str, *, flags: str, extra_ca: str | None = None,
                             check_interval: float = DEFAULT_RELOAD_INTERVAL) -> CertificateReloader:
    """The reloader for a process's serving pair; unreadable or mismatched files are a StartupError
    naming the files and how to give good ones (`flags`, e.g. "--cert FILE --key FILE")."""
    try:
        return CertificateReloader(cert, key, extra_ca=extra_ca, check_interval=check_interval)
    except (OSError, ssl.SSLError, ValueError, RuntimeError) as exc:
        raise StartupError(f"cannot read the serving certificate {cert} / key {key} ({exc})",
                           f"give a readable PEM pair with {flags} (netwarden certs generate writes one)") from None
