"""The HTML report and its network map, checked as data and rendered in headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from netwarden.tools.report import MapEdge, MapNode, ReportData, TimelineEntry, merge_edges, render_map_svg, render_report_html


def sample() -> ReportData:
    return ReportData(
        title="netwarden demo <shop>",
        subtitle="test",
        nodes=[
            MapNode("shop.deploy.web", "shop", "web", "frontend"),
            MapNode("shop.deploy.api", "shop", "api", "backend", "quarantined"),
            MapNode("shop.sts.db", "shop", "db", "database", "tightened"),
            MapNode("world", "world", "203.0.113.9"),
        ],
        edges=merge_edges([
            MapEdge("shop.deploy.web", "shop.deploy.api", 8080, "TCP", "allowed", 10),
            MapEdge("shop.deploy.web", "shop.deploy.api", 8080, "TCP", "allowed", 5),
            MapEdge("shop.deploy.api", "shop.sts.db", 5432, "TCP", "allowed", 3),
            MapEdge("shop.deploy.api", "world", 443, "TCP", "anomalous", 1),
            MapEdge("shop.deploy.api", "shop.sts.db", 22, "TCP", "denied", 2),
        ]),
        timeline=[
            TimelineEntry(3.5, "quarantine-pod", "shop/api-1", "falco: Terminal shell in container", ("rule X",), 120.0),
            TimelineEntry(1.0, "baseline", "shop.deploy.api", "created at admission"),
        ],
        policies=[{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"name": "netwarden-deploy-api", "namespace": "shop"}, "spec": {"podSelector": {}}}],
        summary={"policies created": 3, "rolled back": 1},
    )


def test_edges_merge_counts_and_keep_the_worst_status() -> None:
    edges = merge_edges([MapEdge("a", "b", 1, "TCP", "allowed", 2), MapEdge("a", "b", 1, "TCP", "anomalous", 3)])
    assert edges == [MapEdge("a", "b", 1, "TCP", "anomalous", 5)]


def test_map_draws_every_node_and_edge_with_its_status() -> None:
    svg = render_map_svg(sample())
    assert svg.count('class="node ') == 4
    assert svg.count('class="edge ') == 4
    assert 'class="node node-quarantined"' in svg and 'class="edge edge-anomalous"' in svg
    assert "&lt;" not in svg or "<shop>" not in svg  # text is escaped


def test_html_is_self_contained_and_escapes_names() -> None:
    page = render_report_html(sample())
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "netwarden demo &lt;shop&gt;" in page
    assert page.index("created at admission") < page.index("falco: Terminal shell")  # timeline sorted by time
    assert "netwarden-deploy-api" in page


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (.ci/run installs it)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    page = tmp_path / "report.html"
    page.write_text(render_report_html(sample()))
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [browser, *CHROME_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert 'id="network-map"' in dom
    assert dom.count('class="node ') == 4
    assert dom.count('class="timeline-entry"') == 2
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, *CHROME_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1200,900",
         page.as_uri()], capture_output=True, timeout=120, check=True,
    )
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000
