"""The Hubble Relay client against the real Hubble observer server: cilium's pkg/hubble/observer
(the GetFlows behind every agent and Relay), pinned and built from the Go module proxy into the cache
(`netwarden controlplane build --component hubble`; tools/hubble), fed from a `hubble observe -o json`
file. Its filters, field-mask validation, `since` and `follow` are cilium's own, not a stand-in's."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from localkube.controlplane_build import HUBBLE_BUILD_COMMAND, find_hubble
from netwarden.reconciler.signals.parse import parse_hubble_line
from netwarden.reconciler.sources.hubble import HubbleRelaySource
from netwarden.reconciler.sources.records import rfc3339
from netwarden.reconciler.sources.stream import Backoff, TlsFiles
from tests.sources.conftest import HUBBLE_LINES, CollectingSink, client_dir, numbered_flows, write_pki
from tests.support.waiting import wait_for

BINARY = find_hubble()
pytestmark = pytest.mark.skipif(BINARY is None, reason=f"the real Hubble server is not built: {HUBBLE_BUILD_COMMAND}")


class RealHubble:
    def __init__(self, flows: Path, *, listen: str = "127.0.0.1:0", tls: list[str] = ()) -> None:
        self.proc = subprocess.Popen([str(BINARY), "--listen", listen, "--flows", str(flows), "--follow", *tls],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("ready "), line + (self.proc.stderr.read() if self.proc.stderr else "")
        self.address = line.split()[1]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


#: Cilium's ring keeps its write slot unreadable: an entry is served once the next one is written. A
#: live cluster always writes the next; a file that ends needs one more line after what is awaited.
def trailer(index: int) -> str:
    return as_lines(numbered_flows(1, start_ns=1_900_000_000_000_000_000 + index))


def as_lines(responses) -> str:
    """GetFlowsResponses as `hubble observe -o json` lines (what the server reads)."""
    out = []
    for response in responses:
        line = {"flow": json.loads(json.dumps(HUBBLE_LINES[0]["flow"])), "node_name": response.node_name,
                "time": rfc3339(response.flow.time)}
        line["flow"].update(time=rfc3339(response.flow.time), uuid=response.flow.uuid)
        out.append(json.dumps(line))
    return "\n".join(out) + "\n"


def _source(address: str, sink: CollectingSink, **kwargs) -> HubbleRelaySource:
    return HubbleRelaySource(address, sink, since=1.0, backoff=Backoff(0.05, 0.5), **kwargs).start()


def test_real_server_filters_masks_and_follows(tmp_path: Path) -> None:
    flows = tmp_path / "flows.jsonl"
    flows.write_text("".join(json.dumps(line) + "\n" for line in HUBBLE_LINES) + trailer(0))
    server = RealHubble(flows)
    sink = CollectingSink()
    source = _source(server.address, sink)
    try:
        expected = [parse_hubble_line(line) for line in HUBBLE_LINES if line["flow"]["event_type"]["type"] != 129]
        wait_for(lambda: sink.count() == len(expected), "the real server's flows")
        assert sorted(sink.flows, key=lambda f: f.time) == sorted(expected, key=lambda f: f.time)
        # follow: lines appended to the file are served as they come.
        with flows.open("a") as handle:
            handle.write(as_lines(numbered_flows(20)) + trailer(1))
        wait_for(lambda: sink.count() == len(expected) + 1 + 20, "followed flows")
        assert source.stats.reconnects == 0 and source.stats.dropped == {}
    finally:
        source.stop()
        server.stop()


def test_real_server_restart_resumes_from_the_last_flow(tmp_path: Path) -> None:
    flows = tmp_path / "flows.jsonl"
    batch = numbered_flows(300)
    flows.write_text(as_lines(batch[:151]))
    server = RealHubble(flows)
    sink = CollectingSink()
    source = _source(server.address, sink)
    try:
        wait_for(lambda: sink.count() == 150, "flows before the restart")
        server.stop()
        wait_for(lambda: not source.stats.connected, "the client to see the server gone")
        with flows.open("a") as handle:
            handle.write(as_lines(batch[151:]) + trailer(0))
        server = RealHubble(flows, listen=server.address)  # the whole file again: old flows, then new
        wait_for(lambda: sink.count() == 300, "flows after the restart")
        assert len({f.time for f in sink.flows}) == 300 and source.stats.reconnects >= 1
    finally:
        source.stop()
        server.stop()


def test_real_server_mtls(tmp_path: Path) -> None:
    files = write_pki(tmp_path / "pki", "hubble-relay", client=True)
    flows = tmp_path / "flows.jsonl"
    flows.write_text(as_lines(numbered_flows(41)))
    server = RealHubble(flows, tls=["--tls-cert", str(files["cert"]), "--tls-key", str(files["key"]),
                                    "--tls-client-ca", str(files["ca"])])
    sink = CollectingSink()
    refused = _source(server.address, CollectingSink(), tls=TlsFiles(str(client_dir(tmp_path / "ca", files))))
    source = _source(server.address, sink, tls=TlsFiles(str(client_dir(tmp_path / "mtls", files, mtls=True)),
                                                        server_name="hubble-relay"))
    try:
        wait_for(lambda: sink.count() == 40, "flows over mTLS from the real server")
        wait_for(lambda: refused.stats.reconnects >= 2, "the client without a certificate to be refused")
        assert refused.stats.received == 0
    finally:
        refused.stop()
        source.stop()
        server.stop()
