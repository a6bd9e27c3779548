"""Beyond one leader: learned state that survives a leader change, and the scale-out mode on Kafka.

statestore  single mode: learned-state snapshots in sharded Secrets; the leader saves, a new one restores
kafka       topics, keys and the wire format of observations and snapshots on Kafka (confluent-kafka)
ingest      the ingest role: parse, attribute, fold flows into edge counts per bucket, produce by workload
decide      the decide role: a consumer group; owns the workloads of its partitions, restores, decides, fences
"""
