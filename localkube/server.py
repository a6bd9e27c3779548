"""LocalKube: the HTTP(S) front of the local API server, as the `kubernetes` client and kubectl see it."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import tempfile
import threading
import time
import uuid
from typing import Any

import yaml

from localkube.admission import Dispatcher, ServiceAddresses
from localkube.api import ADMIN, Api, Request, rfc3339
from localkube.audit import AuditRecord
from localkube.errors import ApiError
from localkube.faults import Faults
from localkube.handler import HttpServer, RequestHandler
from localkube.resources import CRDS, Catalog, lookup
from localkube.store import Change, Obj, Store
from localkube.tls import ServingCert, make_serving_cert
from localkube.wire import UserInfo

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
NAMESPACES = lookup("", "v1", "namespaces")
MUTATING = lookup("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations")
VALIDATING = lookup("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations")


class LocalKube:
    """An in-process Kubernetes API server on 127.0.0.1.

    `with LocalKube() as kube:` starts it; `kube.write_kubeconfig(path)` makes it usable from the
    official client and kubectl; `kube.faults.add(...)` injects failures.
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1", https: bool = False,
                 tokens: dict[str, str] | None = None, service_addresses: ServiceAddresses | None = None,
                 history_size: int = 10_000, bookmark_interval: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.https = https
        self.tokens = dict(tokens or {})
        self.service_addresses: ServiceAddresses = dict(service_addresses or {})
        self.bookmark_interval = bookmark_interval
        self.store = Store(history_size)
        #: Built-in types plus those of stored CustomResourceDefinitions (discovery follows CRDs).
        self.catalog = Catalog()
        self.store.add_listener(self._on_store_change)
        self.faults = Faults()
        #: Every authenticated request, in RBAC terms (localkube/audit.py); also GET /_localkube/audit.
        self.audit: list[AuditRecord] = []
        self.dispatcher = Dispatcher(self._webhook_configs, self.service_addresses)
        self.api = Api(self.store, self.dispatcher, schema_of=self.catalog.schema)
        self.cert: ServingCert | None = make_serving_cert() if https else None
        self._ssl: ssl.SSLContext | None = None
        self._server: HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        from localkube.controllers import Controllers
        # the cluster CA every namespace's kube-root-ca.crt carries (a throwaway one on plain HTTP)
        self.root_ca_pem = self.cert.ca_pem if self.cert else make_serving_cert().ca_pem
        self.controllers = Controllers(self.store, self._stamp, root_ca_pem=self.root_ca_pem, catalog=self.catalog)
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> "LocalKube":
        if self.cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            d = tempfile.mkdtemp(prefix="localkube-tls-")
            cert_path, key_path = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
            with open(cert_path, "wb") as f:
                f.write(self.cert.cert_pem + self.cert.ca_pem)
            with open(key_path, "wb") as f:
                f.write(self.cert.key_pem)
            ctx.load_cert_chain(cert_path, key_path)
            os.unlink(key_path)
            self._ssl = ctx
        self._server = HttpServer((self.host, self.port), RequestHandler)
        self._server.kube = self
        self.port = self._server.server_address[1]
        for name in SYSTEM_NAMESPACES:
            if self.store.get(NAMESPACES, "", name) is None:  # type: ignore[arg-type]
                self.api.create(NAMESPACES, "", {"metadata": {"name": name}}, Request())  # type: ignore[arg-type]
        self.controllers.start()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"localkube-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self.store.close_all_watchers()
        with self._conn_lock:
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._server.server_close()
        self.controllers.stop()
        if self._thread:
            self._thread.join(timeout=5)
        self._server = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> "LocalKube":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- client conveniences ----------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{'https' if self.https else 'http'}://{self.host}:{self.port}"

    def kubeconfig_dict(self, token: str | None = None) -> Obj:
        cluster: Obj = {"server": self.url}
        if self.cert is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self.cert.ca_pem).decode()
        user: Obj = {}
        # kubectl prompts for a username on HTTPS without credentials, so always write a token
        # (without `tokens` configured any token, or none, is admin)
        user["token"] = token or (next(iter(self.tokens)) if self.tokens else "localkube-admin")
        return {"apiVersion": "v1", "kind": "Config", "preferences": {},
                "clusters": [{"name": "localkube", "cluster": cluster}],
                "users": [{"name": "localkube", "user": user}],
                "contexts": [{"name": "localkube", "context": {"cluster": "localkube", "user": "localkube",
                                                                "namespace": "default"}}],
                "current-context": "localkube"}

    def write_kubeconfig(self, path: str | os.PathLike[str] | None = None, token: str | None = None) -> str:
        """Write a kubeconfig for this server (a temp file when path is None); returns its path."""
        if path is None:
            if self._tmpdir is None:
                self._tmpdir = tempfile.TemporaryDirectory(prefix="localkube-")
            path = os.path.join(self._tmpdir.name, "kubeconfig")
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            yaml.safe_dump(self.kubeconfig_dict(token), f, sort_keys=False)
        return path

    def api_client(self, token: str | None = None) -> Any:
        """A `kubernetes.client.ApiClient` configured for this server."""
        from kubernetes import client, config

        cfg = client.Configuration()
        loader = config.kube_config.KubeConfigLoader(self.kubeconfig_dict(token))
        loader.load_and_set(cfg)
        return client.ApiClient(cfg)

    # --- internals --------------------------------------------------------------------------
    def _on_store_change(self, change: Change) -> None:
        if change.resource == CRDS.key:
            name = change.obj["metadata"]["name"]
            self.catalog.crd_changed(name, None if change.type == "DELETED" else change.obj)

    def _webhook_configs(self, mutating: bool) -> list[Obj]:
        rt = MUTATING if mutating else VALIDATING
        return self.store.list(rt)[0]  # type: ignore[arg-type]

    def _stamp(self, obj: Obj) -> None:
        obj["metadata"]["uid"] = str(uuid.uuid4())
        obj["metadata"]["creationTimestamp"] = rfc3339(time.time())

    def _authenticate(self, header: str | None) -> UserInfo:
        if not self.tokens:
            return dict(ADMIN)  # type: ignore[return-value]
        if header and header.lower().startswith("bearer "):
            name = self.tokens.get(header[7:].strip())
            if name is not None:
                groups = ["system:masters", "system:authenticated"] if name == "system:admin" else \
                    ["system:authenticated"]
                return {"username": name, "groups": groups}
        raise ApiError(401, "Unauthorized", "Unauthorized")

    @staticmethod
    def _impersonate(user: UserInfo, as_user: str | None, as_groups: list[str] | None) -> UserInfo:
        """`Impersonate-User` / `Impersonate-Group`, as the real API server honours them; only a
        system:masters user may impersonate here (no RBAC for the impersonate verb)."""
        if not as_user:
            if as_groups:
                raise ApiError(400, "BadRequest", "requested impersonation of groups without a user")
            return user
        if "system:masters" not in user.get("groups", []):
            raise ApiError(403, "Forbidden", f'users "{as_user}" is forbidden: User "{user["username"]}" '
                                             f'cannot impersonate resource "users" in API group ""')
        return {"username": as_user, "groups": [*(as_groups or []), "system:authenticated"]}
