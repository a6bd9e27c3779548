"""The servers netwarden's webhook is measured against (bench/bench_webhook.py starts them).

    python bench/webhook_peers.py kopf --port P --cert C --key K --labels '{"k": "v", ...}'
    python bench/webhook_peers.py echo --port P --cert C --key K --body-file F
    python bench/webhook_peers.py admit --port P --cert C --key K --labels '{"k": "v", ...}'

* `kopf`: a kopf operator (kopf 1.45.2, a dev dependency) whose only handler is a mutating
  admission webhook on pod CREATE that puts the given labels on the pod, served over TLS by kopf's
  own `WebhookServer` (aiohttp) at POST /label. It is a whole operator, run standalone against the
  API server in KUBECONFIG, as a team would run it; the webhook configurations are not managed (the
  load generator calls the server directly), nothing else is watched.
* `echo`: the machine's limit for "an HTTP request over keep-alive TLS, answered": one asyncio
  process that reads each request's head and sized body and writes back a canned 200 with the
  contents of --body-file (netwarden's real answer to the same review), with no parsing beyond that.
* `admit`: the floor of "an admission webhook the API server calls" (bench/bench_pod_admission.py
  registers it as netwarden is registered): the echo's loop, answering each AdmissionReview at once
  with its uid, allowed, and on /mutate a JSON patch putting the given labels on the pod; nothing
  looked up, nothing written, nothing logged.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import re
import ssl
import sys
from typing import Any

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


def server_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


# --- kopf -------------------------------------------------------------------------------------------


def run_kopf(port: int, cert: str, key: str, labels: dict[str, str]) -> None:
    import kopf

    @kopf.on.startup()
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.admission.server = kopf.WebhookServer(addr="127.0.0.1", port=port, certfile=cert, pkeyfile=key)
        settings.admission.managed = None  # the bench calls the server itself; no configurations written
        settings.posting.enabled = False  # no Events per review (netwarden writes none per review either)
        settings.scanning.disabled = True  # no CRD/namespace scanning: only the pods' webhook

    @kopf.on.mutate("", "v1", "pods", operation="CREATE", id="label")  # type: ignore[arg-type]
    def label(patch: kopf.Patch, **_: Any) -> None:
        for name, value in labels.items():
            patch.metadata.labels[name] = value

    logging.basicConfig(level=logging.WARNING)
    kopf.run(standalone=True, clusterwide=True)


# --- the bare TLS echo --------------------------------------------------------------------------------


class _Echo(asyncio.Protocol):
    def __init__(self, answer: bytes | None = None, labels: dict[str, str] | None = None) -> None:
        self.answer = answer
        self.patch = base64.b64encode(json.dumps(
            [{"op": "add", "path": "/metadata/labels", "value": labels or {}}]).encode()).decode()
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            match = _CONTENT_LENGTH.search(self.buffer, 0, end + 2)
            total = end + 4 + (int(match.group(1)) if match else 0)
            if len(self.buffer) < total:
                return
            request = bytes(self.buffer[:total])
            del self.buffer[:total]
            assert self.transport is not None
            self.transport.write(self.answer if self.answer is not None else self.admit(request, end))

    def admit(self, request: bytes, end: int) -> bytes:
        """The AdmissionReview answer to one request (head and body)."""
        review = json.loads(request[end + 4:])
        response: dict[str, Any] = {"uid": review["request"]["uid"], "allowed": True}
        if request.startswith(b"POST /mutate"):
            response.update(patchType="JSONPatch", patch=self.patch)
        body = json.dumps({"apiVersion": review.get("apiVersion", "admission.k8s.io/v1"), "kind": "AdmissionReview",
                           "response": response}).encode()
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body


def run_echo(port: int, cert: str, key: str, body: bytes | None, labels: dict[str, str] | None = None) -> None:
    """The echo (a canned `body`), or with `body` None the floor admission webhook putting `labels` on pods."""
    answer = None if body is None else \
        (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(
            lambda: _Echo(answer, labels), "127.0.0.1", port, ssl=server_context(cert, key))
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("server", choices=["kopf", "echo", "admit"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--labels", default="{}", help="kopf, admit: the labels to put on the pod (JSON object)")
    parser.add_argument("--body-file", help="echo: the answer's body")
    args = parser.parse_args(argv)
    if args.server == "kopf":
        run_kopf(args.port, args.cert, args.key, json.loads(args.labels))
    elif args.server == "admit":
        run_echo(args.port, args.cert, args.key, None, json.loads(args.labels))
    else:
        with open(args.body_file, "rb") as handle:
            run_echo(args.port, args.cert, args.key, handle.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
