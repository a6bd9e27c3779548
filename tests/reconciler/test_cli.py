"""Operator commands work from cluster state alone (a kubeconfig, no reconciler process)."""

from __future__ import annotations

import copy
import json

from kubernetes import client

from netwarden.model import names
from netwarden.cli import main
from netwarden.platform.kube import KubeClient
from netwarden.reconciler.policy_ops import Change, PolicyWriter

from .conftest import make_namespace
from .test_controller import baseline_manifest, policy


def test_status_explain_and_rollback_from_the_command_line(cluster, kube: KubeClient, core: client.CoreV1Api,
                                                           net: client.NetworkingV1Api, capsys) -> None:
    kubeconfig = cluster.write_kubeconfig()
    make_namespace(core, "shop")
    net.create_namespaced_network_policy("shop", baseline_manifest("shop", "web"))
    original = policy(net, "shop", "netwarden-pod-web")
    changed = copy.deepcopy(original)
    changed["spec"]["ingress"] = [{"ports": [{"port": 8080, "protocol": "TCP"}]}]
    evidence = json.dumps([{"kind": "new-peer", "weight": 3.0, "summary": "new peer 10.0.0.9:22"}])
    PolicyWriter(kube).apply(Change(changed, names.EVENT_POLICY_TIGHTENED, "test", "tighten",
                                    annotations={names.ANNOTATION_SCORE: "12.50", names.ANNOTATION_EVIDENCE: evidence}))

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
