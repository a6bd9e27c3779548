"""Beyond one leader: learned state that survives a leader change, and the scale-out mode on Kafka.

statestore  single mode: learned-state snapshots in sharded Secrets; the leader saves, a new one restores
wire        scale-out: topics, keys, partitions and records on Kafka (plain data)
topics      creates the observations topic and the compacted state changelog
ingest      the ingest role: resolve flows to workloads, fold them per bucket, produce by workload (bounded buffer)
decide      the decide role: a consumer group member; restores its partitions' state, decides, checkpoints
            state and offsets in one transaction, writes only while it owns the workload's partition
roles       `netwarden reconciler` with role ingest | decide: the roles on the reconciler's watch, receivers and writer
cli         `netwarden scaleout decide`: one decide engine as a process writing to a file sink (tests, bench, demo)
story       the scale-out story: `netwarden demo --scale-out`, tests/scaleout, bench/bench_scaleout.py
"""
