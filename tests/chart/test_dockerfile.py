"""The image the chart runs: built from a wheel, non-root with the uid the chart expects, `netwarden` entrypoint."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    return [line.split(None, 1)[1] for line in DOCKERFILE.splitlines() if line.startswith(f"{name} ")]


def test_image_is_multi_stage_on_a_pinned_python_311_slim_tag() -> None:
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base.group(1)), base
    froms = instructions("FROM")
    assert len(froms) == 2 and froms[0].endswith(" AS build")
    assert "pip wheel" in DOCKERFILE and "COPY --from=build" in DOCKERFILE


def test_image_runs_netwarden_as_the_uid_the_chart_sets() -> None:
    import yaml

    values = yaml.safe_load((REPO / "charts" / "netwarden" / "values.yaml").read_text())
    assert instructions("USER")[-1] == f"{values['podSecurityContext']['runAsUser']}:{values['podSecurityContext']['runAsGroup']}"
    assert json.loads(instructions("ENTRYPOINT")[-1]) == ["netwarden"]


def test_image_copies_the_product_and_leaves_the_tools_and_local_engines_out() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {c.split()[0].rstrip("/") for c in instructions("COPY") if not c.startswith("--from")}
    assert copied & packages == {"netwarden"}, copied
    assert "localkube" not in copied
    assert any("rm -rf netwarden/tools" in run for run in instructions("RUN"))
    assert project["project"]["readme"] in instructions("COPY")[0]
    ignored = {line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert not {"netwarden", "pyproject.toml", project["project"]["readme"]} & ignored
    assert project["project"]["scripts"]["netwarden"]


#: Run as the image would: netwarden.tools and localkube cannot be imported at all.
WITHOUT_TOOLS = """
import importlib.abc, sys
class NoTools(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in ("netwarden.tools", "localkube") or name.startswith(("netwarden.tools.", "localkube.")):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NoTools())
from netwarden.cli import main
for command in ("webhook", "reconciler", "certs"):
    try:
        main([command, "--help"])
    except SystemExit as done:
        assert done.code == 0, (command, done.code)
sys.exit(main(sys.argv[1:]))
"""


def test_the_product_runs_without_the_tools_and_a_tool_command_says_why_in_one_line() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", WITHOUT_TOOLS, "demo"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "netwarden demo" in lines[0] and "not shipped in this image" in lines[0], done.stderr
