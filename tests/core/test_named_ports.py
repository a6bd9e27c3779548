"""Issue 14 item 4 in the engine: a declared named port means the workload's own containerPort of that
name on ingress, so learned traffic within the declaration is kept when the workload is tightened."""

from __future__ import annotations

from dataclasses import replace

from netwarden.model.declarations import parse_peer_declarations
from netwarden.model.identity import Workload
from netwarden.model.policy import PortSpec, baseline_intent, named_container_ports
from netwarden.reconciler.core import decision as D
from tests.core.corekit import API, DB, engine, falco, learn_api_to_db, pod_ref


def test_a_declared_named_port_is_resolved_on_the_workloads_own_ports_so_it_can_be_tightened() -> None:
    """Issue 14 item 4 in the engine: db declares `purpose=backend:pg` and names its 5432 `pg`; the
    learned api -> db:5432 edge is within that declaration, so a tightening keeps it (not refused)."""
    e = engine()
    declared = parse_peer_declarations("purpose=backend:pg").rules
    intent = baseline_intent(Workload("shop", "Deployment", "db"), declared, (), [PortSpec("TCP", 5432)],
                             port_names=[("pg", "TCP", 5432)])
    e.set_base_intent(DB, replace(intent, identity=DB))
    t = learn_api_to_db(e)
    (decision,) = e.ingest_alert(falco(t, pod_ref(DB).pod, "error"), t)
    assert decision.action == D.TIGHTEN, decision.reason
    (rule,) = e.state_of(DB).intent.ingress
    assert [p.port for p in rule.ports] == [5432] and rule.peers[0].value == API


def test_named_container_ports_are_read_as_networkpolicy_resolves_them() -> None:
    pod = {"spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080},
                                              {"containerPort": 9090}]}],
                    "initContainers": [{"restartPolicy": "Always", "ports": [{"name": "dns", "containerPort": 53,
                                                                              "protocol": "UDP"}]},
                                       {"ports": [{"name": "setup", "containerPort": 7000}]}]}}
    assert named_container_ports(pod) == (("dns", "UDP", 53), ("http", "TCP", 8080))
