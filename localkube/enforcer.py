"""Run the pinned NetworkPolicy enforcer (kube-network-policies) on a `PodNetwork`'s node.

The enforcer only knows in-cluster configuration (`KUBERNETES_SERVICE_HOST`/`_PORT` and the
service-account files under /var/run/secrets/kubernetes.io/serviceaccount). It runs inside the node
namespace (so its NFQUEUE sees the pods' packets), reaches the API server through the namespace's
relay on 127.0.0.1 (the serving certificate names 127.0.0.1), and gets its service-account files from
a private mount namespace in which a directory of ours is bound over /run: the machine's /run is
never written. Its identity is a real ServiceAccount with the ClusterRole upstream ships
(list/watch pods, namespaces, nodes, NetworkPolicies, AdminNetworkPolicies) and a TokenRequest token.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from localkube.enforcer_build import EnforcerBinary, find_enforcer
from localkube.podnet import QUEUE_ID, PodNetwork

SERVICE_ACCOUNT = "kube-network-policies"
SYSTEM_NAMESPACE = "kube-system"
#: upstream install-anp.yaml's ClusterRole, verbatim in substance.
CLUSTER_ROLE_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["pods", "namespaces", "nodes"], "verbs": ["list", "watch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["list", "watch"]},
    {"apiGroups": ["policy.networking.k8s.io"],
     "resources": ["adminnetworkpolicies", "baselineadminnetworkpolicies"], "verbs": ["list", "watch"]},
]
#: The AdminNetworkPolicy v1alpha1 CRD (network-policy-api v0.1.7; provenance in tests/data/crds/README.md).
ANP_CRD = Path(__file__).resolve().parent.parent / "tests" / "data" / "crds" / \
    "adminnetworkpolicies-v0.1.7-standard.yaml"
STOP_GRACE_SECONDS = 3.0


class EnforcerStartError(RuntimeError):
    """The enforcer exited or never bound its queue; the message carries its log's tail."""


def _create(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except ApiException as exc:
        if exc.status != 409:
            raise


def anp_served(api: client.ApiClient) -> bool:
    """Whether the API server serves policy.networking.k8s.io/v1alpha1 adminnetworkpolicies."""
    try:
        resources = client.CustomObjectsApi(api).get_api_resources("policy.networking.k8s.io", "v1alpha1")
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return any(r.name == "adminnetworkpolicies" for r in resources.resources)


def install_anp_crd(api: client.ApiClient, timeout: float = 30.0) -> None:
    """Install the AdminNetworkPolicy v1alpha1 CRD (unless served) and wait until it is Established."""
    if anp_served(api):
        return
    document = next(d for d in yaml.safe_load_all(ANP_CRD.read_text()) if d and d.get("kind") ==
                    "CustomResourceDefinition")
    extensions = client.ApiextensionsV1Api(api)
    _create(extensions.create_custom_resource_definition, document)
    deadline = time.monotonic() + timeout
    while not anp_served(api):
        if time.monotonic() > deadline:
            raise EnforcerStartError("the AdminNetworkPolicy CRD was created but is not served")
        time.sleep(0.1)


@dataclass
class Enforcer:
    """kube-network-policies on `network`'s node, enforcing for pods bound to `node_name`."""

    network: PodNetwork
    api: client.ApiClient
    node_name: str
    admin_network_policy: bool = False
    binary: EnforcerBinary | None = None
    startup_timeout: float = 60.0
    log_path: Path | None = None
    _workdir: Path | None = field(default=None, init=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __enter__(self) -> Enforcer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Enforcer:
        binary = self.binary or find_enforcer()
        self._workdir = Path(tempfile.mkdtemp(prefix="netwarden-enforcer-"))
        try:
            self._start(binary)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, binary: EnforcerBinary) -> None:
        assert self._workdir is not None
        configuration = self.api.configuration
        url = urlparse(configuration.host)
        host, port = url.hostname or "127.0.0.1", url.port or 443
        if self.admin_network_policy:
            install_anp_crd(self.api)
        token = self._service_account_token()
        secrets_dir = self._workdir / "run" / "secrets" / "kubernetes.io" / "serviceaccount"
        secrets_dir.mkdir(parents=True)
        (secrets_dir / "token").write_text(token)
        (secrets_dir / "ca.crt").write_bytes(_ca_pem(configuration))
        (secrets_dir / "namespace").write_text(SYSTEM_NAMESPACE)
        relay_port = self.network.relay(host, port)
        self.log_path = self.log_path or self._workdir / "kube-network-policies.log"
        argv = [str(binary.path), f"--hostname-override={self.node_name}", f"--nfqueue-id={QUEUE_ID}",
                "--metrics-bind-address=127.0.0.1:0", "--disable-nri", "--v=1"]
        if self.admin_network_policy:
            argv.append("--admin-network-policy")
        # A private mount namespace inside the node's network namespace; /run there is our directory.
        command = self.network.exec_argv(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                                          'mount --bind "$0" /run && exec "$@"', str(self._workdir / "run"),
                                          *argv])
        env = {key: value for key, value in os.environ.items() if not key.upper().endswith("_PROXY")}
        env.update(KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT=str(relay_port))
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             env=env, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while not self.network.queue_bound(QUEUE_ID):
            if self._process.poll() is not None:
                raise EnforcerStartError(f"kube-network-policies exited with {self._process.returncode}:\n"
                                         f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise EnforcerStartError(f"kube-network-policies did not bind NFQUEUE {QUEUE_ID} within "
                                         f"{self.startup_timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def _service_account_token(self) -> str:
        core, rbac = client.CoreV1Api(self.api), client.RbacAuthorizationV1Api(self.api)
        _create(core.create_namespaced_service_account, SYSTEM_NAMESPACE,
                {"metadata": {"name": SERVICE_ACCOUNT}})
        _create(rbac.create_cluster_role, {"metadata": {"name": SERVICE_ACCOUNT}, "rules": CLUSTER_ROLE_RULES})
        _create(rbac.create_cluster_role_binding, {
            "metadata": {"name": SERVICE_ACCOUNT},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": SERVICE_ACCOUNT},
            "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": SYSTEM_NAMESPACE}]})
        request = core.create_namespaced_service_account_token(
            SERVICE_ACCOUNT, SYSTEM_NAMESPACE, {"spec": {"expirationSeconds": 86400}})
        return request.status.token

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])  # type: ignore[arg-type]
        except (OSError, TypeError):
            return "(no log)"

    def stop(self) -> None:
        """Kill the enforcer (its rules live in the node namespace, which PodNetwork.stop removes). Idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
            except ProcessLookupError:
                pass
        workdir, self._workdir = self._workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def _ca_pem(configuration: Any) -> bytes:
    if configuration.ssl_ca_cert:
        return Path(configuration.ssl_ca_cert).read_bytes()
    raise EnforcerStartError("the API client has no CA file; the enforcer needs the API server's CA")


__all__ = ["Enforcer", "EnforcerStartError", "anp_served", "install_anp_crd"]
