"""Test tiers, marked from where a test lives so that no test can forget its tier.

* quick: the pure model and core (no process, no server, no external tool). `pytest -m quick`.
* integration: real HTTP servers, processes and the embedded local API server, in this process or beside it.
* nca: judged by network-config-analyzer (an external tool installed by .ci/run into .tools/nca).
* kube: the real upstream control plane (`netwarden controlplane build`); skipped when it is not built.
* slow: whole stories (demo, e2e, soak, RBAC coverage); also marked by the modules themselves.

Every test has exactly one of quick and integration; kube, nca and slow add to integration.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

#: Folders and modules of the quick tier: pure code only. A module here that starts a server is a bug.
QUICK = (
    "model",
    "core",
    "signals",
    "netpol/test_netpol_eval.py",
    "netpol/test_netpol_properties.py",
    "netpol/test_admin_tier.py",
    "netpol/test_containment.py",
    "webhook/test_admission_network_policy_warning.py",
    "webhook/test_admission_core.py",
    "reconciler/test_queue.py",
    "certs/test_certs_pki.py",
    "sources/test_protos.py",
    "sources/test_records.py",
)
#: Whole stories: multi-process runs that take tens of seconds each.
SLOW = ("e2e", "demo", "soak/test_soak.py", "chart/test_rbac_coverage.py", "chart/test_chart_on_localkube.py", "scaleout")
NCA = ("netpol/test_against_nca.py", "netpol/test_nca_harness.py", "webhook/test_baselines_vs_nca.py")


def _under(relative: str, prefixes: tuple[str, ...]) -> bool:
    return any(relative == prefix or relative.startswith(prefix.rstrip("/") + "/") for prefix in prefixes)


def tier_markers(relative: str) -> list[str]:
    """The tier markers for a test module at `relative` (a POSIX path below tests/)."""
    if _under(relative, QUICK):
        return ["quick"]
    markers = ["integration"]
    if _under(relative, ("kube",)):
        markers.append("kube")
    if _under(relative, SLOW):
        markers.append("slow")
    if _under(relative, NCA):
        markers.append("nca")
    return markers


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        relative = Path(str(item.fspath)).resolve().relative_to(TESTS).as_posix()
        for marker in tier_markers(relative):
            item.add_marker(marker)
