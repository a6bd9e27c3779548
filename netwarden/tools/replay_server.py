"""Hubble Relay and Goldmane stand-ins: gRPC servers generated from the same protos as the clients,
serving recorded flows (`hubble observe -o json` lines, Goldmane FlowResults) and live ones published
while they run. `netwarden demo --flows-from hubble-relay|goldmane`, the bench and the fault tests
use them; where the real Hubble observer server is built (tools/hubble) the tests run that too.

What they do of the real servers' contract: GetFlows `follow`, `since`, verdict and event-type
filters (whitelist minus blacklist), the field mask; Flows.List (start time, pages) and Flows.Stream
(start time). Faults for tests: `break_streams()` ends every open stream with UNAVAILABLE, `stop()`
and a new server on the same port is a restart, TLS files are re-read at every handshake.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import grpc

from netwarden.reconciler.sources.proto import flow_pb2, goldmane_pb2, goldmane_pb2_grpc, observer_pb2, observer_pb2_grpc


@dataclass(frozen=True)
class ServerTls:
    """Serving certificate files (re-read at every handshake: rotation needs no restart), and a client
    CA that makes it mTLS."""

    cert: str
    key: str
    client_ca: str | None = None

    def credentials(self) -> grpc.ServerCredentials:
        def fetch() -> grpc.ServerCertificateConfiguration:
            return self._configuration()

        return grpc.dynamic_ssl_server_credentials(self._configuration(), fetch,
                                                   require_client_authentication=self.client_ca is not None)

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        pair = [(Path(self.key).read_bytes(), Path(self.cert).read_bytes())]
        roots = Path(self.client_ca).read_bytes() if self.client_ca else None
        return grpc.ssl_server_certificate_configuration(pair, root_certificates=roots)


class _Log:
    """Append-only messages with a condition for followers; bounded like Hubble's ring."""

    def __init__(self, capacity: int) -> None:
        self.items: list[Any] = []
        self.offset = 0  # index of items[0] in the whole history
        self.capacity = capacity
        self.changed = threading.Condition()
        self.generation = 0  # bumped by break_streams()

    def append(self, messages: Iterable[Any]) -> None:
        with self.changed:
            self.items.extend(messages)
            overflow = len(self.items) - self.capacity
            if overflow > 0:
                del self.items[:overflow]
                self.offset += overflow
            self.changed.notify_all()

    def follow(self, start: int, context: grpc.ServicerContext, follow: bool) -> Iterator[Any]:
        """Messages from absolute index `start` on; with follow, waits for more until the call ends."""
        generation = self.generation
        position = start
        while context.is_active():
            with self.changed:
                if self.generation != generation:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "stream broken by the test server")
                position = max(position, self.offset)
                batch = self.items[position - self.offset:]
                if not batch:
                    if not follow:
                        return
                    self.changed.wait(0.2)
                    continue
            position += len(batch)
            yield from batch

    def break_streams(self) -> None:
        with self.changed:
            self.generation += 1
            self.changed.notify_all()


def _matches(flow: flow_pb2.Flow, filters: Iterable[flow_pb2.FlowFilter], event_type: int) -> bool:
    for f in filters:
        if f.verdict and flow.verdict not in f.verdict:
            continue
        if f.event_type and not any(e.type == event_type for e in f.event_type):
            continue
        return True
    return False


class ObserverServicer(observer_pb2_grpc.ObserverServicer):
    def __init__(self, capacity: int = 65_536) -> None:
        self.log = _Log(capacity)
        self.requests: list[observer_pb2.GetFlowsRequest] = []
        self.sent = 0

    def publish(self, responses: Iterable[observer_pb2.GetFlowsResponse]) -> None:
        self.log.append(responses)

    def GetFlows(self, request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext) -> Iterator[Any]:
        self.requests.append(request)
        since = request.since.ToNanoseconds() if request.HasField("since") else None
        mask = request.field_mask if request.HasField("field_mask") else None
        with self.log.changed:
            start = self.log.offset + len(self.log.items) if since is None else 0
        for response in self.log.follow(start, context, request.follow):
            if response.WhichOneof("response_types") != "flow":
                continue
            flow = response.flow
            if since is not None and flow.time.ToNanoseconds() < since:
                continue
            event_type = flow.event_type.type
            if request.whitelist and not _matches(flow, request.whitelist, event_type):
                continue
            if request.blacklist and _matches(flow, request.blacklist, event_type):
                continue
            if mask is not None:
                masked = observer_pb2.GetFlowsResponse(node_name=response.node_name)
                masked.time.CopyFrom(response.time)
                mask.MergeMessage(flow, masked.flow)
                response = masked
            self.sent += 1
            yield response


class GoldmaneServicer(goldmane_pb2_grpc.FlowsServicer):
    def __init__(self, capacity: int = 65_536, clock: Callable[[], float] = time.time) -> None:
        self.log = _Log(capacity)
        self.clock = clock
        self.requests: list[Any] = []

    def publish(self, results: Iterable[goldmane_pb2.FlowResult]) -> None:
        self.log.append(results)

    def _start(self, value: int) -> int:
        return int(self.clock()) + value if value < 0 else value

    def List(self, request: goldmane_pb2.FlowListRequest, context: grpc.ServicerContext) -> goldmane_pb2.FlowListResult:
        self.requests.append(request)
        start = self._start(request.start_time_gte)
        with self.log.changed:
            matching = [r for r in self.log.items if r.flow.start_time >= start]
        size = request.page_size or len(matching) or 1
        pages = (len(matching) + size - 1) // size
        chosen = matching[request.page * size:(request.page + 1) * size]
        return goldmane_pb2.FlowListResult(meta=goldmane_pb2.ListMetadata(totalPages=pages, totalResults=len(matching)),
                                           flows=chosen)

    def Stream(self, request: goldmane_pb2.FlowStreamRequest, context: grpc.ServicerContext) -> Iterator[Any]:
        self.requests.append(request)
        since = self._start(request.start_time_gte) if request.start_time_gte else None
        with self.log.changed:
            start = self.log.offset + len(self.log.items) if since is None else 0
        for result in self.log.follow(start, context, True):
            if since is None or result.flow.start_time >= since:
                yield result


class ReplayServer:
    """One gRPC server with both services, on 127.0.0.1."""

    def __init__(self, port: int = 0, *, tls: ServerTls | None = None, host: str = "127.0.0.1") -> None:
        self.observer = ObserverServicer()
        self.goldmane = GoldmaneServicer()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="replay-grpc"))
        observer_pb2_grpc.add_ObserverServicer_to_server(self.observer, self.server)
        goldmane_pb2_grpc.add_FlowsServicer_to_server(self.goldmane, self.server)
        target = f"{host}:{port}"
        self.port = (self.server.add_secure_port(target, tls.credentials()) if tls is not None
                     else self.server.add_insecure_port(target))
        self.address = f"{host}:{self.port}"

    def start(self) -> "ReplayServer":
        self.server.start()
        return self

    def stop(self, grace: float | None = None) -> None:
        self.observer.log.break_streams()
        self.goldmane.log.break_streams()
        self.server.stop(grace).wait()

    def break_streams(self) -> None:
        self.observer.log.break_streams()
        self.goldmane.log.break_streams()


def write_pki(folder: Path, name: str, *, client: bool = False) -> dict[str, Path]:
    """A fresh CA and a serving certificate for 127.0.0.1 (plus a client certificate for mTLS when
    asked): files "ca", "cert", "key" (and "client_cert", "client_key")."""
    from datetime import datetime, timedelta, timezone

    from netwarden.certs import pki

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    ca = pki.generate_ca(f"{name}-ca", now=now, valid_for=timedelta(days=1))
    leaf = pki.issue_certificate(ca, name, now=now, valid_for=timedelta(hours=2), dns_names=["localhost", name],
                                 ip_addresses=["127.0.0.1"])
    files = {"ca": folder / "ca.crt", "cert": folder / "server.crt", "key": folder / "server.key"}
    files["ca"].write_bytes(ca.cert_pem)
    files["cert"].write_bytes(leaf.cert_pem)
    files["key"].write_bytes(leaf.key_pem)
    if client:
        mine = pki.issue_certificate(ca, "netwarden-reconciler", now=now, valid_for=timedelta(hours=2),
                                     server=False, client=True)
        files["client_cert"], files["client_key"] = folder / "client.crt", folder / "client.key"
        files["client_cert"].write_bytes(mine.cert_pem)
        files["client_key"].write_bytes(mine.key_pem)
    return files


def client_secret_dir(folder: Path, files: dict[str, Path], *, mtls: bool = False) -> Path:
    """The TLS Secret netwarden mounts (reconciler.*_tls_dir): ca.crt, and tls.crt + tls.key for mTLS."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.crt").write_bytes(files["ca"].read_bytes())
    if mtls:
        (folder / "tls.crt").write_bytes(files["client_cert"].read_bytes())
        (folder / "tls.key").write_bytes(files["client_key"].read_bytes())
    return folder


# --- records -> messages -----------------------------------------------------------------------


_ENUMS = {"verdict": flow_pb2.Verdict, "drop_reason_desc": flow_pb2.DropReason,
          "traffic_direction": flow_pb2.TrafficDirection, "Type": flow_pb2.FlowType}


def _enum(name: str, value: Any) -> int:
    if isinstance(value, int):
        return value
    try:
        return _ENUMS[name].Value(value)
    except ValueError:
        return 0  # a name this subset does not know: unset, as protojson's DiscardUnknown leaves it


def _set_time(stamp: Any, text: str) -> None:
    from netwarden.reconciler.signals.common import parse_rfc3339

    seconds, _, fraction = text.partition(".")
    nanos = int((fraction.rstrip("Zz") + "000000000")[:9]) if fraction else 0
    stamp.FromNanoseconds(int(parse_rfc3339(seconds + "Z" if fraction else text)) * 1_000_000_000 + nanos)


def _set_endpoint(ep: flow_pb2.Endpoint, raw: dict[str, Any]) -> None:
    ep.ID = raw.get("ID", 0)
    ep.identity = raw.get("identity", 0)
    ep.namespace = raw.get("namespace", "")
    ep.labels.extend(raw.get("labels") or [])
    ep.pod_name = raw.get("pod_name", raw.get("podName", ""))
    for workload in raw.get("workloads") or []:
        ep.workloads.add(name=workload.get("name", ""), kind=workload.get("kind", ""))


def hubble_response(line: dict[str, Any]) -> observer_pb2.GetFlowsResponse:
    """A `hubble observe -o json` line (or a bare flow) as the GetFlowsResponse Relay sent for it;
    fields outside netwarden's subset of flow.proto are left out, as they are on the wire to it.
    Built field by field (protojson's generic parser costs ~10x more, too much for the demo's rates)."""
    raw = line.get("flow", line)
    message = observer_pb2.GetFlowsResponse(node_name=line.get("node_name", ""))
    if "time" in line and "flow" in line:
        _set_time(message.time, line["time"])
    flow = message.flow
    if "time" in raw:
        _set_time(flow.time, raw["time"])
    flow.uuid = raw.get("uuid", "")
    for name in _ENUMS:
        if name in raw:
            setattr(flow, name, _enum(name, raw[name]))
    flow.drop_reason = raw.get("drop_reason", 0)
    if "IP" in raw:
        flow.IP.source, flow.IP.destination = raw["IP"].get("source", ""), raw["IP"].get("destination", "")
        flow.IP.ipVersion = flow_pb2.IPVersion.Value(raw["IP"].get("ipVersion", "IP_NOT_USED"))
    for layer, fields in (raw.get("l4") or {}).items():
        target = getattr(flow.l4, layer)
        target.SetInParent()
        for key, value in fields.items():
            if key in ("source_port", "destination_port", "type", "code"):
                setattr(target, key, value)
    for side in ("source", "destination"):
        if side in raw:
            _set_endpoint(getattr(flow, side), raw[side])
    flow.node_name = raw.get("node_name", "")
    flow.reply = bool(raw.get("reply", False))
    if "is_reply" in raw:
        flow.is_reply.value = raw["is_reply"]
    if "event_type" in raw:
        flow.event_type.type = raw["event_type"].get("type", 0)
        flow.event_type.sub_type = raw["event_type"].get("sub_type", 0)
    return message


