"""The HTTP side of LocalKube: one request (path parsing, discovery, CRUD, watch streams) at a time.

`LocalKube` (localkube/server.py) owns the store, the API and the server's lifecycle; a request handler
reaches them through `self.server.kube`.
"""

from __future__ import annotations

import json
import queue
import socket
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import yaml

from localkube.api import Request
from localkube.audit import record_for
from localkube.errors import ApiError, bad_request
from localkube.faults import Fault
from localkube.resources import Catalog, ResourceType, discovery_entry, lookup, served_in, FIELD_SELECTORS
from localkube.selectors import fields_match, labels_match, parse_field_selector, parse_label_selector
from localkube.store import Change, Obj
from localkube.wire import UserInfo


if TYPE_CHECKING:
    from localkube.server import LocalKube

KUBE_VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0-localkube", "gitCommit": "localkube",
                "gitTreeState": "clean", "buildDate": "2024-08-13T00:00:00Z", "goVersion": "go1.22.5",
                "compiler": "gc", "platform": "linux/amd64"}


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    kube: "LocalKube"

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        if self.kube._ssl is not None:
            sock = self.kube._ssl.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


class _DropConnection(Exception):
    """Close the client connection without finishing the response (an injected watch drop)."""


def _parse_path(path: str, catalog: Catalog) -> tuple[ResourceType, str | None, str, str] | None:
    """(type, namespace or None, name, subresource) for a resource URL, None if not one."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        rt = catalog.lookup(group, version, rest[2])
        if rt is not None and rt.namespaced:
            namespace, rest = rest[1], rest[2:]
    if not rest:
        return None
    rt = catalog.lookup(group, version, rest[0])
    if rt is None:
        raise ApiError(404, "NotFound", "the server could not find the requested resource",
                       {"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]})
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if len(rest) > 3 or (sub and not (sub == "status" and rt.status_subresource)):
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return rt, namespace, name, sub


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    #: Go servers set TCP_NODELAY on every connection: keep-alive clients never wait on a delayed ACK.
    disable_nagle_algorithm = True
    server: HttpServer
    server_version = "localkube"

    def setup(self) -> None:
        super().setup()
        try:  # headers and body go out as separate writes; Nagle + delayed ACK would add ~40 ms each
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        with self.server.kube._conn_lock:
            self.server.kube._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        with self.server.kube._conn_lock:
            self.server.kube._connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from the base class
        pass

    # --- responses --------------------------------------------------------------------------
    def _send(self, code: int, body: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        for w in getattr(self, "_warnings", []):
            self.send_header("Warning", '299 - "' + w.replace('"', '\\"') + '"')
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    @staticmethod
    def _as_served(rt: ResourceType, obj: Any) -> Any:
        """A custom resource reads back in the version asked for (conversion strategy None: apiVersion only)."""
        if not rt.custom or not isinstance(obj, dict):
            return obj
        if obj.get("kind") == rt.kind:
            return {**obj, "apiVersion": rt.api_version}
        if isinstance(obj.get("items"), list):
            return {**obj, "items": [{**i, "apiVersion": rt.api_version} if isinstance(i, dict) else i
                                     for i in obj["items"]]}
        return obj

    def _json(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(code, json.dumps(obj).encode(), headers=headers)

    def _error(self, err: ApiError) -> None:
        self._json(err.code, err.status(), err.headers)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _decode(self, raw: bytes) -> Any:
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        try:
            if ctype in ("application/yaml", "application/apply-patch+yaml"):
                return yaml.safe_load(raw)
            return json.loads(raw or b"null")
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"error decoding body: {exc}")

    # --- dispatch ---------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        kube = self.server.kube
        self._warnings: list[str] = []
        raw_body = b""
        try:
            raw_body = self._read_body()
            split = urlsplit(self.path)
            path, query = split.path.rstrip("/") or "/", parse_qs(split.query, keep_blank_values=True)
            params = {k: v[-1] for k, v in query.items()}
            if path in ("/healthz", "/readyz", "/livez"):
                self._send(200, b"ok", "text/plain; charset=utf-8")
                return
            user = kube._impersonate(kube._authenticate(self.headers.get("Authorization")),
                                     self.headers.get("Impersonate-User"), self.headers.get_all("Impersonate-Group"))
            if path.startswith("/_localkube/"):
                self._control(method, path, raw_body)
                return
            kube.audit.append(record_for(user["username"], method, path, params))
            fault = kube.faults.take(method, self.path)
            is_watch = params.get("watch") in ("1", "true", "True")
            if fault is not None:
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.status and not (is_watch and fault.status == 410):
                    raise fault.error()
            if self._discovery(path):
                return
            target = _parse_path(path, kube.catalog)
            if target is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            rt, namespace, name, sub = target
            self._resource(method, rt, namespace, name, sub, params, raw_body, user, fault, is_watch)
        except _DropConnection:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        except ApiError as err:
            self._error(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - an unexpected bug must still answer with a Status
            self._error(ApiError(500, "InternalError", f"Internal error occurred: {type(exc).__name__}: {exc}"))

    def _control(self, method: str, path: str, raw: bytes) -> None:
        kube = self.server.kube
        if path == "/_localkube/faults":
            if method == "POST":
                try:
                    fault = kube.faults.add_from_json(json.loads(raw or b"{}"))
                except (ValueError, TypeError) as exc:
                    raise bad_request(str(exc))
                self._json(201, {"id": fault.id})
                return
            if method == "DELETE":
                kube.faults.clear()
                self._json(200, {"faults": []})
                return
            if method == "GET":
                self._json(200, {"faults": kube.faults.list()})
                return
        if path == "/_localkube/audit":
            if method == "GET":
                self._json(200, {"items": [record.to_dict() for record in list(kube.audit)]})
                return
            if method == "DELETE":
                kube.audit.clear()
                self._json(200, {"items": []})
                return
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def _discovery(self, path: str) -> bool:
        kube = self.server.kube
        if path == "/version":
            self._json(200, KUBE_VERSION)
        elif path == "/api":
            self._json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{kube.host}:{kube.port}"}]})
        elif path == "/apis":
            served = kube.catalog.group_versions()
            self._json(200, {"kind": "APIGroupList", "apiVersion": "v1",
                             "groups": [_group(g, served[g]) for g in served if g]})
        elif path.startswith("/openapi"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        else:
            parts = [p for p in path.split("/") if p]
            served = kube.catalog.group_versions()
            if parts == ["api", "v1"]:
                self._json(200, _resource_list(kube.catalog, "", "v1"))
            elif len(parts) == 2 and parts[0] == "apis" and parts[1] in served:
                self._json(200, {"kind": "APIGroup", "apiVersion": "v1", **_group(parts[1], served[parts[1]])})
            elif len(parts) == 3 and parts[0] == "apis" and parts[2] in served.get(parts[1], []):
                self._json(200, _resource_list(kube.catalog, parts[1], parts[2]))
            else:
                return False
        return True

    def _resource(self, method: str, rt: ResourceType, namespace: str | None, name: str, sub: str,
                  params: dict[str, str], raw: bytes, user: UserInfo, fault: Fault | None, is_watch: bool) -> None:
        kube = self.server.kube
        api = kube.api
        dry_run = params.get("dryRun")
        if dry_run not in (None, "", "All"):
            raise bad_request(f'unsupported dry run value: "{dry_run}", supported values: "All"')  # noqa: E501
        req = Request(user=user, dry_run=dry_run == "All", field_manager=params.get("fieldManager", ""),
                      force=params.get("force") in ("true", "1"), warnings=self._warnings)
        ns = namespace or ""
        if rt.namespaced and namespace is None and method != "GET":
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if method == "GET" and is_watch:
            self._watch(rt, namespace, name, params, fault)
        elif method == "GET" and not name:
            self._json(200, self._as_served(rt, api.list(rt, namespace if rt.namespaced else None, params.get("labelSelector"),
                                     params.get("fieldSelector"), _int(params.get("limit")),
                                     params.get("continue") or None)))
        elif method == "GET":
            self._json(200, self._as_served(rt, api.get(rt, ns, name)))
        elif method == "POST" and not name:
            obj = api.create(rt, ns, self._decode(raw), req)
            self._json(201, self._as_served(rt, obj))
        elif method == "PUT" and name:
            self._json(200, self._as_served(rt, api.update(rt, ns, name, self._decode(raw), req, sub)))
        elif method == "PATCH" and name:
            existed = kube.store.get(rt, ns, name) is not None
            obj = api.patch(rt, ns, name, self.headers.get("Content-Type") or "", raw, req, sub)
            self._json(200 if existed else 201, self._as_served(rt, obj))
        elif method == "DELETE" and name:
            options = self._decode(raw) if raw else None
            if params.get("propagationPolicy"):
                options = {**(options or {}), "propagationPolicy": params["propagationPolicy"]}
            obj = api.delete(rt, ns, name, options, req)
            self._json(200, self._as_served(rt, obj))
        elif method == "DELETE":
            options = self._decode(raw) if raw else None
            self._json(200, self._as_served(rt, api.delete_collection(rt, namespace if rt.namespaced else None,
                                                  params.get("labelSelector"), params.get("fieldSelector"),
                                                  options, req)))
        else:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    # --- watch ------------------------------------------------------------------------------
    def _watch(self, rt: ResourceType, namespace: str | None, name: str, params: dict[str, str],
               fault: Fault | None) -> None:
        kube = self.server.kube
        reqs = parse_label_selector(params.get("labelSelector"))
        freqs = parse_field_selector(params.get("fieldSelector"), FIELD_SELECTORS.get(rt.kind, ()))
        rv_param = params.get("resourceVersion", "")
        timeout = _int(params.get("timeoutSeconds"))
        bookmarks = params.get("allowWatchBookmarks") in ("true", "1")
        deadline = time.monotonic() + timeout if timeout else None
        ns_filter = namespace if rt.namespaced else None

        def matches(obj: Obj | None) -> bool:
            if obj is None:
                return False
            meta = obj.get("metadata") or {}
            if ns_filter is not None and meta.get("namespace") != ns_filter:
                return False
            if name and meta.get("name") != name:
                return False
            return labels_match(reqs, meta.get("labels")) and fields_match(freqs, obj)

        def translate(change: Change) -> tuple[str, Obj] | None:
            now, before = matches(change.obj), matches(change.old)
            if change.type == "DELETED":
                return ("DELETED", change.obj) if before or now else None
            if now and before:
                return "MODIFIED", change.obj
            if now:
                return "ADDED", change.obj
            if before:
                return "DELETED", change.obj
            return None

        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        sent = 0

        def emit(kind: str, obj: Obj) -> None:
            nonlocal sent
            if fault is not None and fault.drop_watch_after is not None and sent >= fault.drop_watch_after:
                raise _DropConnection()
            line = json.dumps({"type": kind, "object": self._as_served(rt, obj)}).encode() + b"\n"
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()
            sent += 1

        def finish() -> None:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        if fault is not None and fault.status == 410:
            emit("ERROR", fault.error().status())  # type: ignore[arg-type]
            finish()
            return
        try:
            since = None if rv_param in ("", "0") else int(rv_param)
        except ValueError:
            emit("ERROR", bad_request(f'invalid resource version "{rv_param}"').status())  # type: ignore[arg-type]
            finish()
            return
        try:
            watcher, backlog, items = kube.store.watch(rt, since)
        except ApiError as err:
            emit("ERROR", err.status())  # type: ignore[arg-type]
            finish()
            return
        try:
            for obj in items:
                if matches(obj):
                    emit("ADDED", obj)
            for change in backlog:
                event = translate(change)
                if event:
                    emit(*event)
            last_bookmark = time.monotonic()
            while not kube._stopping.is_set():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if bookmarks and now - last_bookmark >= kube.bookmark_interval:
                    emit("BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version,
                                      "metadata": {"resourceVersion": str(kube.store.resource_version)}})
                    last_bookmark = now
                wait = 0.25
                if deadline is not None:
                    wait = min(wait, max(deadline - now, 0.0))
                try:
                    change = watcher.queue.get(timeout=wait)
                except queue.Empty:
                    continue
                if change is None:
                    break
                event = translate(change)
                if event:
                    emit(*event)
            finish()
        finally:
            kube.store.unwatch(watcher)
        self.close_connection = False


def _int(value: str | None) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)  # type: ignore[arg-type]
    except ValueError:
        raise bad_request(f"invalid integer value: {value}")


def _group(group: str, served: list[str]) -> Obj:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in served]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def _resource_list(catalog: Catalog, group: str, version: str) -> Obj:
    resources = [e for r in served_in(catalog.types(), group, version) for e in discovery_entry(r)]
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources}
