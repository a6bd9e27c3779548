"""Issue 4, "Done when": from a learned flow stream, each signal leads to the right step for exactly
its workload, within 1 s, and every policy written allows what its step means (nca + netpol_eval).

One stack for the module; each test acts on its own workload, learned together in the fixture.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import pytest

from netwarden.model import names
from netwarden.model.netpol_eval import ExternalIP
from netwarden.tools.stack import Stack
from netwarden.tools.traffic import PodEnd, WorldEnd

from .conftest import learn
from .harness import (CLEANUP_GRACE_SECONDS, DNS, DNS_POD, SIGNAL_TO_POLICY_BOUND_SECONDS, App, Cluster, PolicyRecorder,
                      connectivity, edge_flows, falco_body, flows_body, is_step, quarantines, record_latency, send, wait_until)

WEB = App("shop", "web", 2, (8080,), {names.ANNOTATION_PURPOSE: "frontend",
                                      names.ANNOTATION_ALLOW_FROM: "cidr=0.0.0.0/0",
                                      names.ANNOTATION_ALLOW_TO: "namespace=shop:8080, namespace=data:5432"})
API = App("shop", "api", 2, (8080,), {names.ANNOTATION_PURPOSE: "backend",
                                      names.ANNOTATION_ALLOW_FROM: "namespace=shop",
                                      names.ANNOTATION_ALLOW_TO: "namespace=data:5432, cidr=0.0.0.0/0:443"})
CART = App("shop", "cart", 2, (8080,), {names.ANNOTATION_PURPOSE: "cart",
                                        names.ANNOTATION_ALLOW_FROM: "namespace=shop",
                                        names.ANNOTATION_ALLOW_TO: "namespace=data:5432"})
BATCH = App("shop", "batch", 1, (8080,), {names.ANNOTATION_PURPOSE: "batch",
                                          names.ANNOTATION_ALLOW_TO: "cidr=0.0.0.0/0:443"})
REPORT = App("shop", "report", 1, (8080,), {names.ANNOTATION_PURPOSE: "report",
                                            names.ANNOTATION_ALLOW_TO: "cidr=0.0.0.0/0:443"})
GONE = App("shop", "gone", 1, (8080,), {names.ANNOTATION_PURPOSE: "temporary"})
DB = App("data", "db", 1, (5432,), {names.ANNOTATION_PURPOSE: "database", names.ANNOTATION_ALLOW_FROM: "namespace=shop"})
APPS = (WEB, API, CART, BATCH, REPORT, GONE, DB)

CLIENT = WorldEnd("192.0.2.10")      # a browser that reached web while it was learned
STORAGE = WorldEnd("198.51.100.7")   # batch's object storage
MAILER = WorldEnd("198.51.100.8")    # report's mail relay
UNKNOWN_HOST = WorldEnd("203.0.113.9")


@dataclass
class Shop:
    cluster: Cluster
    ends: dict[str, list[PodEnd]]
    prometheus: str

    def pods(self, app: App) -> list[PodEnd]:
        return self.ends[app.name]

    def names_of(self, app: App) -> set[str]:
        return {f"{p.namespace}/{p.name}" for p in self.pods(app)}


@pytest.fixture(scope="module")
def shop(stack: Stack, cluster: Cluster, recorder: PolicyRecorder) -> Shop:
    for namespace in ("shop", "data"):
        cluster.namespace(namespace)
    cluster.namespace("monitoring", opted_in=False)
    cluster.bare_pod("monitoring", "prometheus-0", {"app": "prometheus"})
    ends = cluster.deploy_ready(APPS)
    wait_until(lambda: (cluster.pods("monitoring")[0].get("status") or {}).get("podIP"), what="prometheus IP")
    web, api, cart, db = ends["web"], ends["api"], ends["cart"], ends["db"][0]
    learn(stack, [
        (CLIENT, web[0], 8080, 2), (CLIENT, web[1], 8080, 2),
        (web[0], api[0], 8080, 2), (web[1], api[1], 8080, 2),
        (api[0], db, 5432, 2), (api[1], db, 5432, 2),
        (cart[0], db, 5432, 2), (cart[1], db, 5432, 2),
        (ends["batch"][0], STORAGE, 443, 8),
        (ends["report"][0], MAILER, 443, 2),
    ])
    return Shop(cluster, ends, "monitoring/prometheus-0")


def steps(cluster: Cluster) -> dict[str, tuple[str, str]]:
    """Every managed policy by name: (resourceVersion, step)."""
    return {p["metadata"]["name"]: (p["metadata"]["resourceVersion"],
                                    (p["metadata"].get("annotations") or {}).get(names.ANNOTATION_STEP, ""))
            for p in cluster.managed()}


def changed_since(before: dict[str, tuple[str, str]], cluster: Cluster) -> set[str]:
    time.sleep(1.0)  # a negative claim (nothing else changed) needs the stragglers a chance to show up
    after = steps(cluster)
    return {name for name in set(before) | set(after) if before.get(name, ("", ""))[0] != after.get(name, ("", ""))[0]}


def policy_name(cluster: Cluster, app: App) -> str:
    found = cluster.workload_policy(app)
    assert found is not None
    return found["metadata"]["name"]


def expect_exactly(shop: Shop, app: App, expected: dict[tuple[str, str], set[tuple[str, int, int]]]) -> None:
    """nca: the connections into and out of `app`'s pods are exactly `expected` (DNS included by the caller)."""
    seen = connectivity(shop.cluster).touching(shop.names_of(app))
    if seen != expected:
        import json, sys
        print(json.dumps(shop.cluster.workload_policy(app), indent=1)[:6000], file=sys.stderr)
        print(open(shop.cluster.stack.workdir / "reconciler.log").read()[-8000:], file=sys.stderr)
    assert seen == expected, f"nca sees {sorted(seen.items())}\nexpected {sorted(expected.items())}"


def dns_for(pods: list[PodEnd]) -> dict[tuple[str, str], set[tuple[str, int, int]]]:
    return {(f"{p.namespace}/{p.name}", f"{DNS_POD.namespace}/{DNS_POD.name}"): set(DNS) for p in pods}


def tcp(port: int) -> set[tuple[str, int, int]]:
    return {("TCP", port, port)}


# --- the cases ---------------------------------------------------------------------------------


def test_lateral_movement_to_a_new_peer_tightens_exactly_the_mover(shop: Shop, stack: Stack,
                                                                   recorder: PolicyRecorder) -> None:
    cluster = shop.cluster
    web, api, db = shop.pods(WEB), shop.pods(API), shop.pods(DB)[0]
    before = steps(cluster)
    mark = recorder.mark()
    sent = send(stack, "/signals/flows", flows_body(edge_flows(web[0], db, 5432, 3)))
    change = recorder.wait_for(mark, is_step(WEB, names.STEP_TIGHTENED))
    assert record_latency("lateral movement -> tighten", sent, change) <= SIGNAL_TO_POLICY_BOUND_SECONDS
    assert changed_since(before, cluster) == {policy_name(cluster, WEB)}, "only the mover's policy changes"
    # Tightened = exactly the learned baseline (+ DNS): the browser in, api:8080 out; no more database.
    # Peers are learned as workload identities: every web pod may reach every api pod.
    expected = dns_for(web)
    for pod in web:
        expected[("192.0.2.10/32", f"shop/{pod.name}")] = tcp(8080)
        for peer in api:
            expected[(f"shop/{pod.name}", f"shop/{peer.name}")] = tcp(8080)
    expect_exactly(shop, WEB, expected)
    assert connectivity(cluster).pair(f"shop/{web[0].name}", f"data/{db.name}", 5432) == (False, False)


def test_egress_to_the_world_tightens_exactly_that_workload(shop: Shop, stack: Stack, recorder: PolicyRecorder) -> None:
    cluster = shop.cluster
    web, api, db = shop.pods(WEB), shop.pods(API), shop.pods(DB)[0]
    before = steps(cluster)
    mark = recorder.mark()
    sent = send(stack, "/signals/flows", flows_body(edge_flows(api[1], UNKNOWN_HOST, 443, 3)))
    change = recorder.wait_for(mark, is_step(API, names.STEP_TIGHTENED))
    assert record_latency("egress to the world -> tighten", sent, change) <= SIGNAL_TO_POLICY_BOUND_SECONDS
    assert changed_since(before, cluster) == {policy_name(cluster, API)}
    expected = dns_for(api)
    for pod in api:
        expected[(f"shop/{pod.name}", f"data/{db.name}")] = tcp(5432)
        for client_pod in web:
            expected[(f"shop/{client_pod.name}", f"shop/{pod.name}")] = tcp(8080)
    expect_exactly(shop, API, expected)
    view = connectivity(cluster)
    assert view.pair(f"shop/{api[1].name}", ExternalIP(UNKNOWN_HOST.ip), 443) == (False, False)


def test_a_rate_spike_tightens_exactly_that_workload(shop: Shop, stack: Stack, recorder: PolicyRecorder) -> None:
    cluster = shop.cluster
    batch = shop.pods(BATCH)
    before = steps(cluster)
    mark = recorder.mark()
    sent = send(stack, "/signals/flows", flows_body(edge_flows(batch[0], STORAGE, 443, 400)))
    change = recorder.wait_for(mark, is_step(BATCH, names.STEP_TIGHTENED))
    assert record_latency("rate spike -> tighten", sent, change) <= SIGNAL_TO_POLICY_BOUND_SECONDS
    assert changed_since(before, cluster) == {policy_name(cluster, BATCH)}
    expected = dns_for(batch)
    expected[(f"shop/{batch[0].name}", "198.51.100.7/32")] = tcp(443)
    expect_exactly(shop, BATCH, expected)


def test_a_falco_alert_quarantines_the_named_pod_and_only_it(shop: Shop, stack: Stack, recorder: PolicyRecorder) -> None:
    cluster = shop.cluster
    cart, db = shop.pods(CART), shop.pods(DB)[0]
    target, replica = cart[0], cart[1]
    instance = target.labels[names.LABEL_INSTANCE]
    mark = recorder.mark()
    sent = send(stack, "/signals/falco", falco_body("shop", target.name))
    assert sent.answer["accepted"] == 1
    change = recorder.wait_for(mark, quarantines(instance))
    assert record_latency("falco alert -> pod quarantine", sent, change) <= SIGNAL_TO_POLICY_BOUND_SECONDS
    quarantine = change.obj
    assert quarantine["metadata"]["ownerReferences"][0]["name"] == target.name
    # Quarantine = DNS out, and in only the configured exception (the metrics scraper's namespace).
    expected = dns_for([target])
    expected[(shop.prometheus, f"shop/{target.name}")] = tcp(9090)
    view = connectivity(cluster)
    seen = view.touching({f"shop/{target.name}"})
    assert seen == expected, f"nca sees {sorted(seen.items())}"
    # Its replica keeps its traffic, by nca and by netpol_eval alike.
    assert view.pair(f"shop/{replica.name}", f"data/{db.name}", 5432) == (True, True)
    assert view.pair(f"shop/{target.name}", f"data/{db.name}", 5432) == (False, False)
    assert view.pair(f"shop/{replica.name}", f"{DNS_POD.namespace}/{DNS_POD.name}", 53, "UDP") == (True, True)
    quarantined = [p for p in cluster.managed() if p["metadata"]["labels"].get(names.LABEL_POLICY_ROLE) == names.ROLE_QUARANTINE]
    assert [p["metadata"]["name"] for p in quarantined] == [quarantine["metadata"]["name"]]


def test_a_false_positive_rolls_back_to_the_exact_previous_spec(shop: Shop, stack: Stack,
                                                                recorder: PolicyRecorder) -> None:
    cluster = shop.cluster
    report = shop.pods(REPORT)[0]
    previous = copy.deepcopy(cluster.workload_policy(REPORT))
    assert previous is not None
    mark = recorder.mark()
    sent = send(stack, "/signals/flows", flows_body(edge_flows(report, UNKNOWN_HOST, 443, 3)))
    tightened = recorder.wait_for(mark, is_step(REPORT, names.STEP_TIGHTENED))
    record_latency("egress to the world -> tighten", sent, tightened)
    assert tightened.obj["spec"] != previous["spec"]
    mark = recorder.mark()
    started = time.monotonic()
    stack.kubelet.set_ready("shop", report.name, False)
    rolled_back = recorder.wait_for(mark, lambda c: c.obj["metadata"]["name"] == previous["metadata"]["name"]
                                    and c.obj["spec"] != tightened.obj["spec"])
    LATENCIES_NOTE = "readiness lost -> rollback"
    from .harness import LATENCIES

    LATENCIES.setdefault(LATENCIES_NOTE, []).append((rolled_back.seen - started, rolled_back.seen - started))
    assert rolled_back.obj["spec"] == previous["spec"], "the exact previous spec is back"
    annotations = rolled_back.obj["metadata"]["annotations"]
    assert annotations[names.ANNOTATION_STEP] == names.STEP_BASELINE
    assert annotations[names.ANNOTATION_EVIDENCE], "the evidence is kept"
    wait_until(lambda: any(reason == names.EVENT_POLICY_ROLLED_BACK and obj == previous["metadata"]["name"]
                           for _ns, reason, obj in cluster.netwarden_events()), what="rollback Event")
    stack.kubelet.set_ready("shop", report.name, True)


def test_deleting_a_deployments_pods_removes_its_policies_after_the_grace_period(shop: Shop, recorder: PolicyRecorder) -> None:
    # Scaled to zero: the Deployment stays, its pods go. (Deleting the Deployment itself takes the
    # policy at once, through its ownerReference and the garbage collector.)
    cluster = shop.cluster
    name = policy_name(cluster, GONE)
    mark = recorder.mark()
    cluster.apps.patch_namespaced_deployment("gone", "shop", {"spec": {"replicas": 0}})
    wait_until(lambda: not cluster.pods_of(GONE), what="gone's pods deleted")
    pods_gone = time.monotonic()
    assert cluster.workload_policy(GONE) is not None, "the policy outlives its last pod for the grace period"
    removed = recorder.wait_for(mark, lambda c: c.kind == "DELETED" and c.obj["metadata"]["name"] == name, timeout=20)
    assert removed.seen - pods_gone >= CLEANUP_GRACE_SECONDS - 0.5
    assert cluster.workload_policy(GONE) is None
    assert any(reason == names.EVENT_POLICY_REMOVED for _ns, reason, _obj in cluster.netwarden_events())
