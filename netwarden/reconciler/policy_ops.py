"""Writing managed NetworkPolicies with their bookkeeping: revision, history, spec hash, audit.

Shared by the reconciler (automatic changes, drift restore, approvals it sees) and the operator
commands (`netwarden approve|reject|rollback`), which work from the cluster state alone: everything
needed to approve or roll back is on the policy object in annotations.

Every change here: one replace with the resourceVersion just read (409 -> re-read, retry), a
history entry of the spec it replaced, a new revision, the spec hash (drift detection), an Event
on the policy and on each affected pod, and one JSON log line carrying the evidence.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence


from netwarden.model import names
from netwarden.model.errors import ApiError, Conflict, HistoryError, NetwardenError
from netwarden.platform.kube import KubeClient
from netwarden.platform.logs import log_event
from netwarden.reconciler import metrics
from netwarden.model.history import PolicyHistory
from netwarden.model.policy import is_managed

log = logging.getLogger("netwarden.reconciler.audit")

Obj = dict[str, Any]
#: Called before every policy write with `safety` (True for writes that undo or open: rollback, relax,
#: quarantine release, cleanup); raises to refuse it (the leader gate), waits for the write budget.
WriteGuard = Callable[[bool], None]

#: Server-set metadata a manifest must not carry into a create.
_SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink",
                  "deletionTimestamp", "deletionGracePeriodSeconds")


class PolicyOpError(NetwardenError, RuntimeError):
    """An operator command cannot be carried out (nothing pending, no such revision, adopted...)."""


def canonical_spec(value: Any) -> Any:
    """A spec as the API server stores it: Go's omitempty drops null fields, empty lists and empty
    label maps (`ingress: []` comes back as no `ingress`), so compare and hash only this form."""
    if isinstance(value, Mapping):
        return {k: canonical_spec(v) for k, v in value.items()
                if not (v is None or v == [] or (v == {} and k == "matchLabels"))}
    if isinstance(value, list):
        return [canonical_spec(v) for v in value]
    return value


def spec_hash(spec: Mapping[str, Any]) -> str:
    canonical = canonical_spec(spec)
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def is_adopted(obj: Mapping[str, Any]) -> bool:
    return annotations_of(obj).get(names.ANNOTATION_ADOPTED, "").lower() == "true"


def has_drifted(obj: Mapping[str, Any]) -> bool:
    """True when the spec no longer matches the hash netwarden stamped when it wrote it."""
    recorded = annotations_of(obj).get(names.ANNOTATION_SPEC_HASH)
    return bool(recorded) and recorded != spec_hash(obj.get("spec") or {})


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def clean_for_create(manifest: Mapping[str, Any]) -> Obj:
    out = copy.deepcopy(dict(manifest))
    meta = out.setdefault("metadata", {})
    for key in _SERVER_FIELDS:
        meta.pop(key, None)
    out.pop("status", None)
    return out


def history_of(obj: Mapping[str, Any], max_entries: int = 10, max_bytes: int = 64 * 1024) -> PolicyHistory:
    annotations = annotations_of(obj)
    try:
        revision = int(annotations.get(names.ANNOTATION_REVISION, "1") or 1)
    except ValueError:
        revision = 1
    try:
        return PolicyHistory.from_annotation(annotations.get(names.ANNOTATION_HISTORY), current_revision=revision,
                                             max_entries=max_entries, max_bytes=max_bytes)
    except HistoryError as exc:
        log.warning("policy %s: unreadable history, starting afresh: %s", _ref(obj), exc)
        return PolicyHistory((), revision, max_entries, max_bytes)


def _ref(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


#: `changed-by` of the reconciler's own writes (a person's are cli:<user>, kubectl-annotate, ...).
RECONCILER_WRITER = "reconciler"


@dataclass(frozen=True)
class Change:
    """A desired policy (full manifest) and how to account for writing it."""

    manifest: Obj
    event_reason: str
    message: str
    reason: str
    evidence: Sequence[Mapping[str, Any]] = ()
    #: Pods the change is about (Events go on them too): wire objects or {"metadata": {...}} stubs.
    pods: Sequence[Mapping[str, Any]] = ()
    changed_by: str = RECONCILER_WRITER
    #: Extra annotations to set (None removes one), beside the bookkeeping ones.
    annotations: Mapping[str, str | None] = field(default_factory=dict)
    #: A write that undoes or opens (rollback, relax, quarantine release, cleanup): it has its own
    #: write budget and never waits behind tightenings.
    safety: bool = False

    @property
    def namespace(self) -> str:
        return self.manifest["metadata"]["namespace"]

    @property
    def name(self) -> str:
        return self.manifest["metadata"]["name"]


@dataclass
class Outcome:
    operation: str  # created | updated | unchanged | deleted | skipped-adopted | gone
    obj: Obj | None


class PolicyWriter:
    """Applies Changes through the KubeClient with bookkeeping and audit. Every write passes `guard`."""

    def __init__(self, kube: KubeClient, *, guard: WriteGuard = lambda safety=False: None,
                 clock: Callable[[], float] = time.time, max_history: int = 10, history_max_bytes: int = 64 * 1024,
                 audit_log: Callable[[dict[str, Any]], None] | None = None,
                 may_emit: Callable[[], bool] = lambda: True) -> None:
        self.kube = kube
        self.guard = guard
        #: Events are best effort: only the leader records them, and they never spend the write budget.
        self.may_emit = may_emit
        self.clock = clock
        self.max_history = max_history
        self.history_max_bytes = history_max_bytes
        self.audit_log = audit_log or (lambda record: log_event(log, "info", record))
        #: (namespace, name) of deletes this process made: the watch's DELETED for them is not drift.
        self.own_deletes: set[tuple[str, str]] = set()

    # -- writes -------------------------------------------------------------------------------
    def apply(self, change: Change, *, attempts: int = 4, current: Obj | None = None) -> Outcome:
        """Write the change (create, or update keeping history); `current`: the policy as the caller
        has just read it, which saves the first read (a conflict re-reads)."""
        for attempt in range(attempts):
            if attempt or current is None:
                current = self.kube.get_policy(change.namespace, change.name)
            try:
                outcome = self._apply_once(change, current)
            except ApiError as exc:
                if isinstance(exc, Conflict) and attempt + 1 < attempts:
                    continue  # someone wrote in between (or created first): re-read and redo
                metrics.POLICY_WRITES.labels("apply", "error").inc()
                raise
            if outcome.operation in ("created", "updated"):
                metrics.POLICY_WRITES.labels(outcome.operation, "ok").inc()
                self.record(change, outcome)
            return outcome
        raise AssertionError("unreachable")

    def _apply_once(self, change: Change, current: Obj | None) -> Outcome:
        now = self.clock()
        desired_spec = change.manifest.get("spec") or {}
        if current is None:
            manifest = clean_for_create(change.manifest)
            annotations = manifest["metadata"].setdefault("annotations", {})
            annotations.setdefault(names.ANNOTATION_REVISION, "1")
            annotations[names.ANNOTATION_REASON] = change.reason
            annotations[names.ANNOTATION_SPEC_HASH] = spec_hash(desired_spec)
            annotations[names.ANNOTATION_CHANGED_BY] = change.changed_by
            _merge_annotations(annotations, change.annotations)
            self.guard(change.safety)
            status, created = self.kube.create_policy(manifest)
            if status == "exists":
                raise Conflict("created concurrently")
            return Outcome("created", created)
        if is_adopted(current):
            return Outcome("skipped-adopted", current)
        history = history_of(current, self.max_history, self.history_max_bytes)
        current_spec = current.get("spec") or {}
        current_annotations = annotations_of(current)
        spec_changes = canonical_spec(current_spec) != canonical_spec(desired_spec)
        if spec_changes:
            history = history.push(current_spec, current_annotations.get(names.ANNOTATION_STEP, ""), change.reason, now)
        manifest = copy.deepcopy(current)
        meta = manifest["metadata"]
        meta.pop("managedFields", None)
        desired_meta = change.manifest.get("metadata") or {}
        meta["labels"] = {**(meta.get("labels") or {}), **(desired_meta.get("labels") or {})}
        if desired_meta.get("ownerReferences"):
            meta["ownerReferences"] = desired_meta["ownerReferences"]
        annotations = {**current_annotations, **(desired_meta.get("annotations") or {})}
        annotations[names.ANNOTATION_REVISION] = str(history.current_revision)
        annotations[names.ANNOTATION_REASON] = change.reason
        annotations[names.ANNOTATION_SPEC_HASH] = spec_hash(desired_spec)
        annotations[names.ANNOTATION_CHANGED_BY] = change.changed_by
        if history.entries:
            annotations[names.ANNOTATION_HISTORY] = history.to_annotation()
        _merge_annotations(annotations, change.annotations)
        meta["annotations"] = annotations
        manifest["spec"] = copy.deepcopy(desired_spec)
        if manifest == current:
            return Outcome("unchanged", current)
        self.guard(change.safety)
        return Outcome("updated", self.kube.replace_policy(manifest))

    def delete(self, obj: Mapping[str, Any], *, event_reason: str, message: str, reason: str,
               pods: Sequence[Mapping[str, Any]] = (), changed_by: str = RECONCILER_WRITER) -> Outcome:
        """Deletes only ever remove restrictions netwarden added (cleanup, release): safety writes."""
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        if is_adopted(obj):
            return Outcome("skipped-adopted", dict(obj))
        self.guard(True)
        self.own_deletes.add(key)
        deleted = self.kube.delete_policy(*key)
        metrics.POLICY_WRITES.labels("delete", "ok" if deleted else "gone").inc()
        outcome = Outcome("deleted" if deleted else "gone", dict(obj))
        if deleted:
            self.record(Change(dict(obj), event_reason, message, reason, pods=pods, changed_by=changed_by), outcome)
        return outcome

    def patch_annotations(self, obj: Mapping[str, Any], annotations: Mapping[str, str | None]) -> Obj:
        meta = obj.get("metadata") or {}
        self.guard(False)
        return self.kube.patch_policy_annotations(meta["namespace"], meta["name"], annotations,
                                                  resource_version=meta.get("resourceVersion"))

    # -- audit --------------------------------------------------------------------------------
    def record(self, change: Change, outcome: Outcome) -> None:
        """Event on the policy and each pod, and one JSON log line with the evidence."""
        obj = outcome.obj or change.manifest
        annotations = annotations_of(obj)
        self.event(obj, change.event_reason, change.message)
        for pod in change.pods:
            self.event(_as_pod(pod), change.event_reason, change.message)
        self.audit_log({
            "event": "policy_change",
            "operation": outcome.operation,
            "reason": change.event_reason,
            "why": change.reason,
            "policy": _ref(obj),
            "revision": annotations.get(names.ANNOTATION_REVISION),
            "step": annotations.get(names.ANNOTATION_STEP),
            "mode": annotations.get(names.ANNOTATION_POLICY_MODE),
            "score": annotations.get(names.ANNOTATION_SCORE),
            "changed_by": change.changed_by,
            "pods": [_ref(_as_pod(p)) for p in change.pods],
            "message": change.message,
            "evidence": list(change.evidence),
            "time": iso_time(self.clock()),
        })

    def event(self, involved: Mapping[str, Any], reason: str, message: str, type_: str = "Normal") -> None:
        """Best effort: a non-leader records nothing; a failed Event never fails the change it reports."""
        if not self.may_emit():
            return
        try:
            self.kube.emit_event(involved, reason, message, type_=type_)
        except Exception as exc:  # noqa: BLE001
            log.warning("event %s on %s not recorded: %s", reason, _ref(involved), exc)


def _as_pod(pod: Mapping[str, Any]) -> Obj:
    out = dict(pod)
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Pod")
    return out


def _merge_annotations(target: dict[str, str], extra: Mapping[str, str | None]) -> None:
    for key, value in extra.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value


# --- operator operations (CLI and reconciler) --------------------------------------------------


def rollback(writer: PolicyWriter, namespace: str, name: str, to_revision: int | None = None, *,
             changed_by: str = "cli", reason_detail: str = "", pods: Sequence[Mapping[str, Any]] = (),
             align: Callable[[Obj], Obj] | None = None) -> Outcome:
    """Put back the previous spec (or the one at `to_revision`) from the policy's own history.

    `align` adjusts the restored manifest before it is written (the reconciler keeps the carve-outs
    of quarantines that still hold: an old spec must not end them)."""
    current = writer.kube.get_policy(namespace, name)
    if current is None:
        raise PolicyOpError(f"networkpolicy {namespace}/{name} not found")
    if is_adopted(current):
        raise PolicyOpError(f"networkpolicy {namespace}/{name} is adopted ({names.ANNOTATION_ADOPTED}=true)")
    history = history_of(current, writer.max_history, writer.history_max_bytes)
    entry = history.previous(to_revision)
    if entry is None:
        kept = ", ".join(str(r) for r in history.revisions()) or "none"
        raise PolicyOpError(f"no revision {to_revision if to_revision is not None else '(previous)'} in the "
                            f"history of {namespace}/{name} (kept: {kept})")
    manifest = copy.deepcopy(current)
    manifest["spec"] = copy.deepcopy(dict(entry.spec))
    if align is not None:
        manifest = align(manifest)
    annotations = annotations_of(current)
    if to_revision is None:
        # Walk back: the entry becomes current again and leaves the history.
        new_history = history.pop()
        annotations[names.ANNOTATION_HISTORY] = new_history.to_annotation()
        annotations[names.ANNOTATION_REVISION] = str(new_history.current_revision)
        manifest["metadata"]["annotations"] = annotations
        return _write_rollback(writer, manifest, current, entry.revision, entry.step, changed_by, reason_detail, pods)
    return _write_rollback(writer, manifest, current, entry.revision, entry.step, changed_by, reason_detail, pods,
                           push=True)


def _write_rollback(writer: PolicyWriter, manifest: Obj, current: Obj, revision: int, step: str, changed_by: str,
                    detail: str, pods: Sequence[Mapping[str, Any]], push: bool = False) -> Outcome:
    annotations = manifest["metadata"].setdefault("annotations", {})
    if step:
        annotations[names.ANNOTATION_STEP] = step
    message = f"rolled back to the spec of revision {revision}" + (f": {detail}" if detail else "")
    change = Change(manifest, names.EVENT_POLICY_ROLLED_BACK, message, names.REASON_ROLLED_BACK,
                    pods=pods, changed_by=changed_by, safety=True)
    if push:
        return writer.apply(change)
    # pop(): the history annotation in `manifest` is already the popped one; write it as is.
    manifest["metadata"].pop("managedFields", None)
    annotations[names.ANNOTATION_REASON] = names.REASON_ROLLED_BACK
    annotations[names.ANNOTATION_SPEC_HASH] = spec_hash(manifest.get("spec") or {})
    annotations[names.ANNOTATION_CHANGED_BY] = changed_by
    writer.guard(True)
    written = writer.kube.replace_policy(manifest)
    metrics.POLICY_WRITES.labels("rollback", "ok").inc()
    outcome = Outcome("updated", written)
    writer.record(change, outcome)
    return outcome


@dataclass(frozen=True)
class Pending:
    """A proposed change stored on a policy in approve mode: the manifests to write when approved.

    `tier` names the admin-tier kind (ClusterNetworkPolicy, AdminNetworkPolicy) when the reconciler that
    proposed it quarantines there: the manifests then describe the change but are not all of it (the
    Deny is written by the reconciler's own plan), so only a running reconciler may carry it out."""

    manifests: tuple[Obj, ...]
    deletes: tuple[tuple[str, str], ...]
    reason: str
    message: str
    score: float | None
    created: float
    evidence: tuple[Mapping[str, Any], ...] = ()
    tier: str = ""

    def to_annotation(self) -> str:
        return json.dumps({
            "manifests": list(self.manifests), "deletes": [list(d) for d in self.deletes], "reason": self.reason,
            "message": self.message, "score": self.score, "created": self.created, "evidence": list(self.evidence),
            **({"tier": self.tier} if self.tier else {}),
        }, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_annotation(cls, text: str) -> "Pending":
        try:
            data = json.loads(text)
            pending = cls(tuple(data.get("manifests") or ()), tuple(tuple(d) for d in data.get("deletes") or ()),
                          str(data.get("reason") or ""), str(data.get("message") or ""), data.get("score"),
                          float(data.get("created") or 0.0), tuple(data.get("evidence") or ()),
                          str(data.get("tier") or ""))
        except (ValueError, TypeError, AttributeError) as exc:
            raise PolicyOpError(f"{names.ANNOTATION_PENDING} is not a netwarden proposal: {exc}") from None
        if not all(_is_manifest(m) for m in pending.manifests) or not all(
                len(d) == 2 and all(isinstance(part, str) for part in d) for d in pending.deletes):
            raise PolicyOpError(f"{names.ANNOTATION_PENDING} is not a netwarden proposal: a manifest is not an object "
                                "or a delete is not [namespace, name]")
        return pending


def _is_manifest(value: Any) -> bool:
    """An object whose metadata, and labels when given, are objects (what the label and name checks read)."""
    meta = value.get("metadata") if isinstance(value, dict) else None
    return isinstance(meta, dict) and isinstance(meta.get("labels") or {}, dict)


def store_pending(writer: PolicyWriter, holder: Mapping[str, Any], pending: Pending,
                  pods: Sequence[Mapping[str, Any]] = ()) -> Obj:
    """Approve mode: keep the proposal on the policy and tell the user how to approve it."""
    meta = holder.get("metadata") or {}
    written = writer.patch_annotations(holder, {names.ANNOTATION_PENDING: pending.to_annotation(),
                                                names.ANNOTATION_APPROVE: None})
    message = (f"{pending.message}; approve with: kubectl annotate networkpolicy {meta.get('name')} -n "
               f"{meta.get('namespace')} {names.ANNOTATION_APPROVE}=true (or: netwarden approve "
               f"{meta.get('name')} -n {meta.get('namespace')})")
    writer.record(Change(written, names.EVENT_CHANGE_PENDING, message, pending.reason, pending.evidence, pods),
                  Outcome("pending", written))
    return written


def _pending_on(writer: PolicyWriter, namespace: str, name: str) -> tuple[Obj, str]:
    """The policy and the change pending on it (its annotation); PolicyOpError when either is missing."""
    holder = writer.kube.get_policy(namespace, name)
    if holder is None:
        raise PolicyOpError(f"networkpolicy {namespace}/{name} not found")
    text = annotations_of(holder).get(names.ANNOTATION_PENDING)
    if not text:
        raise PolicyOpError(f"networkpolicy {namespace}/{name} has no pending change")
    return holder, text


def request_approval(writer: PolicyWriter, namespace: str, name: str) -> Obj:
    """Ask the running reconciler to carry out the change pending on a policy (what `kubectl annotate
    netwarden.io/approve=true` asks): it does so as its engine decided it, the admin-tier Deny included."""
    holder, _ = _pending_on(writer, namespace, name)
    return writer.patch_annotations(holder, {names.ANNOTATION_APPROVE: "true"})


def approve(writer: PolicyWriter, namespace: str, name: str, *, changed_by: str = "cli") -> list[Outcome]:
    """Apply the change pending on a policy from its stored manifests, then clear the proposal (with no
    reconciler running; one that runs carries out an approval itself: `request_approval`). A change
    proposed on the admin tier is refused: its manifests alone would quarantine with NetworkPolicies,
    which any allow policy of the user's reopens."""
    holder, text = _pending_on(writer, namespace, name)
    pending = Pending.from_annotation(text)
    _check_confined(pending, namespace)
    if pending.tier:
        raise PolicyOpError(f"the change pending on networkpolicy {namespace}/{name} was proposed on the "
                            f"{pending.tier} tier, which only the reconciler writes; approve it while a reconciler "
                            f"runs (its stored NetworkPolicies alone would not hold against allow policies)")
    outcomes: list[Outcome] = []
    clear = {names.ANNOTATION_PENDING: None, names.ANNOTATION_APPROVE: None}
    holder_written = False
    for manifest in pending.manifests:
        meta = manifest.get("metadata") or {}
        is_holder = (meta.get("namespace"), meta.get("name")) == (namespace, name)
        change = Change(manifest, _event_for(manifest), f"approved: {pending.message}", names.REASON_APPROVED,
                        pending.evidence, changed_by=changed_by, annotations=clear if is_holder else {})
        outcomes.append(writer.apply(change))
        holder_written = holder_written or is_holder
    for del_namespace, del_name in pending.deletes:
        obj = writer.kube.get_policy(del_namespace, del_name)
        if obj is not None:
            outcomes.append(writer.delete(obj, event_reason=names.EVENT_QUARANTINE_LIFTED,
                                          message=f"approved: {pending.message}", reason=names.REASON_APPROVED,
                                          changed_by=changed_by))
    if not holder_written:
        current = writer.kube.get_policy(namespace, name)
        if current is not None and annotations_of(current).get(names.ANNOTATION_PENDING):
            writer.patch_annotations(current, clear)
    return outcomes


def _check_confined(pending: Pending, namespace: str) -> None:
    """A proposal changes only netwarden's NetworkPolicies in its own namespace. Whoever may annotate the
    policy may rewrite the proposal, and the operator approving it offline may hold wider rights: a
    manifest for another namespace, another kind or a policy netwarden does not manage is refused."""
    for manifest in pending.manifests:
        meta = manifest["metadata"]  # an object: Pending.from_annotation checked
        kind = manifest.get("kind", "NetworkPolicy")
        where = f"{meta.get('namespace')}/{meta.get('name')}"
        if kind != "NetworkPolicy" or meta.get("namespace") != namespace or not is_managed(manifest):
            raise PolicyOpError(f"the pending change holds {kind} {where}, not a netwarden NetworkPolicy of namespace "
                                f"{namespace}: refused (a proposal changes only its own namespace's policies)")
    for del_namespace, del_name in pending.deletes:
        if del_namespace != namespace:
            raise PolicyOpError(f"the pending change deletes {del_namespace}/{del_name}, outside namespace {namespace}: "
                                "refused (a proposal changes only its own namespace's policies)")


def reject(writer: PolicyWriter, namespace: str, name: str, *, changed_by: str = "cli") -> Obj:
    """Drop the pending proposal; the policy keeps its current spec."""
    holder, _ = _pending_on(writer, namespace, name)
    written = writer.patch_annotations(holder, {names.ANNOTATION_PENDING: None, names.ANNOTATION_APPROVE: None})
    writer.event(written, names.EVENT_CHANGE_PENDING, f"proposal rejected by {changed_by}; spec unchanged")
    writer.audit_log({"event": "proposal_rejected", "policy": f"{namespace}/{name}", "changed_by": changed_by,
                      "time": iso_time(writer.clock())})
    return written


def _event_for(manifest: Mapping[str, Any]) -> str:
    step = annotations_of(manifest).get(names.ANNOTATION_STEP)
    return {
        names.STEP_QUARANTINED: names.EVENT_POD_QUARANTINED,
        names.STEP_TIGHTENED: names.EVENT_POLICY_TIGHTENED,
    }.get(step or "", names.EVENT_POLICY_RELAXED)


def pods_stub(pods: Iterable[Any]) -> list[Obj]:
    """Minimal Pod references (for Events) from PodRefs."""
    return [{"apiVersion": "v1", "kind": "Pod",
             "metadata": {"namespace": p.namespace, "name": p.pod, "uid": p.uid}} for p in pods]


def epoch_of(text: str | None) -> float | None:
    """An RFC 3339 timestamp from the API (or an annotation) as epoch seconds; None when absent or unreadable."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
