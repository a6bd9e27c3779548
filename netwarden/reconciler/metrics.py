"""The reconciler's Prometheus metrics, registered once per process (names from netwarden.model.names)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from netwarden.model import names

REGISTRY = CollectorRegistry()

SIGNALS = Counter(names.METRIC_SIGNALS, "Signal records accepted, by kind and source format.",
                  ["kind", "format"], registry=REGISTRY)
SIGNALS_REJECTED = Counter(names.METRIC_SIGNALS_REJECTED, "Signal records rejected, by kind and reason.",
                           ["kind", "reason"], registry=REGISTRY)
POLICY_WRITES = Counter(names.METRIC_POLICY_WRITES, "NetworkPolicy writes by the reconciler, by operation.",
                        ["operation", "result"], registry=REGISTRY)
ACTIONS = Counter(names.METRIC_ACTIONS, "Decisions applied, by action and mode effect.",
                  ["action", "effect"], registry=REGISTRY)
RECONCILES = Counter(names.METRIC_RECONCILES, "Workload reconciles, by result.", ["result"], registry=REGISTRY)
LEADER = Gauge(names.METRIC_LEADER, "1 while this process holds the leader Lease.", registry=REGISTRY)
API_RETRIES = Counter(names.METRIC_API_RETRIES, "Kubernetes API calls retried after a transient fault.",
                      registry=REGISTRY)
SCORE = Gauge(names.METRIC_SCORE, "Current risk score of a workload.", ["identity"], registry=REGISTRY)
SIGNALS_FORWARDED = Counter(names.METRIC_SIGNALS_FORWARDED,
                            "Signal requests a standby passed on to the leader, by kind and result.",
                            ["kind", "result"], registry=REGISTRY)
ALERTS_IGNORED = Counter(names.METRIC_ALERTS_IGNORED, "Alerts recorded as evidence but not acted on, by kind and reason.",
                         ["kind", "reason"], registry=REGISTRY)
ALERTS_UNATTRIBUTED = Counter(names.METRIC_ALERTS_UNATTRIBUTED,
                              "Alerts accepted but attributed to no pod or workload, by kind and reason "
                              "(no-target, not-a-workload, unknown-pod, unknown-workload).",
                              ["kind", "reason"], registry=REGISTRY)
QUARANTINE_RETRIES = Counter(names.METRIC_QUARANTINE_RETRIES,
                             "Quarantine steps that failed and were queued for a retry, by step.", ["step"],
                             registry=REGISTRY)
WORKLOAD_WRITE_RETRIES = Counter(names.METRIC_WORKLOAD_WRITE_RETRIES,
                                 "Workload decisions whose writes failed and were queued for a retry, by action.",
                                 ["action"], registry=REGISTRY)
QUARANTINE_BACKEND = Gauge(names.METRIC_QUARANTINE_BACKEND, "1 for the quarantine backend in use (detected from discovery).",
                           ["backend"], registry=REGISTRY)
WEAK_CONTAINMENT = Gauge(names.METRIC_WEAK_CONTAINMENT,
                         "Policies that are not netwarden's and weaken containment now, by kind.", ["kind"],
                         registry=REGISTRY)
QUARANTINE_BACKENDS = ("networkpolicy", "adminnetworkpolicy", "clusternetworkpolicy")


def set_quarantine_backend(backend: str) -> None:
    for name in QUARANTINE_BACKENDS:
        QUARANTINE_BACKEND.labels(name).set(1 if name == backend else 0)
STATE_SNAPSHOTS = Counter(names.METRIC_STATE_SNAPSHOTS,
                          "Learned-state snapshots saved and restored (leader change, partition move), by operation and result.",
                          ["operation", "result"], registry=REGISTRY)
INGEST_DROPPED = Counter(names.METRIC_INGEST_DROPPED,
                         "Scale-out ingest: flow observations not handed to Kafka, by reason.", ["reason"], registry=REGISTRY)
DECISIONS_FENCED = Counter(names.METRIC_DECISIONS_FENCED,
                           "Scale-out decide: decisions not written because the workload's partition moved away first.",
                           registry=REGISTRY)
