"""Least privilege, proven on the real kube-apiserver (issue 8).

The rendered chart is installed onto the real control plane (tests/chart/install.py, engine "kube"):
its ServiceAccounts, Roles, ClusterRoles and bindings are applied as rendered and RBAC is enforced.
The webhook and the reconciler run as subprocesses with their ServiceAccounts' TokenRequest tokens,
the certificate hooks and the rotation CronJob run `netwarden certs sync` with theirs, and the same
scenario as tests/chart/test_rbac_coverage.py runs (tests/chart/rbac_scenario.py): kube-apiserver
itself calls the webhook (its Service resolved through an EndpointSlice), the real ReplicaSet,
StatefulSet, Job and garbage-collector controllers make and remove the pods, and
localkube.kubelet.FakeKubelet gives the pods IPs and readiness.

What each ServiceAccount called comes from kube-apiserver's own audit log (Metadata level), and is
compared with the rendered rules by tests/chart/rbac_check.compare, as the local test does: no
request refused (no 403 in the audit log or any component's log), no rule left unused.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

pytest.importorskip("helm_python", reason="pip install helm-python-sdk")

from tests.chart.expected_rbac import EXPECTED_RBAC  # noqa: E402
from tests.chart.rbac_check import AuditEvent, accounts, compare, grants, read_audit_file  # noqa: E402
from tests.chart.rbac_scenario import Observed, run_scenario  # noqa: E402

pytestmark = [pytest.mark.kube, pytest.mark.timeout(900)]  # the scenario is the first test's set-up

#: What a component logs when the API refuses it (client exceptions, structured logs with the code).
TERMINATING = "because it is being terminated"
FORBIDDEN_IN_LOG = re.compile(r"forbidden|\"(?:status|code)\"\s*:\s*403\b|\(403\)|\b403 Forbidden", re.IGNORECASE)


@dataclass
class RealRun:
    observed: Observed
    #: every request kube-apiserver audited, read after every process stopped (watches closed)
    events: list[AuditEvent]
    #: component log name -> text (webhook, reconciler, every certs job run)
    logs: dict[str, str]
    seconds: float

    def account_events(self) -> list[AuditEvent]:
        users = accounts(self.observed.docs)
        return [event for event in self.events if event.record.user in users]


@pytest.fixture(scope="module")
def real(kube_binaries: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealRun]:
    root = tmp_path_factory.mktemp("least-privilege")
    started = time.monotonic()
    observed = run_scenario(root, engine="kube")
    seconds = time.monotonic() - started
    logs = {path.name: path.read_text(errors="replace") for path in sorted((root / "logs").glob("*.log"))}
    yield RealRun(observed, read_audit_file(root / "audit.log"), logs, seconds)


def test_the_real_server_audited_every_service_account_of_the_chart(real: RealRun) -> None:
    seen = Counter(accounts(real.observed.docs)[event.record.user] for event in real.account_events())
    assert set(seen) == set(accounts(real.observed.docs).values()), seen


def test_rbac_refused_no_request_of_any_service_account(real: RealRun) -> None:
    forbidden = sorted({(event.record.user, event.record.verb, event.record.path, event.message)
                        for event in real.account_events() if event.decision != "allow" or event.code == 401})
    assert not forbidden, f"kube-apiserver's authorizer refused: {json.dumps(forbidden, indent=1)}"


def test_the_only_403s_are_writes_into_a_namespace_being_deleted(real: RealRun) -> None:
    """A 403 RBAC allowed comes from admission: NamespaceLifecycle refuses new objects (here the
    reconciler's Events) in a terminating namespace, which the story deletes while it reacts."""
    refused = [event for event in real.account_events() if event.code == 403]
    other = sorted({(event.record.user, event.record.verb, event.record.path, event.message)
                    for event in refused if TERMINATING not in event.message})
    assert not other, f"403s other than a terminating namespace: {json.dumps(other, indent=1)}"
    print(f"\n403 (NamespaceLifecycle, RBAC allowed): {[(e.record.verb, e.record.path) for e in refused]}")


def unexplained_refusals(text: str) -> list[str]:
    """Log lines reporting a refusal that is not the NamespaceTerminating one (a client exception
    spans lines: status, reason, headers, body; the message is within three lines either side)."""
    lines = text.splitlines()
    return [line for index, line in enumerate(lines)
            if FORBIDDEN_IN_LOG.search(line) and TERMINATING not in "\n".join(lines[max(0, index - 3):index + 4])]


def test_no_component_logged_a_refusal_but_a_terminating_namespace(real: RealRun) -> None:
    assert real.logs, "no component logs"
    found = {name: unexplained_refusals(text)[:5] for name, text in real.logs.items()}
    assert not {name: lines for name, lines in found.items() if lines}, found


def test_every_request_on_the_real_server_is_allowed_by_the_rendered_rules(real: RealRun) -> None:
    denied = compare(real.observed.docs, [event.record for event in real.events]).denied
    assert not denied, f"requests the chart's RBAC does not grant: {json.dumps(denied, indent=1)}"


def test_every_rendered_rule_was_used_on_the_real_server(real: RealRun) -> None:
    unused = compare(real.observed.docs, [event.record for event in real.events]).unused
    assert not unused, f"rules nothing called on the real server: {unused}"


def test_the_real_server_saw_the_calls_the_local_engine_saw(real: RealRun) -> None:
    called = compare(real.observed.docs, [event.record for event in real.events]).called
    assert called == {key: set(value) for key, value in EXPECTED_RBAC.items()}


def test_print_the_per_service_account_table(real: RealRun) -> None:
    """The table for the issue: each rendered rule and how many real requests it allowed."""
    records = [event.record for event in real.account_events()]
    users = accounts(real.observed.docs)
    rows = []
    for grant in sorted(set(grants(real.observed.docs)), key=lambda g: g.row()):
        hits = [r for r in records if users[r.user] == grant.service_account and grant.allows(r)]
        rows.append((*grant.row(), str(len(hits)), hits[0].path if hits else "NOT EXERCISED"))
    print(f"\nreal kube-apiserver: {len(real.events)} audited requests, {len(records)} by the chart's "
          f"ServiceAccounts, scenario {real.seconds:.0f} s")
    print("| ServiceAccount | granted by | apiGroup | resource | verb | resourceNames | requests | e.g. |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    assert all(row[6] != "0" for row in rows)
