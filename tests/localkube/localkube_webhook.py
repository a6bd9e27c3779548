"""A tiny HTTPS admission webhook (http.server + a throwaway CA) for localkube's admission tests."""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest

from localkube.tls import make_serving_cert

Review = dict[str, Any]


@dataclass
class Webhook:
    """A tiny HTTPS admission webhook; `decide(review) -> response dict` is swapped per test."""

    port: int
    ca_bundle: str
    seen: list[Review] = field(default_factory=list)
    decide: Callable[[Review], dict[str, Any]] = lambda r: {"allowed": True}

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/admit"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    cert = make_serving_cert(("127.0.0.1", "hook.default.svc"))
    tmp = tempfile.TemporaryDirectory()
    with open(f"{tmp.name}/c.pem", "wb") as f:
        f.write(cert.cert_pem)
    with open(f"{tmp.name}/k.pem", "wb") as f:
        f.write(cert.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{tmp.name}/c.pem", f"{tmp.name}/k.pem")
    hook = Webhook(0, base64.b64encode(cert.ca_pem).decode())

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            hook.seen.append(review)
            response = {"uid": review["request"]["uid"], **hook.decide(review)}
            body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                               "response": response}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()
    tmp.cleanup()


def patch_b64(ops: list[dict[str, Any]]) -> str:
    return base64.b64encode(json.dumps(ops).encode()).decode()
