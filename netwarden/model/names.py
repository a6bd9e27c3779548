"""Every name netwarden writes on the wire, defined once.

Labels, annotations, Event reasons and metric names live here so a user can grep one file
(and the README table generated from it) to learn exactly what netwarden touches.
"""

from __future__ import annotations

from typing import Iterable

PREFIX = "netwarden.io"

# --- Opt-in / opt-out -------------------------------------------------------------------------
#: Label: on a namespace "enabled" opts it in (the webhook's namespaceSelector); on a pod
#: "disabled" opts that pod out (it still loses netwarden.io/* labels it set), "enabled" opts it in.
LABEL_INJECT = f"{PREFIX}/inject"
#: Annotation on a namespace or a pod: "enabled" opts in, "disabled" (pod only) opts out and wins.
ANNOTATION_INJECT = f"{PREFIX}/inject"
INJECT_ENABLED = "enabled"
INJECT_DISABLED = "disabled"

# --- Labels injected on pods (derived from trusted sources only) -------------------------------
#: Workload identity: "<namespace>.<kind>.<name>" (hashed when longer than 63 characters).
LABEL_IDENTITY = f"{PREFIX}/identity"
#: Owning workload kind (deployment, statefulset, daemonset, job, cronjob, pod).
LABEL_WORKLOAD_KIND = f"{PREFIX}/workload-kind"
#: Owning workload name (hashed when too long).
LABEL_WORKLOAD = f"{PREFIX}/workload"
#: The pod's service account.
LABEL_SERVICE_ACCOUNT = f"{PREFIX}/service-account"
#: What the workload is for (frontend, backend, database, batch, ... or "unspecified").
LABEL_PURPOSE = f"{PREFIX}/purpose"
#: The namespace's environment (production, staging, ... or "unspecified").
LABEL_ENVIRONMENT = f"{PREFIX}/environment"
#: A pod-unique value generated at admission, so one rule can select exactly one pod.
LABEL_INSTANCE = f"{PREFIX}/instance"

#: Every pod label netwarden owns; a pod may not set these itself.
POD_LABELS = (
    LABEL_IDENTITY,
    LABEL_WORKLOAD_KIND,
    LABEL_WORKLOAD,
    LABEL_SERVICE_ACCOUNT,
    LABEL_PURPOSE,
    LABEL_ENVIRONMENT,
    LABEL_INSTANCE,
)

# --- Declarations read from pods and namespaces ------------------------------------------------
#: Pod annotation: the workload's purpose (validated as a label value).
ANNOTATION_PURPOSE = f"{PREFIX}/purpose"
#: Pod annotation: peers allowed to connect in, e.g. "purpose=frontend:http, namespace=ingress" (a port name renders as a named port).
ANNOTATION_ALLOW_FROM = f"{PREFIX}/allow-from"
#: Pod annotation: dependencies this workload may connect to, e.g. "purpose=database:5432/TCP".
ANNOTATION_ALLOW_TO = f"{PREFIX}/allow-to"
#: Namespace label or annotation naming the environment.
ANNOTATION_ENVIRONMENT = f"{PREFIX}/environment"
#: Fallback namespace label for the environment (a common convention).
LABEL_ENVIRONMENT_PLAIN = "environment"
#: Namespace annotation: learn | dry-run | enforce | approve.
ANNOTATION_MODE = f"{PREFIX}/mode"
#: Well-known label the purpose falls back to.
LABEL_APP_COMPONENT = "app.kubernetes.io/component"
#: Label the real API server sets on every namespace.
LABEL_NAMESPACE_NAME = "kubernetes.io/metadata.name"

# --- Labels and annotations on the NetworkPolicies netwarden manages ----------------------------
#: Marks every NetworkPolicy netwarden manages (value "netwarden").
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "netwarden"
#: baseline | quarantine | admission-guard (`netwarden-admission-guard`, one per namespace with webhook.baseline_write async: deny-all for netwarden-labelled pods until their baseline lands)
LABEL_POLICY_ROLE = f"{PREFIX}/policy-role"
ROLE_BASELINE = "baseline"
ROLE_QUARANTINE = "quarantine"
#: The namespace's deny-all for every netwarden-labelled pod, under which baselines may be written
#: after the review (webhook.baseline_write async): a pod is contained before its baseline lands.
ROLE_ADMISSION_GUARD = "admission-guard"
ADMISSION_GUARD_POLICY_NAME = "netwarden-admission-guard"
#: Why the policy has its current spec (created-at-admission, backfill, tightened, ...).
ANNOTATION_REASON = f"{PREFIX}/reason"
#: ANNOTATION_REASON value on a baseline the admission webhook wrote for a workload's first pod.
REASON_CREATED_AT_ADMISSION = "created-at-admission"
#: ANNOTATION_REASON value on a namespace's admission guard.
REASON_ADMISSION_GUARD = "admission-guard"
#: Monotonic revision of netwarden's own changes to this policy.
ANNOTATION_REVISION = f"{PREFIX}/revision"
#: baseline | learning | tightened | quarantined
ANNOTATION_STEP = f"{PREFIX}/step"
#: The workload's risk score when the policy last changed.
ANNOTATION_SCORE = f"{PREFIX}/score"
#: When an automatic tightening or quarantine relaxes by itself (RFC 3339).
ANNOTATION_EXPIRES_AT = f"{PREFIX}/expires-at"
#: The mode (learn, dry-run, enforce, approve) the change was made in.
ANNOTATION_POLICY_MODE = f"{PREFIX}/mode"
#: JSON list of previous specs (bounded) for rollback.
ANNOTATION_HISTORY = f"{PREFIX}/history"
#: JSON of a proposed spec awaiting approval (approve mode).
ANNOTATION_PENDING = f"{PREFIX}/pending"
#: Set to "true" by a user (kubectl annotate) to apply the pending spec, "false" to reject it.
ANNOTATION_APPROVE = f"{PREFIX}/approve"
#: Set to "true" by a user: netwarden stops reconciling this policy (drift is left alone).
ANNOTATION_ADOPTED = f"{PREFIX}/adopted"
#: The pod a per-pod (quarantine) policy isolates.
ANNOTATION_TARGET_POD = f"{PREFIX}/target-pod"
#: On a cluster-scoped (admin-tier) quarantine object: the namespace of the pod or workload it isolates.
ANNOTATION_TARGET_NAMESPACE = f"{PREFIX}/target-namespace"
#: sha256 of the spec netwarden last wrote; a spec that no longer matches it was edited by hand (drift).
ANNOTATION_SPEC_HASH = f"{PREFIX}/spec-hash"
#: JSON summary of the strongest evidence behind the current spec (what `netwarden explain` shows).
ANNOTATION_EVIDENCE = f"{PREFIX}/evidence"
#: Who or what made the last change (reconciler, cli:<user>, approve, rollback, ...).
ANNOTATION_CHANGED_BY = f"{PREFIX}/changed-by"

# --- Leader election ---------------------------------------------------------------------------
#: On the reconciler's Lease: where the leader takes signals (URL); standbys forward signals there.
ANNOTATION_LEADER_ADDRESS = f"{PREFIX}/leader-address"
#: HTTP header on a signal a standby forwarded to the leader (value: the standby's identity);
#: a forwarded signal is never forwarded again.
HEADER_FORWARDED_BY = "X-Netwarden-Forwarded-By"

# --- ANNOTATION_REASON values the reconciler writes ---------------------------------------------
REASON_BACKFILL = "backfill"
REASON_RESTORED = "restored-after-drift"
REASON_ROLLED_BACK = "rolled-back"
REASON_APPROVED = "approved"
REASON_QUARANTINE = "quarantine"
REASON_QUARANTINE_EXCLUSION = "quarantine-exclusion"
REASON_QUARANTINE_LIFTED = "quarantine-lifted"

# --- Policy steps ------------------------------------------------------------------------------
STEP_LEARNING = "learning"
STEP_BASELINE = "baseline"
STEP_TIGHTENED = "tightened"
STEP_QUARANTINED = "quarantined"

# --- Modes -------------------------------------------------------------------------------------
MODE_LEARN = "learn"
MODE_DRY_RUN = "dry-run"
MODE_ENFORCE = "enforce"
MODE_APPROVE = "approve"
MODES = (MODE_LEARN, MODE_DRY_RUN, MODE_ENFORCE, MODE_APPROVE)
#: The mode of a namespace without a netwarden.io/mode annotation (config `cluster.default_mode`); every
#: component's default reads this one.
DEFAULT_MODE = MODE_ENFORCE

# --- Event reasons (Kubernetes Events on policies and pods) ------------------------------------
#: A baseline policy was created (at admission or by backfill).
EVENT_POLICY_CREATED = "NetwardenPolicyCreated"
#: A workload's policy was narrowed to its learned baseline.
EVENT_POLICY_TIGHTENED = "NetwardenPolicyTightened"
#: A tightened policy relaxed a step (score decayed or the change expired).
EVENT_POLICY_RELAXED = "NetwardenPolicyRelaxed"
#: One pod (or a whole workload) was isolated: no ingress, egress only to DNS.
EVENT_POD_QUARANTINED = "NetwardenPodQuarantined"
#: A quarantine ended (expiry, score decay, or the pod went away).
EVENT_QUARANTINE_LIFTED = "NetwardenQuarantineLifted"
#: A change was undone (health degraded after it, or `netwarden rollback`).
EVENT_POLICY_ROLLED_BACK = "NetwardenPolicyRolledBack"
#: A managed policy edited or deleted by hand was put back (drift).
EVENT_POLICY_RESTORED = "NetwardenPolicyRestored"
#: A policy was removed with its workload's last pod (after the grace period).
EVENT_POLICY_REMOVED = "NetwardenPolicyRemoved"
#: Approve mode: a proposed change waits for `netwarden approve`.
EVENT_CHANGE_PENDING = "NetwardenChangePending"
#: Dry-run mode: what netwarden would have changed, with its evidence.
EVENT_DRY_RUN = "NetwardenDryRun"
#: An action was refused by a guard rail (protected namespace, blast radius, write budget).
EVENT_GUARD_RAIL = "NetwardenGuardRail"
#: A pod admitted while the webhook was down got its labels from the reconciler.
EVENT_LABELS_BACKFILLED = "NetwardenLabelsBackfilled"
#: A pod NetworkPolicy cannot reach (hostNetwork): no baseline, no quarantine; the message says why.
EVENT_POD_UNENFORCEABLE = "NetwardenPodUnenforceable"
#: An alert about the pod was older than the configured max age: kept as evidence, not acted on.
EVENT_ALERT_NOT_ACTED_ON = "NetwardenAlertNotActedOn"
#: Warning on the workload (its top owner; a bare pod itself): an allow-from/allow-to entry was ignored, and why
#: (the admission warning says it only to whoever created the pod: for a Deployment, the ReplicaSet controller).
EVENT_DECLARATION_IGNORED = "NetwardenDeclarationIgnored"
#: Warning: a policy that is not netwarden's widens what a quarantined or tightened pod may do (on the pod and the policy).
EVENT_CONTAINMENT_WEAK = "NetwardenContainmentWeak"
#: Warning: a policy that is not netwarden's allows every peer in an opted-in namespace (cancels baselines).
EVENT_ALLOW_ALL_POLICY = "NetwardenAllowAllPolicy"

#: Component name used as Event source / field manager.
FIELD_MANAGER = "netwarden"
EVENT_COMPONENT = "netwarden"

# --- Prometheus metric names -------------------------------------------------------------------
#: Admission reviews by operation and outcome.
METRIC_REVIEWS = "netwarden_admission_reviews_total"
#: Admission review latency (histogram).
METRIC_REVIEW_LATENCY = "netwarden_admission_review_duration_seconds"
#: NetworkPolicy writes by result (created, exists, failed, ...).
METRIC_POLICY_WRITES = "netwarden_policy_writes_total"
#: Admissions that found their workload already known (no API write).
METRIC_CACHE_HITS = "netwarden_workload_cache_hits_total"
#: Signal records accepted, by format.
METRIC_SIGNALS = "netwarden_signals_total"
#: Signal records rejected, by format and reason.
METRIC_SIGNALS_REJECTED = "netwarden_signals_rejected_total"
#: Reconciler actions by kind and effect (written, recorded, pending, refused).
METRIC_ACTIONS = "netwarden_actions_total"
#: Workload reconciles by result.
METRIC_RECONCILES = "netwarden_reconciles_total"
#: Kubernetes API calls retried after a transient fault.
METRIC_API_RETRIES = "netwarden_api_retries_total"
#: Current risk score per workload.
METRIC_SCORE = "netwarden_workload_risk_score"
#: 1 while this reconciler replica holds the leader Lease.
METRIC_LEADER = "netwarden_leader"
#: Signal requests a standby replica passed on to the leader, by kind and result.
METRIC_SIGNALS_FORWARDED = "netwarden_signals_forwarded_total"
#: Alerts kept as evidence but not acted on, by kind and reason (duplicate, too-old).
METRIC_ALERTS_IGNORED = "netwarden_alerts_ignored_total"
#: Alerts accepted but attributed to no pod or workload, by kind and reason (no-target, not-a-workload, unknown-pod, unknown-workload).
METRIC_ALERTS_UNATTRIBUTED = "netwarden_alerts_unattributed_total"
#: Quarantine steps (quarantine, release) that failed and were queued for a retry with backoff.
METRIC_QUARANTINE_RETRIES = "netwarden_quarantine_step_retries_total"
#: Workload decisions (tighten, relax, rollback, quarantine of the whole workload) whose writes failed past the API client's retries and were queued for a retry with backoff, by action.
METRIC_WORKLOAD_WRITE_RETRIES = "netwarden_workload_write_retries_total"
#: Policies that are not netwarden's and weaken containment now, by kind (widens-quarantine, widens-tightened, allow-all).
METRIC_WEAK_CONTAINMENT = "netwarden_weak_containment_policies"
#: 1 for the quarantine backend in use (networkpolicy, adminnetworkpolicy, clusternetworkpolicy).
METRIC_QUARANTINE_BACKEND = "netwarden_quarantine_backend"
#: Flows received from a gRPC flow source (hubble-relay, goldmane), by source.
METRIC_STREAM_RECEIVED = "netwarden_stream_flows_received_total"
#: Streamed flows dropped, by source and reason (buffer-full: the engine fell behind; rejected:<reason>; engine-error).
METRIC_STREAM_DROPPED = "netwarden_stream_flows_dropped_total"
#: Seconds between the newest streamed flow's own time and its arrival, by source.
METRIC_STREAM_LAG = "netwarden_stream_lag_seconds"
#: Reconnections of a gRPC flow source (stream ended, server restarted, TLS failure), by source.
METRIC_STREAM_RECONNECTS = "netwarden_stream_reconnects_total"
#: 1 while a gRPC flow source's stream is up, by source.
METRIC_STREAM_CONNECTED = "netwarden_stream_connected"
#: Learned-state snapshots (baselines, risk) saved and restored across leader changes and partition moves, by operation and result.
METRIC_STATE_SNAPSHOTS = "netwarden_state_snapshots_total"
#: Scale-out mode: flow observations an ingest replica could not hand to Kafka (buffer full, broker gone), by reason.
METRIC_INGEST_DROPPED = "netwarden_ingest_dropped_total"
#: Scale-out mode: decisions a decide engine did not write because its partition moved away first.
METRIC_DECISIONS_FENCED = "netwarden_decisions_fenced_total"

#: Secrets `<prefix>-<shard>` in netwarden's namespace holding learned state in single mode (netwarden.reconciler.scaleout.statestore).
STATE_SECRET_PREFIX = "netwarden-state"
#: The app.kubernetes.io/component value of those Secrets.
STATE_COMPONENT = "learned-state"


# --- the label guard's matchCondition --------------------------------------------------------------
def _reserved(key: str) -> str:
    return f"{key}.startsWith('{PREFIX}/') && {key} != '{LABEL_INJECT}'"


#: CEL, on the validating label guard: an UPDATE (pods, pods/status) is sent only when it adds,
#: removes or changes a reserved label (netwarden.io/*, the opt-in switch aside), the only UPDATE the
#: guard can refuse (`changed_reserved_labels`); the kubelet's status updates and every other change
#: are not sent at all. CREATE is always sent. Written so that it cannot fail to evaluate (a label is
#: read only where it exists): an error would let the failurePolicy decide.
GUARD_MATCH_CONDITION = {
    "name": "netwarden-labels-touched",
    "expression": (  # has() rather than optionals (`.?labels`), which older API servers do not compile
        "request.operation != 'UPDATE' || "
        f"(has(object.metadata.labels) && object.metadata.labels.exists(k, {_reserved('k')} && "
        "(!has(oldObject.metadata.labels) || !(k in oldObject.metadata.labels) || "
        "oldObject.metadata.labels[k] != object.metadata.labels[k]))) || "
        f"(has(oldObject.metadata.labels) && oldObject.metadata.labels.exists(k, {_reserved('k')} && "
        "(!has(object.metadata.labels) || !(k in object.metadata.labels))))"
    ),
}


def writers_match_condition(usernames: Iterable[str]) -> dict[str, str]:
    """CEL, on the managed-policy guard: netwarden's own writes (and its listed writers') are never sent,
    so they never wait on the webhook or its failurePolicy. The chart renders the same expression (toJson
    of the list; a test compares them)."""
    import json

    return {"name": "not-a-netwarden-writer",
            "expression": f"!(request.userInfo.username in {json.dumps(list(usernames), separators=(',', ':'))})"}


def wire_names_table() -> str:
    """The README's table of every name on the wire, generated from this module (kept in sync by a test)."""
    import inspect
    import re

    source = inspect.getsource(inspect.getmodule(wire_names_table))  # type: ignore[arg-type]
    rows = []
    comment: list[str] = []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            comment.append(stripped[2:].strip())
            continue
        match = re.match(r"^(LABEL|ANNOTATION|EVENT|METRIC)_([A-Z_]+) = ", line)
        if match and not line.startswith("EVENT_COMPONENT"):
            value = globals()[line.split(" = ")[0]]
            kind = {"LABEL": "label", "ANNOTATION": "annotation", "EVENT": "Event reason", "METRIC": "metric"}[match[1]]
            meaning = " ".join(comment).replace("|", "\\|")
            rows.append(f"| `{value}` | {kind} | {meaning} |")
        if not stripped.startswith("#:"):
            comment = []
    seen: set[str] = set()
    unique = [r for r in rows if not (r in seen or seen.add(r))]  # type: ignore[func-returns-value]
    return "\n".join(["| name | kind | meaning |", "|---|---|---|", *unique])


if __name__ == "__main__":
    print(wire_names_table())
