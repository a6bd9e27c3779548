"""Issue 14 item 4: a bad allow-from/allow-to entry is a Warning Event on the workload (its Deployment, or
the bare pod), once per workload per distinct warning, also across a reconciler restart; a port name
renders as a named port in the workload's baseline policy. LocalKube over real HTTP, the real runtime."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from netwarden.model import names
from netwarden.model.declarations import declaration_warnings
from netwarden.platform.kube import KubeClient

from .conftest import make_deployment, make_namespace, make_pod, managed_labels, wait_until
from .test_controller import start_runtime

NS = "hello-app"
DECLARED = {names.ANNOTATION_ALLOW_FROM: "purpose=frontend:http, purpose=web:HTTP, colour=blue",
            names.ANNOTATION_ALLOW_TO: "purpose=db:5432"}


def warning_events(core: client.CoreV1Api, kind: str, name: str) -> list[Any]:
    return [e for e in core.list_namespaced_event(NS).items
            if e.reason == names.EVENT_DECLARATION_IGNORED and e.involved_object.kind == kind
            and e.involved_object.name == name]


def test_declaration_warnings_are_events_on_the_deployment_once_each(cluster: Any, kube: KubeClient,
                                                                      core: client.CoreV1Api,
                                                                      net: client.NetworkingV1Api) -> None:
    make_namespace(core, NS, mode=names.MODE_ENFORCE)
    owner = make_deployment(client.AppsV1Api(cluster.api_client()), NS, "nginx", "676b6c5bbc")
    # the Deployment's pods as its controller's admission labelled them (a pod the webhook never saw is its
    # own workload: who created it is unknown); the missing baseline is re-created from them
    for pod in ("nginx-676b6c5bbc-4xc6t", "nginx-676b6c5bbc-q9wzl"):
        make_pod(core, NS, pod, annotations=DECLARED, owner=owner, ports=(8080,),
                 labels=managed_labels(f"{NS}.deploy.nginx", f"inst-{pod}"))
    expected = set(declaration_warnings(DECLARED))
    assert len(expected) == 2  # the bad port name and the unknown kind; the good entries apply
    runtime = start_runtime(kube, grace=3600)
    try:
        events = wait_until(lambda: len(warning_events(core, "Deployment", "nginx")) >= 2 and
                            warning_events(core, "Deployment", "nginx"), what="the warnings on the Deployment")
        assert {e.message for e in events} == expected and {e.type for e in events} == {"Warning"}
        assert {e.involved_object.uid for e in events} == {owner_uid(cluster)}
        policy = net.read_namespaced_network_policy("netwarden-deploy-nginx", NS)
        ports = [p.port for rule in policy.spec.ingress for p in rule.ports or []]
        assert ports == ["http"], "purpose=frontend:http renders as the named port"
    finally:
        runtime.stop()
    # A new leader: what the old one said is read back, not repeated; a new warning is told once.
    make_pod(core, NS, "nginx-676b6c5bbc-z8k2p", owner=owner,
             annotations={names.ANNOTATION_ALLOW_TO: "cidr=10.0.0.300/8"},
             labels=managed_labels(f"{NS}.deploy.nginx", "inst-nginx-676b6c5bbc-z8k2p"))
    runtime = start_runtime(kube, grace=3600)
    try:
        new = (f"annotation {names.ANNOTATION_ALLOW_TO}: 'cidr=10.0.0.300/8': invalid CIDR: "
               "'10.0.0.300/8' does not appear to be an IPv4 or IPv6 network; entry ignored")
        # Told after the old ones would be (a pod's warnings in order): once it is there, any repeat is too.
        events = wait_until(lambda: [e for e in warning_events(core, "Deployment", "nginx") if e.message == new]
                            and warning_events(core, "Deployment", "nginx"), what="the new pod's warning")
        assert sorted(e.message for e in events) == sorted([*expected, new])
    finally:
        runtime.stop()
    assert warning_events(core, "Pod", "nginx-676b6c5bbc-4xc6t") == [], "on the workload, not on its pods"


def test_a_bare_pods_warning_is_an_event_on_the_pod(kube: KubeClient, core: client.CoreV1Api) -> None:
    make_namespace(core, NS, mode=names.MODE_ENFORCE)
    make_pod(core, NS, "debug", annotations={names.ANNOTATION_ALLOW_FROM: "purpose=ops:70000"})
    runtime = start_runtime(kube, grace=3600)
    try:
        (event,) = wait_until(lambda: warning_events(core, "Pod", "debug"), what="the warning on the pod")
        assert "'purpose=ops:70000': port out of range 1-65535" in event.message
    finally:
        runtime.stop()


def owner_uid(cluster: Any) -> str:
    return client.AppsV1Api(cluster.api_client()).read_namespaced_deployment("nginx", NS).metadata.uid
