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


def test_image_copies_every_package_the_wheel_includes_and_dockerignore_keeps_them() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {c.split()[0].rstrip("/") for c in instructions("COPY") if not c.startswith("--from")}
    assert packages <= copied, packages - copied
    assert project["project"]["readme"] in instructions("COPY")[0]
    ignored = {line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert not (packages | {"pyproject.toml", project["project"]["readme"]}) & ignored
    assert project["project"]["scripts"]["netwarden"]
