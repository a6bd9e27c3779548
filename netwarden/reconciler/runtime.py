"""Wiring: informers -> index + engine facts, signals -> engine -> Decisions -> controller, a ticker.

The engine is pure and single-threaded; every call into it holds one lock. Decisions are applied
in the order the engine produced them, under a second lock, by the thread that got them (the
receiver's request thread for a signal, so a quarantine lands while the alert's POST is answered).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, ContextManager, Sequence

from netwarden.model import names
from netwarden.model.admission import declared_intent
from netwarden.model.identity import Workload
from netwarden.platform.kube import KubeClient
from netwarden.platform.logs import log_event
from netwarden.model.policy import DnsTarget, PolicyIntent
from netwarden.reconciler import metrics
from netwarden.reconciler.controller import ControllerSettings, Reconciler
from netwarden.reconciler.core.decision import Action, Decision
from netwarden.reconciler.core.alerts import TOO_OLD, Attribution
from netwarden.reconciler.core.pods import PodIndex, PodRef
from netwarden.reconciler.core.config import CoreConfig
from netwarden.reconciler.core.engine import DecisionEngine
from netwarden.reconciler.core.types import Flow, HealthSignal, MetricAlert, RestoredPolicy, SecurityAlert
from netwarden.reconciler.leader import AlwaysOpen, WriterGate
from netwarden.reconciler.policy_ops import RECONCILER_WRITER, annotations_of, epoch_of, labels_of
from netwarden.reconciler.priority import SignalPriority
from netwarden.reconciler.queue import WorkQueue
from netwarden.reconciler.scaleout.statestore import Checkpointer, SecretStateStore, StateStoreSettings
from netwarden.reconciler.watch import DELETED, Backoff, ClusterIndex, ClusterWatcher

log = logging.getLogger("netwarden.reconciler.runtime")
#: Flows scored per hold of the engine lock; between chunks an alert in flight goes first. An alert that
#: arrives mid-chunk waits for the rest of it, and on a busy machine the thread scoring it may be off
#: the CPU meanwhile: 25 flows are ~0.35 ms of CPU (100 were measured to cost an alert up to 12 ms at
#: p90 under load); the engine's batch costs the same per flow at 25 as at 100 (bench/bench_core.py flows).
FLOW_CHUNK = 25
Obj = dict[str, Any]


def base_intent_of(pod: PodRef, mode: str) -> PolicyIntent:
    """The workload's declared baseline, through pod admission's own function (netwarden/model/admission.py)."""
    intent, _warnings = declared_intent(pod.facts, Workload(pod.namespace, "Pod", pod.pod), mode)
    return replace(intent, identity=pod.identity or intent.identity)


@dataclass(frozen=True)
class RuntimeSettings:
    controller: ControllerSettings = ControllerSettings()
    tick_seconds: float = 5.0
    watch_timeout_seconds: int = 300
    sync_timeout_seconds: float = 60.0
    #: How often namespaces with contained pods are looked at again for policies that weaken containment.
    containment_recheck_seconds: float = 15.0
    #: Where the leader keeps learned state for the next leader (None: nowhere, a new leader learns again).
    state: StateStoreSettings | None = None


class ReconcilerRuntime:
    """The reconciler process minus its HTTP server and CLI: also the receivers' SignalSink."""

    def __init__(self, kube: KubeClient, settings: RuntimeSettings = RuntimeSettings(),
                 core: CoreConfig | None = None, *, gate: WriterGate | None = None,
                 clock: Callable[[], float] = time.time, backoff: Backoff = Backoff()) -> None:
        self.kube = kube
        self.settings = settings
        self.clock = clock
        self.gate = gate or AlwaysOpen()
        core = core or CoreConfig(default_mode=settings.controller.default_mode)
        pods = PodIndex()
        self.engine = DecisionEngine(core, index=pods, dns=settings.controller.dns, now=clock())
        self._engine_lock = threading.RLock()
        #: One pod index for the engine and the controllers, written by the pod watch under the engine lock.
        self.index = ClusterIndex(default_mode=core.default_mode, pods=pods, lock=self._engine_lock)
        #: Alerts before flows: flow batches wait while an alert is handled (the receivers share it).
        self.signal_priority = SignalPriority()
        self._apply_lock = threading.RLock()
        self.queue = WorkQueue()
        self.controller = Reconciler(kube, self.index, settings.controller, gate=self.gate, queue=self.queue,
                                     clock=clock, on_health=self.accept_health,
                                     proposals=EngineProposals(self.engine, self._engine_lock, clock, self.apply))
        self.watcher = ClusterWatcher(kube, self.index, timeout_seconds=settings.watch_timeout_seconds,
                                      backoff=backoff)
        self.watcher.subscribe(self._on_change)
        self.decisions_applied = 0
        self.checkpoints = (Checkpointer(self.engine, self._engine_lock, SecretStateStore(kube, settings.state),
                                         clock, settings.state.checkpoint_seconds) if settings.state else None)
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self.started = threading.Event()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, *, workers: int | None = None, collect_garbage: bool = True) -> "ReconcilerRuntime":
        self.watcher.start()
        if not self.watcher.wait_synced(self.settings.sync_timeout_seconds):
            raise TimeoutError("informers did not sync")
        self.controller.start(workers)
        if collect_garbage and self.gate.is_open():
            self.controller.collect_garbage()
        self.controller.resync()
        self._ticker = threading.Thread(target=self._tick_loop, name="engine-ticker", daemon=True)
        self._ticker.start()
        self.started.set()
        if self.gate.is_open():
            # Leadership that arrived while we were starting was skipped by on_leadership: look again now,
            # or pods admitted while the webhook was down would wait for their next event to be backfilled.
            self.on_leadership()
        return self

    def stop(self) -> None:
        if self.checkpoints is not None and self.gate.is_open():
            self.checkpoints.save(force=True)  # the next leader starts from here, not from nothing
        self._stop.set()
        self.watcher.stop()
        self.controller.stop()
        if self._ticker is not None:
            self._ticker.join(5)

    def ready(self) -> bool:
        return self.started.is_set()

    def on_leadership(self) -> None:
        """Gained the Lease: take over what the cluster holds, collect garbage, look at everything again."""
        if self.started.is_set():
            if self.checkpoints is not None:
                self.checkpoints.restore()  # baselines first: the policies' steps are read back over them
            self.take_over()
            self.resume_quarantines()
            self.resume_workload_steps()
            self.controller.collect_garbage()
            self.controller.resync()
            with self._engine_lock:
                decisions = self.engine.tick(self.clock())  # what expired meanwhile ends now, not a tick later
            self.apply(decisions)

    def take_over(self) -> int:
        """Read every managed policy's quarantine and step back into the engine. A standby's engine ticks
        too, but its decisions were never written: one that 'lifted' an expired quarantine in memory
        must lift it for real once it leads. Idempotent; returns how many were taken over."""
        now = self.clock()
        count = 0
        with self._engine_lock:
            for obj in self.index.policies():
                restored = restored_policy(obj, now)
                if restored is not None and self.engine.restore(restored, now):
                    count += 1
        if count:
            log_event(log, "info", {"event": "took_over_from_cluster", "restored": count})
        return count

    def resume_quarantines(self) -> int:
        """Write the pod quarantines the engine holds from a saved state but the cluster lacks: the last
        leader decided them and died before the first write landed (its snapshot was saved at the
        decision). Each goes through the usual quarantine steps; returns how many were resumed."""
        with self._engine_lock:
            held = self.engine.held_quarantines(self.clock())
        backend = self.controller.quarantines.backend
        present: dict[tuple[str, str], set[str]] = {}
        resumed = []
        for decision in held:
            instance = decision.instances[0]
            if self.index.pod_by_instance(instance) is None:
                continue  # the pod is gone: nothing to isolate
            key = (decision.namespace, decision.identity)
            if key not in present:
                try:
                    present[key] = backend.held(*key)
                except Exception as exc:  # noqa: BLE001 - unknown: writing it again is idempotent
                    log_event(log, "warning", {"event": "quarantines_unread", "identity": decision.identity,
                                               "error": f"{type(exc).__name__}: {exc}"})
                    present[key] = set()
            if instance not in present[key]:
                resumed.append(decision)
        if resumed:
            log_event(log, "info", {"event": "quarantines_resumed", "instances": [d.instances[0] for d in resumed]})
            self.apply(resumed)
        return len(resumed)

    def resume_workload_steps(self) -> int:
        """Write the workload steps (tightened, quarantined) the engine holds from a saved state where the
        workload's policy says another step: the last leader decided them and died while the write was
        failing. Each goes through the usual plan; returns how many were resumed."""
        with self._engine_lock:
            held = self.engine.held_workload_steps(self.clock())
        resumed = []
        for decision in held:
            holder = self.controller.decisions.baseline_policy_of(decision.identity)
            if holder is None or annotations_of(holder).get(names.ANNOTATION_STEP) == decision.step_after:
                continue  # no policy to carry it (the workload is gone), or the cluster already holds it
            if annotations_of(holder).get(names.ANNOTATION_CHANGED_BY, RECONCILER_WRITER) != RECONCILER_WRITER:
                continue  # a person changed it since (a rollback, an approval): theirs is the last word
            resumed.append(decision)
        if resumed:
            log_event(log, "info", {"event": "workload_steps_resumed",
                                    "workloads": [(d.identity, d.step_after) for d in resumed]})
            self.apply(resumed)
        return len(resumed)

    # -- facts from the watch -------------------------------------------------------------------
    def _on_change(self, resource: str, kind: str, obj: Obj, old: Obj | None) -> None:
        decisions: list[Decision] = []
        with self._engine_lock:
            if resource == "namespaces" and kind != DELETED:
                view = self.index.namespace(obj["metadata"]["name"])
                if view is not None:
                    self.engine.set_mode(view.facts.name, view.mode)
            elif resource == "pods":
                # The watch has put the pod in the index the engine reads; the engine forgets one it no longer resolves.
                pod = PodRef.from_obj(obj)
                before = PodRef.from_obj(old) if old is not None else None
                if (kind == DELETED or not pod.resolvable) and before is not None and before.resolvable:
                    decisions = self.engine.forget_pod(before, self.clock())
                elif kind != DELETED and pod.resolvable:
                    if pod.identity not in self.engine.base_intents:
                        self.engine.set_base_intent(pod.identity, base_intent_of(pod, self.index.mode_of(pod.namespace)))
            elif resource == "networkpolicies" and kind != DELETED:
                labels = labels_of(obj)
                if old is None:
                    restored = restored_policy(obj, self.clock())
                    if restored is not None and self.engine.restore(restored, self.clock()):
                        log_event(log, "info", {"event": "restored_from_cluster", "policy": obj["metadata"].get("name"),
                                                "identity": restored.identity, "step": restored.step,
                                                "instance": restored.instance, "expires_at": restored.expires_at})
                if labels.get(names.LABEL_POLICY_ROLE) == names.ROLE_BASELINE and old is None:
                    # Tracked from now; its past specs stay in its history annotation (policy_ops.history_of).
                    self.engine.track(labels.get(names.LABEL_IDENTITY, ""), obj["metadata"]["namespace"], self.clock())
        self.controller.on_change(resource, kind, obj, old)
        self.apply(decisions)

    # -- SignalSink ---------------------------------------------------------------------------
    def accept_flows(self, flows: Sequence[Flow]) -> None:
        """Score a batch, a chunk at a time: an alert arriving meanwhile goes first (netwarden/reconciler/priority.py)."""
        now = self.clock()
        decisions: list[Decision] = []
        ingest, turn = self.engine.ingest_flows, self.signal_priority.wait_turn
        for start in range(0, len(flows), FLOW_CHUNK):
            turn()
            with self._engine_lock:
                decisions.extend(ingest(flows[start:start + FLOW_CHUNK], now))
        self.apply(decisions)

    def accept_alert(self, alert: SecurityAlert) -> Attribution | None:
        with self.signal_priority.alert():  # flows wait while an alert is handled
            return self._accept_alert(alert)

    def _accept_alert(self, alert: SecurityAlert) -> Attribution | None:
        """Score one Falco alert; returns where it was attributed (its `reason` says why nowhere)."""
        with self._engine_lock:
            decisions = self.engine.ingest_alert(alert, self.clock())
            ignored = self.engine.last_alert_ignored
            where = self.engine.last_alert_attribution
        account_unattributed(alert.source_format, where, alert.namespace, alert.pod, alert.rule)
        if ignored is not None:
            metrics.ALERTS_IGNORED.labels(alert.source_format, ignored).inc()
            log_event(log, "info", {"event": "alert_not_acted_on", "why": ignored, "namespace": alert.namespace,
                                    "pod": alert.pod, "rule": alert.rule, "alert_time": alert.time,
                                    "alert_id": alert.alert_id})
            pod = self.index.pod(alert.namespace, alert.pod) if alert.namespace and alert.pod else None
            if ignored == TOO_OLD and pod is not None:  # a duplicate says nothing new: no Event for it
                age = self.clock() - alert.time
                self.controller.writer.event(
                    pod.raw, names.EVENT_ALERT_NOT_ACTED_ON,
                    f"{alert.source_format} {alert.priority}: {alert.rule} is {age:.0f}s old (max age "
                    f"{self.engine.config.alert_max_age_seconds:g}s): kept as evidence of the past, not acted on")
        self.apply(decisions)
        return where

    def accept_metric_alerts(self, alerts: Sequence[MetricAlert]) -> list[Attribution | None]:
        with self.signal_priority.alert():  # flows wait while an alert is handled
            return self._accept_metric_alerts(alerts)

    def _accept_metric_alerts(self, alerts: Sequence[MetricAlert]) -> list[Attribution | None]:
        """Score Alertmanager alerts; returns where each was attributed, in order."""
        now = self.clock()
        decisions: list[Decision] = []
        attributions: list[Attribution | None] = []
        with self._engine_lock:
            for alert in alerts:
                decisions.extend(self.engine.ingest_metric_alert(alert, now))
                attributions.append(self.engine.last_alert_attribution)
                if self.engine.last_alert_ignored is not None:
                    metrics.ALERTS_IGNORED.labels("alertmanager", self.engine.last_alert_ignored).inc()
        for alert, where in zip(alerts, attributions):
            account_unattributed("alertmanager", where, alert.namespace, alert.pod, alert.alertname)
        self.apply(decisions)
        return attributions

    def accept_health(self, signal: HealthSignal) -> None:
        with self._engine_lock:
            decisions = self.engine.ingest_health(signal, self.clock())
        self.apply(decisions)

    # -- applying -----------------------------------------------------------------------------
    def apply(self, decisions: Sequence[Decision]) -> None:
        if not decisions:
            return
        if not self.gate.is_open():
            for decision in decisions:
                log_event(log, "info", {"event": "decision_not_applied", "why": "not the leader",
                                        "action": decision.action, "identity": decision.identity})
            return
        if self.checkpoints is not None and any(
                d.writes and d.action in (Action.QUARANTINE_POD, Action.QUARANTINE_WORKLOAD) for d in decisions):
            self.checkpoints.save_soon()  # durable beside its first write: a crash now does not lose it
        with self._apply_lock:
            for decision in decisions:
                try:
                    self.controller.apply_decision(decision)
                    self.decisions_applied += 1
                except Exception as exc:  # noqa: BLE001 - one failed write must not lose the others
                    log_event(log, "warning", {"event": "decision_failed", "action": decision.action,
                                               "identity": decision.identity, "error": f"{type(exc).__name__}: {exc}"})

    def _tick_loop(self) -> None:
        last_check = time.monotonic()
        while not self._stop.wait(self.settings.tick_seconds):
            with self._engine_lock:
                decisions = self.engine.tick(self.clock())
            self.apply(decisions)
            if self.checkpoints is not None and self.gate.is_open():
                self.checkpoints.save()
            if self.gate.is_open() and time.monotonic() - last_check >= self.settings.containment_recheck_seconds:
                last_check = time.monotonic()
                self.controller.recheck_containment()


class EngineProposals:
    """Approve mode's proposals as the engine holds them (netwarden/reconciler/drift.py:Proposals): an
    approval runs the engine's own decisions through the usual path (plan, steps, retries)."""

    def __init__(self, engine: DecisionEngine, engine_lock: ContextManager[Any], clock: Callable[[], float],
                 apply: Callable[[Sequence[Decision]], None]) -> None:
        self.engine = engine
        self.engine_lock = engine_lock
        self.clock = clock
        self.apply = apply

    def holds(self, identity: str) -> bool:
        with self.engine_lock:
            state = self.engine.state_of(identity)
            return state is not None and bool(state.pending)

    def approve(self, identity: str) -> None:
        with self.engine_lock:
            decisions = self.engine.approve(identity, self.clock())
        self.apply(decisions)

    def reject(self, identity: str) -> None:
        with self.engine_lock:
            self.engine.reject(identity, self.clock())


def account_unattributed(kind: str, where: Attribution | None, namespace: str | None, pod: str | None,
                         name: str) -> None:
    """An alert attributed to no workload: counted by reason and logged, never silently dropped."""
    if where is None or where.reason is None:
        return
    metrics.ALERTS_UNATTRIBUTED.labels(kind, where.reason).inc()
    log_event(log, "info", {"event": "alert_unattributed", "kind": kind, "reason": where.reason, "detail": where.detail,
                            "namespace": namespace, "pod": pod, "alert": name})


def restored_policy(obj: Obj, now: float) -> RestoredPolicy | None:
    """What a managed policy's annotations say a previous leader did (None when nothing to take over)."""
    labels, annotations = labels_of(obj), annotations_of(obj)
    meta = obj.get("metadata") or {}
    if labels.get(names.LABEL_MANAGED_BY) != names.MANAGED_BY_VALUE or meta.get("deletionTimestamp"):
        return None
    if annotations.get(names.ANNOTATION_ADOPTED, "").lower() == "true":
        return None
    identity = labels.get(names.LABEL_IDENTITY)
    role = labels.get(names.LABEL_POLICY_ROLE)
    if not identity or role not in (names.ROLE_BASELINE, names.ROLE_QUARANTINE):
        return None
    created = meta.get("creationTimestamp")
    since = epoch_of(created if isinstance(created, str) else None) or now
    pod = next((r.get("name") for r in meta.get("ownerReferences") or [] if r.get("kind") == "Pod"), None)
    return RestoredPolicy(identity, meta.get("namespace") or "", role, annotations.get(names.ANNOTATION_STEP, ""),
                          since, epoch_of(annotations.get(names.ANNOTATION_EXPIRES_AT)),
                          annotations.get(names.ANNOTATION_TARGET_POD), pod)


def resolve_dns_target(kube: KubeClient, dns_service: str) -> DnsTarget:
    """The DNS Service's selector as the DNS egress peer (absent: port 53 anywhere), like the webhook."""
    namespace, _, name = dns_service.partition("/")
    try:
        service = kube.get_service(namespace, name) if namespace and name else None
    except Exception as exc:  # noqa: BLE001
        log.warning("DNS service %s unreadable: %s", dns_service, exc)
        service = None
    return DnsTarget.of_service(namespace, service)
