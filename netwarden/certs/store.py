"""Certificates on disk: atomic writes, private keys 0600, pair-consistent reads.

The file names match a Kubernetes TLS Secret (`ca.crt`, `tls.crt`, `tls.key`) so a mounted Secret
and a directory written here look the same to the server. `ca.key` holds the signing key of the
newest CA (needed by `certs rotate`); keep it out of the Secret the webhook mounts.

Rotation safety: every file is replaced with one `os.replace` (readers never see half a file), in
the order ca.crt -> tls.key -> tls.crt. Clients learn the new CA before the server presents a
certificate from it, and the certificate (what watchers key on) changes last. A reader can still
catch new key + old cert in between, so `read_pair` checks that the key matches and retries.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from netwarden.certs.pki import KeyPair, key_matches_certificate
from netwarden.model.errors import NetwardenError

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"

PUBLIC_MODE = 0o644
PRIVATE_MODE = 0o600


class MismatchedPairError(NetwardenError, ValueError):
    """The key on disk does not belong to the certificate on disk (even after retrying)."""


@dataclass(frozen=True)
class StoredTLS:
    """Everything a certificate directory holds; `ca_key_pem` is None when the CA key lives elsewhere."""

    ca_bundle_pem: bytes
    serving: KeyPair
    ca_key_pem: bytes | None


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` in one step; the temp file is in the same directory so rename stays atomic."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)  # before any byte is written: a key is never world-readable, even briefly
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_tls(directory: Path, *, ca_bundle_pem: bytes, serving: KeyPair, ca_key_pem: bytes | None = None) -> None:
    """Write a full certificate directory in the rotation-safe order (see module docstring)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / CA_CERT_FILE, ca_bundle_pem, PUBLIC_MODE)
    if ca_key_pem is not None:
        atomic_write(directory / CA_KEY_FILE, ca_key_pem, PRIVATE_MODE)
    atomic_write(directory / KEY_FILE, serving.key_pem, PRIVATE_MODE)
    atomic_write(directory / CERT_FILE, serving.cert_pem, PUBLIC_MODE)


def read_pair(
    cert_path: Path,
    key_path: Path,
    *,
    attempts: int = 5,
    delay: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
) -> KeyPair:
    """Load a cert+key pair that belong together, retrying while a writer is mid-rotation."""
    for attempt in range(attempts):
        cert_pem = Path(cert_path).read_bytes()
        key_pem = Path(key_path).read_bytes()
        if key_matches_certificate(cert_pem, key_pem):
            return KeyPair(cert_pem, key_pem)
        if attempt + 1 < attempts:
            sleep(delay)
    raise MismatchedPairError(f"{key_path} does not match {cert_path}")


def read_tls(directory: Path, *, require_matching_pair: bool = True) -> StoredTLS:
    """Read back a directory written by `write_tls`.

    `require_matching_pair=False` is for repair: `certs rotate` must be able to read a directory whose
    key and certificate disagree in order to replace them.
    """
    directory = Path(directory)
    ca_key_path = directory / CA_KEY_FILE
    if require_matching_pair:
        serving = read_pair(directory / CERT_FILE, directory / KEY_FILE)
    else:
        serving = KeyPair((directory / CERT_FILE).read_bytes(), (directory / KEY_FILE).read_bytes())
    return StoredTLS(
        ca_bundle_pem=(directory / CA_CERT_FILE).read_bytes(),
        serving=serving,
        ca_key_pem=ca_key_path.read_bytes() if ca_key_path.exists() else None,
    )
