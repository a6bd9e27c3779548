"""The quick tier stays quick: its modules import nothing that starts a server, a process or an API client."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import QUICK, TESTS, tier_markers

#: Importing any of these means the module talks to the world, so it belongs in the integration tier.
WORLDLY = ("subprocess", "socket", "localkube", "kubernetes", "requests", "gunicorn", "tests.support.nca",
           "netwarden.tools.stack", "netwarden.platform.kube", "netwarden.reconciler.controller", "netwarden.reconciler.runtime", "netwarden.webhook.app",
           "netwarden.webhook.runtime", "netwarden.webhook.baseline_writer")


def quick_modules() -> list[Path]:
    paths: list[Path] = []
    for entry in QUICK:
        path = TESTS / entry
        paths += sorted(path.rglob("test_*.py")) if path.is_dir() else [path]
    return paths


def imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_every_quick_module_exists_and_imports_nothing_worldly() -> None:
    modules = quick_modules()
    assert modules and all(path.exists() for path in modules)
    offenders = {
        path.relative_to(TESTS).as_posix(): sorted(n for n in imported_names(path) if n.split(".")[0] in WORLDLY or n in WORLDLY)
        for path in modules
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_tiers_follow_the_folder() -> None:
    assert tier_markers("core/test_risk.py") == ["quick"]
    assert tier_markers("kube/test_kube_packets.py") == ["integration", "kube"]
    assert tier_markers("e2e/test_signals.py") == ["integration", "slow"]
    assert tier_markers("soak/test_soak.py") == ["integration", "slow"]
    assert tier_markers("scaleout/test_on_kafka.py") == ["integration", "slow"]
    assert tier_markers("soak/test_soak_checks.py") == ["integration"]
    assert tier_markers("netpol/test_against_nca.py") == ["integration", "nca"]
    assert tier_markers("coreish/test_x.py") == ["integration"]
