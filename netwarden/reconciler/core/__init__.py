"""The reconciler's pure decision core: plain values in, Decisions out; no I/O, no clock reads.

config     CoreConfig: every tunable, validated from a YAML mapping
types      normalised signals (Flow, SecurityAlert, MetricAlert, HealthSignal)
pods       PodRef and PodIndex: which pods exist, with which IPs, labels and workload (fed by the watch)
behaviour  flow -> per-workload views; learned baselines, new-peer / rate / drop deviations
risk       Deviation (evidence) and RiskState (decaying score per workload and pod instance)
whatif     which recent flows a proposed policy would drop (pluggable evaluator)
guard      protected namespaces, blast radius, write budget
actions    WorkloadState, decide / apply_decision: tighten, quarantine, relax, rollback
plan       a decision's API changes as ordered steps with preconditions (so far: a pod quarantine and its release)
engine     DecisionEngine: holds all of the above per workload; what reconciler and replay drive
snapshot   one workload's learned state as versioned plain data: what a new leader or partition owner restores
"""
