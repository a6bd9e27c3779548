"""One pod-admission function: the webhook, the reconciler's backfill and its runtime agree on a baseline.

A native sidecar (an init container with restartPolicy Always) serves for the pod's whole life, so its
ports are the pod's ports: the reconciler's view of a pod must keep them as admission does.
"""

from __future__ import annotations

from typing import Any

from netwarden.model import names
from netwarden.model.admission import AdmissionSettings, PodFacts, admit_pod, container_ports
from netwarden.model.labels import NamespaceFacts
from netwarden.model.policy import PortSpec
from netwarden.reconciler.core.pods import PodRef
from netwarden.webhook.admission import decide_admission

NS = NamespaceFacts("shop", {names.LABEL_INJECT: names.INJECT_ENABLED})
SETTINGS = AdmissionSettings()


def pod_with_native_sidecar() -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "shop",
                     "annotations": {names.ANNOTATION_ALLOW_FROM: "purpose=frontend"}},
        "spec": {
            "containers": [{"name": "app", "ports": [{"containerPort": 8080}]}],
            "initContainers": [
                {"name": "proxy", "restartPolicy": "Always", "ports": [{"containerPort": 15001, "protocol": "udp"}]},
                {"name": "migrate", "ports": [{"containerPort": 7070}]},  # runs to completion: serves nothing
            ],
        },
    }


def admitted(pod: dict[str, Any]) -> dict[str, Any]:
    request = {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
               "namespace": "shop", "object": pod}
    decision = decide_admission(request, NS, {}, "inst", SETTINGS)
    assert decision.policy_manifest is not None
    return decision.policy_manifest


def test_container_ports_keep_native_sidecars_and_drop_run_to_completion_init_containers() -> None:
    assert container_ports(pod_with_native_sidecar()) == (PortSpec("TCP", 8080), PortSpec("UDP", 15001))


def test_reconcilers_pod_view_keeps_native_sidecar_ports_as_admission_does() -> None:
    pod = pod_with_native_sidecar()
    assert PodRef.from_obj(pod).container_ports == container_ports(pod)


def test_backfill_facts_from_the_reconcilers_view_give_the_admission_baseline() -> None:
    pod = pod_with_native_sidecar()
    view = PodRef.from_obj({**pod, "metadata": {**pod["metadata"], "uid": "u1"}})
    backfilled = admit_pod(view.facts, NS, {}, "inst", SETTINGS)
    assert backfilled is not None and backfilled.policy_manifest == admitted(pod)


def test_a_pod_that_does_not_opt_in_is_not_admitted() -> None:
    facts = PodFacts.of_pod(pod_with_native_sidecar(), "shop")
    assert admit_pod(facts, NamespaceFacts("shop", {}), {}, "inst", SETTINGS) is None
