"""`netwarden demo` end to end: real processes, the built-in story, its own checks; nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention `text` (our children all name the working dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


def nothing_left_of(workdir: Path) -> None:
    """The demo has exited: every process it started is gone (a child may take a moment to be reaped)."""
    wait_for(lambda: not processes_mentioning(str(workdir)), "no process of the demo left running", timeout=10)


def test_demo_plays_the_whole_story_and_leaves_nothing_running(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "netwarden.cli", "demo", "--out", str(workdir)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "demo passed: every step did what it claims" in proc.stdout
    for claim in ("netwarden tightens api to its learned baseline", "quarantines exactly that pod",
                  "rolls the worker back by itself", "every policy netwarden made is gone"):
        assert any("  ok: " in line and claim in line for line in proc.stdout.splitlines()), claim
    page = (workdir / "report.html").read_text()
    assert 'id="network-map"' in page and 'class="node node-quarantined"' in page
    assert page.count('class="timeline-entry"') >= 10
    assert (workdir / "map.svg").read_text().startswith("<svg")
    for component in ("webhook", "reconciler"):  # structured logs: one JSON object per line
        lines = (workdir / f"{component}.log").read_text().splitlines()
        assert lines and all(isinstance(json.loads(line), dict) for line in lines), component
    nothing_left_of(workdir)


def test_demo_takes_its_flows_from_hubble_relay(tmp_path: Path) -> None:
    """The path a Cilium user runs: the reconciler subscribes to Relay's GetFlows (mTLS), no flow is POSTed."""
    workdir = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "netwarden.cli", "demo", "--flows-from", "hubble-relay",
                           "--out", str(workdir)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "demo passed: every step did what it claims" in proc.stdout
    assert sum("streamed by Hubble Relay" in line for line in proc.stdout.splitlines()) == 3
    events = [json.loads(line) for line in (workdir / "reconciler.log").read_text().splitlines() if line.startswith("{")]
    started = next(e for e in events if e.get("event") == "reconciler_started")
    assert list(started["flow_sources"]) == ["hubble-relay"]
    nothing_left_of(workdir)


def test_ctrl_c_stops_every_process_it_started(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "netwarden.cli", "demo", "--out", str(workdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            if "step 3/" in line or time.monotonic() > deadline:
                break
        assert processes_mentioning(str(workdir)), "the demo's processes should be running mid-story"
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, output
    assert "interrupted (Ctrl-C)" in output
    nothing_left_of(workdir)
