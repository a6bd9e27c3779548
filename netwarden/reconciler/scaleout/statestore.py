"""Single mode: the leader's learned state in Secrets, so a new leader does not learn again.

Why Secrets, sharded: a snapshot names peers, addresses, pods and alert texts (as sensitive as the
flows themselves), so it gets a Secret's RBAC and encryption at rest where the cluster has it; an
object is capped at 1 MiB, so workloads are spread over `shards` Secrets by a hash of their
identity (`netwarden-state-<n>`), each key a workload identity, each value its deflated snapshot
(netwarden.reconciler.core.snapshot). A shard whose content did not change is not written again; one that
would pass the cap drops its largest snapshots (counted: those workloads learn again). Annotations
on each workload's own policy were the other candidate (they die with the workload); they were
left because every checkpoint would then bump the policy's resourceVersion and race the policy
writes that carry preconditions on it.

Written by the leader only, every `checkpoint_seconds` and when it steps down; read by a new leader
before it takes over the policies. In scale-out mode the same snapshots go to a compacted Kafka
topic instead (netwarden.reconciler.scaleout.kafka).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import urllib3

from netwarden.model import names
from netwarden.model.errors import ApiError
from netwarden.platform.logs import log_event
from netwarden.reconciler import metrics
from netwarden.reconciler.core import snapshot
from netwarden.reconciler.core.engine import DecisionEngine
from netwarden.reconciler.core.snapshot import SnapshotError

log = logging.getLogger("netwarden.reconciler.statestore")

#: Room left under the API server's 1 MiB object cap for metadata and base64's growth (4/3).
SHARD_MAX_BYTES = 700 * 1024


@dataclass(frozen=True)
class StateStoreSettings:
    namespace: str = "netwarden"
    shards: int = 16
    checkpoint_seconds: float = 30.0


def shard_of(identity: str, shards: int) -> int:
    """Stable across processes and Python versions (not `hash`, which is salted per process)."""
    return zlib.crc32(identity.encode()) % shards


def secret_name(shard: int) -> str:
    return f"{names.STATE_SECRET_PREFIX}-{shard}"


def count(operation: str, result: str, n: int = 1) -> None:
    if n:
        metrics.STATE_SNAPSHOTS.labels(operation, result).inc(n)


class SecretStateStore:
    """Reads and writes the shard Secrets; remembers what it wrote so unchanged shards cost nothing."""

    def __init__(self, kube: Any, settings: StateStoreSettings = StateStoreSettings()) -> None:
        self.kube = kube
        self.settings = settings
        self._digests: dict[int, str] = {}

    def load(self) -> list[bytes]:
        """Every stored snapshot (raw), from every shard; a shard that cannot be read is counted and skipped."""
        out: list[bytes] = []
        for shard in range(self.settings.shards):
            try:
                secret = self.kube.get_secret(self.settings.namespace, secret_name(shard))
            except ApiError as exc:  # the adapter's errors (netwarden/model/errors.py)
                count("load", f"api-{exc.status}")
                continue
            for key, value in ((secret or {}).get("data") or {}).items():
                try:
                    out.append(base64.b64decode(value))
                except ValueError:
                    count("load", "malformed")
                    log_event(log, "warning", {"event": "state_snapshot_unreadable", "shard": shard, "workload": key})
        return out

    def save(self, blobs: dict[str, bytes]) -> int:
        """Write the shards whose content changed; returns how many Secrets were written."""
        by_shard: dict[int, dict[str, bytes]] = {n: {} for n in range(self.settings.shards)}
        for identity, raw in blobs.items():
            by_shard[shard_of(identity, self.settings.shards)][identity] = raw
        written = 0
        for shard, entries in by_shard.items():
            data = _fit(entries)
            digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
            if self._digests.get(shard) == digest:
                continue
            result = self._write(shard, data)
            if result is None:
                break  # no answer: the other shards would each wait out the same retries
            if result:
                self._digests[shard] = digest
                written += 1
        return written

    def _write(self, shard: int, data: dict[str, str]) -> bool | None:
        """True: written; False: the API refused it; None: the API did not answer."""
        name, namespace = secret_name(shard), self.settings.namespace
        manifest: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": data,
            "metadata": {"name": name, "namespace": namespace, "labels": {
                names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE, names.LABEL_APP_COMPONENT: names.STATE_COMPONENT}},
        }
        try:
            current = self.kube.get_secret(namespace, name)
            if current is None:
                self.kube.create_secret(manifest)
            else:
                # The leader is the only writer (the writer gate); an old leader's late write is simply replaced.
                # The chart created it: its labels stay as they are (helm owns them).
                manifest["metadata"]["labels"] = current["metadata"].get("labels") or {}
                manifest["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
                self.kube.replace_secret(manifest)
        except ApiError as exc:
            count("save", f"api-{exc.status}")
            log_event(log, "warning", {"event": "state_shard_not_written", "secret": f"{namespace}/{name}",
                                       "status": exc.status, "reason": exc.reason})
            return False
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # no answer at all (the API server is gone)
            count("save", "unreachable")
            log_event(log, "warning", {"event": "state_shard_not_written", "secret": f"{namespace}/{name}",
                                       "status": 0, "reason": f"{type(exc).__name__}: {exc}"[:300]})
            return None
        count("save", "written", len(data))
        return True


def _fit(entries: dict[str, bytes]) -> dict[str, str]:
    """base64 values, smallest first, until the shard's byte cap; the rest are counted and left out."""
    data: dict[str, str] = {}
    size = 0
    for identity, raw in sorted(entries.items(), key=lambda item: (len(item[1]), item[0])):
        encoded = base64.b64encode(raw).decode()
        if size + len(encoded) + len(identity) > SHARD_MAX_BYTES:
            count("save", "shard-full")
            continue
        data[identity] = encoded
        size += len(encoded) + len(identity)
    return dict(sorted(data.items()))


class Checkpointer:
    """Moves snapshots between an engine and a store: `restore` on leadership, `save` on a timer and on stepping down."""

    def __init__(self, engine: DecisionEngine, lock: threading.RLock, store: SecretStateStore,
                 clock: Callable[[], float] = time.time, every: float = 30.0) -> None:
        self.engine = engine
        self.lock = lock
        self.store = store
        self.clock = clock
        self.every = every
        self._last = time.monotonic()
        self._soon = threading.Lock()

    def restore(self) -> int:
        """Restore every stored workload the engine has not seen flows for itself; returns how many."""
        started = time.monotonic()
        raws = self.store.load()
        restored = 0
        with self.lock:
            restored = restore_into(self.engine, raws, self.clock())
        log_event(log, "info", {"event": "state_restored", "workloads": restored, "stored": len(raws),
                                "seconds": round(time.monotonic() - started, 3)})
        return restored

    def save(self, *, force: bool = False) -> int:
        if not force and time.monotonic() - self._last < self.every:
            return 0
        self._last = time.monotonic()
        with self.lock:  # plain data under the lock; encoding (the costly part) outside it
            now = self.clock()
            datas = [self.engine.snapshot(identity, now) for identity in self.engine.workloads()]
        return self.store.save(encode_all(d for d in datas if d is not None))


    def save_soon(self) -> None:
        """Save now, beside the caller (a quarantine just decided is durable before its own write may land,
        without waiting for that write). One such save at a time; a save already running covers the call
        only if it started after the decision, so a busy one is followed by another."""
        threading.Thread(target=self._save_serialised, name="state-save", daemon=True).start()

    def _save_serialised(self) -> None:
        with self._soon:
            try:
                self.save(force=True)
            except Exception as exc:  # noqa: BLE001 - the timer's save retries; never kill the thread noisily
                log_event(log, "warning", {"event": "state_save_failed", "error": f"{type(exc).__name__}: {exc}"})


def encode_all(datas: Iterable[dict[str, Any]]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for data in datas:
        try:
            out[data["identity"]] = snapshot.to_bytes(data)
        except SnapshotError as exc:
            count("save", exc.reason)
    return out


def restore_into(engine: DecisionEngine, raws: Iterable[bytes], now: float) -> int:
    """Decode and restore each snapshot; one that cannot be read is counted (that workload learns again)."""
    restored = 0
    for raw in raws:
        try:
            if engine.restore_snapshot(snapshot.from_bytes(raw), now):
                restored += 1
            else:
                count("restore", "kept-own")
        except SnapshotError as exc:
            count("restore", exc.reason)
    count("restore", "restored", restored)
    return restored
