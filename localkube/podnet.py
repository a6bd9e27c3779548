"""Pods with real network stacks, without a container runtime, isolated from the machine's own network.

Everything lives in network namespaces this module creates; the host's interfaces, routes, sysctls
and firewall are never touched:

    node netns  <id>-node   ip_forward on; per pod a veth end `p<n>` (MAC ee:ee:ee:ee:ee:ee) with a
                            /32 route and a permanent neighbour entry; the iptables-legacy rule that
                            hands each new connection of the pod range to the enforcer's NFQUEUE; the
                            enforcer process; a relay to the API server on 127.0.0.1
    pod netns   <id>-p<n>   eth0 with the pod IP as a /32, a default route via the link-local gateway
                            169.254.1.1 (permanent neighbour: the node end), the pod's listeners
                            (`localkube.podserver`, one real socket per declared containerPort)

`<id>` is `nwpod-<owner pid>-<random>`: `cleanup_leftovers()` finds namespaces of owners that are
gone (a crashed test run) by that prefix and removes them with their processes. Pod addresses come
from 198.19.64.0/20 (RFC 2544 benchmarking space, never routed), which exists only inside these
namespaces, so two runs on one machine cannot collide. The kube tier's own 198.18.0.1 on lo is a
different /15 half and never seen from here.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable, TypeVar

from localkube.kubelet import PodIPAllocator

PREFIX = "nwpod"
POD_CIDR = ipaddress.ip_network("198.19.64.0/20")
GATEWAY = "169.254.1.1"
NODE_END_MAC = "ee:ee:ee:ee:ee:ee"
#: The queue the iptables rule feeds and the enforcer reads (per node netns, so any number works).
QUEUE_ID = 100
RULE_COMMENT = "netwarden-podnet"
CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"

T = TypeVar("T")


class PodNetworkError(RuntimeError):
    """A command that builds the pod network failed; the message carries the command and its stderr."""


def _run(argv: list[str], *, input_text: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, input=input_text, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise PodNetworkError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}"
                              + (f"\ninput:\n{input_text}" if input_text else ""))
    return result


_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(netns: str, fn: Callable[[], T]) -> T:
    """Run `fn` on a fresh thread switched into `netns` (network namespaces are per thread).

    Sockets keep the namespace they were created in, so a socket made here can be used from any thread.
    """
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            fd = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns({netns}): {os.strerror(errno)}")
            finally:
                os.close(fd)
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def _owner_alive(name: str) -> bool:
    match = re.match(rf"^{PREFIX}-(\d+)-", name)
    if not match:
        return False
    try:
        os.kill(int(match.group(1)), 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _netns_pids(name: str) -> list[int]:
    result = _run(["ip", "netns", "pids", name], check=False)
    return [int(pid) for pid in result.stdout.split() if pid.isdigit()]


def delete_netns(name: str) -> None:
    """Kill every process inside `name` (they were started there by this module), then delete it."""
    for pid in _netns_pids(name):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _run(["ip", "netns", "del", name], check=False)


def cleanup_leftovers(*, include_live: bool = False) -> list[str]:
    """Remove namespaces (and their processes, links, routes, rules) left by runs whose owner is gone."""
    removed = []
    for name in list_netns():
        if name.startswith(PREFIX + "-") and (include_live or not _owner_alive(name)):
            delete_netns(name)
            removed.append(name)
    return removed


def missing_prerequisites() -> list[str]:
    """Why real pod networking cannot run here (empty when it can): root, tools, the kernel's NFQUEUE."""
    missing = []
    if os.geteuid() != 0:
        return ["root (network namespaces and iptables need CAP_NET_ADMIN/CAP_SYS_ADMIN)"]
    for tool, package in (("ip", "iproute2"), ("iptables-legacy", "iptables"), ("unshare", "util-linux")):
        if shutil.which(tool) is None:
            missing.append(f"{tool} (apt-get install {package})")
    if missing:
        return missing
    probe = f"{PREFIX}-{os.getpid()}-probe{secrets.token_hex(2)}"
    try:
        _run(["ip", "netns", "add", probe])
        result = _run(["ip", "netns", "exec", probe, "iptables-legacy", "-t", "mangle", "-A", "POSTROUTING",
                       "-m", "conntrack", "--ctstate", "NEW", "-j", "NFQUEUE", "--queue-num", str(QUEUE_ID),
                       "--queue-bypass"], check=False)
        if result.returncode != 0:
            missing.append(f"the kernel's NFQUEUE/conntrack for iptables-legacy ({result.stderr.strip()})")
    except PodNetworkError as exc:
        missing.append(f"network namespaces ({exc})")
    finally:
        _run(["ip", "netns", "del", probe], check=False)
    return missing


@dataclass
class PodSandbox:
    """One pod's network namespace, address and listener process."""

    key: str
    namespace: str
    name: str
    ip: str
    netns: str
    link: str
    process: subprocess.Popen[str] | None = None


@dataclass
class PodNetwork:
    """A node's pod network: `add_pod` / `remove_pod` / `probe`, `stop` removes everything it made."""

    cidr: ipaddress.IPv4Network = POD_CIDR
    id: str = field(default_factory=lambda: f"{PREFIX}-{os.getpid()}-{secrets.token_hex(3)}")
    pods: dict[str, PodSandbox] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.node_netns = f"{self.id}-node"
        self._ips = PodIPAllocator(self.cidr)
        self._counter = 0
        self._lock = threading.Lock()
        self._relays: list[_Relay] = []
        self._started = False

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> PodNetwork:
        cleanup_leftovers()
        _run(["ip", "netns", "add", self.node_netns])
        self._started = True
        try:
            node = ["ip", "netns", "exec", self.node_netns]
            _run(["ip", "-n", self.node_netns, "link", "set", "lo", "up"])
            _run([*node, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
            # New connections of the pod range go to the enforcer's queue (--queue-bypass: accepted
            # while no enforcer listens). The kernel here lacks nftables' queue expression, so the
            # enforcer's own nftables rules cannot load; this rule stands in for them.
            _run([*node, "iptables-legacy", "-t", "mangle", "-A", "POSTROUTING", "-s", str(self.cidr),
                  "-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", RULE_COMMENT,
                  "-j", "NFQUEUE", "--queue-num", str(QUEUE_ID), "--queue-bypass"])
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> PodNetwork:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Remove every pod, the node namespace and whatever runs in it (relay, enforcer). Idempotent."""
        for relay in self._relays:
            relay.close()
        self._relays.clear()
        for key in list(self.pods):
            self.remove_pod(key)
        if self._started:
            delete_netns(self.node_netns)
            self._started = False

    # --- pods --------------------------------------------------------------------------------

    def add_pod(self, key: str, namespace: str, name: str, tcp_ports: Iterable[int] = (),
                udp_ports: Iterable[int] = ()) -> PodSandbox:
        """Namespace + veth + /32 + routes + listeners for one pod; returns it once its sockets listen."""
        with self._lock:
            if key in self.pods:
                return self.pods[key]
            ip = self._ips.allocate(key)
            self._counter += 1
            index = self._counter
        sandbox = PodSandbox(key, namespace, name, ip, f"{self.id}-p{index}", f"p{index}")
        self.pods[key] = sandbox
        try:
            self._plumb(sandbox)
            sandbox.process = self._start_listeners(sandbox, list(tcp_ports), list(udp_ports))
        except BaseException:
            self.remove_pod(key)
            raise
        return sandbox

    def remove_pod(self, key: str) -> None:
        sandbox = self.pods.pop(key, None)
        if sandbox is None:
            return
        if sandbox.process is not None and sandbox.process.poll() is None:
            sandbox.process.kill()
            sandbox.process.wait(5)
        delete_netns(sandbox.netns)  # takes the veth pair, and with it the node's route and neighbour
        with self._lock:
            self._ips.release(key)

    def pod_by_ip(self, ip: str) -> PodSandbox:
        return next(p for p in self.pods.values() if p.ip == ip)

    def _plumb(self, sandbox: PodSandbox) -> None:
        pod_mac = "02:00:" + ":".join(f"{octet:02x}" for octet in ipaddress.ip_address(sandbox.ip).packed)
        _run(["ip", "netns", "add", sandbox.netns])
        _run(["ip", "-n", self.node_netns, "link", "add", sandbox.link, "address", NODE_END_MAC, "type", "veth",
              "peer", "name", "eth0", "address", pod_mac, "netns", sandbox.netns])
        _run(["ip", "-n", sandbox.netns, "-batch", "-"], input_text="\n".join([
            "link set lo up",
            f"addr add {sandbox.ip}/32 dev eth0",
            "link set eth0 up",
            f"route add {GATEWAY} dev eth0 scope link",
            f"route add default via {GATEWAY} dev eth0",
            f"neigh replace {GATEWAY} lladdr {NODE_END_MAC} dev eth0 nud permanent",
        ]) + "\n")
        _run(["ip", "-n", self.node_netns, "-batch", "-"], input_text="\n".join([
            f"link set {sandbox.link} up",
            f"route add {sandbox.ip}/32 dev {sandbox.link} scope link",
            f"neigh replace {sandbox.ip} lladdr {pod_mac} dev {sandbox.link} nud permanent",
        ]) + "\n")

    def _start_listeners(self, sandbox: PodSandbox, tcp: list[int], udp: list[int]) -> subprocess.Popen[str] | None:
        if not tcp and not udp:
            return None
        argv = ["ip", "netns", "exec", sandbox.netns]
        if shutil.which("setpriv"):
            argv += ["setpriv", "--pdeathsig", "KILL", "--"]  # dies with the thread that started it
        argv += [sys.executable, "-m", "localkube.podserver", "--name", f"{sandbox.namespace}/{sandbox.name}"]
        argv += [a for port in tcp for a in ("--tcp", str(port))] + [a for port in udp for a in ("--udp", str(port))]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=env)
        line = process.stdout.readline() if process.stdout else ""
        if line.strip() != "ready":
            process.kill()
            _, err = process.communicate(timeout=5)
            raise PodNetworkError(f"listeners of {sandbox.namespace}/{sandbox.name} did not start: {err.strip()}")
        return process

    # --- traffic -----------------------------------------------------------------------------

    def probe(self, source: str, destination_ip: str, port: int, timeout: float = 0.5) -> str:
        """One TCP connection from the pod `source` (key or IP): "open", "refused" (RST) or "dropped"."""
        sandbox = self.pods.get(source) or self.pod_by_ip(source)
        sock = in_netns(sandbox.netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        sock.settimeout(timeout)
        try:
            sock.connect((destination_ip, port))
            return "open"
        except ConnectionRefusedError:
            return "refused"
        except (socket.timeout, TimeoutError):
            return "dropped"
        finally:
            sock.close()

    def probe_udp(self, source: str, destination_ip: str, port: int, timeout: float = 0.5) -> str:
        """One UDP datagram and its echo: "open" when answered, else "dropped"."""
        sandbox = self.pods.get(source) or self.pod_by_ip(source)
        sock = in_netns(sandbox.netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        sock.settimeout(timeout)
        try:
            sock.sendto(b"netwarden-probe", (destination_ip, port))
            sock.recvfrom(2048)
            return "open"
        except (socket.timeout, TimeoutError, ConnectionRefusedError):
            return "dropped"
        finally:
            sock.close()

    def relay(self, host: str, port: int) -> int:
        """A port on the node namespace's 127.0.0.1 that forwards to host:port on the machine (the API server)."""
        relay = _Relay(self.node_netns, (host, port))
        self._relays.append(relay)
        return relay.port

    def exec_argv(self, argv: list[str]) -> list[str]:
        """`argv` run inside the node namespace."""
        return ["ip", "netns", "exec", self.node_netns, *argv]

    def queue_bound(self, queue_id: int = QUEUE_ID) -> bool:
        """True once a process listens on the NFQUEUE `queue_id` of the node namespace."""
        result = _run(self.exec_argv(["cat", "/proc/net/netfilter/nfnetlink_queue"]), check=False)
        return any(line.split()[:1] == [str(queue_id)] for line in result.stdout.splitlines())


class _Relay:
    """A TCP relay from a listener inside a namespace to an address outside it (threads, no buffering)."""

    def __init__(self, netns: str, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = in_netns(netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="podnet-relay", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                inside, _ = self._listener.accept()
            except OSError:
                return
            try:
                outside = socket.create_connection(self._target, timeout=5)
            except OSError:
                inside.close()
                continue
            outside.settimeout(None)
            self._sockets += [inside, outside]
            for a, b in ((inside, outside), (outside, inside)):
                threading.Thread(target=self._pump, args=(a, b), name="podnet-relay-pump", daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        try:
            self._listener.close()
        except OSError:
            pass
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass
