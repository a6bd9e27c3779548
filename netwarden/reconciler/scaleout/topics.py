"""Create the scale-out topics when they are missing (the ingest and decide roles both call it at start)."""

from __future__ import annotations

from typing import Any

from netwarden.reconciler.scaleout.wire import Topics


def ensure_topics(bootstrap: str, topics: Topics = Topics(), *, replication: int = 1, timeout: float = 30.0,
                  extra: dict[str, Any] | None = None) -> list[str]:
    """Observations (deleted after a day: replay is bounded by the state changelog, not by them) and
    the compacted state changelog, with the same partition count. Returns the topics created."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, **(extra or {})})
    have = admin.list_topics(timeout=timeout).topics
    wanted = [
        NewTopic(topics.observations, topics.partitions, replication,
                 config={"retention.ms": str(24 * 3600 * 1000), "compression.type": "producer"}),
        NewTopic(topics.state, topics.partitions, replication,
                 config={"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "600000"}),
    ]
    missing = [t for t in wanted if t.topic not in have]
    if not missing:
        return []
    created = []
    for topic, future in admin.create_topics(missing).items():
        try:
            future.result(timeout)
            created.append(topic)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return created
