"""A standby replica passes the signals it receives to the leader, so no evidence is lost.

With two or more replicas behind one Service, a signal POST reaches any of them, but only the
leader's engine acts (its decisions are written; a standby's are not, and a standby that scored a
signal itself would keep evidence the leader never sees). So a standby does not score: it forwards
the request, body and bearer token unchanged, to the address the leader published on the Lease
(netwarden.io/leader-address) and answers with the leader's answer. When no leader is known or it
cannot be reached, the answer is 503 with Retry-After, so the sender retries (through the Service,
possibly reaching the new leader). A forwarded request carries X-Netwarden-Forwarded-By and is never
forwarded again (no loops while leadership moves).

Trust: replicas mount the same serving certificate Secret, so over TLS the standby sends the token
only to a peer that presents exactly the certificate it serves itself (pinned, re-read when the
file changes); a peer mid-rotation is refused (503) until both have the same file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import ssl
import threading
from dataclasses import dataclass
from typing import Callable, Mapping
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from netwarden.model import names
from netwarden.model.errors import NetwardenError

#: Seconds a sender is told to wait before retrying when no leader can take the signal.
RETRY_AFTER_SECONDS = 2
FORWARD_TIMEOUT_SECONDS = 10.0
#: Request headers passed on to the leader (the token, the body's type).
FORWARDED_REQUEST_HEADERS = ("Authorization", "Content-Type")


class ForwardError(NetwardenError, RuntimeError):
    """The leader could not take the signal (unknown, unreachable, or not the peer we trust)."""


@dataclass(frozen=True)
class Forwarded:
    """The leader's answer, passed back to the sender as is."""

    status: int
    body: bytes
    content_type: str


def advertised_address(port: int, *, tls: bool, host: str | None = None) -> str:
    """This replica's signal URL as a peer reaches it: the pod IP (downward API NETWARDEN_POD_IP),
    else what the pod's hostname resolves to (the kubelet maps it to the pod IP)."""
    import socket

    host = host or os.environ.get("NETWARDEN_POD_IP") or socket.gethostbyname(socket.gethostname())
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


class PinnedCertificate:
    """The DER of the first certificate in a PEM file, re-read when the file changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._digest = b""

    def digest(self) -> bytes:
        st = os.stat(self.path)
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if stamp != self._stamp:
                with open(self.path, "rb") as handle:
                    der = x509.load_pem_x509_certificate(handle.read()).public_bytes(Encoding.DER)
                self._digest, self._stamp = hashlib.sha256(der).digest(), stamp
            return self._digest


class SignalForwarder:
    """Decides whether this replica takes a signal itself, and forwards it to the leader if not."""

    def __init__(self, is_leader: Callable[[], bool], leader_address: Callable[[], str | None], identity: str, *,
                 pinned_cert: str | None = None, timeout: float = FORWARD_TIMEOUT_SECONDS) -> None:
        self.is_leader = is_leader
        self.leader_address = leader_address
        self.identity = identity
        self.pinned = PinnedCertificate(pinned_cert) if pinned_cert else None
        self.timeout = timeout

    def takes_locally(self) -> bool:
        return self.is_leader()

    def forward(self, path: str, body: bytes, headers: Mapping[str, str]) -> Forwarded:
        address = self.leader_address()
        if not address:
            raise ForwardError("no leader known")
        url = urlsplit(address)
        if url.hostname is None:
            raise ForwardError(f"leader address {address!r} has no host")
        connection: http.client.HTTPConnection
        if url.scheme == "https":
            if self.pinned is None:
                raise ForwardError("the leader serves TLS but this replica has no certificate to pin it to")
            context = ssl.create_default_context()
            context.check_hostname = False  # the pin below is stricter than any name check
            context.verify_mode = ssl.CERT_NONE
            connection = http.client.HTTPSConnection(url.hostname, url.port or 443, timeout=self.timeout,
                                                     context=context)
        else:
            connection = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=self.timeout)
        try:
            connection.connect()
            if self.pinned is not None:
                presented = connection.sock.getpeercert(binary_form=True) or b""  # type: ignore[union-attr]
                if hashlib.sha256(presented).digest() != self.pinned.digest():
                    raise ForwardError(f"{address} does not present this replica's serving certificate")
            sent = {k: v for k, v in headers.items() if k in FORWARDED_REQUEST_HEADERS}
            sent[names.HEADER_FORWARDED_BY] = self.identity
            connection.request("POST", path, body=body, headers=sent)
            response = connection.getresponse()
            return Forwarded(response.status, response.read(), response.getheader("Content-Type") or "application/json")
        except (OSError, http.client.HTTPException) as exc:
            raise ForwardError(f"{address}: {type(exc).__name__}: {exc}") from exc
        finally:
            connection.close()
