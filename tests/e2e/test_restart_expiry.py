"""Issue 12 item 5, "never forgotten": quarantines made before a kill -9 end at their `expires-at`
after the restart, not never and not at once, whether the new process restores the saved state (the
evidence too: the state is saved beside a quarantine's first write) or only reads the quarantines back
from the cluster's annotations. An expired quarantine ends once its pod's score is below the quarantine
threshold, as in a process that never died; so this module's stack has a short quarantine expiry, an
evidence half-life short enough that the score is below that threshold by then, and a lift threshold low
enough that decay alone does not lift it first. Everything else is E2E_CONFIG."""

from __future__ import annotations

import copy
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Iterator

import pytest

from netwarden.model import names
from netwarden.tools.stack import Stack, start_stack
from netwarden.model.policy import quarantine_policy_name

from .harness import E2E_CONFIG, LATENCIES, App, Cluster, PolicyRecorder, falco_body, send, sigkill, wait_until

QUARANTINE_EXPIRY_SECONDS = 8.0
APPS = (App("exp", "a", 1), App("exp", "b", 1))
#: Pods enough that two quarantines stay inside the blast-radius guard rail (half the pods in E2E_CONFIG).
FILLER = App("exp", "filler", 2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = copy.deepcopy(E2E_CONFIG)
    config["core"]["quarantine_expiry_seconds"] = QUARANTINE_EXPIRY_SECONDS
    config["core"]["half_life_seconds"] = 1.0  # an alert's score is a 256th of itself at the expiry
    config["core"]["lift_threshold"] = 0.001  # and above this until well after it
    os.environ["NETWARDEN_POD_IP"] = "127.0.0.1"
    try:
        running = start_stack(Path(tmp_path_factory.mktemp("stack")), reconciler_config=config, progress=lambda _m: None)
    finally:
        os.environ.pop("NETWARDEN_POD_IP", None)
    try:
        yield running
    finally:
        running.stop()


def expires_at(cluster: Cluster, name: str) -> float | None:
    found = [p for p in cluster.managed() if p["metadata"]["name"] == name]
    text = (found[0]["metadata"].get("annotations") or {}).get(names.ANNOTATION_EXPIRES_AT) if found else None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def test_quarantines_made_before_a_kill_9_end_at_their_expires_at_after_the_restart(
        stack: Stack, cluster: Cluster, recorder: PolicyRecorder) -> None:
    cluster.namespace("exp")
    ends = cluster.deploy_ready([*APPS, FILLER])
    names_ = []
    for app in APPS:
        pod = ends[app.name][0]
        assert send(stack, "/signals/falco", falco_body("exp", pod.name)).answer["accepted"] == 1
        names_.append(quarantine_policy_name(pod.labels[names.LABEL_INSTANCE]))
    deadlines = [wait_until(lambda n=n: expires_at(cluster, n), what=f"{n} with its expires-at") for n in names_]
    process = stack.process("reconciler")
    mark = recorder.mark()
    sigkill(process)
    assert process.popen.returncode == -9
    assert all(expires_at(cluster, n) for n in names_), "the killed process lifted nothing"
    port = int(stack.signals_url.rsplit(":", 1)[1])
    stack.add_reconciler("reconciler-restarted", "netwarden-demo-0", port)
    wall = time.time() - time.monotonic()
    for name, deadline in zip(names_, deadlines):
        deleted = recorder.wait_for(mark, lambda c, n=name: c.kind == "DELETED" and c.obj["metadata"]["name"] == n,
                                    timeout=30.0)
        lag = wall + deleted.seen - deadline
        assert lag >= 0, "not lifted before its expiry"
        LATENCIES.setdefault("expires-at -> lifted, after kill -9", []).append((lag, lag))
    for app in APPS:
        selector = (cluster.workload_policy(app) or {}).get("spec", {}).get("podSelector", {})
        assert not selector.get("matchExpressions"), f"{app.name}'s pod is back under its workload's policy"
