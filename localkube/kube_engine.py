"""The "kube" engine: a real upstream control plane (etcd, kube-apiserver, kube-controller-manager).

Same surface as the in-process engine (`.url`, `.kubeconfig`, `.api_client()`, `.stop()`, context
manager), but every request is answered by the genuine kube-apiserver: real validation, RBAC,
admission webhooks, defaulting, and real controllers (ReplicaSets make pods, the garbage collector
follows ownerReferences). There is no scheduler and no kubelet; pair it with
`localkube.kubelet.FakeKubelet` to make pods Running.

Everything listens on 127.0.0.1 on free ports, state lives in a temporary directory that is removed
on stop, and the child processes are killed on stop, on interpreter exit (atexit) and, on Linux,
when the parent dies (`setpriv --pdeathsig`). The binaries come from
`netwarden controlplane build` (see localkube.controlplane_build).
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Mapping, Sequence

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from localkube.controlplane_build import ControlPlaneBinaries, find_binaries
from localkube.tls import KeyPair, issue, make_ca

#: Controllers the engine runs: workloads, garbage collection, namespaces and service accounts.
#: No node, cloud, volume or certificate controllers: there are no nodes.
CONTROLLERS: tuple[str, ...] = (
    "garbagecollector",
    "replicaset",
    "deployment",
    "statefulset",
    "daemonset",
    "job",
    "cronjob",
    "replicationcontroller",
    "namespace",
    "serviceaccount-token",
    "serviceaccount",
    "root-ca-cert-publisher",
    "clusterrole-aggregation",
    "endpointslice",
    "ttl-after-finished",
)

ADMISSION_PLUGINS: tuple[str, ...] = (
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "DefaultStorageClass",
    "ResourceQuota",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionWebhook",
)

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/12"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
APISERVER_DNS_NAMES: tuple[str, ...] = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
APISERVER_IPS: tuple[str, ...] = ("127.0.0.1", "10.96.0.1")
CERT_LIFETIME = timedelta(days=2)
#: Audit policy for `audit_log=`: one JSON line per request at Metadata level (who, verb, object,
#: response code; no bodies). A watch logs when it starts and when it ends (one auditID).
AUDIT_POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}
#: SIGTERM grace before SIGKILL when stopping; state is thrown away, so there is nothing to flush.
STOP_GRACE_SECONDS = 3.0


class ControlPlaneStartError(RuntimeError):
    """A component exited or never became ready; the message carries the tail of its log."""


@dataclass(frozen=True)
class Pki:
    """Every certificate and key the three components and the admin client need."""

    ca: KeyPair
    apiserver: KeyPair
    admin: KeyPair
    controller_manager: KeyPair
    service_account_private_pem: bytes
    service_account_public_pem: bytes


def make_pki(now: datetime) -> Pki:
    """A throwaway PKI for one control plane (localkube.tls does the X.509; the SA key is RSA)."""
    ca = make_ca("netwarden-localkube-ca", now, CERT_LIFETIME)
    apiserver = issue(ca, "kube-apiserver", now, CERT_LIFETIME, hosts=APISERVER_DNS_NAMES + APISERVER_IPS)
    admin = issue(ca, "netwarden-admin", now, CERT_LIFETIME, server=False, client=True,
                  organizations=("system:masters",))
    controller_manager = issue(ca, "system:kube-controller-manager", now, CERT_LIFETIME, server=False, client=True)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Pki(
        ca=ca,
        apiserver=apiserver,
        admin=admin,
        controller_manager=controller_manager,
        service_account_private_pem=sa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        service_account_public_pem=sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


def kubeconfig_document(url: str, ca_pem: bytes, client: KeyPair, user: str) -> dict[str, Any]:
    """A self-contained kubeconfig (certificates embedded) for one client identity."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "localkube", "cluster": {"server": url, "certificate-authority-data": b64(ca_pem)}}],
        "users": [
            {"name": user, "user": {"client-certificate-data": b64(client.cert_pem), "client-key-data": b64(client.key_pem)}}
        ],
        "contexts": [{"name": "localkube", "context": {"cluster": "localkube", "user": user, "namespace": "default"}}],
        "current-context": "localkube",
    }


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together so they cannot collide with each other)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class _Paths:
    root: Path
    files: dict[str, Path] = field(default_factory=dict)

    def write(self, name: str, data: bytes, mode: int = 0o600) -> Path:
        path = self.root / "pki" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
        self.files[name] = path
        return path


class KubeControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback, for tests and the demo.

    >>> with KubeControlPlane() as cluster:
    ...     core = kubernetes.client.CoreV1Api(cluster.api_client())
    """

    def __init__(
        self,
        binaries: ControlPlaneBinaries | None = None,
        *,
        startup_timeout: float = 60.0,
        log_dir: Path | None = None,
        extra_apiserver_args: Sequence[str] = (),
        extra_controller_manager_args: Sequence[str] = (),
        audit_log: Path | None = None,
    ) -> None:
        self.binaries = binaries if binaries is not None else find_binaries()
        self.startup_timeout = startup_timeout
        self._log_dir = log_dir
        self._extra_apiserver_args = tuple(extra_apiserver_args)
        self._extra_controller_manager_args = tuple(extra_controller_manager_args)
        #: kube-apiserver's audit log (JSON lines, AUDIT_POLICY), when asked for; kept after stop().
        self.audit_log = audit_log
        self._children: list[_Child] = []
        self._workdir: Path | None = None
        self._lock = threading.Lock()
        self.url = ""
        self.kubeconfig = Path()
        #: Seconds from start() to a usable API (readyz ok, default ServiceAccount present).
        self.startup_seconds: float | None = None
        self.pki: Pki | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> KubeControlPlane:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> KubeControlPlane:
        started = time.monotonic()
        deadline = started + self.startup_timeout
        for attempt in (1, 2):
            self._workdir = Path(tempfile.mkdtemp(prefix="netwarden-kube-"))
            atexit.register(self.stop)
            try:
                self._start(deadline)
                break
            except ControlPlaneStartError as exc:
                self.stop()
                # The free ports were released before the children bound them; rarely, someone
                # else got one first. One retry with new ports, anything else is a real failure.
                if attempt == 2 or "address already in use" not in str(exc):
                    raise
            except BaseException:
                self.stop()
                raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Kill every child (SIGTERM, then SIGKILL) and remove the state directory. Idempotent."""
        with self._lock:
            children, self._children = self._children, []
            workdir, self._workdir = self._workdir, None
        for child in reversed(children):
            _terminate(child.process)
        for child in reversed(children):
            try:
                child.process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                _kill(child.process)
                child.process.wait()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        atexit.unregister(self.stop)

    # --- clients -----------------------------------------------------------------------------

    def kubeconfig_dict(self, token: str | None = None) -> dict[str, Any]:
        """The admin kubeconfig, or one authenticating with a bearer `token` (e.g. from TokenRequest)."""
        assert self.pki is not None, "not started"
        if token is None:
            return kubeconfig_document(self.url, self.pki.ca.cert_pem, self.pki.admin, "netwarden-admin")
        document = kubeconfig_document(self.url, self.pki.ca.cert_pem, self.pki.admin, "token")
        document["users"] = [{"name": "token", "user": {"token": token}}]
        return document

    def write_kubeconfig(self, path: str | os.PathLike[str] | None = None, token: str | None = None) -> str:
        """Write a kubeconfig (the admin one at `.kubeconfig` when path is None); returns its path."""
        if path is None and token is None:
            return str(self.kubeconfig)
        if path is None:
            assert self._workdir is not None, "not started"
            path = self._workdir / "pki" / f"token-{abs(hash(token))}.kubeconfig"
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(self.kubeconfig_dict(token)))
        target.chmod(0o600)
        return str(target)

    def api_client(self, token: str | None = None) -> Any:
        """A kubernetes.client.ApiClient: cluster admin (O=system:masters), or the bearer of `token`."""
        from kubernetes import client, config

        configuration = client.Configuration()
        config.kube_config.KubeConfigLoader(self.kubeconfig_dict(token)).load_and_set(configuration)
        return client.ApiClient(configuration)

    def install_crds(self, manifests: Sequence[Mapping[str, Any]], timeout: float = 60.0) -> None:
        """Create CustomResourceDefinitions and return once each is Established and its versions are served."""
        from kubernetes import client

        api = self.api_client()
        extensions = client.ApiextensionsV1Api(api)
        for manifest in manifests:
            extensions.create_custom_resource_definition(dict(manifest))
        deadline = time.monotonic() + timeout
        for manifest in manifests:
            name, spec = manifest["metadata"]["name"], manifest["spec"]
            while True:
                crd = api.sanitize_for_serialization(extensions.read_custom_resource_definition(name))
                established = any(c.get("type") == "Established" and c.get("status") == "True"
                                  for c in (crd.get("status") or {}).get("conditions") or [])
                served = established and all(
                    self.get(f"/apis/{spec['group']}/{v['name']}")[0] == 200 for v in spec["versions"] if v.get("served"))
                if served:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"CRD {name} not established and served after {timeout:.0f} s")
                time.sleep(0.1)

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET a raw API path as admin (used for /readyz; handy in tests)."""
        request = urllib.request.Request(self.url + path)
        try:
            with urllib.request.urlopen(request, context=self._ssl_context(), timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    @property
    def ca_cert_pem(self) -> bytes:
        assert self.pki is not None, "not started"
        return self.pki.ca.cert_pem

    # --- internals ---------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        paths = self._paths
        context = ssl.create_default_context(cafile=str(paths.files["ca.crt"]))
        context.load_cert_chain(str(paths.files["admin.crt"]), str(paths.files["admin.key"]))
        return context

    def _start(self, deadline: float) -> None:
        assert self._workdir is not None
        paths = _Paths(self._workdir)
        self._paths = paths
        log_dir = self._log_dir or (self._workdir / "logs")
        log_dir.mkdir(parents=True, exist_ok=True)
        self.pki = pki = make_pki(datetime.now(timezone.utc))
        paths.write("ca.crt", pki.ca.cert_pem, 0o644)
        paths.write("apiserver.crt", pki.apiserver.cert_pem, 0o644)
        paths.write("apiserver.key", pki.apiserver.key_pem)
        paths.write("admin.crt", pki.admin.cert_pem, 0o644)
        paths.write("admin.key", pki.admin.key_pem)
        paths.write("sa.key", pki.service_account_private_pem)
        paths.write("sa.pub", pki.service_account_public_pem, 0o644)

        audit_args: list[str] = []
        if self.audit_log is not None:
            policy = paths.write("audit-policy.yaml", yaml.safe_dump(AUDIT_POLICY).encode(), 0o644)
            Path(self.audit_log).parent.mkdir(parents=True, exist_ok=True)
            audit_args = [f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
                          "--audit-log-format=json", "--audit-log-mode=blocking", "--audit-log-maxbackup=0"]

        etcd_client, etcd_peer, apiserver_port, kcm_port = free_ports(4)
        self.url = f"https://127.0.0.1:{apiserver_port}"
        self.kubeconfig = paths.write(
            "admin.kubeconfig",
            yaml.safe_dump(kubeconfig_document(self.url, pki.ca.cert_pem, pki.admin, "netwarden-admin")).encode(),
        )
        kcm_kubeconfig = paths.write(
            "controller-manager.kubeconfig",
            yaml.safe_dump(
                kubeconfig_document(self.url, pki.ca.cert_pem, pki.controller_manager, "system:kube-controller-manager")
            ).encode(),
        )

        etcd_url = f"http://127.0.0.1:{etcd_client}"
        peer_url = f"http://127.0.0.1:{etcd_peer}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=localkube",
                f"--data-dir={self._workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=localkube={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",  # throwaway state: durability only costs time
                "--log-level=warn",
            ],
            log_dir,
        )
        self._wait("etcd", deadline, lambda: _http_ok(etcd_url + "/health"))

        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={apiserver_port}",
                f"--tls-cert-file={paths.files['apiserver.crt']}",
                f"--tls-private-key-file={paths.files['apiserver.key']}",
                f"--client-ca-file={paths.files['ca.crt']}",
                "--authorization-mode=Node,RBAC",
                f"--enable-admission-plugins={','.join(ADMISSION_PLUGINS)}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                f"--service-account-key-file={paths.files['sa.pub']}",
                f"--service-account-signing-key-file={paths.files['sa.key']}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                # A loopback address is not a valid Endpoints IP; do not try to publish one.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                *audit_args,
                *self._extra_apiserver_args,
            ],
            log_dir,
        )
        self._wait("kube-apiserver", deadline, lambda: self.get("/readyz", timeout=2.0)[0] == 200)

        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={kcm_kubeconfig}",
                f"--controllers={','.join(CONTROLLERS)}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={paths.files['sa.key']}",
                f"--root-ca-file={paths.files['ca.crt']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--cert-dir={self._workdir / 'controller-manager'}",
                "--leader-elect=false",
                "--profiling=false",
                *self._extra_controller_manager_args,
            ],
            log_dir,
        )
        # Pods are refused until the namespace's "default" ServiceAccount exists; that also proves
        # the controller manager is up and authorised.
        self._wait(
            "kube-controller-manager",
            deadline,
            lambda: self.get("/api/v1/namespaces/default/serviceaccounts/default", timeout=2.0)[0] == 200,
        )

    def _spawn(self, name: str, argv: list[str], log_dir: Path) -> None:
        log_path = log_dir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "KUBECONFIG")}
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        if threading.current_thread() is threading.main_thread() and shutil.which("setpriv"):
            # Die with this process even if it is SIGKILLed (atexit would not run). Tied to the
            # spawning thread, hence only from the main thread.
            argv = ["setpriv", "--pdeathsig", "KILL", "--", *argv]
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        with self._lock:
            self._children.append(_Child(name, process, log_path))

    def _wait(self, name: str, deadline: float, ready: Callable[[], bool]) -> None:
        while True:
            for child in self._children:
                if child.process.poll() is not None:
                    raise ControlPlaneStartError(
                        f"{child.name} exited with code {child.process.returncode} while starting; "
                        f"last log lines ({child.log_path}):\n{child.log_tail()}"
                    )
            try:
                if ready():
                    return
            except (OSError, ssl.SSLError):
                pass
            if time.monotonic() > deadline:
                child = next(c for c in self._children if c.name == name)
                raise ControlPlaneStartError(
                    f"{name} not ready after {self.startup_timeout:.0f} s; last log lines ({child.log_path}):\n"
                    f"{child.log_tail()}"
                )
            time.sleep(0.2)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            body = json.loads(response.read() or b"{}")
            return response.status == 200 and body.get("health") in ("true", True)
    except (urllib.error.URLError, ValueError, OSError):
        return False


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def _kill(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass

