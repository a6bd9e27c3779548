"""Run netwarden the way a cluster runs it, on this machine: API server, webhook and reconciler as
separate processes, registered and wired exactly as in a cluster. Used by `netwarden demo` and the
end-to-end tests. Everything lives in one working directory; `stop()` ends every child process.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import requests
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from netwarden.certs import pki
from netwarden.model import names
from netwarden.platform.kube import load_api_client

NETWARDEN_NAMESPACE = "netwarden"
RECONCILER_USER = f"system:serviceaccount:{NETWARDEN_NAMESPACE}:netwarden-reconciler"
#: Who the admin kubeconfig authenticates as: the local API server's first token, the real control
#: plane's client certificate (localkube.kube_engine.make_pki).
LOCAL_ADMIN_USER = "system:admin"
KUBE_ADMIN_USER = "netwarden-admin"
#: Patience for a child to answer (kubeconfig written, /readyz 200): a bound, never a speed claim. On the
#: shared 2-core machine under load, importing flask/kubernetes alone can take tens of seconds.
START_TIMEOUT_SECONDS = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    #: The environment it was started with on top of ours (what `Stack.restart` starts it with again).
    env: dict[str, str] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def terminate(self) -> None:
        terminate_group(self.popen)

    def wait_or_kill(self, timeout: float) -> None:
        wait_or_kill_group(self.popen, timeout)

    def stop(self, timeout: float = 8.0) -> None:
        stop_group(self.popen, timeout)


def terminate_group(popen: subprocess.Popen[bytes]) -> None:
    """Ask a child started with start_new_session, and its whole process group, to stop (gunicorn's workers too)."""
    if popen.poll() is None:
        try:
            os.killpg(popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def wait_or_kill_group(popen: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        popen.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        popen.wait(5)


def stop_group(popen: subprocess.Popen[bytes], timeout: float = 8.0) -> None:
    """SIGTERM to the child's process group, SIGKILL once `timeout` seconds have passed."""
    terminate_group(popen)
    wait_or_kill_group(popen, timeout)


@dataclass
class Stack:
    workdir: Path
    kubeconfig: str
    webhook_url: str
    signals_url: str
    signal_token: str
    ca_file: str
    engine: str
    processes: list[ManagedProcess] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)
    #: The kubelet stand-in (localkube.kubelet.FakeKubelet): pod IPs, readiness, restarts.
    kubelet: Any = None
    #: With `real_packets`: the pods' network namespaces (localkube.podnet.PodNetwork) and the
    #: NetworkPolicy enforcer filtering their packets (localkube.enforcer.Enforcer).
    pod_network: Any = None
    enforcer: Any = None
    _session: requests.Session | None = None

    def api_client(self) -> client.ApiClient:
        return load_api_client(self.kubeconfig)

    def post_signal(self, path: str, body: Any, *, timeout: float = 10.0) -> dict[str, Any]:
        """POST to a reconciler signal endpoint, authenticated, over TLS."""
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        if self._session is None:
            self._session = requests.Session()  # keep-alive, as real senders (falcosidekick, Alertmanager) do
        response = self._session.post(
            f"{self.signals_url}{path}", data=data, timeout=timeout, verify=self.ca_file,
            headers={"Authorization": f"Bearer {self.signal_token}", "Content-Type": "application/json"},
        )
        if response.status_code >= 300:
            raise RuntimeError(f"POST {path} -> {response.status_code}: {response.text[:300]}")
        return response.json() if response.content else {}

    def check_alive(self) -> None:
        for proc in self.processes:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; last log lines:\n{proc.tail()}")

    def process(self, name: str) -> ManagedProcess:
        """The child called `name` ("localkube", "webhook", "reconciler", or one `add_reconciler` started)."""
        return next(p for p in self.processes if p.name == name)

    def add_reconciler(self, name: str, pod_name: str, port: int) -> ManagedProcess:
        """Another reconciler process of this install (same config, token, certificate) as a second replica
        or a restarted container would be, taking signals on `port`; returns once it is ready."""
        argv = [str(a) for a in self.process("reconciler").popen.args]  # type: ignore[union-attr]
        argv[argv.index("--port") + 1] = str(port)
        env = {"NETWARDEN_CONFIG": str(self.workdir / "netwarden.yaml"), "NETWARDEN_POD_NAME": pod_name,
               "NETWARDEN_LOG_LEVEL": "INFO", "NETWARDEN_POD_IP": "127.0.0.1"}
        proc = _spawn(name, argv, self.workdir, env)
        self.processes.append(proc)
        _wait(name, lambda: _https_ready(f"https://127.0.0.1:{port}/readyz", self.ca_file), START_TIMEOUT_SECONDS,
              proc)
        return proc

    def restart(self, name: str) -> ManagedProcess:
        """Stop one child (webhook, reconciler) and start it again with the same command and environment."""
        old = self.process(name)
        old.stop()
        new = _spawn(name, [str(a) for a in old.popen.args], self.workdir, old.env)  # type: ignore[union-attr]
        self.processes[self.processes.index(old)] = new
        return new

    def stop(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception:  # noqa: BLE001 - stopping must go on
                pass
        # All at once, so each shutdown overlaps the others' (under a second, where one by one took ~9 s).
        for proc in self.processes:
            proc.terminate()
        deadline = time.monotonic() + 8.0
        for proc in self.processes:
            proc.wait_or_kill(max(0.1, deadline - time.monotonic()))
        self.closers.clear()


def _spawn(name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None) -> ManagedProcess:
    log_path = workdir / f"{name}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=full_env,
                             start_new_session=True)
    log.close()
    return ManagedProcess(name, popen, log_path, dict(env or {}))


def _wait(what: str, probe: Callable[[], bool], timeout: float, proc: ManagedProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{what}: {proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            if probe():
                return
        except Exception as exc:  # noqa: BLE001 - not ready yet
            last_error = exc
        time.sleep(0.1)
    tail = f"\n{proc.tail()}" if proc is not None else ""
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s ({last_error}){tail}")


def _https_ready(url: str, ca_file: str) -> bool:
    return requests.get(url, timeout=2, verify=ca_file).status_code == 200


def make_tls(directory: Path, common_name: str) -> tuple[str, str, str]:
    """A CA and a serving certificate for 127.0.0.1/localhost; returns (ca, cert, key) paths."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    ca = pki.generate_ca(f"{common_name}-ca", now=now, valid_for=timedelta(days=2))
    leaf = pki.issue_certificate(ca, common_name, now=now, valid_for=timedelta(days=1),
                                 dns_names=["localhost", common_name], ip_addresses=["127.0.0.1"])
    paths = directory / "ca.crt", directory / "tls.crt", directory / "tls.key"
    paths[0].write_bytes(ca.cert_pem)
    paths[1].write_bytes(leaf.cert_pem)
    paths[2].write_bytes(leaf.key_pem)
    os.chmod(paths[2], 0o600)
    return str(paths[0]), str(paths[1]), str(paths[2])


def webhook_configurations(url: str, ca_pem: bytes, *, failure_policy: str = "Ignore", timeout_seconds: int = 5,
                           extra_namespace_expressions: tuple[dict[str, Any], ...] = (),
                           review_versions: tuple[str, ...] = ("v1",),
                           policy_writers: tuple[str, ...] | None = None) -> tuple[dict, dict]:
    """The Mutating and Validating configurations, as the Helm chart renders them in `all` namespace mode.

    The one builder outside the chart (demo, stack, tests): the mutating webhook sees every pod
    CREATE (no objectSelector: an opted-out pod's self-set netwarden.io/* labels are removed); the
    validating label guard sees pod CREATE and UPDATE and pods/status UPDATE (an UPDATE only when it
    touches a reserved label: names.GUARD_MATCH_CONDITION). With `policy_writers` (the users netwarden
    writes its policies as), the managed-policy guard too: netwarden's NetworkPolicies written by anyone
    else (names.writers_match_condition; the chart always has it).
    """
    ca_bundle = base64.b64encode(ca_pem).decode()
    namespace_selector = {"matchExpressions": [
        {"key": names.LABEL_NAMESPACE_NAME, "operator": "NotIn", "values": ["kube-system", NETWARDEN_NAMESPACE]},
        *extra_namespace_expressions]}

    def rule(operations: list[str], resource: str) -> dict[str, Any]:
        return {"operations": operations, "apiGroups": [""], "apiVersions": ["v1"], "resources": [resource],
                "scope": "Namespaced"}

    def hook(name: str, path: str, rules: list[dict[str, Any]], side_effects: str) -> dict:
        return {
            "name": name,
            "clientConfig": {"url": f"{url}{path}", "caBundle": ca_bundle},
            "rules": rules,
            "namespaceSelector": namespace_selector,
            "failurePolicy": failure_policy,
            "sideEffects": side_effects,
            "timeoutSeconds": timeout_seconds,
            "admissionReviewVersions": list(review_versions),
        }

    mutating = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": "netwarden"},
                "webhooks": [{**hook("pods.netwarden.io", "/mutate", [rule(["CREATE"], "pods")], "NoneOnDryRun"),
                              "reinvocationPolicy": "Never"}]}
    validating = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                  "metadata": {"name": "netwarden"},
                  "webhooks": [{**hook("labels.netwarden.io", "/validate",
                                       [rule(["CREATE", "UPDATE"], "pods"), rule(["UPDATE"], "pods/status")], "None"),
                                "matchConditions": [dict(names.GUARD_MATCH_CONDITION)]}]}
    if policy_writers is not None:
        validating["webhooks"].append({
            **hook("managed-networkpolicies.netwarden.io", "/validate", [
                {"operations": ["CREATE", "UPDATE"], "apiGroups": ["networking.k8s.io"], "apiVersions": ["v1"],
                 "resources": ["networkpolicies"], "scope": "Namespaced"}], "None"),
            "objectSelector": {"matchLabels": {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE}},
            "matchConditions": [names.writers_match_condition(policy_writers)]})
    return mutating, validating


def ensure_dns_service(api: client.ApiClient) -> None:
    """The cluster DNS Service the webhook reads its DNS selector from (kube-dns's real selector)."""
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns"}},
            "spec": {"selector": {"k8s-app": "kube-dns"}, "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}}
    try:
        client.CoreV1Api(api).create_namespaced_service("kube-system", body)
    except ApiException as exc:
        if exc.status != 409:
            raise


def ensure_namespace(api: client.ApiClient, name: str) -> None:
    _create_if_absent(lambda: client.CoreV1Api(api).create_namespace(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))


def start_api_server(workdir: Path, engine: str, kubeconfig: str, processes: list[ManagedProcess],
                     closers: list[Callable[[], None]], progress: Callable[[str], None] = print,
                     tokens: dict[str, str] | None = None) -> None:
    """The local API server (a process) or the real control plane; writes `kubeconfig` once it answers.

    `tokens` (local engine): bearer token -> user; the first is the admin kubeconfig's."""
    if engine == "kube":
        from localkube.kube_engine import KubeControlPlane

        plane = KubeControlPlane(log_dir=workdir)
        closers.append(plane.stop)
        plane.start()
        plane.write_kubeconfig(kubeconfig)
        progress(f"real control plane up: {plane.url}")
        return
    argv = [sys.executable, "-m", "localkube", "--kubeconfig", kubeconfig]
    if tokens:
        token_file = workdir / "tokens.csv"
        token_file.write_text("".join(f"{token},{user}\n" for token, user in tokens.items()))
        os.chmod(token_file, 0o600)
        argv += ["--token-auth-file", str(token_file)]
    proc = _spawn("localkube", argv, workdir)
    processes.append(proc)
    _wait("local API server", lambda: Path(kubeconfig).exists() and bool(
        client.VersionApi(load_api_client(kubeconfig)).get_code()), START_TIMEOUT_SECONDS, proc)
    progress(f"local API server up (kubeconfig {kubeconfig})")


def reconciler_kubeconfig(workdir: Path, engine: str, api: client.ApiClient, kubeconfig: str,
                          local_token: str) -> str:
    """The reconciler's own kubeconfig: its ServiceAccount's user, as in a chart install, so the webhook's
    label guard (only netwarden's own users may change netwarden.io/ labels) judges it as in a cluster.

    Local engine: `local_token`, which the API server maps to that user. Real control plane: a
    TokenRequest token of the ServiceAccount, bound to cluster-admin (the demo does not install the
    chart's RBAC; tests/chart checks least privilege)."""
    token = local_token
    if engine == "kube":
        core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
        name = RECONCILER_USER.rsplit(":", 1)[1]
        _create_if_absent(lambda: core.create_namespaced_service_account(NETWARDEN_NAMESPACE, {"metadata": {"name": name}}))
        _create_if_absent(lambda: rbac.create_cluster_role_binding({
            "metadata": {"name": f"{name}-demo"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NETWARDEN_NAMESPACE}]}))
        token = core.create_namespaced_service_account_token(
            name, NETWARDEN_NAMESPACE, {"spec": {"expirationSeconds": 86400}}).status.token
    document = yaml.safe_load(Path(kubeconfig).read_text())
    for entry in document.get("users") or []:
        entry["user"] = {"token": token}
    path = workdir / "reconciler.kubeconfig"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    os.chmod(path, 0o600)
    return str(path)


def _create_if_absent(create: Callable[[], Any]) -> None:
    try:
        create()
    except ApiException as exc:
        if exc.status != 409:
            raise


def start_webhook(workdir: Path, kubeconfig: str, api: client.ApiClient, tls: tuple[str, str, str],
                  env: dict[str, str], port: int | None = None,
                  policy_writers: tuple[str, ...] | None = None) -> tuple[ManagedProcess, str]:
    """`netwarden webhook` on gunicorn over TLS, registered with the API server as a cluster would have it
    (the managed-policy guard too, given who writes netwarden's policies: `webhook_configurations`)."""
    ca_file, cert, key = tls
    port = port or free_port()
    webhook = _spawn("webhook", [sys.executable, "-m", "netwarden.cli", "webhook", "--cert", cert, "--key", key,
                                 "--port", str(port), "--kubeconfig", kubeconfig, "--workers", "2", "--threads", "4"],
                     workdir, env)
    url = f"https://127.0.0.1:{port}"
    try:
        _wait("webhook", lambda: _https_ready(f"{url}/readyz", ca_file), START_TIMEOUT_SECONDS, webhook)
        mutating, validating = webhook_configurations(url, Path(ca_file).read_bytes(), policy_writers=policy_writers)
        admission = client.AdmissionregistrationV1Api(api)
        admission.create_mutating_webhook_configuration(mutating)
        admission.create_validating_webhook_configuration(validating)
    except BaseException:
        webhook.stop()
        raise
    return webhook, url


def start_stack(workdir: Path, *, engine: str = "local", reconciler_config: dict[str, Any] | None = None,
                mode: str = names.MODE_ENFORCE, progress: Callable[[str], None] = print,
                real_packets: bool = False, admin_network_policy: bool = True) -> Stack:
    """Start everything; on any failure, stop what was started and raise.

    `real_packets` (engine kube, root): pods get network namespaces and real listeners, and the pinned
    enforcer (kube-network-policies, AdminNetworkPolicy on unless `admin_network_policy=False`)
    filters their connections; see `real_packets_missing()` for what it needs.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    kubeconfig = str(workdir / "kubeconfig")
    processes: list[ManagedProcess] = []
    closers: list[Callable[[], None]] = []
    token = secrets.token_urlsafe(32)
    token_file = workdir / "signal-token"
    token_file.write_text(token)
    os.chmod(token_file, 0o600)
    stack = Stack(workdir, kubeconfig, "", "", token, "", engine, processes, closers)
    reconciler_token = secrets.token_urlsafe(32)
    try:
        admin_user = KUBE_ADMIN_USER if engine == "kube" else LOCAL_ADMIN_USER
        start_api_server(workdir, engine, kubeconfig, processes, closers, progress,
                         tokens={secrets.token_urlsafe(32): LOCAL_ADMIN_USER, reconciler_token: RECONCILER_USER})
        api = load_api_client(kubeconfig)
        ensure_namespace(api, NETWARDEN_NAMESPACE)
        own_kubeconfig = reconciler_kubeconfig(workdir, engine, api, kubeconfig, reconciler_token)
        ensure_dns_service(api)
        if real_packets and admin_network_policy:
            from localkube.enforcer import install_anp_crd

            install_anp_crd(api)  # before the reconciler: its quarantine backend comes from discovery at start

        ca_file, cert, key = make_tls(workdir / "tls", "netwarden")
        stack.ca_file = ca_file
        signals_port = free_port()
        config_file = workdir / "netwarden.yaml"
        config_file.write_text(yaml.safe_dump({
            "cluster": {"dns_service": "kube-system/kube-dns", "default_mode": mode},
            # The webhook writes baselines as the admin here, as the operator runs netwarden's CLI.
            "webhook": {"trusted_usernames": [RECONCILER_USER], "policy_writers": [admin_user]},
            "reconciler": {"token_file": str(token_file), "lease_namespace": NETWARDEN_NAMESPACE,
                           **(reconciler_config or {}).get("reconciler", {})},
            "core": (reconciler_config or {}).get("core", {}),
        }))
        env = {"NETWARDEN_CONFIG": str(config_file), "NETWARDEN_POD_NAME": "netwarden-demo-0",
               "NETWARDEN_LOG_LEVEL": "INFO"}
        webhook, stack.webhook_url = start_webhook(workdir, kubeconfig, api, (ca_file, cert, key), env,
                                                   policy_writers=(admin_user, RECONCILER_USER))
        processes.append(webhook)
        progress(f"webhook up on {stack.webhook_url} (gunicorn, TLS), registered as a MutatingWebhookConfiguration")

        reconciler = _spawn("reconciler", [sys.executable, "-m", "netwarden.cli", "reconciler", "--kubeconfig", own_kubeconfig,
                                           "--port", str(signals_port), "--cert", cert, "--key", key], workdir, env)
        processes.append(reconciler)
        stack.signals_url = f"https://127.0.0.1:{signals_port}"
        _wait("reconciler", lambda: _https_ready(f"{stack.signals_url}/readyz", ca_file), START_TIMEOUT_SECONDS,
              reconciler)
        progress(f"reconciler up, signal endpoints on {stack.signals_url} (bearer token, TLS)")

        from localkube.kubelet import FakeKubelet

        if real_packets:
            _start_pod_network(stack, admin_network_policy, progress)
        kubelet = FakeKubelet(load_api_client(kubeconfig), network=stack.pod_network)
        closers.append(kubelet.stop)
        if real_packets:
            from localkube.enforcer import Enforcer

            stack.enforcer = Enforcer(stack.pod_network, load_api_client(kubeconfig), kubelet.node_name,
                                      admin_network_policy=admin_network_policy,
                                      log_path=workdir / "kube-network-policies.log")
            closers.append(stack.enforcer.stop)
            stack.enforcer.start()
            progress("NetworkPolicy enforcer up (kube-network-policies"
                     f"{', AdminNetworkPolicy on' if admin_network_policy else ''}): pods' packets are filtered")
        if engine != "kube":
            from localkube.workloads import WorkloadController

            controllers = WorkloadController(load_api_client(kubeconfig)).start()
            closers.append(controllers.stop)
        stack.kubelet = kubelet
        return stack
    except BaseException:
        stack.stop()
        raise


def real_packets_missing(engine: str = "kube") -> list[str]:
    """What `start_stack(real_packets=True)` lacks here (empty when it can run)."""
    if engine != "kube":
        return ["the kube engine (the enforcer needs the real API server)"]
    from localkube.enforcer_build import EnforcerNotBuilt, find_enforcer
    from localkube.podnet import missing_prerequisites

    missing = missing_prerequisites()
    try:
        find_enforcer()
    except EnforcerNotBuilt:
        missing.append("the built enforcer (netwarden controlplane build)")
    return missing


def _start_pod_network(stack: Stack, admin_network_policy: bool, progress: Callable[[str], None]) -> None:
    from localkube.podnet import PodNetwork

    stack.pod_network = PodNetwork()
    stack.closers.append(stack.pod_network.stop)  # runs last of the three: after the kubelet and the enforcer
    stack.pod_network.start()
    progress(f"pod network {stack.pod_network.cidr} in network namespaces {stack.pod_network.id}-*")
