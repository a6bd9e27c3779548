"""Dynamic admission: call Mutating then Validating webhooks over HTTPS, as kube-apiserver does.

Matching (rules, scope, namespaceSelector, objectSelector), the AdmissionReview v1 request, JSONPatch
responses, failurePolicy, sideEffects vs dryRun, and upstream's error messages.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from localkube.errors import ApiError, bad_request, internal_error
from localkube.patching import json_patch
from localkube.resources import ResourceType
from localkube.selectors import label_selector_matches
from localkube.wire import AdmissionRequest, AdmissionReview, UserInfo

ServiceAddresses = dict[tuple[str, str, int], str]
Obj = dict[str, Any]


@dataclass
class Attributes:
    """What is being admitted (admission.Attributes upstream)."""

    rt: ResourceType
    subresource: str
    operation: str  # CREATE / UPDATE / DELETE
    namespace: str
    name: str
    obj: Obj | None
    old: Obj | None
    user: UserInfo
    dry_run: bool
    options: Obj | None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Hook:
    """One webhook out of a configuration, with the kind of configuration it came from."""

    mutating: bool
    spec: Obj


def rule_matches(rule: Obj, a: Attributes) -> bool:
    ops = rule.get("operations") or []
    if "*" not in ops and a.operation not in ops:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and a.rt.group not in groups:
        return False
    versions = rule.get("apiVersions") or []
    if "*" not in versions and a.rt.version not in versions:
        return False
    scope = rule.get("scope") or "*"
    if scope == "Cluster" and a.rt.namespaced:
        return False
    if scope == "Namespaced" and not a.rt.namespaced:
        return False
    for res in rule.get("resources") or []:
        r, _, sub = res.partition("/")
        if (r == "*" or r == a.rt.plural) and (sub == "*" or sub == a.subresource):
            return True
    return False


def _labels(obj: Obj | None) -> dict[str, str]:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


def hook_matches(hook: Obj, a: Attributes, namespace_labels: dict[str, str] | None) -> bool:
    if not any(rule_matches(r, a) for r in hook.get("rules") or []):
        return False
    ns_sel = hook.get("namespaceSelector")
    if a.rt.kind == "Namespace" and a.rt.group == "":
        if not (label_selector_matches(ns_sel, _labels(a.obj)) or
                (a.old is not None and label_selector_matches(ns_sel, _labels(a.old)))):
            return False
    elif a.rt.namespaced and not label_selector_matches(ns_sel, namespace_labels or {}):
        return False
    obj_sel = hook.get("objectSelector")
    if obj_sel:
        if not (label_selector_matches(obj_sel, _labels(a.obj)) or
                (a.old is not None and label_selector_matches(obj_sel, _labels(a.old)))):
            return False
    return True


class CallError(Exception):
    """The webhook could not be called or answered nonsense (ErrCallingWebhook upstream)."""


class Dispatcher:
    """Runs admission for one request against the webhook configurations currently stored."""

    def __init__(self, list_configs: Callable[[bool], list[Obj]], service_addresses: ServiceAddresses) -> None:
        self._list_configs = list_configs
        self._services = service_addresses
        # Like kube-apiserver's webhook client: TLS configuration built once per caBundle, and idle
        # keep-alive connections reused (a handshake and a CA-store load per call cost ~25 ms here).
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._idle: dict[tuple[str, int, str, str], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def _context(self, ca_bundle: str) -> ssl.SSLContext:
        with self._lock:
            ctx = self._contexts.get(ca_bundle)
        if ctx is None:
            ctx = ssl.create_default_context(cadata=base64.b64decode(ca_bundle).decode()) if ca_bundle else \
                ssl.create_default_context()
            with self._lock:
                self._contexts[ca_bundle] = ctx
        return ctx

    def _post(self, key: tuple[str, int, str, str], ctx: ssl.SSLContext, timeout: int, target: str,
              body: bytes) -> tuple[int, bytes]:
        """POST on an idle connection to the same endpoint if there is one (once more on a fresh one
        if the server had closed it), else on a new connection; keep it for the next call."""
        host, port, server_name, _ = key
        with self._lock:
            idle = self._idle.get(key) or []
            conn = idle.pop() if idle else None
        for attempt in range(2):
            reused = conn is not None
            if conn is None:
                raw = socket.create_connection((host, port), timeout=timeout)
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
                conn.sock = ctx.wrap_socket(raw, server_hostname=server_name)
            else:
                conn.sock.settimeout(timeout)  # type: ignore[union-attr]
            try:
                conn.request("POST", target, body=body, headers={
                    "Content-Type": "application/json", "Accept": "application/json, */*",
                    "User-Agent": "kube-apiserver-admission"})
                resp = conn.getresponse()
                data = resp.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine, ssl.SSLEOFError):
                conn.close()
                conn = None
                if reused and attempt == 0:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            if resp.will_close:
                conn.close()
            else:
                with self._lock:
                    self._idle.setdefault(key, []).append(conn)
            return resp.status, data
        raise ConnectionError("unreachable")

    def hooks(self, mutating: bool) -> list[Hook]:
        configs = sorted(self._list_configs(mutating), key=lambda c: c["metadata"]["name"])
        return [Hook(mutating, h) for c in configs for h in c.get("webhooks") or []]

    def run(self, a: Attributes, mutating: bool, namespace_labels: dict[str, str] | None) -> Obj | None:
        """Call every matching webhook of one kind in order; returns the (possibly patched) object."""
        for hook in self.hooks(mutating):
            spec = hook.spec
            if not hook_matches(spec, a, namespace_labels):
                continue
            name = spec.get("name", "")
            if a.dry_run and spec.get("sideEffects", "Unknown") not in ("None", "NoneOnDryRun"):
                raise bad_request(f'admission webhook "{name}" does not support dry run')
            try:
                response = self._call(spec, a)
            except CallError as exc:
                if spec.get("failurePolicy", "Fail") == "Ignore":
                    continue
                raise internal_error(f'failed calling webhook "{name}": {exc}')
            a.warnings.extend(str(w) for w in response.get("warnings") or [])
            if not response.get("allowed"):
                raise denied(name, response.get("status"))
            if mutating and response.get("patch") and a.obj is not None:
                if response.get("patchType", "JSONPatch") != "JSONPatch":
                    raise internal_error(f'failed calling webhook "{name}": unsupported patch type '
                                         f'"{response.get("patchType")}"')
                try:
                    ops = json.loads(base64.b64decode(response["patch"]))
                    a.obj = json_patch(a.obj, ops)
                except (ValueError, ApiError) as exc:
                    raise internal_error(f'failed calling webhook "{name}": {exc}')
        return a.obj

    def review(self, a: Attributes) -> AdmissionReview:
        gvk = {"group": a.rt.group, "version": a.rt.version, "kind": a.rt.kind}
        gvr = {"group": a.rt.group, "version": a.rt.version, "resource": a.rt.plural}
        request: AdmissionRequest = {
            "uid": str(uuid.uuid4()),
            "kind": gvk,  # type: ignore[typeddict-item]
            "resource": gvr,  # type: ignore[typeddict-item]
            "requestKind": gvk,  # type: ignore[typeddict-item]
            "requestResource": gvr,  # type: ignore[typeddict-item]
            "name": a.name,
            "namespace": a.namespace,
            "operation": a.operation,  # type: ignore[typeddict-item]
            "userInfo": a.user,
            "object": a.obj,
            "oldObject": a.old,
            "dryRun": a.dry_run,
            "options": a.options,
        }
        if a.subresource:
            request["subResource"] = a.subresource
            request["requestSubResource"] = a.subresource
        if not a.name:
            del request["name"]
        if not a.namespace:
            del request["namespace"]
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}

    def _target(self, client_config: Obj) -> tuple[str, int, str, str, str]:
        """(connect host, port, TLS server name, path, display URL)."""
        if client_config.get("url"):
            parts = urlsplit(client_config["url"])
            host, port = parts.hostname or "", parts.port or 443
            path = parts.path or "/"
            return host, port, host, path, client_config["url"]
        svc = client_config.get("service") or {}
        ns, name, port = svc.get("namespace", ""), svc.get("name", ""), int(svc.get("port") or 443)
        path = svc.get("path") or "/"
        address = self._services.get((ns, name, port))
        display = f"https://{name}.{ns}.svc:{port}{path}"
        if address is None:
            raise CallError(f'failed to call webhook: Post "{display}?timeout=10s": service "{name}" not found')
        host, _, p = address.rpartition(":")
        return host, int(p), f"{name}.{ns}.svc", path, display

    def _call(self, spec: Obj, a: Attributes) -> Obj:
        client_config = spec.get("clientConfig") or {}
        timeout = int(spec.get("timeoutSeconds") or 10)
        host, port, server_name, path, display = self._target(client_config)
        post = f'Post "{display}?timeout={timeout}s"'
        ca_bundle = client_config.get("caBundle") or ""
        try:
            ctx = self._context(ca_bundle)
        except (ValueError, ssl.SSLError) as exc:
            raise CallError(f"failed to call webhook: bad caBundle: {exc}")
        review = self.review(a)
        body = json.dumps(review).encode()
        try:
            status, data = self._post((host, port, server_name, ca_bundle), ctx, timeout,
                                      f"{path}?timeout={timeout}s", body)
        except socket.timeout:
            raise CallError(f"failed to call webhook: {post}: context deadline exceeded")
        except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
            raise CallError(f"failed to call webhook: {post}: {exc}")
        if status != 200:
            raise CallError(f'failed to call webhook: an error on the server ("{data[:200].decode(errors="replace")}")'
                            f" has prevented the request from succeeding")
        try:
            answer = json.loads(data)
        except ValueError as exc:
            raise CallError(f"received invalid webhook response: {exc}")
        response = answer.get("response") if isinstance(answer, dict) else None
        if not isinstance(response, dict):
            raise CallError("webhook response was absent")
        if response.get("uid") != review["request"]["uid"]:
            raise CallError(f'expected response.uid="{review["request"]["uid"]}", got "{response.get("uid")}"')
        return response


def denied(name: str, status: Obj | None) -> ApiError:
    """webhookerrors.ToStatusErr: the webhook's own status, message prefixed with who denied it."""
    status = dict(status or {})
    code = int(status.get("code") or 0)
    if code < 400:
        code = 400
    prefix = f'admission webhook "{name}" denied the request'
    if status.get("message"):
        message = f"{prefix}: {status['message']}"
    elif status.get("reason"):
        message = f"{prefix}: {status['reason']}"
    else:
        message = f"{prefix} without explanation"
    return ApiError(code, str(status.get("reason") or ""), message, status.get("details"))
