"""Writing a pod quarantine so that no intermediate state lets the pod do more than the one before.

NetworkPolicies are additive. Isolating one pod of a workload takes two writes: the quarantine
(selecting exactly that pod by its instance label) and the carve-out of the pod from its workload's
own policy (`NotIn` on the instance label), without which the workload's allows still apply. The
order is the safety property:

* quarantine: the quarantine first (the pod is then under W + Q, which allows what W allowed), the
  carve-out second (Q alone). Carving first would leave the pod selected by nothing: unrestricted.
* release: the carve-out ends first (W + Q again), then the quarantine goes (W alone).

The order is planned, as plain data, by netwarden/reconciler/core/plan.py (pod_quarantine, pod_release);
`QuarantineWriter.execute` takes the steps. A failed step raises; the controller keeps the work and
retries it with backoff from its work queue.
Every write of the workload's own policy sets its carve-outs to exactly the quarantines that exist
(`exclusions_for`), so no other change (tighten, relax, rollback to an older spec, a restart that
lost memory) can carve out a pod whose quarantine is missing, or end the carve-out of one that holds.

The backend is the seam for other quarantine objects (an admin-tier Deny is final, so it needs no
carve-out); `NetworkPolicyBackend` is the one every cluster serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

from netwarden.model import names
from netwarden.platform.kube import KubeClient
from netwarden.model.policy import PolicyIntent, quarantine_policy_name, render_pod_selector
from netwarden.reconciler.core.plan import Op, Plan, pod_quarantine, pod_release
from netwarden.reconciler.policy_ops import Change, PolicyWriter, annotations_of, labels_of

Obj = dict[str, Any]


@dataclass(frozen=True)
class PodQuarantine:
    """One pod's quarantine, as decided: what to isolate and how to account for it (the work item; the
    order of its writes is the plan, netwarden/reconciler/core/plan.py)."""

    namespace: str
    identity: str
    instance: str
    #: The quarantine as policy-model intent (a backend renders its own object from it).
    intent: PolicyIntent
    #: The NetworkPolicy rendering with netwarden's bookkeeping (annotations, owner, Event, evidence).
    change: Change
    pods: Sequence[Mapping[str, Any]] = field(default_factory=tuple)


@dataclass(frozen=True)
class QuarantineRelease:
    """One pod's quarantine ending: the carve-out first, then the quarantine object."""

    namespace: str
    identity: str
    instance: str
    message: str
    pods: Sequence[Mapping[str, Any]] = field(default_factory=tuple)


QuarantineWork = PodQuarantine | QuarantineRelease


class QuarantineBackend(Protocol):
    """Where a pod quarantine lives. Every method raises on an API failure (the caller retries)."""

    name: str
    #: True when the workload's own policy could widen the quarantine (NetworkPolicy is additive),
    #: so the pod must be carved out of it while the quarantine holds.
    needs_carve_out: bool

    def ensure(self, work: PodQuarantine) -> None:
        """Make the quarantine exist (idempotent)."""

    def held(self, namespace: str, identity: str) -> set[str]:
        """Instances of this workload whose quarantine exists in the cluster now (read from the API)."""

    def remove(self, namespace: str, instance: str, *, message: str, reason: str,
               pods: Sequence[Mapping[str, Any]] = ()) -> None:
        """Delete the quarantine (a missing one is fine)."""


class NetworkPolicyBackend:
    """Quarantine as a NetworkPolicy selecting the pod's instance label (served by every cluster)."""

    name = "networkpolicy"
    needs_carve_out = True

    def __init__(self, kube: KubeClient, writer: PolicyWriter) -> None:
        self.kube = kube
        self.writer = writer

    def ensure(self, work: PodQuarantine) -> None:
        self.writer.apply(work.change)

    def held(self, namespace: str, identity: str) -> set[str]:
        selector = (f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY_VALUE},{names.LABEL_IDENTITY}={identity},"
                    f"{names.LABEL_POLICY_ROLE}={names.ROLE_QUARANTINE}")
        found = set()
        for policy in self.kube.list_policies(namespace, label_selector=selector):
            instance = annotations_of(policy).get(names.ANNOTATION_TARGET_POD)
            if instance and not (policy.get("metadata") or {}).get("deletionTimestamp"):
                found.add(instance)
        return found

    def remove(self, namespace: str, instance: str, *, message: str, reason: str,
               pods: Sequence[Mapping[str, Any]] = ()) -> None:
        current = self.kube.get_policy(namespace, quarantine_policy_name(instance))
        if current is not None:
            self.writer.delete(current, event_reason=names.EVENT_QUARANTINE_LIFTED, message=message, reason=reason,
                               pods=pods)


def carved_out(policy: Mapping[str, Any]) -> set[str]:
    """Instances a workload policy's podSelector carves out (`NotIn` on the instance label)."""
    selector = (policy.get("spec") or {}).get("podSelector") or {}
    out: set[str] = set()
    for expression in selector.get("matchExpressions") or []:
        if expression.get("key") == names.LABEL_INSTANCE and expression.get("operator") == "NotIn":
            out.update(expression.get("values") or [])
    return out


def with_carve_outs(manifest: Mapping[str, Any], namespace: str, identity: str, instances: set[str]) -> Obj:
    """The manifest with its podSelector carving out exactly `instances` (the rest of the spec kept)."""
    out = dict(manifest)
    selector = render_pod_selector(PolicyIntent(namespace, identity, excluded_instances=tuple(sorted(instances))))
    out["spec"] = {**(manifest.get("spec") or {}), "podSelector": selector}
    return out


class QuarantineWriter:
    """Carries out quarantines and releases in the safe order; aligns every workload-policy write."""

    def __init__(self, kube: KubeClient, writer: PolicyWriter, backend: QuarantineBackend,
                 holder_name: Callable[[str], str | None]) -> None:
        self.kube = kube
        self.writer = writer
        self.backend = backend
        #: identity -> name of its workload (baseline-role) policy, when it has one.
        self.holder_name = holder_name

    def exclusions_for(self, namespace: str, identity: str, *, adding: Sequence[str] = (),
                       releasing: Sequence[str] = ()) -> set[str]:
        """The carve-outs a workload policy may hold now: exactly the quarantines that exist."""
        if not self.backend.needs_carve_out:
            return set()
        return (self.backend.held(namespace, identity) | set(adding)) - set(releasing)

    def align(self, manifest: Mapping[str, Any], namespace: str, identity: str, *,
              releasing: Sequence[str] = ()) -> Obj:
        """A workload-policy manifest about to be written, its carve-outs set to the quarantines held."""
        return with_carve_outs(manifest, namespace, identity,
                               self.exclusions_for(namespace, identity, releasing=releasing))

    def quarantine(self, work: PodQuarantine) -> None:
        """Quarantine first, carve-out second; raises when a step fails (safe to call again)."""
        self.execute(pod_quarantine(work.namespace, work.identity, work.instance,
                                    carve_out=self.backend.needs_carve_out), work)

    def release(self, work: QuarantineRelease) -> None:
        """Carve-out ends first, quarantine goes second; raises when a step fails (safe to call again)."""
        self.execute(pod_release(work.namespace, work.identity, work.instance,
                                 carve_out=self.backend.needs_carve_out), work)

    def run(self, work: QuarantineWork) -> None:
        if isinstance(work, PodQuarantine):
            self.quarantine(work)
        else:
            self.release(work)

    def execute(self, plan: Plan, work: QuarantineWork) -> None:
        """Take the plan's steps in order (netwarden/reconciler/core/plan.py); the first that fails raises,
        so no step runs without the ones before it (its precondition). `work` carries the bookkeeping."""
        for step in plan.steps:
            if step.op == Op.ENSURE_QUARANTINE:
                assert isinstance(work, PodQuarantine)
                self.backend.ensure(work)
            elif step.op == Op.CARVE_OUT:
                self.carve(step.namespace, step.identity, adding=(step.instance,),
                           message=f"pod instance {step.instance} carved out of its workload's policy: its "
                                   f"quarantine holds it", event_reason=names.EVENT_POD_QUARANTINED, pods=work.pods)
            elif step.op == Op.END_CARVE_OUT:
                assert isinstance(work, QuarantineRelease)
                self.carve(step.namespace, step.identity, releasing=(step.instance,), message=work.message,
                           event_reason=names.EVENT_QUARANTINE_LIFTED, pods=work.pods)
            elif step.op == Op.REMOVE_QUARANTINE:
                assert isinstance(work, QuarantineRelease)
                self.backend.remove(step.namespace, step.instance, message=work.message,
                                    reason=names.REASON_QUARANTINE_LIFTED, pods=work.pods)

    def carve(self, namespace: str, identity: str, *, adding: Sequence[str] = (), releasing: Sequence[str] = (),
              message: str, event_reason: str, pods: Sequence[Mapping[str, Any]] = ()) -> bool:
        """Set the workload policy's carve-outs to the quarantines held; True when it was written."""
        name = self.holder_name(identity)
        if name is None:
            return False  # no workload policy selects the pod: nothing to carve it out of
        holder = self.kube.get_policy(namespace, name)
        if holder is None or labels_of(holder).get(names.LABEL_POLICY_ROLE) != names.ROLE_BASELINE:
            return False
        wanted = self.exclusions_for(namespace, identity, adding=adding, releasing=releasing)
        if wanted == carved_out(holder):
            return False
        manifest = with_carve_outs(holder, namespace, identity, wanted)
        reason = names.REASON_QUARANTINE_EXCLUSION if adding else names.REASON_QUARANTINE_LIFTED
        outcome = self.writer.apply(Change(manifest, event_reason, message, reason, pods=pods, safety=not adding),
                                    current=holder)
        return outcome.operation in ("created", "updated")
