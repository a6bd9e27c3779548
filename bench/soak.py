"""Soak: the demo's world at a steady rate for N minutes, checked all along against the policy set
netwarden should have; per-process RSS, open fds and threads over time, and every divergence.

    .venv/bin/python bench/soak.py --minutes 60 [--out soak.jsonl] [--seed 1]

What runs: `netwarden.tools.stack` (local API server, webhook on gunicorn/TLS, reconciler) plus a second
reconciler replica (tests/e2e/harness.py), the demo's shop (netwarden/tools/scenarios/shop.yaml, deployed by
the demo's Player) and one namespace that is not opted in. At a modest steady rate (the machine is
shared; this is about correctness and growth over time, not throughput): Hubble flows on the shop's
learned edges, sent to either replica as a Service would; pod churn (pods deleted, deployments
scaled 0..3, a deployment deleted and re-created); Falco and Alertmanager alerts; a world-egress
anomaly; readiness flips; a random LocalKube fault (500, 409, 429, delay, dropped watch, 410) on
netwarden's paths; and every few minutes a SIGKILL of the leading reconciler (the standby must take
over; the killed one comes back as the new standby).

What is checked, every few seconds, from the API alone (`intended_violations`):
  * every live pod's netwarden labels equal what admission decides for it (netwarden.webhook.admission's own
    pure decision, instance aside: it is random) and instances are unique; pods outside opted-in
    namespaces carry none;
  * every workload with a live pod in an opted-in namespace has exactly one baseline;
  * no policy outlives its workload's last pod by more than the cleanup grace;
  * quarantine policies only for live pods, and none past its expires-at; no tightened or
    quarantined step past its expires-at.
A divergence is logged when it opens (with the moment it became due, e.g. the expiry time) and
when it converges. Each kind has a tolerance (the lag the design allows: the engine ticks every
5 s, a backfill waits for a watch event); longer ones are listed, and any still open after the
final settle phase (no churn, no faults) is a failure.

Output: JSON lines (--out; one per sample, divergence, fault, kill, ...) and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402
from kubernetes import client  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

from netwarden.model import names  # noqa: E402
from netwarden.tools.demo import Player, alertmanager_body, load_scenario  # noqa: E402
from netwarden.model.identity import OwnerRef  # noqa: E402
from netwarden.model.labels import NamespaceFacts, is_reserved_label  # noqa: E402
from netwarden.tools.scenario import NamespaceSpec, Step, WorkloadSpec  # noqa: E402
from netwarden.tools.stack import ManagedProcess, Stack, free_port  # noqa: E402
from netwarden.tools.traffic import PodEnd, WorldEnd, steady_flows  # noqa: E402
from netwarden.reconciler.policy_ops import epoch_of  # noqa: E402
from tests.e2e.harness import Cluster, falco_body, flows_body, leader_metric, post, running_stack, sigkill  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402
from netwarden.model.admission import AdmissionSettings  # noqa: E402
from netwarden.webhook.admission import decide_admission  # noqa: E402

CLEANUP_GRACE_SECONDS = 10.0
QUARANTINE_EXPIRY_SECONDS = 45.0
TIGHTEN_EXPIRY_SECONDS = 90.0

#: Reconciler settings for a world that changes every few seconds: short learning, short expiries and
#: grace (so an hour sees hundreds of expiries and cleanups), guard rails wide enough that actions act.
SOAK_RECONCILER_CONFIG: dict[str, Any] = {
    "reconciler": {"cleanup_grace_seconds": CLEANUP_GRACE_SECONDS},
    "core": {
        "learning_seconds": 20.0,
        "rate_bucket_seconds": 1.0,
        "half_life_seconds": 30.0,
        "tighten_expiry_seconds": TIGHTEN_EXPIRY_SECONDS,
        "quarantine_expiry_seconds": QUARANTINE_EXPIRY_SECONDS,
        "blast_max_workloads": 1000,
        "blast_max_pod_fraction": 1.0,
        "blast_window_seconds": 60.0,
        "write_rate_per_second": 5.0,
        "write_burst": 20,
        "rollback_window_seconds": 60.0,
        "rollback_cooldown_seconds": 120.0,
        "deviation_weights": {"world-egress": 12.0},
    },
}

#: How late a divergence of each kind may converge and still be the design working (seconds after it
#: became due): the engine ticks every 5 s; a backfill or a cleanup waits for a watch event and a queue.
TOLERANCE_SECONDS: dict[str, float] = {
    "labels": 10.0, "instance-duplicate": 0.0, "missing-baseline": 10.0, "duplicate-baseline": 0.0,
    "unexpected-policy": 0.0, "stale-policy": 10.0, "orphan-quarantine": 10.0, "expired-quarantine": 10.0,
    "expired-step": 10.0,
}

#: The shop's normal traffic (the edges the demo's "normal traffic is learned" step plays).
LEARNED_EDGES: tuple[tuple[str, str, int], ...] = (
    ("shop/frontend", "shop/api", 8080), ("shop/api", "shop/database", 5432),
    ("shop/api", "payments/gateway", 8443), ("shop/worker", "shop/database", 5432),
)
#: Outside the shop: a namespace that is not opted in (netwarden must leave it alone).
PLAIN_NAMESPACE = NamespaceSpec("plain")
PLAIN_WORKLOAD = WorkloadSpec("plain", "web", replicas=2, ports=(8080,))
MAX_REPLICAS = 3


@dataclass(frozen=True)
class Rates:
    """Seconds between events of each kind (flows: per second)."""

    flows_per_second: float = 200.0
    churn: float = 2.0
    falco: float = 45.0
    alertmanager: float = 60.0
    anomaly: float = 60.0
    readiness: float = 120.0
    fault: float = 20.0
    recreate: float = 180.0
    leader_kill: float = 300.0


#: The slow test's five minutes: fewer events, two leader kills.
SHORT_RATES = Rates(flows_per_second=100.0, churn=3.0, falco=40.0, alertmanager=60.0, anomaly=50.0, readiness=90.0,
                    fault=15.0, recreate=100.0, leader_kill=120.0)


@dataclass(frozen=True)
class SoakSettings:
    minutes: float
    rates: Rates = Rates()
    out: Path = Path("soak.jsonl")
    workdir: Path | None = None
    seed: int = 1
    sample_seconds: float = 10.0
    check_seconds: float = 2.0
    #: After the run: no churn, no faults; every divergence must converge within this.
    settle_seconds: float = 90.0
    #: Fault kinds (names in `fault_menu`) left out of the draw.
    without_faults: tuple[str, ...] = ()


# --- the record ------------------------------------------------------------------------------


class JsonLog:
    """One JSON object per line, each with `t` (seconds since the start) and `type`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.started = time.time()
        self._lock = threading.Lock()
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def now(self) -> float:
        return round(time.time() - self.started, 3)

    def write(self, type_: str, **fields: Any) -> None:
        line = json.dumps({"t": self.now(), "type": type_, **fields}, default=str)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


# --- process resources -----------------------------------------------------------------------


@dataclass
class ProcSample:
    t: float
    rss_kib: int
    fds: int
    threads: int


@dataclass
class ProcSeries:
    name: str
    pid: int
    samples: list[ProcSample] = field(default_factory=list)


def read_proc(pid: int) -> tuple[int, int, int] | None:
    """(VmRSS KiB, open fds, threads) from /proc; None when the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if "VmRSS" not in fields:  # a zombie (killed, not yet reaped): nothing left to measure
        return None
    rss = int(fields["VmRSS"].split()[0])
    return rss, fds, int(fields.get("Threads", "0").strip())


def children_of(pid: int) -> list[int]:
    """Direct children (gunicorn's workers), from /proc/<pid>/task/*/children."""
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            out.extend(int(x) for x in text.split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return sorted(set(out))


def tracked_processes(stack: Stack) -> list[tuple[str, int]]:
    """Every process of the soak: the stack's children, gunicorn's workers, and this driver (kubelet,
    workload controllers, checker and senders run in it)."""
    out = [("soak-driver", os.getpid())]
    for proc in stack.processes:
        if proc.alive():
            out.append((proc.name, proc.popen.pid))
            if proc.name == "webhook":
                out.extend(("webhook-worker", child) for child in children_of(proc.popen.pid))
    return out


def slope_per_hour(samples: Sequence[ProcSample], value: Callable[[ProcSample], float]) -> float | None:
    """Least-squares slope (units per hour) of `value` over the samples; None with fewer than 3."""
    if len(samples) < 3:
        return None
    ts = [s.t for s in samples]
    vs = [value(s) for s in samples]
    mt, mv = sum(ts) / len(ts), sum(vs) / len(vs)
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in zip(ts, vs)) / var * 3600.0


def after_warmup(series: ProcSeries) -> list[ProcSample]:
    """Samples after start-up: imports, TLS, informer sync and first caches take the first minute
    (more on a loaded machine); a fifth of a long life, at most 2 minutes."""
    if not series.samples:
        return []
    first, last = series.samples[0].t, series.samples[-1].t
    cut = first + min(120.0, max(60.0, 0.2 * (last - first)))
    return [s for s in series.samples if s.t >= cut]


# --- what the policy set should be -----------------------------------------------------------


@dataclass
class Snapshot:
    """The cluster as read by one check (pods first: a pod created after this read cannot be
    missing a policy listed later)."""

    at: float
    pods: list[dict[str, Any]]
    replicasets: list[dict[str, Any]]
    statefulsets: list[dict[str, Any]]
    namespaces: list[dict[str, Any]]
    policies: list[dict[str, Any]]


@dataclass
class Memory:
    """What the checker remembers between snapshots: when each identity and instance was last live,
    and when it first saw a policy (a grace period starts from what was observed)."""

    last_live: dict[str, float] = field(default_factory=dict)
    instance_last_live: dict[str, float] = field(default_factory=dict)
    first_seen: dict[str, float] = field(default_factory=dict)


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def is_live(pod: Mapping[str, Any]) -> bool:
    return not _meta(pod).get("deletionTimestamp") and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def verified_parents(pod: Mapping[str, Any], owners: Mapping[tuple[str, str, str], Mapping[str, Any]]
                     ) -> dict[tuple[str, str], list[OwnerRef]] | None:
    """The parents admission would have fetched for this pod; None when its controller is gone (the
    pod is about to be collected, and what admission would say of it now is moot)."""
    refs = [OwnerRef.from_dict(r) for r in _meta(pod).get("ownerReferences") or []]
    controller = next((r for r in refs if r.controller), None)
    if controller is None:
        return {}
    owner = owners.get((_meta(pod)["namespace"], controller.kind, controller.name))
    if owner is None or _meta(owner).get("uid") != controller.uid or _meta(owner).get("deletionTimestamp"):
        return None
    return {(controller.kind, controller.name): [OwnerRef.from_dict(r) for r in _meta(owner).get("ownerReferences") or []]}


def admission_labels(pod: Mapping[str, Any], facts: NamespaceFacts, parents: Mapping[tuple[str, str], Any]
                     ) -> tuple[dict[str, str], str | None]:
    """(netwarden's labels admission gives this pod, its baseline policy name or None), from the
    webhook's own pure decision on the pod as it was created (netwarden's labels not yet there)."""
    meta = dict(_meta(pod))
    meta["labels"] = {k: v for k, v in (meta.get("labels") or {}).items() if k not in names.POD_LABELS}
    # The soak's pods are made by their controllers (no pod creator forges an owner there): judge each as
    # created by kube-controller-manager, which the default pod_creators trust for every kind.
    request = {"uid": meta.get("uid", "soak"), "kind": {"group": "", "version": "v1", "kind": "Pod"},
               "userInfo": {"username": "system:kube-controller-manager"},
               "resource": {"group": "", "version": "v1", "resource": "pods"}, "operation": "CREATE",
               "namespace": meta["namespace"], "name": meta.get("name", ""), "object": {**pod, "metadata": meta}}
    decision = decide_admission(request, facts, parents, "soak-instance", AdmissionSettings())
    manifest = decision.policy_manifest
    return dict(decision.labels), (manifest["metadata"]["name"] if manifest else None)


def intended_violations(snap: Snapshot, memory: Memory, grace: float) -> dict[tuple[str, str], tuple[str, float]]:
    """Where the cluster differs from the policy set netwarden should have made:
    (kind, subject) -> (what, since when it is due)."""
    now = snap.at
    out: dict[tuple[str, str], tuple[str, float]] = {}

    def due(kind: str, subject: str, what: str, since: float | None = None) -> None:
        out[(kind, subject)] = (what, now if since is None else since)

    facts = {_meta(n)["name"]: NamespaceFacts(_meta(n)["name"], dict(_meta(n).get("labels") or {}),
                                              dict(_meta(n).get("annotations") or {})) for n in snap.namespaces}
    owners = {(_meta(o)["namespace"], kind, _meta(o)["name"]): o
              for kind, objs in (("ReplicaSet", snap.replicasets), ("StatefulSet", snap.statefulsets)) for o in objs}
    live_baselines: dict[str, tuple[str, str]] = {}  # identity -> (namespace, expected baseline name)
    live_instances: set[str] = set()
    instances: dict[str, str] = {}
    for pod in snap.pods:
        if not is_live(pod):
            continue
        meta = _meta(pod)
        key = f"{meta['namespace']}/{meta['name']}"
        labels = dict(meta.get("labels") or {})
        instance = labels.get(names.LABEL_INSTANCE)
        if instance:
            live_instances.add(instance)
            memory.instance_last_live[instance] = now
            if instance in instances:
                due("instance-duplicate", instance, f"pods {instances[instance]} and {key} share an instance")
            instances[instance] = key
        parents = verified_parents(pod, owners)
        ns = facts.get(meta["namespace"])
        if parents is None or ns is None:
            continue
        expected, baseline = admission_labels(pod, ns, parents)
        actual = {k: v for k, v in labels.items() if is_reserved_label(k)}
        want = {k: v for k, v in expected.items() if k != names.LABEL_INSTANCE}
        have = {k: v for k, v in actual.items() if k != names.LABEL_INSTANCE}
        if want != have or (names.LABEL_INSTANCE in expected) != bool(instance):
            missing = sorted(k.split("/")[-1] for k in set(want) | set(expected) if k not in actual)
            wrong = sorted(k.split("/")[-1] for k in want if k in actual and actual[k] != want[k])
            extra = sorted(k.split("/")[-1] for k in actual if k not in expected)
            due("labels", key, f"missing {missing} wrong {wrong} extra {extra}")
        identity = expected.get(names.LABEL_IDENTITY)
        if baseline and identity:
            live_baselines[identity] = (meta["namespace"], baseline)
            memory.last_live[identity] = now

    managed = [p for p in snap.policies if (_meta(p).get("labels") or {}).get(names.LABEL_MANAGED_BY) == names.MANAGED_BY_VALUE]
    baselines: dict[str, list[str]] = {}
    for policy in managed:
        meta = _meta(policy)
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        key = f"{meta['namespace']}/{meta['name']}"
        memory.first_seen.setdefault(key, now)
        identity = labels.get(names.LABEL_IDENTITY, "")
        role = labels.get(names.LABEL_POLICY_ROLE)
        ns = facts.get(meta["namespace"])
        if ns is not None and not (ns.labels.get(names.LABEL_INJECT) == names.INJECT_ENABLED
                                   or ns.annotations.get(names.ANNOTATION_INJECT) == names.INJECT_ENABLED):
            due("unexpected-policy", key, f"managed policy in namespace {meta['namespace']}, which is not opted in")
        expires = epoch_of(annotations.get(names.ANNOTATION_EXPIRES_AT))
        if role == names.ROLE_BASELINE:
            baselines.setdefault(identity, []).append(key)
            if identity not in live_baselines:
                # A policy newer than the last live pod seen was made for pods this snapshot missed (created
                # between its pod and policy reads): its grace starts at its creation.
                gone = max(memory.last_live.get(identity, memory.first_seen[key]),
                           epoch_of(meta.get("creationTimestamp")) or 0.0)
                if now > gone + grace:
                    due("stale-policy", key, f"{identity} has had no live pod since t-{now - gone:.0f}s", gone + grace)
            if expires is not None and expires < now and annotations.get(names.ANNOTATION_STEP) in (
                    names.STEP_TIGHTENED, names.STEP_QUARANTINED):
                due("expired-step", key, f"step {annotations.get(names.ANNOTATION_STEP)} expired at "
                                         f"{annotations.get(names.ANNOTATION_EXPIRES_AT)}", expires)
        elif role == names.ROLE_QUARANTINE:
            target = annotations.get(names.ANNOTATION_TARGET_POD, "")
            if target not in live_instances:
                gone = memory.instance_last_live.get(target, memory.first_seen[key])
                due("orphan-quarantine", key, f"its pod (instance {target}) is gone", gone)
            elif expires is not None and expires < now:
                due("expired-quarantine", key, f"expired at {annotations.get(names.ANNOTATION_EXPIRES_AT)}", expires)
    for identity, (namespace, name) in live_baselines.items():
        have = baselines.get(identity, [])
        if f"{namespace}/{name}" not in have:
            due("missing-baseline", identity, f"{namespace}/{name} absent (has {have})")
        if len(have) > 1:
            due("duplicate-baseline", identity, f"{have}")
    return out


@dataclass
class Divergence:
    kind: str
    subject: str
    what: str
    due: float  # soak time it became due
    seen: float  # soak time the checker first saw it
    converged: float | None = None
    leader_kill_near: bool = False

    @property
    def lag(self) -> float | None:
        return None if self.converged is None else round(self.converged - self.due, 2)

    def beyond_tolerance(self) -> bool:
        lag = self.lag
        return lag is None or lag > TOLERANCE_SECONDS.get(self.kind, 0.0)


# --- the soak --------------------------------------------------------------------------------


@dataclass
class Counters:
    flows_sent: int = 0
    flows_accepted: int = 0
    batches_refused: int = 0
    batches_failed: int = 0
    falco: int = 0
    alertmanager: int = 0
    anomalies: int = 0
    readiness_flips: int = 0
    churn: dict[str, int] = field(default_factory=dict)
    checks: int = 0
    check_errors: int = 0
    event_errors: int = 0


@dataclass
class LeaderKill:
    at: float
    killed: str
    failover_seconds: float | None
    new_leader: str | None
    restarted_ready_seconds: float | None


@dataclass
class SoakResult:
    duration_minutes: float
    series: list[ProcSeries]
    divergences: list[Divergence]
    unconverged: list[Divergence]
    kills: list[LeaderKill]
    faults: dict[str, dict[str, int]]
    counters: Counters
    alive: dict[str, bool]
    ready: dict[str, bool]
    settle_seconds: float | None
    #: netwarden's Events by reason (what it did: created, tightened, quarantined, relaxed, removed, ...).
    events: dict[str, int] = field(default_factory=dict)


class Soak:
    """Drives the world, injects faults, kills leaders, samples /proc and checks the policy set."""

    def __init__(self, settings: SoakSettings) -> None:
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.log = JsonLog(settings.out)
        self.counters = Counters()
        self.memory = Memory()
        self.open: dict[tuple[str, str], Divergence] = {}
        self.closed: list[Divergence] = []
        self.kills: list[LeaderKill] = []
        self.kill_times: list[float] = []
        self.faults: dict[int, str] = {}
        self.fault_counts: dict[str, dict[str, int]] = {}
        self.series: dict[tuple[str, int], ProcSeries] = {}
        self.latest_pods: list[dict[str, Any]] = []
        self.replicas: dict[str, tuple[str, str]] = {}  # process name -> (pod name, signal URL)
        self._lock = threading.Lock()
        self._stop_world = threading.Event()
        self._stop_all = threading.Event()
        self.stack: Stack | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def run(self) -> SoakResult:
        workdir = self.settings.workdir or Path(tempfile.mkdtemp(prefix="netwarden-soak-"))
        self.log.write("start", settings={**asdict(self.settings), "out": str(self.settings.out)},
                       config=SOAK_RECONCILER_CONFIG, workdir=str(workdir))
        self.stack = stack = running_stack(workdir, SOAK_RECONCILER_CONFIG)
        try:
            return self._run(stack)
        finally:
            self._stop_world.set()
            self._stop_all.set()
            stack.stop()
            self.log.write("stopped", strays=self.strays())
            self.log.close()

    def _run(self, stack: Stack) -> SoakResult:
        self.cluster = Cluster(stack)
        first = stack.process("reconciler")
        first.env = {**first.env, "NETWARDEN_POD_IP": "127.0.0.1"}  # what it publishes when started again
        second_port = free_port()
        stack.add_reconciler("reconciler-b", "netwarden-demo-1", second_port)
        self.replicas = {"reconciler": ("netwarden-demo-0", stack.signals_url),
                         "reconciler-b": ("netwarden-demo-1", f"https://127.0.0.1:{second_port}")}
        scenario = load_scenario(None)
        scenario = replace(scenario, namespaces=scenario.namespaces + (PLAIN_NAMESPACE,),
                           workloads=scenario.workloads + (PLAIN_WORKLOAD,))
        self.player = Player(stack, scenario, out=lambda line: self.log.write("demo", line=line))
        self.player.step_deploy(Step("deploy", {}))
        self.workloads = {f"{w.namespace}/{w.name}": w for w in scenario.workloads}
        self.absent: set[str] = set()  # workloads deleted, to be created again

        sampler = threading.Thread(target=self._sample_loop, name="soak-sampler", daemon=True)
        sampler.start()
        world = [threading.Thread(target=loop, name=name, daemon=True) for name, loop in (
            ("soak-checker", self._check_loop), ("soak-traffic", self._traffic_loop), ("soak-events", self._event_loop))]
        for thread in world:
            thread.start()
        started = time.monotonic()
        end = started + self.settings.minutes * 60.0
        next_kill = started + self.settings.rates.leader_kill
        next_progress = started + 60.0
        while time.monotonic() < end:
            dead = [p for p in stack.processes if not p.alive()]
            if dead:  # not one we killed (kill_leader restarts its own before returning)
                self.log.write("process_died", processes={p.name: p.popen.returncode for p in dead},
                               tail={p.name: p.tail(20) for p in dead})
                break
            if time.monotonic() >= next_kill and end - time.monotonic() > 30:
                self.kill_leader(stack)
                next_kill += self.settings.rates.leader_kill
            if time.monotonic() >= next_progress:
                next_progress += 60.0
                self.progress()
            self._stop_all.wait(min(1.0, max(0.0, end - time.monotonic())))
        ran = (time.monotonic() - started) / 60.0
        self.log.write("world_stopped", minutes=round(ran, 2))
        self._stop_world.set()
        for thread in world:
            thread.join(30)
        settle = self.settle()
        self._stop_all.set()
        sampler.join(15)
        self.sample()
        self._collect_faults(final=True)
        alive = {p.name: p.alive() for p in stack.processes}
        ready = self.readiness(stack)
        unconverged = list(self.open.values())
        for divergence in unconverged:
            divergence.leader_kill_near = any(divergence.due - 20 <= k for k in self.kill_times)
        result = SoakResult(round(ran, 2), list(self.series.values()), self.closed + unconverged, unconverged,
                            self.kills, self.fault_counts, self.counters, alive, ready, settle, self.netwarden_events())
        self.log.write("end", duration_minutes=result.duration_minutes, alive=alive, ready=ready, events=result.events,
                       unconverged=[asdict(d) for d in unconverged], counters=asdict(self.counters),
                       faults=self.fault_counts, settle_seconds=settle, processes=process_rows(result.series))
        return result

    def progress(self) -> None:
        """A minute's summary in the log (to follow a long run with tail -f)."""
        with self._lock:
            pods = sum(1 for p in self.latest_pods if is_live(p))
        self.log.write("progress", open_divergences=len(self.open), divergences=len(self.open) + len(self.closed),
                       live_pods=pods, kills=len(self.kills), counters=asdict(self.counters))

    def netwarden_events(self) -> dict[str, int]:
        """Events netwarden recorded, by reason: what it did during the soak (its audit trail)."""
        counts: dict[str, int] = {}
        try:
            events = self.cluster.core.list_event_for_all_namespaces().items
        except Exception:  # noqa: BLE001
            return counts
        for event in events:
            if (event.reason or "").startswith("Netwarden"):
                counts[event.reason] = counts.get(event.reason, 0) + max(1, event.count or 1)
        return dict(sorted(counts.items()))

    def settle(self) -> float | None:
        """No more churn or faults: wait for every open divergence to converge; seconds taken (None: never)."""
        self._collect_faults()
        self.cluster.clear_faults()
        started = time.monotonic()
        try:
            wait_for(self._checked_clean, what="every divergence converged", timeout=self.settings.settle_seconds,
                     interval=self.settings.check_seconds)
        except AssertionError:
            return None
        return round(time.monotonic() - started, 1)

    def _checked_clean(self) -> bool:
        return self.check() and not self.open

    def readiness(self, stack: Stack) -> dict[str, bool]:
        urls = {"webhook": stack.webhook_url, **{name: url for name, (_pod, url) in self.replicas.items()}}
        out: dict[str, bool] = {}
        for name, url in urls.items():
            try:
                out[name] = requests.get(f"{url}/readyz", timeout=5, verify=stack.ca_file).status_code == 200
            except requests.RequestException:
                out[name] = False
        return out

    def strays(self) -> list[int]:
        """Pids of the soak's processes still running after the stop (should be none)."""
        return sorted(pid for (_name, pid) in self.series if pid != os.getpid() and read_proc(pid) is not None
                      and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z")

    # -- sampling -----------------------------------------------------------------------------
    def _sample_loop(self) -> None:
        while not self._stop_all.is_set():
            self.sample()
            self._stop_all.wait(self.settings.sample_seconds)

    def sample(self) -> None:
        assert self.stack is not None
        now = self.log.now()
        for name, pid in tracked_processes(self.stack):
            read = read_proc(pid)
            if read is None:
                continue
            rss, fds, threads = read
            with self._lock:
                series = self.series.setdefault((name, pid), ProcSeries(name, pid))
                series.samples.append(ProcSample(now, rss, fds, threads))
            self.log.write("sample", process=name, pid=pid, rss_kib=rss, fds=fds, threads=threads)

    # -- checking -----------------------------------------------------------------------------
    def _check_loop(self) -> None:
        while not self._stop_world.is_set():
            self.check()
            self._stop_world.wait(self.settings.check_seconds)

    def snapshot(self) -> Snapshot:
        plain = self.cluster.plain
        at = time.time()
        pods = [plain(p) for p in self.cluster.core.list_pod_for_all_namespaces().items]
        replicasets = [plain(r) for r in self.cluster.apps.list_replica_set_for_all_namespaces().items]
        statefulsets = [plain(s) for s in self.cluster.apps.list_stateful_set_for_all_namespaces().items]
        namespaces = [plain(n) for n in self.cluster.core.list_namespace().items]
        policies = [plain(p) for p in self.cluster.net.list_network_policy_for_all_namespaces().items]
        return Snapshot(at, pods, replicasets, statefulsets, namespaces, policies)

    def check(self) -> bool:
        """One check; False when the cluster could not be read (a fault hit the checker too)."""
        try:
            snap = self.snapshot()
        except Exception as exc:  # noqa: BLE001 - injected faults reach the checker's reads as well
            self.counters.check_errors += 1
            self.log.write("check_error", error=f"{type(exc).__name__}: {str(exc)[:200]}")
            return False
        with self._lock:
            self.latest_pods = snap.pods
        found = intended_violations(snap, self.memory, CLEANUP_GRACE_SECONDS)
        self.counters.checks += 1
        now = self.log.now()
        offset = self.log.started
        for key, (what, since) in found.items():
            if key not in self.open:
                divergence = Divergence(key[0], key[1], what, round(min(since - offset, now), 2), now)
                self.open[key] = divergence
                self.log.write("divergence", **asdict(divergence))
        for key in [k for k in self.open if k not in found]:
            divergence = self.open.pop(key)
            divergence.converged = now
            divergence.leader_kill_near = any(divergence.due - 20 <= k <= now for k in self.kill_times)
            self.closed.append(divergence)
            self.log.write("converged", **asdict(divergence), lag=divergence.lag,
                           beyond_tolerance=divergence.beyond_tolerance())
        return True

    # -- signals ------------------------------------------------------------------------------
    def pods_by_workload(self) -> dict[str, list[PodEnd]]:
        with self._lock:
            pods = list(self.latest_pods)
        out: dict[str, list[PodEnd]] = {}
        for pod in pods:
            meta = _meta(pod)
            ip = (pod.get("status") or {}).get("podIP")
            app = (meta.get("labels") or {}).get("app")
            if ip and app and is_live(pod):
                out.setdefault(f"{meta['namespace']}/{app}", []).append(
                    PodEnd(meta["namespace"], meta["name"], ip, meta.get("labels") or {}))
        return out

    def send(self, path: str, body: Any) -> dict[str, Any] | None:
        """POST to a replica chosen at random (a Service); the other when that one is down; None when
        neither took it (a leaderless moment answers 503: the sender drops it, as Hubble's exporter would)."""
        assert self.stack is not None
        order = list(self.replicas.values())
        self.rng.shuffle(order)
        for _pod, url in order:
            try:
                response = post(url, path, body, self.stack.signal_token, self.stack.ca_file)
            except requests.RequestException:
                continue
            if response.status_code == 200:
                return response.json()
            if response.status_code == 503:
                self.counters.batches_refused += 1
                return None
            self.log.write("signal_error", path=path, status=response.status_code, body=response.text[:200])
            return None
        self.counters.batches_failed += 1
        return None

    def _traffic_loop(self) -> None:
        rate = self.settings.rates.flows_per_second
        tick = 0
        while not self._stop_world.is_set():
            started = time.monotonic()
            tick += 1
            pods = self.pods_by_workload()
            edges = [(self.rng.choice(pods[src]), self.rng.choice(pods[dst]), port, "TCP", "FORWARDED")
                     for src, dst, port in LEARNED_EDGES if pods.get(src) and pods.get(dst)
                     for _ in range(len(pods[src]))]
            if edges:
                records = list(steady_flows(edges, start=time.time(), seconds=1.0, rate=rate, seed=tick))
                answer = self.send("/signals/flows", flows_body(records))
                self.counters.flows_sent += len(records)
                if answer is not None:
                    self.counters.flows_accepted += int(answer.get("accepted", 0))
            self._stop_world.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    # -- events ---------------------------------------------------------------------------------
    def _event_loop(self) -> None:
        rates = self.settings.rates
        due = {name: time.monotonic() + self.rng.uniform(0.3, 1.0) * every for name, every in (
            ("churn", rates.churn), ("falco", rates.falco), ("alertmanager", rates.alertmanager),
            ("anomaly", rates.anomaly), ("readiness", rates.readiness), ("fault", rates.fault),
            ("recreate", rates.recreate))}
        later: list[tuple[float, str, Callable[[], None]]] = []
        while not self._stop_world.is_set():
            now = time.monotonic()
            for when, what, action in [x for x in later if x[0] <= now]:
                later.remove((when, what, action))
                self._safely(what, action)
            for name in [n for n, when in due.items() if when <= now]:
                due[name] = now + getattr(rates, name) * self.rng.uniform(0.7, 1.3)
                follow_up = self._safely(name, getattr(self, f"event_{name}"))
                if follow_up is not None:
                    later.append((now + follow_up[0], f"{name}-end", follow_up[1]))
            self._collect_faults()
            self._stop_world.wait(0.25)

    def _safely(self, what: str, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - an injected fault may hit the driver's own calls
            self.counters.event_errors += 1
            self.log.write("event_error", event=what, error=f"{type(exc).__name__}: {str(exc)[:200]}")
            return None

    def _random_pod(self, keys: Iterable[str] | None = None) -> PodEnd | None:
        pods = self.pods_by_workload()
        choices = [p for key, ps in pods.items() if keys is None or key in keys for p in ps
                   if p.namespace != PLAIN_NAMESPACE.name]
        return self.rng.choice(choices) if choices else None

    def event_churn(self) -> None:
        """One pod change: a pod deleted (its controller re-creates it) or a workload scaled 0..3."""
        if self.rng.random() < 0.55:
            pod = self._random_pod() if self.rng.random() < 0.9 else None
            if pod is None:
                plain = self.pods_by_workload().get(f"{PLAIN_WORKLOAD.namespace}/{PLAIN_WORKLOAD.name}") or []
                pod = self.rng.choice(plain) if plain else None
            if pod is not None:
                self.cluster.core.delete_namespaced_pod(pod.name, pod.namespace)
                self._count("pod-deleted")
                self.log.write("churn", action="delete-pod", pod=f"{pod.namespace}/{pod.name}")
            return
        key = self.rng.choice([k for k in self.workloads if k not in self.absent])
        replicas = self.rng.choices([0, 1, 2, MAX_REPLICAS], weights=[1, 3, 3, 2])[0]
        self.player.step_scale(Step("scale", {"target": key, "replicas": replicas}))
        self._count("scaled")
        self.log.write("churn", action="scale", workload=key, replicas=replicas)

    def event_recreate(self) -> tuple[float, Callable[[], None]]:
        """A workload deleted, and created again a little after its grace period."""
        key = self.rng.choice([k for k in self.workloads if k not in self.absent])
        self.player.step_delete_workload(Step("delete_workload", {"target": key}))
        self.absent.add(key)
        self._count("workload-deleted")
        self.log.write("churn", action="delete-workload", workload=key)

        def recreate() -> None:
            self.absent.discard(key)
            self.player.create_workload(self.workloads[key])
            self._count("workload-created")
            self.log.write("churn", action="create-workload", workload=key)
        return CLEANUP_GRACE_SECONDS + self.rng.uniform(5, 20), recreate

    def _count(self, what: str) -> None:
        self.counters.churn[what] = self.counters.churn.get(what, 0) + 1

    def event_falco(self) -> None:
        pod = self._random_pod()
        if pod is not None:
            self.send("/signals/falco", falco_body(pod.namespace, pod.name, self.rng.choice(["Critical", "Error", "Warning"])))
            self.counters.falco += 1
            self.log.write("signal", kind="falco", pod=f"{pod.namespace}/{pod.name}")

    def event_alertmanager(self) -> tuple[float, Callable[[], None]] | None:
        pod = self._random_pod()
        if pod is None:
            return None
        fingerprint = f"soak-{self.counters.alertmanager}"
        self.send("/signals/alertmanager", alertmanager_body(pod.namespace, pod.name, fingerprint=fingerprint))
        self.counters.alertmanager += 1
        self.log.write("signal", kind="alertmanager", pod=f"{pod.namespace}/{pod.name}", status="firing")

        def resolve() -> None:
            self.send("/signals/alertmanager", alertmanager_body(pod.namespace, pod.name, status="resolved",
                                                                 fingerprint=fingerprint))
            self.log.write("signal", kind="alertmanager", pod=f"{pod.namespace}/{pod.name}", status="resolved")
        return 20.0, resolve

    def event_anomaly(self) -> None:
        """One pod calls the internet and scans a peer: world egress and new peers (a tightening)."""
        pod = self._random_pod(["shop/api", "shop/worker", "shop/frontend"])
        if pod is None:
            return
        world = WorldEnd(f"203.0.113.{self.rng.randint(1, 254)}")
        edges = [(pod, world, 443, "TCP", "FORWARDED"), (pod, world, 22, "TCP", "FORWARDED")]
        self.send("/signals/flows", flows_body(steady_flows(edges, start=time.time(), seconds=1.0, rate=10)))
        self.counters.anomalies += 1
        self.log.write("signal", kind="anomaly", pod=f"{pod.namespace}/{pod.name}", peer=world.ip)

    def event_readiness(self) -> tuple[float, Callable[[], None]] | None:
        """A pod loses readiness for 10 s (after a tightening: a rollback)."""
        assert self.stack is not None
        pod = self._random_pod()
        if pod is None:
            return None
        kubelet = self.stack.kubelet
        kubelet.set_ready(pod.namespace, pod.name, False)
        self.counters.readiness_flips += 1
        self.log.write("readiness", pod=f"{pod.namespace}/{pod.name}", ready=False)

        def back() -> None:
            try:
                kubelet.set_ready(pod.namespace, pod.name, True)
            except ApiException as exc:
                if exc.status != 404:  # the pod went meanwhile: nothing to restore
                    raise
            self.log.write("readiness", pod=f"{pod.namespace}/{pod.name}", ready=True)
        return 10.0, back

    # -- faults ---------------------------------------------------------------------------------
    def event_fault(self) -> None:
        kind, body = self.rng.choice([f for f in fault_menu(self.rng) if f[0] not in self.settings.without_faults])
        fault_id = self.cluster.fault(**body)
        self.faults[fault_id] = kind
        self.fault_counts.setdefault(kind, {"injected": 0, "hit": 0, "unhit": 0})["injected"] += 1
        self.log.write("fault", id=fault_id, kind=kind, spec=body)

    def _collect_faults(self, final: bool = False) -> None:
        """A fault no longer listed was used up (hit as often as it was meant to)."""
        if not self.faults:
            return
        try:
            active = {f["id"] for f in self.cluster.faults()}
        except Exception:  # noqa: BLE001 - a 500 of our own making on the fault list; look later
            return
        for fault_id, kind in list(self.faults.items()):
            if fault_id not in active:
                self.fault_counts[kind]["hit"] += 1
                del self.faults[fault_id]
                self.log.write("fault_used", id=fault_id, kind=kind)
            elif final:
                self.fault_counts[kind]["unhit"] += 1
                del self.faults[fault_id]
        if final:
            self.cluster.clear_faults()

    # -- leader kills ---------------------------------------------------------------------------
    def leader(self) -> str | None:
        """Process name of the replica holding the Lease."""
        lease = client.CoordinationV1Api(self.cluster.api).read_namespaced_lease("netwarden-reconciler", "netwarden")
        holder = lease.spec.holder_identity
        return next((name for name, (pod, _url) in self.replicas.items() if pod == holder), None)

    def kill_leader(self, stack: Stack) -> None:
        """SIGKILL the leader; time until the standby leads; the killed one comes back as standby."""
        try:
            killed = wait_for(lambda: _quietly(self.leader), what="a leader", timeout=60, interval=0.5)
        except AssertionError:
            self.log.write("leader_kill_skipped", why="no leader")
            return
        at = self.log.now()
        self.kill_times.append(at)
        proc = stack.process(killed)
        sigkill(proc)
        started = time.monotonic()
        other_name = next(n for n in self.replicas if n != killed)
        other_url = self.replicas[other_name][1]
        failover: float | None = None
        try:
            wait_for(lambda: leader_metric(other_url, stack.ca_file) == 1.0, what="the standby leads", timeout=60,
                     interval=0.2)
            failover = round(time.monotonic() - started, 2)
        except AssertionError:
            pass
        restarted = time.monotonic()
        fresh = stack.restart(killed)
        ready: float | None = None
        try:
            wait_for(lambda: self._ready(self.replicas[killed][1], fresh), what=f"{killed} back", timeout=60, interval=0.2)
            ready = round(time.monotonic() - restarted, 2)
        except AssertionError:
            pass
        kill = LeaderKill(at, killed, failover, other_name if failover is not None else None, ready)
        self.kills.append(kill)
        self.log.write("leader_kill", **asdict(kill))

    def _ready(self, url: str, proc: ManagedProcess) -> bool:
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited: {proc.tail(10)}")
        try:
            return requests.get(f"{url}/readyz", timeout=2, verify=self.stack.ca_file).status_code == 200  # type: ignore[union-attr]
        except requests.RequestException:
            return False


#: A namespace read that fails inside an admission review: the webhook answers 500, the API server
#: applies failurePolicy Ignore, the pod starts without netwarden's labels and the reconciler must
#: backfill them.
WEBHOOK_DOWN = "500 namespace read (webhook)"


def _quietly(call: Callable[[], Any]) -> Any:
    """The call's value, or None when it raised (an injected fault may answer any read)."""
    try:
        return call()
    except Exception:  # noqa: BLE001
        return None


def fault_menu(rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """The faults a cluster throws at netwarden's calls, each used once to three times."""
    times = rng.randint(1, 3)
    return [
        ("500 policy update", {"method": "PUT", "path_regex": r"/networkpolicies/", "status": 500, "times": times}),
        ("409 policy update", {"method": "PUT", "path_regex": r"/networkpolicies/", "status": 409, "times": times}),
        ("500 policy create", {"method": "POST", "path_regex": r"/networkpolicies(\?|$)", "status": 500, "times": times}),
        ("500 policy delete", {"method": "DELETE", "path_regex": r"/networkpolicies/", "status": 500, "times": times}),
        ("429 pod list", {"method": "GET", "path_regex": r"/pods(\?(?!.*watch)|$)", "status": 429, "retry_after": 1,
                          "times": times}),
        ("500 pod create", {"method": "POST", "path_regex": r"/pods(\?|$)", "status": 500, "times": times}),
        (WEBHOOK_DOWN, {"method": "GET", "path_regex": r"/api/v1/namespaces/(shop|payments)$",
                                          "status": 500, "times": times}),
        ("delay 1.5s policy read", {"method": "GET", "path_regex": r"/networkpolicies", "delay": 1.5, "times": times}),
        ("dropped pod watch", {"method": "GET", "path_regex": r"/pods\?.*watch=(1|true)", "drop_watch_after": rng.randint(0, 3),
                               "times": 1}),
        ("410 policy watch", {"method": "GET", "path_regex": r"networkpolicies\?.*watch=(1|true)", "status": 410,
                              "times": 1}),
        ("500 lease update", {"method": "PUT", "path_regex": r"/leases/netwarden-reconciler", "status": 500, "times": 1}),
        ("500 pod label patch", {"method": "PATCH", "path_regex": r"/pods/[^/]+$", "status": 500, "times": times}),
    ]


# --- the table -------------------------------------------------------------------------------


def process_rows(series: Iterable[ProcSeries]) -> list[dict[str, Any]]:
    rows = []
    for s in sorted(series, key=lambda s: (s.name, s.samples[0].t if s.samples else 0)):
        if not s.samples:
            continue
        first, mid, last = s.samples[0], s.samples[len(s.samples) // 2], s.samples[-1]
        warm = after_warmup(s)
        slope = slope_per_hour(warm, lambda x: x.rss_kib / 1024)
        # The second half alone: a cache or a bounded history filling up flattens here, a leak does not.
        late = slope_per_hour([x for x in s.samples if x.t >= (first.t + last.t) / 2], lambda x: x.rss_kib / 1024)
        rows.append({"process": s.name, "pid": s.pid, "from_min": round(first.t / 60, 1), "to_min": round(last.t / 60, 1),
                     "rss_mib": [round(x.rss_kib / 1024, 1) for x in (first, mid, last)],
                     "rss_slope_mib_per_h": None if slope is None else round(slope, 1),
                     "rss_slope_second_half_mib_per_h": None if late is None else round(late, 1),
                     "fds": [first.fds, max(x.fds for x in s.samples), last.fds],
                     "fds_after_warmup": [warm[0].fds, max(x.fds for x in warm)] if warm else None,
                     "threads": [first.threads, max(x.threads for x in s.samples), last.threads],
                     "threads_after_warmup": [warm[0].threads, max(x.threads for x in warm)] if warm else None})
    return rows


def render_table(result: SoakResult) -> str:
    lines = [f"soak: {result.duration_minutes:.1f} min; settle after the world stopped: "
             f"{'never' if result.settle_seconds is None else f'{result.settle_seconds:.0f} s'}",
             f"{'process':16s} {'pid':>7s} {'min':>11s} {'RSS MiB start/mid/end':>22s} {'slope MiB/h':>11s} "
             f"{'2nd half':>9s} {'fds s/max/e':>12s} {'threads s/max/e':>15s}"]
    for row in process_rows(result.series):
        slope = "-" if row["rss_slope_mib_per_h"] is None else f"{row['rss_slope_mib_per_h']:+.1f}"
        late = "-" if row["rss_slope_second_half_mib_per_h"] is None else f"{row['rss_slope_second_half_mib_per_h']:+.1f}"
        lines.append(f"{row['process']:16s} {row['pid']:7d} {row['from_min']:5.1f}-{row['to_min']:<5.1f} "
                     f"{'/'.join(f'{v:.1f}' for v in row['rss_mib']):>22s} {slope:>11s} {late:>9s} "
                     f"{'/'.join(map(str, row['fds'])):>12s} {'/'.join(map(str, row['threads'])):>15s}")
    c = result.counters
    lines.append(f"signals: {c.flows_sent} flows sent ({c.flows_accepted} accepted, {c.batches_refused} batches refused "
                 f"while leaderless, {c.batches_failed} unsent), {c.falco} Falco, {c.alertmanager} Alertmanager, "
                 f"{c.anomalies} anomalies, {c.readiness_flips} readiness flips")
    lines.append(f"churn: {json.dumps(c.churn, sort_keys=True)}; checks {c.checks} ({c.check_errors} unreadable); "
                 f"driver calls hit by faults {c.event_errors}")
    lines.append("faults (injected/used/unused): " + ", ".join(
        f"{k} {v['injected']}/{v['hit']}/{v['unhit']}" for k, v in sorted(result.faults.items())))
    lines.append(f"leader kills: {len(result.kills)}; failover s: "
                 f"{[k.failover_seconds for k in result.kills]}; killed one ready again s: "
                 f"{[k.restarted_ready_seconds for k in result.kills]}")
    lines.append("netwarden's Events: " + ", ".join(f"{k.removeprefix('Netwarden')} {v}" for k, v in result.events.items()))
    lines.append(f"alive: {result.alive}; ready: {result.ready}")
    by_kind: dict[str, list[Divergence]] = {}
    for d in result.divergences:
        by_kind.setdefault(d.kind, []).append(d)
    lines.append(f"divergences: {len(result.divergences)} ({len(result.unconverged)} unconverged)")
    for kind, items in sorted(by_kind.items()):
        lags = sorted(d.lag for d in items if d.lag is not None)
        beyond = [d for d in items if d.beyond_tolerance()]
        lines.append(f"  {kind:20s} {len(items):4d}  lag p50 {lags[len(lags) // 2] if lags else '-'} s, max "
                     f"{lags[-1] if lags else '-'} s; beyond its {TOLERANCE_SECONDS.get(kind, 0):.0f} s tolerance: "
                     f"{len(beyond)} ({sum(d.leader_kill_near for d in beyond)} near a leader kill)")
    for d in [d for d in result.divergences if d.beyond_tolerance()][:25]:
        lines.append(f"    t={d.due:7.1f}s {d.kind} {d.subject}: {d.what}; "
                     f"{'UNCONVERGED' if d.converged is None else f'converged after {d.lag:.1f} s'}"
                     f"{' (leader kill near)' if d.leader_kill_near else ''}")
    return "\n".join(lines)


def load_result(path: Path) -> SoakResult:
    """A finished soak read back from its JSON lines log (to print the table again, or compare runs)."""
    series: dict[tuple[str, int], ProcSeries] = {}
    divergences: dict[tuple[str, str, float], Divergence] = {}
    kills: list[LeaderKill] = []
    end: dict[str, Any] = {}
    fields = {f for f in Divergence.__dataclass_fields__}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        kind = record["type"]
        if kind == "sample":
            series.setdefault((record["process"], record["pid"]), ProcSeries(record["process"], record["pid"])).samples.append(
                ProcSample(record["t"], record["rss_kib"], record["fds"], record["threads"]))
        elif kind in ("divergence", "converged"):
            divergence = Divergence(**{k: v for k, v in record.items() if k in fields})
            divergences[(divergence.kind, divergence.subject, divergence.due)] = divergence
        elif kind == "leader_kill":
            kills.append(LeaderKill(**{k: v for k, v in record.items() if k in LeaderKill.__dataclass_fields__}))
        elif kind == "end":
            end = record
    unconverged = [Divergence(**{k: v for k, v in d.items() if k in fields}) for d in end.get("unconverged", [])]
    counters = Counters(**end["counters"]) if end else Counters()
    return SoakResult(end.get("duration_minutes", 0.0), list(series.values()), list(divergences.values()), unconverged,
                      kills, end.get("faults", {}), counters, end.get("alive", {}), end.get("ready", {}),
                      end.get("settle_seconds"), end.get("events", {}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--out", default="soak.jsonl", help="JSON lines log (default soak.jsonl)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--short", action="store_true", help="the slow test's fewer events (SHORT_RATES)")
    parser.add_argument("--workdir", help="keep the stack's working directory (logs) here")
    parser.add_argument("--report", metavar="LOG", help="print the table of a finished soak from its log, run nothing")
    args = parser.parse_args(argv)
    if args.report:
        print(render_table(load_result(Path(args.report))))
        return 0
    settings = SoakSettings(args.minutes, SHORT_RATES if args.short else Rates(), Path(args.out),
                            Path(args.workdir) if args.workdir else None, args.seed)
    result = Soak(settings).run()
    print(render_table(result))
    print(f"log: {settings.out}")
    ok = not result.unconverged and all(result.alive.values()) and all(result.ready.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
