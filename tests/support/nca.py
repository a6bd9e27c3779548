"""Independent checker: ask IBM's Network Config Analyzer (`nca`, PyPI network-config-analyzer)
which connections a set of NetworkPolicies allows, so our own reading of policies (netpol_eval,
the webhook's baselines, the reconciler's tightened and quarantine policies) is checked against a
tool we did not write.

    from tests.support.nca import nca_available, nca_connectivity
    result = nca_connectivity(pods, namespaces, policies)      # runs `nca --connectivity ...`
    result.allows("shop/web-1", "data/db-1", 5432, "TCP")       # -> bool
    result.allows("shop/web-1", "203.0.113.9", 443, "TCP")      # external IPs by address

`pods`: netwarden.model.netpol_eval.PodInfo values or Pod manifests (dicts); `namespaces`: NamespaceInfo
values or Namespace manifests; `policies`: NetworkPolicy manifests (dicts, e.g. from
netwarden.model.policy.render_network_policy). Pods are written without ownerReferences and nca is asked
for `--output_endpoints pods`, so every endpoint is one pod, named "namespace/name".

nca leaves out a pod's connections to itself (always allowed); `allows` answers True for them.
nca matches ipBlocks against external addresses only, never pod IPs.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import yaml

from netwarden.model.netpol_eval import ExternalIP, NamespaceInfo, PodInfo

PIP_PACKAGE = "network-config-analyzer==2.1.0"


#: nca pins PyYAML exactly (a conflict with the kubernetes client), so it lives in its own tool venv:
#: `python3 -m venv .tools/nca && .tools/nca/bin/pip install network-config-analyzer==2.1.0` (.ci/run does this).
TOOL_VENV = Path(__file__).resolve().parents[2] / ".tools" / "nca"


def nca_executable() -> str | None:
    """$NETWARDEN_NCA, else the tool venv, else beside this interpreter, else on PATH."""
    for candidate in (os.environ.get("NETWARDEN_NCA"), TOOL_VENV / "bin" / "nca", Path(sys.executable).with_name("nca")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    return shutil.which("nca")


def nca_available() -> bool:
    return nca_executable() is not None


Endpoint = PodInfo | ExternalIP


def probes(endpoints: Sequence[Endpoint], ports: Sequence[tuple[int, str]]
           ) -> Iterator[tuple[Endpoint, Endpoint, str, str, int, str]]:
    """What both evaluators are asked: every ordered pair of distinct endpoints (the world never talks to
    itself) on every (port, protocol), with the names nca knows them by: (src, dst, src_name, dst_name, port, protocol)."""
    for src in endpoints:
        for dst in endpoints:
            if src is dst or (isinstance(src, ExternalIP) and isinstance(dst, ExternalIP)):
                continue
            src_name = src.key if isinstance(src, PodInfo) else src.ip
            dst_name = dst.key if isinstance(dst, PodInfo) else dst.ip
            for port, protocol in ports:
                yield src, dst, src_name, dst_name, port, protocol


@dataclass(frozen=True)
class ConnSpec:
    """Allowed traffic between two endpoints: a protocol (None: every protocol) and port ranges
    (None: every port)."""

    protocol: str | None
    ports: tuple[tuple[int, int], ...] | None

    def covers(self, port: int | None, protocol: str) -> bool:
        if self.protocol is not None and self.protocol != protocol.upper():
            return False
        if self.ports is None:
            return True
        return port is not None and any(low <= port <= high for low, high in self.ports)


@dataclass
class NcaConnectivity:
    """nca's connectivity map: (source, destination) -> allowed ConnSpecs. Sources/destinations
    are "namespace/pod" or an IP range ("0.0.0.0-9.255.255.255" or a CIDR)."""

    edges: dict[tuple[str, str], list[ConnSpec]] = field(default_factory=dict)
    raw: str = ""

    def triples(self) -> set[tuple[str, str, ConnSpec]]:
        return {(src, dst, spec) for (src, dst), specs in self.edges.items() for spec in specs}

    def allows(self, src: str, dst: str, port: int | None, protocol: str = "TCP") -> bool:
        if src == dst and "/" in src:
            return True
        for (edge_src, edge_dst), specs in self.edges.items():
            if _endpoint_is(edge_src, src) and _endpoint_is(edge_dst, dst):
                if any(spec.covers(port, protocol) for spec in specs):
                    return True
        return False


def _endpoint_is(edge_endpoint: str, query: str) -> bool:
    """A pod name matches itself; an IP address matches a range that contains it."""
    if "/" in query and not _looks_like_ip(query):
        return edge_endpoint == query
    if "/" in edge_endpoint and not _looks_like_ip(edge_endpoint):
        return False
    address = ipaddress.ip_address(query)
    for part in edge_endpoint.split(","):
        if "-" in part:
            low, high = (ipaddress.ip_address(x) for x in part.split("-"))
            if type(low) is type(address) and low <= address <= high:
                return True
        elif address in ipaddress.ip_network(part, strict=False):
            return True
    return False


def _looks_like_ip(text: str) -> bool:
    head = text.split("/")[0].split("-")[0]
    try:
        ipaddress.ip_address(head)
        return True
    except ValueError:
        return False


_LINE = re.compile(r"^(?P<src>\S+) => (?P<dst>\S+) : (?P<conn>.+)$")


def parse_connectivity(text: str) -> NcaConnectivity:
    """Parse `nca --connectivity ... -o txt_no_fw_rules --output_endpoints pods` output."""
    result = NcaConnectivity(raw=text)
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        src, dst = (re.sub(r"\[[A-Za-z]+\]$", "", match[name]) for name in ("src", "dst"))
        result.edges.setdefault((src, dst), []).extend(_parse_conn(match["conn"].strip()))
    return result


def _parse_conn(text: str) -> list[ConnSpec]:
    if text == "All connections":
        return [ConnSpec(None, None)]
    groups = re.findall(r"\{([^}]*)\}", text)
    if not groups:
        raise ValueError(f"unrecognised nca connection text: {text!r}")
    out = []
    for group in groups:
        fields: dict[str, list[str]] = {}
        key = None
        for token in (t.strip() for t in group.split(",")):
            if ":" in token:
                key, _, token = token.partition(":")
            if key is None:
                raise ValueError(f"unrecognised nca connection text: {text!r}")
            fields.setdefault(key, []).append(token)
        unknown = set(fields) - {"protocols", "dst_ports"}
        if unknown:
            raise ValueError(f"nca connection has properties this harness does not model: {sorted(unknown)}")
        ports = None
        if "dst_ports" in fields:
            ports = tuple(_port_range(p) for p in fields["dst_ports"])
        for protocol in fields.get("protocols", [None]):  # type: ignore[list-item]
            out.append(ConnSpec(protocol.upper() if protocol else None, ports))
    return out


def _port_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)


# --- writing the inputs -------------------------------------------------------------------------


def pod_manifest(pod: PodInfo | Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(pod, PodInfo):
        manifest = dict(pod)
        metadata = {k: v for k, v in (manifest.get("metadata") or {}).items() if k != "ownerReferences"}
        return {**manifest, "apiVersion": "v1", "kind": "Pod", "metadata": metadata}
    ports = [
        {"containerPort": cp.port, "protocol": cp.protocol, **({"name": cp.name} if cp.name else {})}
        for cp in pod.container_ports
    ]
    container: dict[str, Any] = {"name": "main", "image": "example"}
    if ports:
        container["ports"] = ports
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": dict(pod.labels)},
        "spec": {"containers": [container]},
    }
    if pod.ip:
        manifest["status"] = {"podIP": pod.ip, "phase": "Running"}
    return manifest


def namespace_manifest(namespace: NamespaceInfo | Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(namespace, NamespaceInfo):
        return {**dict(namespace), "apiVersion": "v1", "kind": "Namespace"}
    labels = {"kubernetes.io/metadata.name": namespace.name, **dict(namespace.labels)}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace.name, "labels": labels}}


def nca_connectivity(
    pods: Iterable[PodInfo | Mapping[str, Any]],
    namespaces: Iterable[NamespaceInfo | Mapping[str, Any]],
    policies: Iterable[Mapping[str, Any]],
    *,
    timeout: float = 120.0,
) -> NcaConnectivity:
    """Run nca on these objects and return its connectivity map. Raises RuntimeError when nca fails.

    Namespaces that pods live in but that are not listed are added with only their
    kubernetes.io/metadata.name label, as the API server would.
    """
    executable = nca_executable()
    if executable is None:
        raise RuntimeError(f"nca is not installed (pip install {PIP_PACKAGE})")
    pod_docs = [pod_manifest(p) for p in pods]
    ns_docs = [namespace_manifest(n) for n in namespaces]
    known = {doc["metadata"]["name"] for doc in ns_docs}
    for pod in pod_docs:
        namespace = pod["metadata"].get("namespace", "default")
        if namespace not in known:
            ns_docs.append(namespace_manifest(NamespaceInfo(namespace)))
            known.add(namespace)
    # nca silently ignores documents without apiVersion/kind; every input here is a NetworkPolicy.
    policy_docs = [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", **dict(p)} for p in policies]
    with tempfile.TemporaryDirectory(prefix="nca-") as tmp:
        root = Path(tmp)
        (root / "pods.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "PodList", "items": pod_docs}))
        (root / "ns.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "NamespaceList", "items": ns_docs}))
        policy_dir = root / "policies"
        policy_dir.mkdir()
        if policy_docs:
            (policy_dir / "policies.yaml").write_text(yaml.safe_dump_all(policy_docs))
        command = [
            executable,
            "--connectivity", str(policy_dir),
            "--pod_list", str(root / "pods.yaml"),
            "--ns_list", str(root / "ns.yaml"),
            "--output_format", "txt_no_fw_rules",
            "--output_endpoints", "pods",
            "--file_out", str(root / "out.txt"),
        ]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        out_file = root / "out.txt"
        output = out_file.read_text() if out_file.exists() else ""
        if proc.returncode != 0 or not output:
            raise RuntimeError(f"nca failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return parse_connectivity(output)
