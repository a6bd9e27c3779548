"""Leader election on a coordination.k8s.io/v1 Lease, and the writer gate every write passes.

Only the leader writes. Leadership is held while the Lease renews: a renewal is an update with
the resourceVersion just read, so two candidates racing get one 200 and one 409 (the loser backs
off). Expiry is judged like client-go does, by when *this* process last saw the Lease record
change (its own monotonic clock), never by comparing the holder's timestamps with ours.

The gate closes by itself `renew_deadline` seconds after the last successful renewal, even if the
renewal thread is stuck, so a partitioned leader stops writing before another can take over
(`renew_deadline < lease_duration`).

The leader publishes where it takes signals (`address`, e.g. https://10.0.0.5:8444) in the Lease's
netwarden.io/leader-address annotation; a standby reads it on every round, so signals that reach
a standby through the Service can be forwarded to the one process that acts on them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable


from netwarden.model import names
from netwarden.model.errors import ApiError, Conflict, NetwardenError
from netwarden.platform.kube import KubeClient
from netwarden.reconciler import metrics
from netwarden.reconciler.policy_ops import epoch_of

log = logging.getLogger("netwarden.reconciler.leader")


class NotLeader(NetwardenError, RuntimeError):
    """A write was attempted by a process that does not (or no longer) hold the Lease."""


class WriterGate(ABC):
    """Checked before every write. `AlwaysOpen` for single-instance runs without election."""

    @abstractmethod
    def is_open(self) -> bool:
        """True while this process may write."""

    def check(self) -> None:
        if not self.is_open():
            raise NotLeader("not the leader: write refused")

    def leader_address(self) -> str | None:
        """Where the current leader takes signals, when another process leads and said so."""
        return None


class AlwaysOpen(WriterGate):
    def is_open(self) -> bool:
        return True


def micro_time(moment: datetime) -> str:
    """Kubernetes MicroTime: RFC 3339 with microseconds, UTC."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: How far apart two clocks may be when a one-off reader (the CLI) judges a Lease by its renewTime.
LEASE_CLOCK_SKEW_SECONDS = 5.0


def lease_holder(lease: dict[str, Any] | None, now: float) -> str | None:
    """Who holds a Lease at `now` (epoch seconds), judged once from its renewTime and duration (the elector
    itself judges by when it saw a renewal, immune to skew; a one-off reader cannot, so it allows
    LEASE_CLOCK_SKEW_SECONDS)."""
    spec = (lease or {}).get("spec") or {}
    holder, renewed_at = spec.get("holderIdentity"), epoch_of(spec.get("renewTime"))
    if not holder or renewed_at is None:
        return None
    duration = float(spec.get("leaseDurationSeconds") or LeaseTiming().lease_duration)
    return str(holder) if now - renewed_at < duration + LEASE_CLOCK_SKEW_SECONDS else None


@dataclass(frozen=True)
class LeaseTiming:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("need 0 < retry_period < renew_deadline < lease_duration")


class LeaderElector(WriterGate):
    """Acquires and renews one Lease in a background thread; is itself the writer gate."""

    def __init__(self, kube: KubeClient, namespace: str, name: str, identity: str,
                 timing: LeaseTiming = LeaseTiming(), *,
                 on_started: Callable[[], None] | None = None, on_stopped: Callable[[], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 address: str | None = None) -> None:
        self.kube = kube
        #: Where this process takes signals, published on the Lease while it leads.
        self.address = address
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.monotonic = monotonic
        self.wall = wall
        self._valid_until = 0.0
        self._leading = False
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._other_leader_address: str | None = None
        self._other_valid_until = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.transitions_seen = 0

    # -- the gate -----------------------------------------------------------------------------
    def is_open(self) -> bool:
        return self._leading and self.monotonic() < self._valid_until

    @property
    def is_leader(self) -> bool:
        return self.is_open()

    def leader_address(self) -> str | None:
        if self.is_open() or self.monotonic() >= self._other_valid_until:
            return None
        return self._other_leader_address

    # -- one round ----------------------------------------------------------------------------
    def try_acquire_or_renew(self) -> bool:
        """One attempt. True when this process holds the Lease afterwards."""
        attempt_started = self.monotonic()
        now = self.wall()
        try:
            lease = self.kube.get_lease(self.namespace, self.name)
            if lease is None:
                self.kube.create_lease(self._manifest(None, now, transitions=0, acquired=now))
                return self._won(attempt_started)
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            record = (holder, str(spec.get("renewTime") or ""))
            if record != self._observed:
                self._observed, self._observed_at = record, attempt_started
            duration = float(spec.get("leaseDurationSeconds") or self.timing.lease_duration)
            held_by_other = holder and holder != self.identity
            if held_by_other and attempt_started < self._observed_at + duration:
                annotations = (lease.get("metadata") or {}).get("annotations") or {}
                self._other_leader_address = annotations.get(names.ANNOTATION_LEADER_ADDRESS) or None
                self._other_valid_until = self._observed_at + duration
                return self._lost()
            self._other_leader_address, self._other_valid_until = None, 0.0
            transitions = int(spec.get("leaseTransitions") or 0)
            if holder != self.identity:
                transitions += 1
                acquired = now
            else:
                acquired_text = spec.get("acquireTime")
                acquired = None if acquired_text else now
            manifest = self._manifest(lease, now, transitions=transitions, acquired=acquired)
            self.kube.replace_lease(manifest)
            return self._won(attempt_started)
        except ApiError as exc:
            if isinstance(exc, Conflict):
                log.info("lease %s/%s: lost the race (409)", self.namespace, self.name)
            else:
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc.status)
            return self._still_valid()
        except Exception as exc:  # noqa: BLE001 - network faults: keep leading only until the deadline
            log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            return self._still_valid()

    def _manifest(self, lease: dict[str, Any] | None, now: datetime, *, transitions: int,
                  acquired: datetime | None) -> dict[str, Any]:
        spec: dict[str, Any] = dict((lease or {}).get("spec") or {})
        spec.update({
            "holderIdentity": self.identity,
            "leaseDurationSeconds": math.ceil(self.timing.lease_duration),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions,
        })
        if acquired is not None:
            spec["acquireTime"] = micro_time(acquired)
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        annotations = dict(((lease or {}).get("metadata") or {}).get("annotations") or {})
        annotations.pop(names.ANNOTATION_LEADER_ADDRESS, None)
        if self.address:
            annotations[names.ANNOTATION_LEADER_ADDRESS] = self.address
        if annotations:
            metadata["annotations"] = annotations
        if lease is not None:
            metadata["resourceVersion"] = (lease.get("metadata") or {}).get("resourceVersion")
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    def _won(self, attempt_started: float) -> bool:
        self._valid_until = attempt_started + self.timing.renew_deadline
        if not self._leading:
            self._leading = True
            self.transitions_seen += 1
            metrics.LEADER.set(1)
            log.info("lease %s/%s: %s is the leader", self.namespace, self.name, self.identity)
            if self.on_started is not None:
                self.on_started()
        return True

    def _lost(self) -> bool:
        if self._leading:
            self._leading = False
            self._valid_until = 0.0
            metrics.LEADER.set(0)
            log.info("lease %s/%s: %s lost leadership", self.namespace, self.name, self.identity)
            if self.on_stopped is not None:
                self.on_stopped()
        return False

    def _still_valid(self) -> bool:
        if self.is_open():
            return True
        return self._lost()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "LeaderElector":
        self._thread = threading.Thread(target=self.run, name="leader-elector", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        while not self._stop.is_set():
            self.try_acquire_or_renew()
            self._stop.wait(self.timing.retry_period)

    def stop(self, release: bool = True, timeout: float = 5.0) -> None:
        """Stop renewing; with `release`, hand the Lease back so a successor need not wait it out."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        was_leading = self._leading
        self._lost()
        if release and was_leading:
            self.release()

    def release(self) -> None:
        try:
            lease = self.kube.get_lease(self.namespace, self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            manifest = self._manifest(lease, self.wall(), transitions=int(lease["spec"].get("leaseTransitions") or 0),
                                      acquired=None)
            manifest["spec"]["holderIdentity"] = ""
            manifest["spec"]["leaseDurationSeconds"] = 1
            manifest["metadata"].get("annotations", {}).pop(names.ANNOTATION_LEADER_ADDRESS, None)
            self.kube.replace_lease(manifest)
        except Exception as exc:  # noqa: BLE001 - the Lease expires on its own anyway
            log.warning("lease %s/%s: release failed: %s", self.namespace, self.name, exc)
