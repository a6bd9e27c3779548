"""Operator commands work from cluster state alone (a kubeconfig, no reconciler process)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone

from kubernetes import client

from netwarden.model import names
from netwarden.cli import main
from netwarden.platform.kube import KubeClient
from netwarden.reconciler.leader import LEASE_CLOCK_SKEW_SECONDS, lease_holder, micro_time
from netwarden.reconciler.policy_ops import Change, Pending, PolicyWriter, store_pending

from .conftest import make_namespace
from .test_controller import baseline_manifest, policy, propose_no_egress


def tightened_web(kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api,
                  annotations: dict[str, str] | None = None) -> tuple[dict, dict]:
    """shop's web baseline, then tightened by netwarden's writer (revision 2): (the original, the tightened)."""
    make_namespace(core, "shop")
    net.create_namespaced_network_policy("shop", baseline_manifest("shop", "web"))
    original = policy(net, "shop", "netwarden-pod-web")
    changed = copy.deepcopy(original)
    changed["spec"]["ingress"] = [{"ports": [{"port": 8080, "protocol": "TCP"}]}]
    PolicyWriter(kube).apply(Change(changed, names.EVENT_POLICY_TIGHTENED, "test", "tighten", annotations=annotations or {}))
    return original, changed


def test_status_explain_and_rollback_from_the_command_line(cluster, kube: KubeClient, core: client.CoreV1Api,
                                                           net: client.NetworkingV1Api, capsys) -> None:
    kubeconfig = cluster.write_kubeconfig()
    evidence = json.dumps([{"kind": "new-peer", "weight": 3.0, "summary": "new peer 10.0.0.9:22"}])
    original, _ = tightened_web(kube, core, net, {names.ANNOTATION_SCORE: "12.50", names.ANNOTATION_EVIDENCE: evidence})

    assert main(["status", "--kubeconfig", kubeconfig, "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["policy"], r["score"], r["revision"]) for r in rows] == [("netwarden-pod-web", "12.50", "2")]

    assert main(["explain", "shop.pod.web", "--kubeconfig", kubeconfig]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["policies"][0]["evidence"][0]["summary"] == "new peer 10.0.0.9:22"
    assert [h["revision"] for h in document["policies"][0]["history"]] == [1]

    assert main(["rollback", "netwarden-pod-web", "-n", "shop", "--kubeconfig", kubeconfig]) == 0
    assert policy(net, "shop", "netwarden-pod-web")["spec"] == original["spec"]
    assert main(["approve", "netwarden-pod-web", "-n", "shop", "--kubeconfig", kubeconfig]) == 1
    assert "no pending change" in capsys.readouterr().err
    assert main(["approve", "netwarden-pod-web", "-n", "shop", "--kubeconfig", kubeconfig, "--lease", "nons"]) == 2
    assert "expected NAMESPACE/NAME" in capsys.readouterr().err


def test_a_write_the_api_server_refuses_is_one_line_saying_who_refused_it(
        cluster, kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api, capsys) -> None:
    """An operator not listed in webhook.policy_writers is refused by netwarden's own guard: the CLI says so in
    one line, with the API server's message, not a traceback."""
    kubeconfig = cluster.write_kubeconfig()
    _, changed = tightened_web(kube, core, net)
    refusal = ('admission webhook "managed-networkpolicies.validate.netwarden.io" denied the request: '
               "annotation netwarden.io/spec-hash on a netwarden policy cannot be changed by alice")
    for method in ("PUT", "PATCH"):
        cluster.faults.add(method, "networkpolicies/netwarden-pod-web", status=403, times=None, message=refusal)
    assert main(["rollback", "netwarden-pod-web", "-n", "shop", "--kubeconfig", kubeconfig]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"error: rollback shop/netwarden-pod-web: the API server refused it (403): {refusal}"]
    assert policy(net, "shop", "netwarden-pod-web")["spec"]["ingress"] == changed["spec"]["ingress"]


def test_approve_while_a_reconciler_leads_asks_it_and_says_so_when_it_does_not_answer(
        cluster, kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api, capsys) -> None:
    """A held Lease means a reconciler runs: it carries the approval out (on the admin tier a quarantine is
    its Deny, which the stored NetworkPolicies are not), so the CLI asks it instead of writing them itself."""
    kubeconfig = cluster.write_kubeconfig()
    current = propose_no_egress(kube, core, net)
    make_namespace(core, "netwarden", opted_in=False)
    now = datetime.now(timezone.utc)
    kube.create_lease({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                       "metadata": {"name": "netwarden-reconciler", "namespace": "netwarden"},
                       "spec": {"holderIdentity": "reconciler-0", "leaseDurationSeconds": 15,
                                "renewTime": micro_time(now)}})
    assert main(["approve", "netwarden-pod-web", "-n", "shop", "--kubeconfig", kubeconfig, "--wait", "0.5"]) == 1
    assert "reconciler-0" in capsys.readouterr().err
    after = policy(net, "shop", "netwarden-pod-web")
    assert after["metadata"]["annotations"][names.ANNOTATION_APPROVE] == "true"  # asked, as kubectl annotate asks
    assert names.ANNOTATION_PENDING in after["metadata"]["annotations"] and after["spec"] == current["spec"]


def test_approve_with_no_reconciler_refuses_a_change_proposed_on_the_admin_tier(
        cluster, kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api, capsys) -> None:
    """On the admin tier a quarantine is the reconciler's Deny; writing the NetworkPolicies the proposal was
    described with instead would hold only until a user's allow policy reopens it, so the CLI refuses."""
    kubeconfig = cluster.write_kubeconfig()
    make_namespace(core, "shop")
    net.create_namespaced_network_policy("shop", baseline_manifest("shop", "web"))
    current = policy(net, "shop", "netwarden-pod-web")
    proposed = copy.deepcopy(current)
    proposed["spec"]["ingress"] = proposed["spec"]["egress"] = []
    store_pending(PolicyWriter(kube), current, Pending((proposed,), (), "alert", "quarantine-workload", 30.0, 0.0,
                                                      tier="ClusterNetworkPolicy"))
    assert main(["approve", "netwarden-pod-web", "-n", "shop", "--kubeconfig", kubeconfig]) == 1
    assert "ClusterNetworkPolicy tier, which only the reconciler writes" in capsys.readouterr().err
    after = policy(net, "shop", "netwarden-pod-web")
    assert after["spec"] == current["spec"] and names.ANNOTATION_PENDING in after["metadata"]["annotations"]


def test_approve_with_no_reconciler_writes_only_the_proposals_own_namespace(
        cluster, kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api, capsys) -> None:
    """Whoever may annotate a policy may rewrite its proposal; the operator approving it may hold wider rights.
    A proposal naming another namespace's policy (or one netwarden does not manage) is refused, not written."""
    kubeconfig = cluster.write_kubeconfig()
    make_namespace(core, "shop")
    make_namespace(core, "bank")
    net.create_namespaced_network_policy("shop", baseline_manifest("shop", "web"))
    current = policy(net, "shop", "netwarden-pod-web")
    elsewhere = baseline_manifest("bank", "vault")
    elsewhere["spec"]["ingress"] = [{}]  # allow all into another team's namespace
    unmanaged = copy.deepcopy(current)
    unmanaged["metadata"] = {"name": "user-allow-all", "namespace": "shop"}
    for planted, said in ((elsewhere, "bank/netwarden-pod-vault"), (unmanaged, "shop/user-allow-all")):
        holder = policy(net, "shop", "netwarden-pod-web")
        store_pending(PolicyWriter(kube), holder, Pending((planted,), (), "tighten", "tighten", 11.0, 0.0))
        assert main(["approve", "netwarden-pod-web", "-n", "shop", "--kubeconfig", kubeconfig]) == 1
        assert f"{said}, not a netwarden NetworkPolicy of namespace shop: refused" in capsys.readouterr().err
    assert not net.list_namespaced_network_policy("bank").items
    assert [p.metadata.name for p in net.list_namespaced_network_policy("shop").items] == ["netwarden-pod-web"]
    holder = policy(net, "shop", "netwarden-pod-web")
    store_pending(PolicyWriter(kube), holder, Pending((), (("bank", "team-policy"),), "relax", "relax", 1.0, 0.0))
    assert main(["approve", "netwarden-pod-web", "-n", "shop", "--kubeconfig", kubeconfig]) == 1
    assert "deletes bank/team-policy, outside namespace shop: refused" in capsys.readouterr().err
    holder = policy(net, "shop", "netwarden-pod-web")
    store_pending(PolicyWriter(kube), holder, Pending((), (("shop",),), "relax", "relax", 1.0, 0.0))
    assert main(["approve", "netwarden-pod-web", "-n", "shop", "--kubeconfig", kubeconfig]) == 1
    assert "a delete is not [namespace, name]" in capsys.readouterr().err
    assert policy(net, "shop", "netwarden-pod-web")["spec"] == current["spec"]


def test_a_lease_is_held_while_its_renewal_is_within_its_duration() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    lease = {"spec": {"holderIdentity": "r-0", "leaseDurationSeconds": 15, "renewTime": micro_time(now)}}
    assert lease_holder(lease, now.timestamp() + 10) == "r-0"
    assert lease_holder(lease, now.timestamp() + 15 + LEASE_CLOCK_SKEW_SECONDS + 1) is None
    assert lease_holder({"spec": {"holderIdentity": "r-0"}}, now.timestamp()) is None
    assert lease_holder(None, now.timestamp()) is None
