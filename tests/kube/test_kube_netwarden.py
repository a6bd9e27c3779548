"""netwarden on the genuine control plane (issue 8): the real kube-apiserver calls the webhook, the real
ReplicaSet controller's pods go through it, real validation accepts every policy netwarden renders,
the real garbage collector follows its ownerReferences, and two reconcilers elect through real Leases.

One stack (`netwarden.tools.stack.start_stack(engine="kube")`: etcd, kube-apiserver, kube-controller-manager,
the webhook under gunicorn with TLS registered by caBundle, the reconciler) serves the module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from typing import Any, Iterator

import pytest
import requests
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.rest import ApiException

from netwarden.model import names
from netwarden.model.identity import Workload
from netwarden.model.policy import (
    ANY_NAMESPACE,
    DnsTarget,
    Peer,
    PolicyIntent,
    PolicyMeta,
    PortSpec,
    Rule,
    baseline_intent,
    baseline_policy_name,
    quarantine_intent,
    quarantine_policy_name,
    render_network_policy,
    workload_quarantine_intent,
)
from netwarden.model.netpol_eval import ExternalIP, PodInfo, PolicySet
from netwarden.tools.stack import Stack, free_port, start_stack, start_webhook, stop_group, webhook_configurations
from netwarden.reconciler.policy_ops import canonical_spec
from tests.support.data import falco_body
from tests.support.namespaces import OPTED_IN_ENFORCE, fresh_namespace
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kube

REPLICASET_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"
DNS = DnsTarget.from_selector("kube-system", {"k8s-app": "kube-dns"})




# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack(kube_binaries: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = start_stack(tmp_path_factory.mktemp("kube-stack"), engine="kube", progress=lambda _: None)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def api(stack: Stack) -> client.ApiClient:
    return stack.api_client()


@pytest.fixture
def opted_in(api: client.ApiClient) -> Iterator[str]:
    """A namespace opted in to netwarden (enforce mode) whose default ServiceAccount exists."""
    with fresh_namespace(api, "nw", OPTED_IN_ENFORCE) as name:
        yield name


# --- helpers -------------------------------------------------------------------------------------

def pod_body(name: str, purpose: str = "frontend") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": {names.ANNOTATION_PURPOSE: purpose}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 8080}]}]}}


def deployment_body(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {"metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels, "annotations": {
                         names.ANNOTATION_PURPOSE: "backend", names.ANNOTATION_ALLOW_FROM: "purpose=frontend"}},
                         "spec": {"containers": [{"name": "app", "image": "nginx:1.27",
                                                  "ports": [{"containerPort": 8080}]}]}}}}


def missing(read: Any) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def admission_reviews(stack: Stack, namespace: str, webhook: str = "mutate") -> list[dict[str, Any]]:
    """The webhook's own log of the AdmissionReviews it answered for a namespace (one JSON object a line),
    of one webhook (mutate; validate also judges every CREATE)."""
    out = []
    for line in (stack.workdir / "webhook.log").read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "admission_review" and record.get("namespace") == namespace \
                and record.get("webhook") == webhook:
            out.append(record)
    return out


def policy_dict(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return api.sanitize_for_serialization(client.NetworkingV1Api(api).read_namespaced_network_policy(name, namespace))


# --- the admission chain -------------------------------------------------------------------------

def test_the_real_apiserver_calls_the_webhook_when_a_pod_is_created(stack: Stack, api: client.ApiClient,
                                                                    opted_in: str) -> None:
    made = client.CoreV1Api(api).create_namespaced_pod(opted_in, pod_body("solo"))
    # the labels are in the create response: the webhook mutated the pod inside the request
    assert made.metadata.labels[names.LABEL_IDENTITY] == f"{opted_in}.pod.solo"
    assert made.metadata.labels[names.LABEL_PURPOSE] == "frontend" and made.metadata.labels[names.LABEL_INSTANCE]
    # and its baseline was written during admission, before the create returned
    policy = policy_dict(api, opted_in, "netwarden-pod-solo")
    assert policy["metadata"]["annotations"][names.ANNOTATION_REASON] == names.REASON_CREATED_AT_ADMISSION
    assert policy["metadata"]["labels"][names.LABEL_POLICY_ROLE] == names.ROLE_BASELINE


def test_the_label_guard_is_sent_only_the_updates_that_touch_a_reserved_label(stack: Stack, api: client.ApiClient,
                                                                             opted_in: str) -> None:
    """The real API server evaluates the guard's matchCondition (CEL): status and other updates never
    reach the webhook; one that changes, adds or removes a netwarden.io/ label still does, and is refused."""
    core = client.CoreV1Api(api)
    made = core.create_namespaced_pod(opted_in, pod_body("guarded"))
    core.patch_namespaced_pod("guarded", opted_in, {"metadata": {"annotations": {"note": "x"},
                                                                  "labels": {"app": "web", names.LABEL_INJECT: "enabled"}}})
    core.patch_namespaced_pod_status("guarded", opted_in, {"status": {"conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}})
    identity = made.metadata.labels[names.LABEL_IDENTITY]
    changes = [{"metadata": {"labels": {names.LABEL_IDENTITY: f"{opted_in}.pod.other"}}},
               {"metadata": {"labels": {f"{names.PREFIX}/extra": "x"}}},
               {"metadata": {"labels": {names.LABEL_PURPOSE: None}}}]
    for change in changes:
        with pytest.raises(ApiException) as refused:
            core.patch_namespaced_pod("guarded", opted_in, change)
        assert refused.value.status == 403, refused.value.body
    with pytest.raises(ApiException) as refused:
        core.patch_namespaced_pod_status("guarded", opted_in, changes[0])
    assert refused.value.status == 403
    assert core.read_namespaced_pod("guarded", opted_in).metadata.labels[names.LABEL_IDENTITY] == identity
    # the API server re-runs admission when a patch meets a concurrent write (the kubelet's status), so a
    # change can be reviewed more than once: count the distinct refusals, not the reviews
    def refusals() -> set[tuple[str | None, str]]:
        return {(r.get("subresource"), r.get("message", "")) for r in admission_reviews(stack, opted_in, "validate")
                if r.get("operation") == "UPDATE"}
    wait_for(lambda: len(refusals()) == len(changes) + 1, "the refused updates' reviews")
    updates = [r for r in admission_reviews(stack, opted_in, "validate") if r.get("operation") == "UPDATE"]
    assert all(r["outcome"] == "refused" for r in updates), "an update that leaves the labels alone was sent"


def register_webhook(api: client.ApiClient, url: str | None, ca_pem: bytes) -> None:
    """Point the netwarden webhook configurations at `url` (None: none registered)."""
    admission = client.AdmissionregistrationV1Api(api)
    for delete in (admission.delete_mutating_webhook_configuration, admission.delete_validating_webhook_configuration):
        missing(lambda: delete("netwarden"))  # deleted, or none was registered
    if url is not None:
        mutating, validating = webhook_configurations(url, ca_pem)
        admission.create_mutating_webhook_configuration(mutating)
        admission.create_validating_webhook_configuration(validating)


def serving(api: client.ApiClient, namespace: str, policy: str | None = None) -> bool:
    """Whether the API server calls a webhook now: a probe pod comes back labelled (and `policy` exists)."""
    made = client.CoreV1Api(api).create_namespaced_pod(namespace, pod_body(f"probe-{uuid.uuid4().hex[:6]}"))
    if names.LABEL_IDENTITY not in (made.metadata.labels or {}):
        return False
    return policy is None or not missing(
        lambda: client.NetworkingV1Api(api).read_namespaced_network_policy(policy, namespace))


def test_with_the_baseline_written_after_the_answer_a_new_pod_is_contained_from_the_moment_it_exists(
        stack: Stack, api: client.ApiClient, opted_in: str) -> None:
    """webhook.baseline_write async on the real API server: when the create returns, the namespace's
    admission guard exists (written inside the review) and, by NetworkPolicy semantics, nothing reaches
    the pod and the pod reaches nothing but what its baseline allows, with or without the baseline yet."""
    config = stack.workdir / "netwarden-async.yaml"
    config.write_text(yaml.safe_dump({"cluster": {"dns_service": "kube-system/kube-dns",
                                                  "default_mode": names.MODE_ENFORCE},
                                      "webhook": {"baseline_write": "async"}}))
    ca_pem = open(stack.ca_file, "rb").read()
    tls = (stack.ca_file, str(stack.workdir / "tls" / "tls.crt"), str(stack.workdir / "tls" / "tls.key"))
    register_webhook(api, None, ca_pem)
    webhook, url = start_webhook(stack.workdir, stack.kubeconfig, api, tls,
                                 {"NETWARDEN_CONFIG": str(config), "NETWARDEN_LOG_LEVEL": "WARNING"})
    try:
        with fresh_namespace(api, "probe", OPTED_IN_ENFORCE) as probe:
            wait_for(lambda: serving(api, probe, names.ADMISSION_GUARD_POLICY_NAME), "the async webhook called")
        core, net = client.CoreV1Api(api), client.NetworkingV1Api(api)
        made = core.create_namespaced_pod(opted_in, pod_body("first"))
        present = [api.sanitize_for_serialization(p) for p in net.list_namespaced_network_policy(opted_in).items]
        assert names.ADMISSION_GUARD_POLICY_NAME in [p["metadata"]["name"] for p in present]
        pod = PodInfo(opted_in, "first", made.metadata.labels, ip="10.0.0.5")
        peer = PodInfo(opted_in, "peer", {"app": "peer"}, ip="10.0.0.6")
        world = ExternalIP("203.0.113.9")
        for policies in (present, [p for p in present if p["metadata"]["name"] == names.ADMISSION_GUARD_POLICY_NAME]):
            evaluator = PolicySet(policies)
            assert not any([evaluator.is_allowed(peer, pod, 8080), evaluator.is_allowed(world, pod, 8080),
                            evaluator.is_allowed(pod, peer, 8080), evaluator.is_allowed(pod, world, 443)])
        wait_for(lambda: not missing(lambda: net.read_namespaced_network_policy("netwarden-pod-first", opted_in)),
                 "the baseline, written just after the answer")
    finally:
        webhook.stop()
        register_webhook(api, stack.webhook_url, ca_pem)
        with fresh_namespace(api, "probe", OPTED_IN_ENFORCE) as probe:
            wait_for(lambda: serving(api, probe), "the stack's webhook called again")


def test_pods_the_replicaset_controller_creates_get_labels_and_one_baseline_owned_by_the_deployment(
        stack: Stack, api: client.ApiClient, opted_in: str) -> None:
    apps, core, net = client.AppsV1Api(api), client.CoreV1Api(api), client.NetworkingV1Api(api)
    deployment = apps.create_namespaced_deployment(opted_in, deployment_body("api", replicas=3))
    pods = wait_for(lambda: (found := core.list_namespaced_pod(opted_in, label_selector="app=api").items)
                    and len(found) == 3 and found, "3 pods from the ReplicaSet controller")
    identity = f"{opted_in}.deploy.api"
    assert {p.metadata.labels[names.LABEL_IDENTITY] for p in pods} == {identity}
    assert len({p.metadata.labels[names.LABEL_INSTANCE] for p in pods}) == 3
    assert all(p.metadata.owner_references[0].kind == "ReplicaSet" for p in pods)  # made by the real controller
    policies = net.list_namespaced_network_policy(opted_in, label_selector=f"{names.LABEL_IDENTITY}={identity}").items
    assert [p.metadata.name for p in policies] == ["netwarden-deploy-api"]
    owner = policies[0].metadata.owner_references
    assert [(o.kind, o.name, o.uid) for o in owner] == [("Deployment", "api", deployment.metadata.uid)]
    # the webhook saw each create, sent by the real ReplicaSet controller's service account
    reviews = wait_for(lambda: [r for r in admission_reviews(stack, opted_in) if r.get("workload") == identity]
                       if len(admission_reviews(stack, opted_in)) >= 3 else None, "3 admission reviews logged")
    assert {r["user"] for r in reviews} == {REPLICASET_CONTROLLER}
    # one write created the baseline; the others found it (this worker's cache, or a 409 from the other worker)
    assert sorted(r["policy"] for r in reviews).count("created") == 1
    assert {r["policy"] for r in reviews} <= {"created", "cached", "exists"}


def test_the_real_garbage_collector_removes_the_baseline_with_its_deployment(api: client.ApiClient,
                                                                             opted_in: str) -> None:
    apps, net = client.AppsV1Api(api), client.NetworkingV1Api(api)
    apps.create_namespaced_deployment(opted_in, deployment_body("gc", replicas=1))
    wait_for(lambda: not missing(lambda: net.read_namespaced_network_policy("netwarden-deploy-gc", opted_in)),
             "the baseline")
    apps.delete_namespaced_deployment("gc", opted_in, propagation_policy="Background")
    # the reconciler's own cleanup waits cleanup_grace_seconds (300 s): only the GC can be this quick
    wait_for(lambda: missing(lambda: net.read_namespaced_network_policy("netwarden-deploy-gc", opted_in)),
             "the garbage collector to delete the baseline", timeout=60)


def test_a_server_side_dry_run_is_mutated_but_has_no_side_effects(stack: Stack, api: client.ApiClient,
                                                                  opted_in: str) -> None:
    core, net = client.CoreV1Api(api), client.NetworkingV1Api(api)
    made = core.create_namespaced_pod(opted_in, pod_body("ghost"), dry_run="All")
    assert made.metadata.labels[names.LABEL_IDENTITY] == f"{opted_in}.pod.ghost"  # the webhook was called
    kubectl = subprocess.run(["kubectl", "--kubeconfig", stack.kubeconfig, "-n", opted_in, "create",
                              "--dry-run=server", "-o", "json", "-f", "-"],
                             input=yaml.safe_dump(pod_body("phantom")), capture_output=True, text=True, timeout=60)
    assert kubectl.returncode == 0, kubectl.stderr
    assert json.loads(kubectl.stdout)["metadata"]["labels"][names.LABEL_IDENTITY] == f"{opted_in}.pod.phantom"
    reviews = [r for r in admission_reviews(stack, opted_in) if r.get("pod") in ("ghost", "phantom")]
    assert sorted((r["pod"], r["dry_run"], r["policy"]) for r in reviews) == [("ghost", True, "dry-run"),
                                                                              ("phantom", True, "dry-run")]
    for name in ("ghost", "phantom"):
        assert missing(lambda: core.read_namespaced_pod(name, opted_in))
        assert missing(lambda: net.read_namespaced_network_policy(f"netwarden-pod-{name}", opted_in))
    assert net.list_namespaced_network_policy(opted_in).items == []
    assert [e for e in core.list_namespaced_event(opted_in).items if e.reason == names.EVENT_POLICY_CREATED] == []


def test_with_the_webhook_down_and_failure_policy_ignore_pods_are_still_created(
        stack: Stack, api: client.ApiClient, opted_in: str) -> None:
    core = client.CoreV1Api(api)
    webhook = stack.process("webhook")
    webhook.stop()
    try:
        made = core.create_namespaced_pod(opted_in, pod_body("unguarded"))
        assert names.LABEL_IDENTITY not in (made.metadata.labels or {})  # admitted without netwarden
        # the reconciler's safety net labels it and writes its baseline afterwards
        wait_for(lambda: (core.read_namespaced_pod("unguarded", opted_in).metadata.labels or {})
                 .get(names.LABEL_IDENTITY), "the reconciler to backfill the labels")
        policy = wait_for(lambda: None if missing(lambda: policy_dict(api, opted_in, "netwarden-pod-unguarded"))
                          else policy_dict(api, opted_in, "netwarden-pod-unguarded"), "the backfilled baseline")
        assert policy["metadata"]["annotations"][names.ANNOTATION_REASON] == names.REASON_BACKFILL
    finally:
        restarted = stack.restart("webhook")
        wait_for(lambda: restarted.alive() and _ready(f"{stack.webhook_url}/readyz", stack.ca_file),
                 "the webhook to come back")
    again = core.create_namespaced_pod(opted_in, pod_body("guarded"))
    assert again.metadata.labels[names.LABEL_IDENTITY] == f"{opted_in}.pod.guarded"


def _ready(url: str, ca_file: str) -> bool:
    try:
        return requests.get(url, timeout=2, verify=ca_file).status_code == 200
    except requests.RequestException:
        return False


# --- real NetworkPolicy validation ---------------------------------------------------------------

def every_kind_of_policy(namespace: str) -> dict[str, dict[str, Any]]:
    """One manifest for each policy netwarden writes, with every peer and port form it renders."""
    workload = Workload(namespace, "Deployment", "api")
    peers_in = (Rule((Peer("purpose", "frontend"),)),
                Rule((Peer("identity", f"{namespace}.deploy.web"),), (PortSpec("TCP", 8080, 8090),)),
                Rule((Peer("identity", "payments.deploy.gateway"),), (PortSpec("TCP", "https"),)),
                Rule((Peer("namespace", "monitoring"),), (PortSpec("TCP", 9090),)),
                Rule((Peer("purpose", "scraper", ANY_NAMESPACE),)),
                Rule((Peer("namespace", ANY_NAMESPACE),), (PortSpec("UDP", None),)),
                Rule((Peer("cidr", "0.0.0.0/0"), Peer("cidr", "2001:db8::/32")), (PortSpec("SCTP", 3868),)))
    peers_out = (Rule((Peer("purpose", "database"),), (PortSpec("TCP", 5432),)),
                 Rule((Peer("cidr", "203.0.113.50/32"),), (PortSpec("TCP", 443),)),
                 Rule((Peer("identity", "payments.deploy.gateway"),), (PortSpec("TCP", 8443),)))
    ports = (PortSpec("TCP", 8080), PortSpec("TCP", 8443))
    owner = None
    baseline = baseline_intent(workload, peers_in, peers_out, ports)
    learning = baseline_intent(workload, peers_in, peers_out, ports, enforcing=False)
    tightened = PolicyIntent(namespace, workload.identity, names.STEP_TIGHTENED,
                             ingress=(Rule((Peer("identity", f"{namespace}.deploy.web"),), (PortSpec("TCP", 8080),)),),
                             egress=(Rule((Peer("cidr", "203.0.113.50/32"),), (PortSpec("TCP", 443),)),
                                     Rule((Peer("cidr", "2001:db8::1/128"),), (PortSpec("UDP", 4500),))),
                             excluded_instances=("2d17dd5a-6757-4248-b1ae-1074c267529c",))
    no_ingress = PolicyIntent(namespace, workload.identity, names.STEP_TIGHTENED,
                              egress=(Rule((Peer("purpose", "database"),), (PortSpec("TCP", 5432),)),))
    instance = "2d17dd5a-6757-4248-b1ae-1074c267529c"
    quarantine = quarantine_intent(namespace, workload.identity, instance,
                                   (Rule((Peer("namespace", "monitoring"),), (PortSpec("TCP", 9090),)),))
    everything = workload_quarantine_intent(namespace, workload.identity)
    no_dns = PolicyIntent(namespace, workload.identity, include_dns=False)

    def manifest(intent: PolicyIntent, name: str, role: str = names.ROLE_BASELINE,
                 dns: DnsTarget = DNS) -> dict[str, Any]:
        return render_network_policy(intent, PolicyMeta(name, "test", role, owner=owner), dns)

    base_name = baseline_policy_name(workload)
    return {
        "baseline": manifest(baseline, base_name),
        "baseline-dns-anywhere": manifest(baseline, base_name + "-b", dns=DnsTarget()),
        "learn-mode": manifest(learning, base_name + "-learn"),
        "tightened": manifest(tightened, base_name + "-tight"),
        "tightened-no-ingress": manifest(no_ingress, base_name + "-noin"),
        "quarantine": manifest(quarantine, quarantine_policy_name(instance), names.ROLE_QUARANTINE),
        "workload-quarantine": manifest(everything, base_name + "-q"),
        "no-dns": manifest(no_dns, base_name + "-nodns"),
    }


def test_real_validation_accepts_every_policy_netwarden_writes_and_stores_its_canonical_form(
        api: client.ApiClient, opted_in: str) -> None:
    net = client.NetworkingV1Api(api)
    for kind, manifest in every_kind_of_policy(opted_in).items():
        try:
            net.create_namespaced_network_policy(opted_in, manifest)
        except ApiException as exc:
            raise AssertionError(f"{kind}: the real API server refused it: {exc.body}") from exc
        stored = policy_dict(api, opted_in, manifest["metadata"]["name"])
        # drift detection hashes the stored spec: it must equal what netwarden rendered, canonically
        assert stored["spec"] == canonical_spec(manifest["spec"]), kind


LABEL_VALUE = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?\Z")
PORT_NAME = st.from_regex(r"\A[a-z]([a-z0-9]{0,13})\Z")


@st.composite
def port_specs(draw: Any) -> PortSpec:
    protocol = draw(st.sampled_from(["TCP", "UDP", "SCTP"]))
    kind = draw(st.sampled_from(["any", "number", "range", "name"]))
    if kind == "any":
        return PortSpec(protocol)
    if kind == "name":
        return PortSpec(protocol, draw(PORT_NAME))
    port = draw(st.integers(1, 65535))
    return PortSpec(protocol, port, draw(st.integers(port, 65535)) if kind == "range" else None)


@st.composite
def peers(draw: Any) -> Peer:
    kind = draw(st.sampled_from(["purpose", "identity", "namespace", "cidr"]))
    if kind == "cidr":
        if draw(st.booleans()):
            prefix = draw(st.integers(0, 32))
            value = f"{draw(st.ip_addresses(v=4))}/{prefix}"
        else:
            value = f"{draw(st.ip_addresses(v=6))}/{draw(st.integers(0, 128))}"
        import ipaddress
        return Peer("cidr", str(ipaddress.ip_network(value, strict=False)))
    if kind == "namespace":
        return Peer("namespace", draw(st.one_of(st.just(ANY_NAMESPACE), LABEL_VALUE)))
    if kind == "identity":
        return Peer("identity", f"{draw(LABEL_VALUE)}.deploy.{draw(LABEL_VALUE)}")
    return Peer("purpose", draw(LABEL_VALUE), draw(st.one_of(st.none(), st.just(ANY_NAMESPACE), LABEL_VALUE)))


RULES = st.lists(st.builds(Rule, st.lists(peers(), max_size=3).map(tuple), st.lists(port_specs(), max_size=3)
                           .map(tuple)), max_size=4).map(tuple)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(ingress=RULES, egress=RULES, enforcing=st.booleans(), include_dns=st.booleans(),
       quarantined=st.lists(st.uuids().map(str), max_size=2), one_pod=st.booleans(), dns_anywhere=st.booleans())
def test_real_validation_accepts_any_intent_netwarden_can_render(
        api: client.ApiClient, ingress: tuple[Rule, ...], egress: tuple[Rule, ...], enforcing: bool,
        include_dns: bool, quarantined: list[str], one_pod: bool, dns_anywhere: bool) -> None:
    from netwarden.model.policy import normalise_rules

    intent = PolicyIntent("default", "default.deploy.api", ingress=normalise_rules(ingress),
                          egress=normalise_rules(egress), enforcing=enforcing, include_dns=include_dns,
                          excluded_instances=tuple(sorted(set(quarantined))),
                          instance=str(uuid.uuid4()) if one_pod else None)
    manifest = render_network_policy(intent, PolicyMeta("netwarden-deploy-api", "test"),
                                     DnsTarget() if dns_anywhere else DNS)
    try:
        made = client.NetworkingV1Api(api).create_namespaced_network_policy("default", manifest, dry_run="All")
    except ApiException as exc:
        raise AssertionError(f"the real API server refused {manifest['spec']}: {exc.body}") from exc
    assert api.sanitize_for_serialization(made)["spec"] == canonical_spec(manifest["spec"])


# --- leader election -----------------------------------------------------------------------------

def test_two_reconcilers_elect_one_leader_through_a_real_lease_and_fail_over(stack: Stack,
                                                                             api: client.ApiClient) -> None:
    coordination = client.CoordinationV1Api(api)
    lease_name = f"election-{uuid.uuid4().hex[:6]}"
    config = yaml.safe_load((stack.workdir / "netwarden.yaml").read_text())
    config["reconciler"]["lease_name"] = lease_name
    config_file = stack.workdir / f"{lease_name}.yaml"
    config_file.write_text(yaml.safe_dump(config))
    tls = stack.workdir / "tls"
    candidates: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for identity in ("candidate-a", "candidate-b"):
            port = free_port()
            log = open(stack.workdir / f"{identity}.log", "wb")  # noqa: SIM115 - the child owns it
            candidates[identity] = (subprocess.Popen(
                [sys.executable, "-m", "netwarden.cli", "reconciler", "--kubeconfig", stack.kubeconfig,
                 "--port", str(port), "--cert", str(tls / "tls.crt"), "--key", str(tls / "tls.key")],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "NETWARDEN_CONFIG": str(config_file), "NETWARDEN_POD_NAME": identity}),
                f"https://127.0.0.1:{port}/metrics")
            log.close()

        def holder() -> str | None:
            try:
                return coordination.read_namespaced_lease(lease_name, "netwarden").spec.holder_identity
            except ApiException:
                return None

        def leading(identity: str) -> bool | None:
            try:
                text = requests.get(candidates[identity][1], timeout=2, verify=stack.ca_file).text
            except requests.RequestException:
                return None
            line = next((ln for ln in text.splitlines() if ln.startswith(names.METRIC_LEADER + " ")), None)
            return None if line is None else float(line.split()[1]) == 1.0

        first = wait_for(holder, "a leader")
        other = next(i for i in candidates if i != first)
        wait_for(lambda: leading(first) is True and leading(other) is False, "exactly one process leading")
        transitions = coordination.read_namespaced_lease(lease_name, "netwarden").spec.lease_transitions or 0

        os.killpg(candidates[first][0].pid, signal.SIGKILL)  # no graceful release: the lease must expire
        candidates[first][0].wait(10)
        wait_for(lambda: holder() == other, f"{other} to take the lease over", timeout=90)
        wait_for(lambda: leading(other) is True, f"{other} to report itself leader")
        assert coordination.read_namespaced_lease(lease_name, "netwarden").spec.lease_transitions == transitions + 1
    finally:
        for process, _ in candidates.values():
            stop_group(process, timeout=10)



# --- issue 12 item 3 on the real control plane ---------------------------------------------------

def test_an_alert_for_one_replica_before_learning_never_cuts_its_sibling_on_the_real_apiserver(
        stack: Stack, api: client.ApiClient, opted_in: str) -> None:
    """The twin of tests/e2e/test_siblings.py: the real ReplicaSet controller makes the two replicas."""
    from netwarden.model.netpol_eval import ExternalIP, NamespaceInfo, PodInfo, PolicySet

    body = deployment_body("api", 2)
    body["spec"]["template"]["metadata"]["annotations"][names.ANNOTATION_ALLOW_TO] = "cidr=0.0.0.0/0:443"
    client.AppsV1Api(api).create_namespaced_deployment(opted_in, body)
    core, net = client.CoreV1Api(api), client.NetworkingV1Api(api)

    def pods() -> list[Any] | None:
        found = sorted(core.list_namespaced_pod(opted_in, label_selector="app=api").items, key=lambda p: p.metadata.name)
        return found if len(found) == 2 and all(names.LABEL_INSTANCE in (p.metadata.labels or {}) for p in found) else None

    target, sibling = wait_for(pods, "two labelled replicas")
    policy_name = baseline_policy_name(Workload(opted_in, "Deployment", "api"))
    wait_for(lambda: not missing(lambda: net.read_namespaced_network_policy(policy_name, opted_in)), "the baseline")
    instance = target.metadata.labels[names.LABEL_INSTANCE]
    quarantine = f"netwarden-quarantine-{instance}"
    for priority in ("Critical", "Warning", "Error", "Critical"):
        assert stack.post_signal("/signals/falco", falco_body(opted_in, target.metadata.name, priority))["accepted"] == 1
    wait_for(lambda: not missing(lambda: net.read_namespaced_network_policy(quarantine, opted_in)), "the quarantine")
    workload = policy_dict(api, opted_in, policy_name)
    assert workload["metadata"]["annotations"][names.ANNOTATION_STEP] == names.STEP_BASELINE
    managed = [api.sanitize_for_serialization(p) for p in net.list_namespaced_network_policy(opted_in).items]
    evaluator = PolicySet(managed, [NamespaceInfo(opted_in, {names.LABEL_NAMESPACE_NAME: opted_in})])

    def info(pod: Any) -> PodInfo:
        return PodInfo(opted_in, pod.metadata.name, pod.metadata.labels or {}, "198.18.0.1")

    upstream = ExternalIP("198.51.100.7")
    assert evaluator.is_allowed(info(sibling), upstream, 443), "the sibling keeps its declared upstream"
    assert not evaluator.is_allowed(info(target), upstream, 443), "the alerted replica is isolated"
