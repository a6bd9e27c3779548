"""Issue 12 item 5: a quarantine is never half-applied and never forgotten.

Against LocalKube over real HTTP: the order of writes (every state the API holds on the way to a
quarantine allows a subset of what the state before it allowed; on the way out, never more than the
end state), injected 500s on creates (retried with backoff until both steps hold), and a restart
that takes over what the previous process wrote (expiries honoured, half-done steps settled).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client

from localkube import LocalKube
from netwarden.model import names
from netwarden.platform.kube import KubeClient
from netwarden.model.netpol_eval import ExternalIP, NamespaceInfo, PodInfo, PolicySet
from netwarden.model.policy import (DnsTarget, Peer, PolicyIntent, PolicyMeta, PortSpec, Rule, quarantine_intent,
                              quarantine_policy_name, render_network_policy)
from netwarden.reconciler import metrics
from netwarden.reconciler.controller import ControllerSettings
from netwarden.reconciler.core.config import CoreConfig
from netwarden.reconciler.core.types import AlertTarget, SecurityAlert
from netwarden.reconciler.policy_ops import Change, PolicyWriter, iso_time
from netwarden.reconciler.quarantine import (NetworkPolicyBackend, PodQuarantine, QuarantineRelease, QuarantineWriter,
                                   carved_out)
from netwarden.reconciler.runtime import ReconcilerRuntime, RuntimeSettings
from netwarden.reconciler.leader import WriterGate
from netwarden.reconciler.scaleout.statestore import StateStoreSettings, secret_name, shard_of
from netwarden.reconciler.watch import Backoff

from .conftest import make_deployment, make_namespace, make_pod, wait_until
from .test_controller import policy

NS = "shop"
IDENTITY = f"{NS}.pod.web"
INSTANCE = "inst-web"
WORKLOAD_POLICY = "netwarden-pod-web"
WEB = PodInfo(NS, "web", {names.LABEL_IDENTITY: IDENTITY, names.LABEL_INSTANCE: INSTANCE}, "10.0.0.10")
DB = PodInfo(NS, "db", {names.LABEL_IDENTITY: f"{NS}.pod.db", names.LABEL_PURPOSE: "database"}, "10.0.0.11")
OTHER_NS = PodInfo("payments", "gw", {names.LABEL_IDENTITY: "payments.pod.gw"}, "10.0.1.5")
WORLD = ExternalIP("203.0.113.9")
NAMESPACES = (NamespaceInfo(NS, {names.LABEL_NAMESPACE_NAME: NS}),
              NamespaceInfo("payments", {names.LABEL_NAMESPACE_NAME: "payments"}))
PORTS = ((443, "TCP"), (22, "TCP"), (8080, "TCP"), (5432, "TCP"), (53, "UDP"))

Allowed = frozenset[tuple[str, str, int, str]]


def allowed_for_web(policies: list[dict[str, Any]]) -> Allowed:
    """Every probe connection of the pod `web` (in and out) that these policies allow."""
    evaluator = PolicySet(policies, NAMESPACES)
    out = set()
    for peer in (DB, OTHER_NS, WORLD):
        name = peer.ip if isinstance(peer, ExternalIP) else peer.key
        for port, protocol in PORTS:
            if evaluator.is_allowed(WEB, peer, port, protocol):
                out.add(("egress", name, port, protocol))
            if evaluator.is_allowed(peer, WEB, port, protocol):
                out.add(("ingress", name, port, protocol))
    return frozenset(out)


def workload_manifest(intent: PolicyIntent) -> dict[str, Any]:
    return render_network_policy(intent, PolicyMeta(WORKLOAD_POLICY, "test"), DnsTarget())


def quarantine_plan(exceptions: tuple[Rule, ...] = ()) -> PodQuarantine:
    intent = quarantine_intent(NS, IDENTITY, INSTANCE, exceptions)
    meta = PolicyMeta(quarantine_policy_name(INSTANCE), names.REASON_QUARANTINE, role=names.ROLE_QUARANTINE)
    manifest = render_network_policy(intent, meta, DnsTarget())
    return PodQuarantine(NS, IDENTITY, INSTANCE, intent,
                          Change(manifest, names.EVENT_POD_QUARANTINED, "test", names.REASON_QUARANTINE))


class Recorder:
    """The namespace's managed policies after every write the writer makes (its audit hook)."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self.states: list[Allowed] = []

    def __call__(self, record: dict[str, Any]) -> None:
        if record.get("event") == "policy_change":
            self.states.append(allowed_for_web(self.kube.list_policies(NS)))


def run_until_done(step: Callable[[], None], attempts: int = 20) -> int:
    """Call a quarantine step until it completes (what the controller's queue does); failures seen."""
    for failures in range(attempts):
        try:
            step()
            return failures
        except client.ApiException as exc:
            assert exc.status == 500
    raise AssertionError("the step never completed")


rules = st.lists(st.sampled_from([
    Rule((Peer("purpose", "database"),), (PortSpec("TCP", 5432),)),
    Rule((Peer("cidr", "203.0.113.0/24"),), (PortSpec("TCP", 443),)),
    Rule((Peer("namespace", "payments"),), ()),
    Rule((), (PortSpec("TCP", 22),)),
    Rule((Peer("namespace", "*"),), (PortSpec("TCP", 8080),)),
]), max_size=3, unique=True)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ingress=rules, egress=rules, exceptions=st.lists(st.sampled_from([
    Rule((Peer("namespace", "payments"),), (PortSpec("TCP", 8080),))]), max_size=1),
       failing_creates=st.integers(0, 7), enforcing=st.booleans())
def test_every_state_on_the_way_to_a_quarantine_allows_a_subset_of_the_one_before(
        cluster: LocalKube, kube: KubeClient, ingress: list[Rule], egress: list[Rule], exceptions: list[Rule],
        failing_creates: int, enforcing: bool) -> None:
    for existing in kube.list_policies(NS) if kube.get_namespace(NS) else ():
        kube.delete_policy(NS, existing["metadata"]["name"])
    if kube.get_namespace(NS) is None:
        client.CoreV1Api(cluster.api_client()).create_namespace({"metadata": {"name": NS}})
    workload = workload_manifest(PolicyIntent(NS, IDENTITY, ingress=tuple(ingress), egress=tuple(egress),
                                              enforcing=enforcing))
    kube.create_policy(workload)
    recorder = Recorder(kube)
    writer = PolicyWriter(kube, audit_log=recorder)
    quarantines = QuarantineWriter(kube, writer, NetworkPolicyBackend(kube, writer), lambda _identity: WORKLOAD_POLICY)
    start = allowed_for_web(kube.list_policies(NS))
    cluster.faults.add(method="POST", path_regex="networkpolicies", status=500, times=failing_creates)

    plan = quarantine_plan(tuple(exceptions))
    # The operator's quarantine exceptions (e.g. a monitoring scrape) are allowed by design.
    excepted = allowed_for_web([plan.change.manifest]) - allowed_for_web([quarantine_plan().change.manifest])
    run_until_done(lambda: quarantines.quarantine(plan))
    states = [start, *recorder.states]
    for before, after in zip(states, states[1:]):
        assert after <= before | excepted, f"a quarantine step opened {sorted(after - before - excepted)}"
    quarantined = states[-1]
    assert carved_out(kube.get_policy(NS, WORKLOAD_POLICY)) == {INSTANCE}
    assert not any(d == "egress" and p != 53 for d, _, p, _ in quarantined), "egress only to DNS"

    recorder.states.clear()
    release = QuarantineRelease(NS, IDENTITY, INSTANCE, "lifted")
    run_until_done(lambda: quarantines.release(release))
    end = allowed_for_web(kube.list_policies(NS))
    assert end == start, "a release gives back exactly what the workload's policy allows"
    for state in recorder.states:
        assert state <= end | excepted, f"a release step opened more than its end state: {sorted(state - end)}"
    cluster.faults.clear()


# --- the controller: retries, and a restart that takes over --------------------------------------

def start_runtime(kube: KubeClient, core: CoreConfig | None = None, *, gate: WriterGate | None = None,
                  state: StateStoreSettings | None = None) -> ReconcilerRuntime:
    settings = RuntimeSettings(ControllerSettings(cleanup_grace_seconds=3600, default_mode=names.MODE_ENFORCE,
                                                  write_rate_per_second=100, write_burst=100),
                               tick_seconds=0.1, sync_timeout_seconds=10, state=state)
    core = core or CoreConfig(default_mode=names.MODE_ENFORCE)
    return ReconcilerRuntime(kube, settings, core, gate=gate, backoff=Backoff(0.01, 0.1)).start()


class Leading(WriterGate):
    """The Lease, held until `crash` (a killed process neither writes nor saves any more)."""

    def __init__(self) -> None:
        self.open = True

    def is_open(self) -> bool:
        return self.open


@pytest.fixture
def shop(kube: KubeClient, core: client.CoreV1Api) -> Iterator[None]:
    make_namespace(core, NS, mode=names.MODE_ENFORCE)
    for i in range(12):  # enough pods that one quarantine stays inside the blast-radius guard rail
        make_pod(core, NS, f"filler-{i}", labels={names.LABEL_IDENTITY: f"{NS}.pod.filler-{i}",
                                                  names.LABEL_INSTANCE: f"inst-filler-{i}"})
    make_pod(core, NS, "web", labels={names.LABEL_IDENTITY: IDENTITY, names.LABEL_INSTANCE: INSTANCE}, ip="10.0.0.10")
    yield


def test_six_500s_on_creates_never_leave_the_pod_carved_out_without_its_quarantine(
        cluster: LocalKube, kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api, shop: None) -> None:
    runtime = start_runtime(kube)
    try:
        wait_until(lambda: policy(net, NS, WORKLOAD_POLICY), what="the backfilled workload policy")
        wait_until(lambda: runtime.engine.index.by_pod.get((NS, "web")))
        retries_before = metrics.QUARANTINE_RETRIES.labels("quarantine")._value.get()
        snapshots: list[Allowed] = []
        runtime.controller.writer.audit_log = lambda record: snapshots.append(allowed_for_web(kube.list_policies(NS)))
        before = allowed_for_web(kube.list_policies(NS))
        cluster.faults.add(method="POST", path_regex=f"namespaces/{NS}/networkpolicies", status=500, times=6)
        runtime.accept_alert(SecurityAlert(time.time(), NS, "web", "Terminal shell in container", "critical"))
        # The first attempt's API retries are used up; the rest happen from the queue, with backoff.
        wait_until(lambda: policy(net, NS, quarantine_policy_name(INSTANCE)), what="the quarantine, after retries")
        wait_until(lambda: carved_out(policy(net, NS, WORKLOAD_POLICY)) == {INSTANCE}, what="the carve-out")
        wait_until(lambda: not runtime.controller.pending_quarantine_work(), what="no step left to retry")
        assert cluster.faults.list() == [], "every injected 500 was hit"
        assert metrics.QUARANTINE_RETRIES.labels("quarantine")._value.get() > retries_before
        for earlier, later in zip([before, *snapshots], snapshots):
            assert later <= earlier, f"a write opened {sorted(later - earlier)}"
        final = allowed_for_web(kube.list_policies(NS))
        assert ("egress", WORLD.ip, 443, "TCP") not in final and ("ingress", DB.key, 22, "TCP") not in final
        assert {d for d, *_ in final} <= {"egress"} and {p for _, _, p, _ in final} <= {53}
    finally:
        runtime.stop()


API_IDENTITY, API_POLICY = f"{NS}.deploy.api", "netwarden-deploy-api"
#: The blast radius bounds automatic quarantines to 10% of the namespace's pods by default: 2 of 15 here.
API_CORE = CoreConfig(default_mode=names.MODE_ENFORCE, blast_max_pod_fraction=0.2)


def make_api_deployment(cluster: LocalKube, core: client.CoreV1Api) -> None:
    """A Deployment `api` in shop with two pods, labelled as its controller's admission labelled them."""
    owner = make_deployment(client.AppsV1Api(cluster.api_client()), NS, "api", "5d8f7c9b6")
    for i in range(2):
        make_pod(core, NS, f"api-5d8f7c9b6-{i}", owner=owner, ip=f"10.0.0.2{i}",
                 labels={names.LABEL_IDENTITY: API_IDENTITY, names.LABEL_INSTANCE: f"inst-api-{i}"})


def api_alert() -> SecurityAlert:
    """Workload-level evidence (an alert naming the Deployment, no pod): it quarantines the whole workload."""
    return SecurityAlert(time.time(), NS, None, "Deployment image changed to a miner", "critical",
                         target=AlertTarget("deployments", "api"))


def test_a_workload_quarantine_whose_write_fails_past_the_api_retries_is_retried_until_it_holds(
        cluster: LocalKube, kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api, shop: None) -> None:
    """An API brownout longer than the client's own retries (five attempts) must not leave the engine
    believing a workload quarantined while its policy still allows what it did: the decision is kept
    and retried from the queue until the policy says quarantined."""
    make_api_deployment(cluster, core)
    runtime = start_runtime(kube, API_CORE)
    try:
        wait_until(lambda: policy(net, NS, API_POLICY), what="the backfilled workload policy")
        wait_until(lambda: runtime.engine.index.by_pod.get((NS, "api-5d8f7c9b6-1")))
        retries_before = metrics.WORKLOAD_WRITE_RETRIES.labels("quarantine-workload")._value.get()
        cluster.faults.add(method="PUT", path_regex=f"namespaces/{NS}/networkpolicies/{API_POLICY}", status=503,
                           times=None)  # the outage lasts until cleared below
        runtime.accept_alert(api_alert())
        assert runtime.engine.state_of(API_IDENTITY).step == names.STEP_QUARANTINED
        wait_until(lambda: metrics.WORKLOAD_WRITE_RETRIES.labels("quarantine-workload")._value.get() > retries_before + 1,
                   what="the failed write retried from the queue")
        assert (NS, API_IDENTITY) in runtime.controller.decisions.pending_workload_work()
        cluster.faults.clear()  # the API server is back
        wait_until(lambda: (policy(net, NS, API_POLICY)["metadata"].get("annotations") or {}).get(names.ANNOTATION_STEP)
                   == names.STEP_QUARANTINED, what="the quarantine, written after the outage")
        wait_until(lambda: not runtime.controller.decisions.pending_workload_work(), what="no write left to retry")
    finally:
        runtime.stop()


def test_a_quarantine_whose_first_write_never_landed_before_a_crash_is_written_by_the_next_leader(
        cluster: LocalKube, kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api, shop: None) -> None:
    # issue 12's open end: the decision lived only in the dead process (its queue of steps to retry);
    # the periodic state save (every 30 s; an hour here) had not run, so the next leader knew nothing
    make_namespace(core, "netwarden", opted_in=False)
    state = StateStoreSettings("netwarden", 2, 3600.0)
    gate = Leading()
    first = start_runtime(kube, gate=gate, state=state)
    try:
        wait_until(lambda: policy(net, NS, WORKLOAD_POLICY), what="the backfilled workload policy")
        wait_until(lambda: first.engine.index.by_pod.get((NS, "web")))
        cluster.faults.add(method="POST", path_regex=f"namespaces/{NS}/networkpolicies", status=500, times=None)
        first.accept_alert(SecurityAlert(time.time(), NS, "web", "Terminal shell in container", "critical"))
        assert INSTANCE in first.engine.state_of(IDENTITY).quarantined
        shard = secret_name(shard_of(IDENTITY, 2))
        wait_until(lambda: IDENTITY in (kube.get_secret("netwarden", shard) or {}).get("data", {}),
                   what="the decision saved beside its first write")
        assert policy(net, NS, quarantine_policy_name(INSTANCE)) is None  # nothing reached the cluster
    finally:
        gate.open = False  # killed: no more writes, no save on the way out
        first.stop()
    cluster.faults.clear()
    second = start_runtime(kube, state=state)
    try:
        wait_until(lambda: policy(net, NS, quarantine_policy_name(INSTANCE)), what="the quarantine, by the next leader")
        wait_until(lambda: carved_out(policy(net, NS, WORKLOAD_POLICY)) == {INSTANCE}, what="the carve-out")
        final = allowed_for_web(kube.list_policies(NS))
        assert {d for d, *_ in final} <= {"egress"} and {p for _, _, p, _ in final} <= {53}
        # and it ends at the first decision's expiry, not later
        held = second.engine.state_of(IDENTITY).quarantined[INSTANCE]
        assert held.expires_at <= time.time() + CoreConfig().quarantine_expiry_seconds
    finally:
        second.stop()


@pytest.mark.parametrize("rolled_back_by_a_person", [False, True])
def test_a_workload_quarantine_whose_write_was_failing_when_its_leader_died_is_written_by_the_next_leader(
        cluster: LocalKube, kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api, shop: None,
        rolled_back_by_a_person: bool) -> None:
    """The kept decision lived only in the dead process's retry queue; its step was saved beside the decision,
    so the next leader finds the workload quarantined in the saved state but not in the cluster, and writes it,
    unless a person changed the policy since (a rollback, an approval): theirs is the last word."""
    make_namespace(core, "netwarden", opted_in=False)
    make_api_deployment(cluster, core)
    state = StateStoreSettings("netwarden", 2, 3600.0)
    gate = Leading()
    first = start_runtime(kube, API_CORE, gate=gate, state=state)
    try:
        wait_until(lambda: policy(net, NS, API_POLICY), what="the backfilled workload policy")
        wait_until(lambda: first.engine.index.by_pod.get((NS, "api-5d8f7c9b6-1")))
        cluster.faults.add(method="PUT", path_regex=f"namespaces/{NS}/networkpolicies/{API_POLICY}", status=503,
                           times=None)
        first.accept_alert(api_alert())
        assert first.engine.state_of(API_IDENTITY).step == names.STEP_QUARANTINED
        shard = secret_name(shard_of(API_IDENTITY, 2))
        wait_until(lambda: API_IDENTITY in (kube.get_secret("netwarden", shard) or {}).get("data", {}),
                   what="the decision saved beside its first write")
        assert (policy(net, NS, API_POLICY)["metadata"].get("annotations") or {}).get(names.ANNOTATION_STEP) \
            != names.STEP_QUARANTINED  # nothing reached the cluster
    finally:
        gate.open = False  # killed: no more writes, no save on the way out
        first.stop()
    cluster.faults.clear()
    if rolled_back_by_a_person:
        net.patch_namespaced_network_policy(API_POLICY, NS, {"metadata": {"annotations": {
            names.ANNOTATION_CHANGED_BY: "cli:alice"}}})
    second = start_runtime(kube, API_CORE, state=state)  # resumes what it holds as it takes the lead
    try:
        if rolled_back_by_a_person:
            assert second.resume_workload_steps() == 0
            step = (policy(net, NS, API_POLICY)["metadata"].get("annotations") or {}).get(names.ANNOTATION_STEP)
            assert step != names.STEP_QUARANTINED
        else:
            wait_until(lambda: (policy(net, NS, API_POLICY)["metadata"].get("annotations") or {})
                       .get(names.ANNOTATION_STEP) == names.STEP_QUARANTINED, what="the workload quarantine, by the next leader")
    finally:
        second.stop()


def write_as_a_previous_leader(kube: KubeClient, core: client.CoreV1Api, *, quarantine: bool, carve: bool,
                               expires_at: float) -> None:
    """The cluster as a killed process left it (its bookkeeping annotations included)."""
    pod = core.read_namespaced_pod("web", NS)
    workload = workload_manifest(PolicyIntent(NS, IDENTITY, excluded_instances=(INSTANCE,) if carve else ()))
    workload["metadata"]["annotations"][names.ANNOTATION_SPEC_HASH] = ""
    kube.create_policy(workload)
    if quarantine:
        plan = quarantine_plan()
        manifest = plan.change.manifest
        manifest["metadata"]["annotations"][names.ANNOTATION_EXPIRES_AT] = iso_time(expires_at)
        manifest["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Pod", "name": "web",
                                                    "uid": pod.metadata.uid}]
        kube.create_policy(manifest)


def test_a_carve_out_whose_quarantine_is_missing_is_undone_at_start_up(
        kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api, shop: None) -> None:
    write_as_a_previous_leader(kube, core, quarantine=False, carve=True, expires_at=time.time() + 3600)
    assert allowed_for_web(kube.list_policies(NS)) == allowed_for_web([]), "the pod starts out unrestricted"
    runtime = start_runtime(kube)
    try:
        wait_until(lambda: carved_out(policy(net, NS, WORKLOAD_POLICY)) == set(), what="the carve-out undone")
        assert allowed_for_web(kube.list_policies(NS)) == allowed_for_web([workload_manifest(
            PolicyIntent(NS, IDENTITY))])
    finally:
        runtime.stop()


def test_a_quarantine_not_yet_carved_out_is_completed_at_start_up(
        kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api, shop: None) -> None:
    write_as_a_previous_leader(kube, core, quarantine=True, carve=False, expires_at=time.time() + 3600)
    runtime = start_runtime(kube)
    try:
        wait_until(lambda: carved_out(policy(net, NS, WORKLOAD_POLICY)) == {INSTANCE}, what="the carve-out completed")
        assert runtime.engine.explain(IDENTITY, time.time())["quarantined"][INSTANCE]["restored"] is True
    finally:
        runtime.stop()


def test_quarantines_made_before_a_restart_end_at_their_expires_at_not_before_and_not_never(
        kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api, shop: None) -> None:
    expires_at = float(int(time.time()) + 3)  # the annotation has whole seconds
    write_as_a_previous_leader(kube, core, quarantine=True, carve=True, expires_at=expires_at)
    runtime = start_runtime(kube)
    try:
        wait_until(lambda: runtime.engine.state_of(IDENTITY) and INSTANCE in runtime.engine.state_of(IDENTITY).quarantined,
                   what="the quarantine taken over")
        time.sleep(0.5)  # several ticks: no evidence in memory must not lift it early
        assert policy(net, NS, quarantine_policy_name(INSTANCE)) is not None and time.time() < expires_at
        wait_until(lambda: policy(net, NS, quarantine_policy_name(INSTANCE)) is None, what="lifted at expiry")
        lifted = time.time()
        assert lifted >= expires_at
        assert carved_out(policy(net, NS, WORKLOAD_POLICY)) == set()
    finally:
        runtime.stop()


# --- safety writes never wait behind tightenings (issue 11) --------------------------------------

def test_rollbacks_and_releases_have_their_own_budget_and_events_spend_none(
        kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api) -> None:
    import threading

    from netwarden.reconciler.controller import Reconciler
    from netwarden.reconciler.watch import ClusterIndex

    frozen = [100.0]  # the injectable clock: no token refills unless the test moves it
    controller = Reconciler(kube, ClusterIndex(), ControllerSettings(write_rate_per_second=1.0, write_burst=10,
                                                                     safety_write_rate_per_second=5.0,
                                                                     safety_write_burst=20),
                            monotonic=lambda: frozen[0])
    make_namespace(core, NS, mode=names.MODE_ENFORCE)
    kube.create_policy(workload_manifest(PolicyIntent(NS, IDENTITY)))
    for _ in range(10):  # a busy minute of tightenings
        assert controller.write_token_wait(safety=False) == 0.0
    assert controller.write_token_wait(safety=False) == 1.0, "the next tightening waits a second"
    current = kube.get_policy(NS, WORKLOAD_POLICY)
    rollback = Change(workload_manifest(PolicyIntent(NS, IDENTITY, egress=(Rule((), (PortSpec("TCP", 443),)),))),
                      names.EVENT_POLICY_ROLLED_BACK, "rollback", names.REASON_ROLLED_BACK, safety=True)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (controller.writer.apply(rollback), done.set()), daemon=True)
    worker.start()
    worker.join(10)
    assert done.is_set(), "the rollback waited behind the tightenings' empty budget"
    assert kube.get_policy(NS, WORKLOAD_POLICY)["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]
    assert len([e for e in core.list_namespaced_event(NS).items if e.reason == names.EVENT_POLICY_ROLLED_BACK]) >= 1
    assert controller.write_token_wait(safety=False) == 1.0, "its Events spent no token either"
    controller.stop()


def test_a_cli_rollback_to_a_spec_before_the_carve_out_does_not_end_a_quarantine_that_holds(
        cluster: LocalKube, kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api, shop: None) -> None:
    from netwarden.reconciler.policy_ops import rollback

    runtime = start_runtime(kube)
    try:
        wait_until(lambda: policy(net, NS, WORKLOAD_POLICY), what="the backfilled workload policy")
        wait_until(lambda: runtime.engine.index.by_pod.get((NS, "web")))
        runtime.accept_alert(SecurityAlert(time.time(), NS, "web", "Terminal shell in container", "critical"))
        assert carved_out(policy(net, NS, WORKLOAD_POLICY)) == {INSTANCE}
        rollback(PolicyWriter(kube), NS, WORKLOAD_POLICY, changed_by="cli")  # the spec before the carve-out
        wait_until(lambda: carved_out(policy(net, NS, WORKLOAD_POLICY)) == {INSTANCE}, what="the carve-out back")
        assert policy(net, NS, quarantine_policy_name(INSTANCE)) is not None
    finally:
        runtime.stop()


def test_a_standby_that_saw_a_quarantine_expire_lifts_it_for_real_once_it_leads(
        kube: KubeClient, core: client.CoreV1Api, net: client.NetworkingV1Api, shop: None) -> None:
    """A standby's engine ticks (and 'lifts' in memory) but writes nothing; leading, it takes over from
    the cluster again, so the expired quarantine the old leader left is lifted, not forgotten."""
    from .test_controller import LeadershipDuringStart

    expires_at = float(int(time.time()) + 1)
    write_as_a_previous_leader(kube, core, quarantine=True, carve=True, expires_at=expires_at)
    gate = LeadershipDuringStart()
    settings = RuntimeSettings(ControllerSettings(cleanup_grace_seconds=3600, default_mode=names.MODE_ENFORCE),
                               tick_seconds=0.1, sync_timeout_seconds=10)
    runtime = ReconcilerRuntime(kube, settings, CoreConfig(default_mode=names.MODE_ENFORCE), gate=gate,
                                backoff=Backoff(0.01, 0.1)).start()
    try:
        wait_until(lambda: time.time() > expires_at + 0.5 and runtime.engine.state_of(IDENTITY) is not None
                   and not runtime.engine.state_of(IDENTITY).quarantined, what="the standby's engine lifting it")
        assert policy(net, NS, quarantine_policy_name(INSTANCE)) is not None, "a standby writes nothing"
        gate.open = True
        runtime.on_leadership()
        wait_until(lambda: policy(net, NS, quarantine_policy_name(INSTANCE)) is None, what="lifted by the new leader")
        assert carved_out(policy(net, NS, WORKLOAD_POLICY)) == set()
    finally:
        runtime.stop()
