"""Drift and approvals: a managed policy edited outside netwarden is restored to its last known-good
spec (unless adopted), one deleted outside netwarden is re-created, a proposal is approved or rejected
by annotating it, and a policy written without a hash (at admission) is stamped as netwarden's.
A deleted baseline is handed to the workloads controller, which re-creates it only after verifying the
pod's owners again (netwarden/reconciler/backfill.py), with the spec it last held (a tightened step
stays tightened).
One of the reconciler's small controllers (netwarden/reconciler/controller.py wires them).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Protocol

from netwarden.model import names
from netwarden.reconciler.policy_ops import (
    Change,
    Pending,
    PolicyOpError,
    PolicyWriter,
    annotations_of,
    approve,
    clean_for_create,
    has_drifted,
    is_adopted,
    labels_of,
    reject,
    spec_hash,
)
from netwarden.reconciler.watch import DELETED, ClusterIndex, obj_key

log = logging.getLogger("netwarden.reconciler.controller")

Obj = dict[str, Any]


class Proposals(Protocol):
    """The engine's side of approve mode (the reconciler's runtime): the decisions it proposed."""

    def holds(self, identity: str) -> bool:
        """Whether the engine holds a proposal for the workload (not after a restart: it proposes again)."""

    def approve(self, identity: str) -> None:
        """Carry out the held proposal as the engine decided it: the decision's own plan and steps."""

    def reject(self, identity: str) -> None:
        """Drop the held proposal (and pause proposals for a cooldown)."""


class Drift:
    """Restores, re-creates, stamps and resolves proposals on netwarden's policies."""

    def __init__(self, index: ClusterIndex, writer: PolicyWriter, count: Callable[[str], None],
                 check_containment: Callable[..., None], proposals: Proposals | None = None,
                 admin_in_use: Callable[[], bool] = lambda: False,
                 on_baseline_deleted: Callable[[str, Obj], None] = lambda identity, manifest: None) -> None:
        self.index = index
        self.writer = writer
        self.count = count
        self.check_containment = check_containment
        self.proposals = proposals
        #: Told (identity, the manifest to re-create) when a baseline is deleted outside netwarden.
        self.on_baseline_deleted = on_baseline_deleted
        #: Whether quarantines are Admin-tier objects (a proposal's NetworkPolicies do not describe them).
        self.admin_in_use = admin_in_use
        #: Last spec seen matching its recorded hash, per policy: what a drifted policy is restored to.
        self._known_good: dict[tuple[str, str], Obj] = {}
        #: Last object seen per managed policy (a deleted one is re-created from it).
        self._last_seen: dict[tuple[str, str], Obj] = {}

    def note(self, kind: str, obj: Obj, old: Obj | None) -> None:
        """A policy watch event: remember the last object seen and the last known-good spec."""
        namespace, name = obj_key(obj)
        if kind == DELETED:
            last = old or obj
            self._last_seen[(namespace, name)] = last
            # Told here, before the workload's key is queued, so its re-creation always has this spec.
            if (labels_of(last).get(names.LABEL_POLICY_ROLE) == names.ROLE_BASELINE and not is_adopted(last)
                    and (namespace, name) not in self.writer.own_deletes):
                source = self._known_good.get((namespace, name), last)
                self.on_baseline_deleted(labels_of(last).get(names.LABEL_IDENTITY, ""), clean_for_create(source))
        else:
            self._last_seen[(namespace, name)] = obj
            if not has_drifted(obj) and annotations_of(obj).get(names.ANNOTATION_SPEC_HASH):
                self._known_good[(namespace, name)] = obj

    def reconcile_policy(self, namespace: str, name: str) -> None:
        obj = self.index.policy(namespace, name)
        key = (namespace, name)
        if obj is None:
            self._maybe_recreate(key)
            return
        if is_adopted(obj):
            return
        annotations = annotations_of(obj)
        decision = annotations.get(names.ANNOTATION_APPROVE, "").lower()
        if annotations.get(names.ANNOTATION_PENDING) and decision in ("true", "false"):
            self._resolve_pending(namespace, name, obj, approved=decision == "true")
            return
        if has_drifted(obj):
            self._restore(obj)
        elif not annotations.get(names.ANNOTATION_SPEC_HASH):
            # Written without a hash (at admission): stamp what it holds as netwarden's.
            self.writer.patch_annotations(obj, {names.ANNOTATION_SPEC_HASH: spec_hash(obj.get("spec") or {})})
            if labels_of(obj).get(names.LABEL_POLICY_ROLE) == names.ROLE_BASELINE:
                self.check_containment(namespace, baseline=obj)

    def _resolve_pending(self, namespace: str, name: str, obj: Obj, approved: bool) -> None:
        """An approval is carried out as the engine decided it (a quarantine on the admin tier is its Deny,
        not the NetworkPolicies the proposal was described with); the proposal is taken off the policy
        first, so no later event replays it. A proposal the engine no longer holds (it predates a
        restart) is replayed from its manifests, except one made for the admin tier (those manifests
        would leave its quarantine reopenable) and one that deletes policies (whoever may annotate the
        policy may have written it, and a delete releases containment): those are dropped, and
        proposed again if still warranted."""
        identity = labels_of(obj).get(names.LABEL_IDENTITY, "")
        holder = self.proposals if identity and self.proposals is not None and self.proposals.holds(identity) else None
        clear = {names.ANNOTATION_PENDING: None, names.ANNOTATION_APPROVE: None}
        try:
            if approved and holder is not None:
                written = self.writer.patch_annotations(obj, clear)
                self.writer.event(written, names.EVENT_CHANGE_PENDING,
                                  f"proposal approved ({names.ANNOTATION_APPROVE}=true); carried out as decided")
                holder.approve(identity)
            elif approved and (why := _not_replayable(annotations_of(obj)[names.ANNOTATION_PENDING],
                                                       self.admin_in_use())):
                written = self.writer.patch_annotations(obj, clear)
                self.writer.event(written, names.EVENT_CHANGE_PENDING,
                                  f"proposal dropped: {why}, and it predates this reconciler's state; netwarden "
                                  "proposes it again if the evidence still warrants it", "Warning")
                return
            elif approved:
                approve(self.writer, namespace, name, changed_by="kubectl-annotate")
            else:
                reject(self.writer, namespace, name, changed_by="kubectl-annotate")
                if holder is not None:
                    holder.reject(identity)
        except PolicyOpError as exc:
            # Refused (a proposal naming another namespace's policies, or not a proposal at all): taken off the
            # policy with a Warning, so the next event does not try it again.
            log.warning("pending change on %s/%s: %s", namespace, name, exc)
            current = self.writer.kube.get_policy(namespace, name)
            if current is not None and names.ANNOTATION_PENDING in annotations_of(current):
                written = self.writer.patch_annotations(current, clear)
                self.writer.event(written, names.EVENT_CHANGE_PENDING, f"proposal refused: {exc}", "Warning")
            return
        self.count("approved" if approved else "rejected")

    def _restore(self, obj: Obj) -> None:
        key = obj_key(obj)
        good = self._known_good.get(key)
        if good is None:
            log.warning("policy %s/%s drifted but no known-good spec is kept; accepting it", *key)
            self.writer.patch_annotations(obj, {names.ANNOTATION_SPEC_HASH: spec_hash(obj.get("spec") or {})})
            return
        manifest = dict(obj)
        manifest["spec"] = good.get("spec") or {}
        change = Change(manifest, names.EVENT_POLICY_RESTORED,
                        f"spec edited outside netwarden; restored (set {names.ANNOTATION_ADOPTED}=true to keep edits)",
                        names.REASON_RESTORED)
        self.writer.apply(change)
        self.count("restored")

    def _maybe_recreate(self, key: tuple[str, str]) -> None:
        last = self._last_seen.pop(key, None)
        if key in self.writer.own_deletes:
            self.writer.own_deletes.discard(key)
            return
        if last is None or is_adopted(last):
            return
        labels = labels_of(last)
        identity = labels.get(names.LABEL_IDENTITY, "")
        if labels.get(names.LABEL_POLICY_ROLE) == names.ROLE_BASELINE:
            return  # handed to the workloads controller by `note`: it re-creates it, its owners verified
        if labels.get(names.LABEL_POLICY_ROLE) == names.ROLE_QUARANTINE:
            instance = annotations_of(last).get(names.ANNOTATION_TARGET_POD)
            pod = self.index.pod_by_instance(instance) if instance else None
            if pod is None or not pod.live:
                return
        elif not any(p.live for p in self.index.pods_of(identity)):
            return
        source = self._known_good.get(key, last)
        manifest = clean_for_create(source)
        change = Change(manifest, names.EVENT_POLICY_RESTORED,
                        f"deleted outside netwarden; re-created (set {names.ANNOTATION_ADOPTED}=true first to "
                        "stop netwarden managing it)", names.REASON_RESTORED)
        self.writer.apply(change)
        self.count("recreated")


def _not_replayable(pending_text: str, admin_in_use: bool) -> str | None:
    """Why a stored proposal the engine no longer holds is not replayed from its manifests, or None.
    Made for the admin tier (it says so; or, written before proposals said, it quarantines while that
    tier is in use), its NetworkPolicies alone would not hold. A delete only ever releases containment,
    and the stored text is whatever the policy's annotators left there."""
    try:
        pending = Pending.from_annotation(pending_text)
    except PolicyOpError:
        return None  # refused with its reason by the approval itself
    if pending.tier or (admin_in_use and any(
            labels_of(m).get(names.LABEL_POLICY_ROLE) == names.ROLE_QUARANTINE
            or annotations_of(m).get(names.ANNOTATION_STEP) == names.STEP_QUARANTINED for m in pending.manifests)):
        return "it was made for the admin tier, which its stored NetworkPolicies do not hold"
    if pending.deletes:
        return f"it deletes {len(pending.deletes)} polic{'y' if len(pending.deletes) == 1 else 'ies'}"
    return None
