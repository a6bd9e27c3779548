"""Issue 12 item 3, the reproduced case on the local engine (the kube tier has its twin in
tests/kube/test_kube_netwarden.py): a two-replica workload, a Critical Falco alert for replica 0
before any flow was learned. Replica 0 is quarantined; replica 1 keeps every connection its
declared baseline allows (by nca and netpol_eval), and the workload's policy is never tightened to
the empty learned baseline, however many more alerts about replica 0 arrive."""

from __future__ import annotations

from netwarden.model import names
from netwarden.model.netpol_eval import ExternalIP
from netwarden.tools.stack import Stack

from .harness import DNS_POD, App, Cluster, PolicyRecorder, connectivity, falco_body, quarantines, send

APP = App("sib", "api", 2, (8080,), {names.ANNOTATION_PURPOSE: "backend", names.ANNOTATION_ALLOW_TO: "cidr=0.0.0.0/0:443"})
UPSTREAM = ExternalIP("198.51.100.7")


def test_an_alert_for_one_replica_before_learning_quarantines_it_and_never_cuts_its_sibling(
        stack: Stack, cluster: Cluster, recorder: PolicyRecorder) -> None:
    cluster.namespace(APP.namespace)
    target, sibling = cluster.deploy_ready([APP])[APP.name]
    baseline = cluster.workload_policy(APP)
    view = connectivity(cluster)
    assert view.pair(f"sib/{sibling.name}", UPSTREAM, 443) == (True, True)
    mark = recorder.mark()
    sent = send(stack, "/signals/falco", falco_body(APP.namespace, target.name))
    assert sent.answer["accepted"] == 1
    recorder.wait_for(mark, quarantines(target.labels[names.LABEL_INSTANCE]))
    # More evidence about the isolated pod runs the decision step again, inside each POST: this is
    # where the empty learned baseline used to be written over the workload's policy.
    for priority in ("Warning", "Error", "Critical"):
        assert send(stack, "/signals/falco", falco_body(APP.namespace, target.name, priority)).answer["accepted"] == 1
    policy = cluster.workload_policy(APP)
    assert policy["metadata"]["annotations"][names.ANNOTATION_STEP] == names.STEP_BASELINE
    assert policy["spec"]["egress"] == baseline["spec"]["egress"], "the workload's rules are the declared ones"
    assert not [c for c in recorder.since(mark) if c.obj["metadata"]["name"] == baseline["metadata"]["name"]
                and (c.obj["metadata"].get("annotations") or {}).get(names.ANNOTATION_STEP) == names.STEP_TIGHTENED]
    view = connectivity(cluster)
    assert view.pair(f"sib/{sibling.name}", UPSTREAM, 443) == (True, True), "the sibling keeps its upstream"
    assert view.pair(f"sib/{sibling.name}", f"{DNS_POD.namespace}/{DNS_POD.name}", 53, "UDP") == (True, True)
    assert view.pair(f"sib/{target.name}", UPSTREAM, 443) == (False, False), "the alerted pod is isolated"
