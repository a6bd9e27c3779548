"""`helm install` of the rendered chart onto LocalKube, with netwarden's pods run as local processes.

What a cluster would do with the rendered manifests, done here so the chart and the code must agree:

- every ServiceAccount the chart creates gets a bearer token LocalKube authenticates as
  `system:serviceaccount:<ns>:<name>` (the pod's mounted token); processes reach the API through a
  kubeconfig holding that token (KUBECONFIG, the one variable added to the rendered env);
- hooks run in Helm's order: pre-install objects, the pre-install Jobs, the release's objects,
  the post-install Jobs; a Job or CronJob "runs" as its container's args, under its ServiceAccount;
- a pod runs EXACTLY its container's args and env: Secret and ConfigMap volumes are written to a
  directory per pod and every path under a mount is remapped there; fieldRef env gets the pod's
  namespace and name;
- the Services resolve (`service_addresses`) through targetPort to the containerPort the process
  listens on, so the rendered webhook configurations reach the webhook over TLS with their caBundle.

`start_release(..., engine="kube")` installs onto the real control plane instead
(localkube.kube_engine.KubeControlPlane, RBAC enforced, audit log on): each ServiceAccount's token
comes from the TokenRequest API, the workloads the chart runs (Deployment, Job, CronJob) are run as
the processes above rather than stored (the real controllers would start pods nobody runs), and
every Service gets an EndpointSlice at this host's address and the containerPort, which
kube-apiserver (--enable-aggregator-routing) resolves the webhook configurations' Service through.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import requests

from localkube import LocalKube
from localkube.audit import AuditRecord
from localkube.resources import RESOURCES, ResourceType
from netwarden.tools.stack import free_port, stop_group
from tests.chart.chartkit import NAMESPACE, Manifest, of_kind, render
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
NETWARDEN = [str(Path(sys.executable).with_name("netwarden"))]
ADMIN_TOKEN = "admin-" + secrets.token_hex(8)
PATIENCE = 90.0
HOOK_PHASES = ("pre-install", "post-install", "pre-upgrade", "post-upgrade")
#: Kinds a cluster runs rather than stores (their containers are started explicitly).
WORKLOAD_KINDS = ("Deployment", "Job", "CronJob")
_BY_KIND: dict[tuple[str, str], ResourceType] = {(r.api_version, r.kind): r for r in RESOURCES}


#: The test's own non-127/8 address (RFC 2544 benchmarking range), added to the loopback interface:
#: EndpointSlices refuse 127.0.0.0/8, and the machine's real interfaces are not ours to serve tests on.
#: An address on `lo` is only ever delivered locally.
TEST_INTERFACE, TEST_ADDRESS = "lo", "198.18.0.1"


def host_address() -> str:
    """A non-loopback address on this host for the real kube-apiserver to reach the webhook; "" if none can be made.

    Adds the address once (needs root and iproute2, as CI has); packets to it never leave the host.
    """
    try:
        shown = subprocess.run(["ip", "-4", "addr", "show", "dev", TEST_INTERFACE], capture_output=True, text=True)
        if f"{TEST_ADDRESS}/32" not in shown.stdout:
            added = subprocess.run(["ip", "addr", "add", f"{TEST_ADDRESS}/32", "dev", TEST_INTERFACE], capture_output=True)
            if added.returncode != 0:
                return ""
    except OSError:
        return ""
    with socket.socket() as probe:
        try:
            probe.bind((TEST_ADDRESS, 0))
        except OSError:
            return ""
    return TEST_ADDRESS


#: Wait for an eventual state of the release; a process still starting may refuse, answer half, or not be there.
eventually = functools.partial(wait_for, timeout=PATIENCE, ignoring=(AssertionError, OSError, ValueError, KeyError,
                                                                     http.client.HTTPException))


def username(doc: Manifest) -> str:
    return f"system:serviceaccount:{doc['metadata'].get('namespace', NAMESPACE)}:{doc['metadata']['name']}"


def hook_phases(doc: Manifest) -> tuple[str, ...]:
    value = ((doc["metadata"].get("annotations") or {}).get("helm.sh/hook") or "")
    return tuple(phase.strip() for phase in value.split(",") if phase.strip())


def hook_weight(doc: Manifest) -> int:
    return int((doc["metadata"].get("annotations") or {}).get("helm.sh/hook-weight") or 0)


def pod_template(doc: Manifest) -> Manifest:
    if doc["kind"] == "Pod":  # a pod the cluster made (tests/chart/pod_runtime.py)
        return doc["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def https_request(port: int, server_name: str, ca_pem: bytes, method: str, path: str, body: bytes | None = None,
                  headers: dict[str, str] | None = None, timeout: float = 20.0) -> tuple[int, bytes]:
    """HTTPS to 127.0.0.1:port, verifying the certificate for `server_name` (a Service's DNS name)."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.sock = context.wrap_socket(raw, server_hostname=server_name)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        stop_group(self.popen, timeout=15)


@dataclass
class Release:
    """A rendered chart installed onto a running LocalKube (or the real control plane, engine "kube");
    `stop()` ends every process it started."""

    kube: Any  # LocalKube, or localkube.kube_engine.KubeControlPlane when engine == "kube"
    docs: list[Manifest]
    root: Path
    #: bearer token -> username, for every ServiceAccount the chart creates (kube: filled by TokenRequest)
    tokens: dict[str, str]
    processes: list[Process] = field(default_factory=list)
    job_results: list[tuple[str, int, str]] = field(default_factory=list)
    engine: str = "local"
    #: engine "kube": the address EndpointSlices point the Services at (this host, not loopback)
    host: str = ""
    #: engine "kube": (namespace, Service, port) -> 127.0.0.1:<containerPort>, fixed at the first install
    #: (an upgrade's render picks new free ports, but the processes keep listening where they started)
    addresses: dict[tuple[str, str, int], str] = field(default_factory=dict)

    def admin_api(self) -> Any:
        """A kubernetes.client.ApiClient as the cluster admin."""
        return self.kube.api_client() if self.engine == "kube" else self.kube.api_client(ADMIN_TOKEN)

    def admin_kubeconfig(self, path: Path) -> str:
        if self.engine == "kube":
            return str(self.kube.write_kubeconfig(path))
        return str(self.kube.write_kubeconfig(path, token=ADMIN_TOKEN))

    def audit(self) -> list[AuditRecord]:
        """Every request the API server has recorded so far, in order."""
        if self.engine == "kube":
            from tests.chart.rbac_check import read_audit_file

            return [event.record for event in read_audit_file(Path(self.kube.audit_log))]
        return list(self.kube.audit)

    # -- API access as the cluster admin ---------------------------------------------------------
    def url(self, doc: Manifest, *, collection: bool = False) -> str:
        rt = _BY_KIND[(doc["apiVersion"], doc["kind"])]
        base = f"/api/{rt.version}" if not rt.group else f"/apis/{rt.group}/{rt.version}"
        namespace = doc["metadata"].get("namespace") or NAMESPACE
        scope = f"/namespaces/{namespace}" if rt.namespaced else ""
        name = "" if collection else f"/{doc['metadata']['name']}"
        return f"{self.kube.url}{base}{scope}/{rt.plural}{name}"

    def admin(self, method: str, url: str, body: Any = None) -> requests.Response:
        if self.engine == "kube":
            pki = self.root / "admin-pki"
            if not pki.exists():
                pki.mkdir(parents=True)
                for name, data in (("ca.crt", self.kube.pki.ca.cert_pem), ("admin.crt", self.kube.pki.admin.cert_pem),
                                   ("admin.key", self.kube.pki.admin.key_pem)):
                    (pki / name).write_bytes(data)
            return requests.request(method, url, json=body, timeout=30, verify=str(pki / "ca.crt"),
                                    cert=(str(pki / "admin.crt"), str(pki / "admin.key")))
        return requests.request(method, url, json=body, timeout=30, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})

    def apply(self, doc: Manifest) -> None:
        """Create the object, or replace it (an upgrade) keeping its resourceVersion."""
        body = json.loads(json.dumps(doc))
        if (doc["apiVersion"], doc["kind"]) not in _BY_KIND:
            raise AssertionError(f"LocalKube does not serve {doc['apiVersion']} {doc['kind']}")
        existing = self.admin("GET", self.url(doc))
        if existing.status_code == 404:
            response = self.admin("POST", self.url(doc, collection=True), body)
        else:
            body["metadata"]["resourceVersion"] = existing.json()["metadata"]["resourceVersion"]
            response = self.admin("PUT", self.url(doc), body)
        assert response.status_code in (200, 201), f"{doc['kind']} {doc['metadata']['name']}: {response.text[:500]}"
        if self.engine == "kube" and doc["kind"] == "Service":
            self.apply_endpoints(doc)

    def apply_endpoints(self, service: Manifest) -> None:
        """The EndpointSlice a cluster's endpointslice controller would write, at this host's address."""
        namespace = service["metadata"].get("namespace", NAMESPACE)
        name = service["metadata"]["name"]
        addresses = self.addresses or service_addresses(self.docs)
        ports = [{"name": port.get("name", ""), "protocol": port.get("protocol", "TCP"),
                  "port": int(addresses[(namespace, name, int(port["port"]))].rsplit(":", 1)[1])}
                 for port in service["spec"]["ports"]]
        body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{name}-local", "namespace": namespace,
                             "labels": {"kubernetes.io/service-name": name,
                                        "endpointslice.kubernetes.io/managed-by": "tests.chart.install"}},
                "addressType": "IPv4", "ports": ports,
                "endpoints": [{"addresses": [self.host], "conditions": {"ready": True}}]}
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        discovery = client.DiscoveryV1Api(self.admin_api())
        try:
            discovery.create_namespaced_endpoint_slice(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            discovery.replace_namespaced_endpoint_slice(body["metadata"]["name"], namespace, body)

    def get(self, api_version: str, kind: str, name: str, namespace: str = NAMESPACE) -> Manifest | None:
        response = self.admin("GET", self.url({"apiVersion": api_version, "kind": kind,
                                               "metadata": {"name": name, "namespace": namespace}}))
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return response.json()

    def secret_data(self, name: str) -> dict[str, bytes]:
        secret = self.get("v1", "Secret", name)
        assert secret is not None, f"Secret {name} missing"
        return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}

    # -- running containers ----------------------------------------------------------------------
    def kubeconfig_for(self, service_account: str, pod: Manifest | None = None) -> str:
        token = self.token_for(service_account, pod)
        name = pod["metadata"]["name"] if pod is not None else service_account
        return str(self.kube.write_kubeconfig(self.root / "kubeconfigs" / name, token=token))

    def token_for(self, service_account: str, pod: Manifest | None = None) -> str:
        """The ServiceAccount's bearer token (engine "kube": a TokenRequest, as the kubelet mounts).

        With `pod` (a Pod the cluster made) the token is bound to that pod, as a kubelet's is: it
        stays valid for the pod's life only, and a ServiceAccount deleted and re-created between
        hook phases gets new tokens rather than stale ones.
        """
        user = f"system:serviceaccount:{NAMESPACE}:{service_account}"
        if self.engine == "kube" and (pod is not None or user not in self.tokens.values()):
            from kubernetes import client

            spec: dict[str, Any] = {"expirationSeconds": 7200}
            if pod is not None:
                spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"],
                                          "uid": pod["metadata"]["uid"]}
            # What the kubelet mounts: a bound token from the TokenRequest API.
            request = client.CoreV1Api(self.admin_api()).create_namespaced_service_account_token(
                service_account, NAMESPACE, {"spec": spec})
            self.tokens[request.status.token] = user
            if pod is not None:
                return str(request.status.token)
        return next(token for token, name in self.tokens.items() if name == user)

    def pod_files(self, pod_name: str, spec: Manifest, container: Manifest, pod: Manifest | None = None) -> dict[str, str]:
        """Write the container's volumes under root/<pod>; mountPath -> local directory."""
        volumes = {volume["name"]: volume for volume in spec.get("volumes") or []}
        mounts: dict[str, str] = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            local = self.root / "pods" / pod_name / mount["mountPath"].lstrip("/")
            local.mkdir(parents=True, exist_ok=True)
            if "secret" in volume:
                files = self.secret_data(volume["secret"]["secretName"])
            elif "configMap" in volume:
                config_map = self.get("v1", "ConfigMap", volume["configMap"]["name"])
                assert config_map is not None, volume
                files = {key: value.encode() for key, value in (config_map.get("data") or {}).items()}
            elif "projected" in volume:  # the API server's kube-api-access-* volume: what a kubelet mounts
                files = self.projected_files(spec, volume["projected"], pod)
            else:
                assert "emptyDir" in volume, volume
                files = {}
            source = volume.get("secret") or volume.get("configMap") or {}
            items = source.get("items") or [{"key": key, "path": key} for key in files]
            for item in items:
                assert item["key"] in files, f"{pod_name}: volume {mount['name']} has no key {item['key']}"
                (local / item["path"]).write_bytes(files[item["key"]])
            mounts[mount["mountPath"]] = str(local)
        return mounts

    def projected_files(self, spec: Manifest, projected: Manifest, pod: Manifest | None) -> dict[str, bytes]:
        """A projected volume's files: the ServiceAccount token, ConfigMap keys, the namespace."""
        files: dict[str, bytes] = {}
        for source in projected.get("sources") or []:
            if "serviceAccountToken" in source:
                files[source["serviceAccountToken"]["path"]] = self.token_for(spec["serviceAccountName"], pod).encode()
            elif "configMap" in source:
                config_map = self.get("v1", "ConfigMap", source["configMap"]["name"]) or {}
                for item in source["configMap"].get("items") or []:
                    files[item["path"]] = ((config_map.get("data") or {}).get(item["key"]) or "").encode()
            elif "downwardAPI" in source:
                for item in source["downwardAPI"].get("items") or []:
                    files[item["path"]] = NAMESPACE.encode()
        return files

    def start(self, doc: Manifest, *, pod_name: str | None = None, port_map: dict[int, int] | None = None) -> Process:
        """Start the first container of a Deployment/Job/CronJob (or a Pod) exactly as rendered (paths remapped).

        `port_map`: containerPort -> host port, for pods that share this host's one network: every
        arg or env value naming a mapped containerPort is given the host port instead.
        """
        spec = pod_template(doc)
        container = spec["containers"][0]
        pod_name = pod_name or f"{doc['metadata']['name']}-{secrets.token_hex(3)}"
        pod = doc if doc["kind"] == "Pod" else None
        mounts = self.pod_files(pod_name, spec, container, pod)

        ports = {str(container_port): str(host_port) for container_port, host_port in (port_map or {}).items()}

        def remap(value: str) -> str:
            if value in ports:
                return ports[value]
            for mount_path, local in sorted(mounts.items(), key=lambda item: -len(item[0])):
                if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                    return local + value[len(mount_path.rstrip("/")):]
            return value

        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.root), "LANG": "C.UTF-8",
               "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
               "KUBECONFIG": self.kubeconfig_for(spec["serviceAccountName"], pod)}
        fields = {"metadata.namespace": doc["metadata"].get("namespace", NAMESPACE), "metadata.name": pod_name,
                  "status.podIP": "127.0.0.1"}  # every "pod" is a process on this host
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = remap(str(item["value"]))
            else:
                env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        assert "command" not in container, "the image's ENTRYPOINT is `netwarden`"
        argv = NETWARDEN + [remap(str(arg)) for arg in container.get("args") or []]
        log = self.root / "logs" / f"{pod_name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as handle:
            popen = subprocess.Popen(argv, cwd=self.root, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        process = Process(pod_name, popen, log)
        self.processes.append(process)
        return process

    def run_job(self, doc: Manifest, timeout: float = 120.0) -> int:
        """Run a Job's (or a CronJob's job template's) container to completion; returns its exit code."""
        process = self.start(doc)
        try:
            code = process.popen.wait(timeout)
        finally:
            process.stop()
        self.job_results.append((doc["metadata"]["name"], code, process.tail()))
        return code

    # -- hooks and the release ---------------------------------------------------------------------
    def run_hooks(self, docs: Iterable[Manifest], phase: str) -> None:
        """Apply a phase's hook objects by weight (Jobs run to completion, they must succeed)."""
        hooks = sorted((doc for doc in docs if phase in hook_phases(doc)), key=hook_weight)
        for doc in hooks:
            if self.stores(doc):
                self.apply(doc)
            if doc["kind"] == "Job":
                code = self.run_job(doc)
                assert code == 0, f"hook {doc['metadata']['name']} failed:\n{self.job_results[-1][2]}"

    def install(self, docs: list[Manifest], *, upgrade: bool = False) -> None:
        pre, post = ("pre-upgrade", "post-upgrade") if upgrade else ("pre-install", "post-install")
        self.docs = docs
        self.run_hooks(docs, pre)
        for doc in docs:
            if not hook_phases(doc) and self.stores(doc):
                self.apply(doc)
        self.run_hooks(docs, post)

    def stores(self, doc: Manifest) -> bool:
        """On the real control plane the workloads are run here as processes, not handed to its controllers."""
        return self.engine != "kube" or doc["kind"] not in WORKLOAD_KINDS

    def deployment(self, suffix: str) -> Manifest:
        (doc,) = [d for d in of_kind(self.docs, "Deployment") if d["metadata"]["name"].endswith(suffix)]
        return doc

    def service_name(self, suffix: str) -> str:
        (doc,) = [d for d in of_kind(self.docs, "Service") if d["metadata"]["name"].endswith(suffix)]
        return f"{doc['metadata']['name']}.{doc['metadata'].get('namespace', NAMESPACE)}.svc"

    def container_port(self, deployment: Manifest, name_or_number: Any) -> int:
        container = pod_template(deployment)["containers"][0]
        if isinstance(name_or_number, int):
            return name_or_number
        (port,) = [p["containerPort"] for p in container.get("ports") or [] if p.get("name") == name_or_number]
        return int(port)

    def ca_pem(self) -> bytes:
        tls_volume = next(v for v in pod_template(self.deployment("-webhook"))["volumes"] if v["name"] == "tls")
        return self.secret_data(tls_volume["secret"]["secretName"])["ca.crt"]

    def request(self, suffix: str, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """A request to a component through what its Service names (DNS name, TLS, containerPort)."""
        deployment = self.deployment(suffix)
        probe = pod_template(deployment)["containers"][0]["readinessProbe"]["httpGet"]
        port = self.container_port(deployment, probe["port"])
        if probe.get("scheme", "HTTP") == "HTTP":
            response = requests.request(method, f"http://127.0.0.1:{port}{path}", data=body, headers=headers, timeout=20)
            return response.status_code, response.content
        return https_request(port, self.service_name(suffix), self.ca_pem(), method, path, body, headers)

    def start_deployment(self, suffix: str) -> Process:
        """Start a Deployment's pod and wait until its readinessProbe passes."""
        deployment = self.deployment(suffix)
        process = self.start(deployment, pod_name=f"{deployment['metadata']['name']}-0")
        probe = pod_template(deployment)["containers"][0]["readinessProbe"]["httpGet"]

        def ready() -> bool:
            assert process.popen.poll() is None, f"{process.name} exited:\n{process.tail()}"
            return self.request(suffix, "GET", probe["path"])[0] == 200

        eventually(ready, f"{process.name} ready")
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def service_addresses(docs: list[Manifest]) -> dict[tuple[str, str, int], str]:
    """(namespace, Service, port) -> 127.0.0.1:<containerPort of the pods it selects, via targetPort>."""
    addresses: dict[tuple[str, str, int], str] = {}
    deployments = of_kind(docs, "Deployment")
    for service in of_kind(docs, "Service"):
        selector = service["spec"]["selector"]
        (deployment,) = [d for d in deployments
                         if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        container = pod_template(deployment)["containers"][0]
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if isinstance(target, str):
                (target,) = [p["containerPort"] for p in container["ports"] if p["name"] == target]
            namespace = service["metadata"].get("namespace", NAMESPACE)
            addresses[(namespace, service["metadata"]["name"], int(port["port"]))] = f"127.0.0.1:{target}"
    return addresses


def local_port_values(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The values plus free local ports for both components (two processes share this host)."""
    merged = json.loads(json.dumps(values or {}))
    merged.setdefault("webhook", {})["port"] = free_port()
    merged.setdefault("reconciler", {})["port"] = free_port()
    return merged


def start_release(root: Path, values: dict[str, Any], *, extra_users: dict[str, str] | None = None,
                  engine: str = "local") -> Release:
    """LocalKube with a token per chart ServiceAccount, and the release namespace; `install()` installs.

    engine "kube": the real control plane instead, with RBAC enforced and its audit log at
    root/audit.log; ServiceAccount tokens come from TokenRequest once the accounts exist.
    """
    docs = render(values)
    if engine == "kube":
        from localkube.kube_engine import KubeControlPlane

        host = host_address()
        assert host, "no non-loopback address for the EndpointSlices kube-apiserver resolves webhooks through"
        plane = KubeControlPlane(audit_log=root / "audit.log",
                                 extra_apiserver_args=["--enable-aggregator-routing=true"]).start()
        release = Release(plane, docs, root, {}, engine="kube", host=host, addresses=service_addresses(docs))
        try:
            release.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
            return release
        except BaseException:
            plane.stop()
            raise
    users = {username(doc) for doc in of_kind(docs, "ServiceAccount")}
    tokens = {secrets.token_hex(16): user for user in sorted(users)}
    tokens[ADMIN_TOKEN] = "system:admin"
    tokens.update(extra_users or {})
    kube = LocalKube(tokens=tokens, service_addresses=service_addresses(docs)).start()
    release = Release(kube, docs, root, tokens)
    try:
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        release.apply(namespace)
        return release
    except BaseException:
        kube.stop()
        raise
