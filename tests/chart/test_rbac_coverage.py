"""RBAC is exactly what the code calls: observed requests per ServiceAccount == the chart's rules.

The chart is installed onto LocalKube (tests/chart/install.py) with a bearer token per
ServiceAccount, so every request a component makes is audited under its own username. The webhook
(gunicorn) and the reconciler run as the rendered Deployments; the certificate hooks and the
rotation CronJob run `netwarden certs sync` as rendered. A scenario then exercises every feature:
backfill of a pod that predates the install, admission of Deployment/StatefulSet/DaemonSet/Job pods
(owner verification ReplicaSet -> Deployment, Job -> CronJob), the demo story (learning, tighten,
quarantine, automatic rollback, scale-down cleanup, namespace deletion), a CA rollover step by the
CronJob and an upgrade's hooks. Per ServiceAccount, every request must be allowed by a rendered
Role/ClusterRole rule (namespace and resourceNames included) and every rule must have been used.
The scenario is tests/chart/rbac_scenario.py and the comparison tests/chart/rbac_check.py, shared with
tests/kube/test_kube_least_privilege.py, which runs both on the real kube-apiserver.

tests/chart/RBAC.md lists each rule and the scenario phase that exercised it; the test checks it.
Regenerate with NETWARDEN_WRITE_RBAC_MD=1 after a deliberate change. A rule called on a timer (the leader
Lease's renewals, every retry_period) is named in the phase with the most of them (the demo story, the longest):
the first phase a renewal falls in depends on the machine's speed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("helm_python", reason="pip install helm-python-sdk")

from netwarden.certs import inject  # noqa: E402
from localkube.audit import AuditRecord  # noqa: E402
from netwarden.platform import kube as netwarden_kube  # noqa: E402
from tests.chart.chartkit import render  # noqa: E402
from tests.chart.expected_rbac import EXPECTED_RBAC  # noqa: E402
from tests.chart.rbac_check import compare, grants, records_by_account  # noqa: E402
from tests.chart.rbac_scenario import STORY_VALUES, UPGRADE_VALUES, Observed, run_scenario  # noqa: E402

#: The scenario (a chart install, the demo story, a rollover and an upgrade) is the first test's set-up: about
#: 80 s on a quiet machine, past the suite's 300 s default on a loaded one.
pytestmark = pytest.mark.timeout(900)

RBAC_MD = Path(__file__).with_name("RBAC.md")
#: (resource, verb) made on a timer, not by a scenario step: documented in the phase with the most of them.
TIMER_CALLS = frozenset({("leases", "update")})


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    yield run_scenario(tmp_path_factory.mktemp("rbac"))


def resource_records(observed: Observed) -> dict[str, list[tuple[int, AuditRecord]]]:
    return records_by_account(observed.docs, observed.records)


# --- the checks ------------------------------------------------------------------------------------
def test_every_request_of_every_service_account_is_allowed_by_the_chart(observed: Observed) -> None:
    denied = compare(observed.docs, observed.records).denied
    assert not denied, f"requests the chart's RBAC would refuse: {json.dumps(denied, indent=1)}"


def test_every_rule_the_chart_grants_was_exercised(observed: Observed) -> None:
    unused = compare(observed.docs, observed.records).unused
    assert not unused, f"rules nothing called: {unused}"


def test_the_upgrade_render_grants_the_same_rules() -> None:
    base = {grant.row() for grant in grants(render(STORY_VALUES))}
    assert {grant.row() for grant in grants(render({**STORY_VALUES, **UPGRADE_VALUES}))} == base
    assert {grant.row() for grant in grants(render())} == base


def test_the_code_s_call_lists_and_the_expected_rbac_are_what_was_observed(observed: Observed) -> None:
    triples = compare(observed.docs, observed.records).called
    assert {key: set(value) for key, value in EXPECTED_RBAC.items()} == triples
    assert set(netwarden_kube.API_CALLS) == triples["webhook"] | triples["reconciler"]
    assert set(inject.CERT_JOB_API_CALLS) == triples["certs"] | triples["certs-hook"]


def rbac_table(observed: Observed) -> list[tuple[str, ...]]:
    per = resource_records(observed)
    rows = []
    for grant in sorted(set(grants(observed.docs)), key=lambda g: g.row()):
        hits = [(index, record) for index, record in per[grant.service_account] if grant.allows(record)]
        phases = [observed.phase_of(index) for index, _ in hits]
        if (grant.resource, grant.verb) in TIMER_CALLS:
            phase = max(phases, key=phases.count) if phases else "NOT EXERCISED"
        else:
            phase = phases[0] if phases else "NOT EXERCISED"
        example = hits[0][1].path if hits else ""
        rows.append((*grant.row(), phase, f"`{example}` ({len(hits)} requests)"))
    return rows


def render_markdown(rows: list[tuple[str, ...]]) -> str:
    lines = [
        "# RBAC: every rule the chart grants, and what exercised it",
        "",
        "Generated by tests/chart/test_rbac_coverage.py (NETWARDEN_WRITE_RBAC_MD=1) from the requests LocalKube",
        "audited per ServiceAccount while the installed chart ran the coverage scenario. The test checks that",
        "the first six columns are exactly the rendered rules and that each rule was exercised in the phase named.",
        "`*` = any name; Role rules apply in the release namespace only.",
        "",
        "| ServiceAccount | granted by | apiGroup | resource | verb | resourceNames | first exercised in | e.g. |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def test_rbac_md_lists_each_rule_and_a_phase_that_exercised_it(observed: Observed) -> None:
    rows = rbac_table(observed)
    if os.environ.get("NETWARDEN_WRITE_RBAC_MD"):
        RBAC_MD.write_text(render_markdown(rows))
    documented = [[cell.strip() for cell in line.strip().strip("|").split(" | ")] for line in RBAC_MD.read_text().splitlines()
                  if line.startswith("| ") and not line.startswith("| ServiceAccount")]
    assert [tuple(cells[:6]) for cells in documented] == [row[:6] for row in rows]
    per = resource_records(observed)
    by_row = {grant.row(): grant for grant in grants(observed.docs)}
    for cells in documented:
        grant = by_row[tuple(cells[:6])]
        phases = {observed.phase_of(index) for index, record in per[grant.service_account] if grant.allows(record)}
        assert cells[6].strip() in phases, (cells[:6], cells[6], sorted(phases))
