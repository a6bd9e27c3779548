"""A tiny WSGI app for the serving tests: echoes the request body length and the worker pid."""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    payload = json.dumps({"path": environ.get("PATH_INFO", ""), "received": len(body), "pid": os.getpid()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return [payload]


def create_app() -> Callable[..., Iterable[bytes]]:
    """Factory form, to check `module:create_app()` URIs load."""
    return app
