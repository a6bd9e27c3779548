"""The layers hold: import-linter's contracts in pyproject.toml ([tool.importlinter]), checked on every run.

Bottom to top: the pure model, the platform (Kubernetes adapter, configuration, logs, TLS), the
processes (webhook, reconciler, certs: none imports another), the tools. The reconciler's core
imports no I/O layer; localkube, the oracle the product is tested against, imports nothing of it.

Through the library, not its CLI (which reconfigures logging and disables every existing logger).
Inside pytest, tests/ is on sys.path and its folders shadow the packages of the same name
(tests/reconciler, tests/webhook): lint-imports runs with the repository first and those names unresolved.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager, redirect_stdout
from io import StringIO
from typing import Iterator
import tomllib
from pathlib import Path

import pytest
from importlinter import configuration
from importlinter.application.use_cases import lint_imports

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "pyproject.toml"
CONTRACTS = tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]["contracts"]


ROOTS = tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]["root_packages"]


@contextmanager
def repository_first() -> Iterator[None]:
    """sys.path with the repository first and the root packages not yet resolved; both restored after."""
    path, modules = list(sys.path), dict(sys.modules)
    sys.path[:] = [str(REPO)] + [p for p in path if Path(p).resolve() not in (REPO, REPO / "tests") and "/tests/" not in p]
    for name in list(sys.modules):
        if name.split(".")[0] in ROOTS:
            del sys.modules[name]
    try:
        yield
    finally:
        sys.path[:] = path
        sys.modules.clear()
        sys.modules.update(modules)


@pytest.fixture(scope="module")
def report() -> tuple[bool, str]:
    configuration.configure()  # what the CLI does on import
    out = StringIO()
    with repository_first(), redirect_stdout(out):
        passed = lint_imports(config_filename=str(CONFIG), cache_dir=None, no_logo=True)
    return passed, out.getvalue()


def test_the_layers_are_written_as_contracts() -> None:
    assert {"pure-model", "reconciler-core", "localkube-independent", "layers", "one-adapter"} <= {c["id"] for c in CONTRACTS}


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c["id"])
def test_contract_is_kept(contract: dict, report: tuple[bool, str]) -> None:
    assert f"{contract['name']} KEPT" in report[1], report[1]
