"""Builders for the core tests: a small cluster of pods, flows between them, a config with short windows."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from netwarden.model import names
from netwarden.reconciler.core.pods import PodRef
from netwarden.reconciler.core.config import CoreConfig
from netwarden.reconciler.core.engine import DecisionEngine
from netwarden.reconciler.core.types import Endpoint, Flow, HealthSignal, SecurityAlert

API = "shop.deploy.api"
DB = "shop.deploy.db"
CACHE = "cache.deploy.redis"
DNS = "kube-system.deploy.coredns"

#: identity -> [(pod, instance, ip)]
PODS: dict[str, list[tuple[str, str, str]]] = {
    API: [("api-7d9f-a", "inst-api-a", "10.0.1.10"), ("api-7d9f-b", "inst-api-b", "10.0.1.11")],
    DB: [("db-0", "inst-db-0", "10.0.2.10")],
    CACHE: [("redis-0", "inst-redis-0", "10.0.3.10")],
    DNS: [("coredns-1", "inst-dns-1", "10.0.9.10")],
}
PURPOSES = {API: "backend", DB: "database", CACHE: "cache", DNS: "dns"}

#: Short windows so a test reads like a timeline; thresholds at their defaults.
FAST = CoreConfig(learning_seconds=100.0, rate_bucket_seconds=10.0, half_life_seconds=600.0, default_mode=names.MODE_ENFORCE)


def pod_ref(identity: str, n: int = 0) -> PodRef:
    pod, instance, ip = PODS[identity][n]
    return PodRef(identity, identity.split(".")[0], pod, instance, ip, PURPOSES[identity])


def engine(config: CoreConfig = FAST, **kwargs: Any) -> DecisionEngine:
    e = DecisionEngine(config, **kwargs)
    for identity, pods in PODS.items():
        for n in range(len(pods)):
            e.upsert_pod(pod_ref(identity, n))
    return e


def ip(identity: str, n: int = 0) -> str:
    return PODS[identity][n][2]


def flow(t: float, src: str, dst: str, port: int = 5432, protocol: str = "TCP", **kw: Any) -> Flow:
    """A flow between two IPs; `world=True` in kw marks the destination as outside the cluster."""
    world = kw.pop("world", False)
    return Flow(t, Endpoint(src), Endpoint(dst, world=world), port, protocol, **kw)


def learn_api_to_db(e: DecisionEngine, until: float = 150.0, step: float = 1.0) -> float:
    """Both api replicas talk to the db on 5432 (and DNS) through the learning window."""
    t = 0.0
    while t < until:
        e.ingest_flow(flow(t, ip(API, 0), ip(DB), 5432), t)
        e.ingest_flow(flow(t, ip(API, 1), ip(DB), 5432), t)
        e.ingest_flow(flow(t, ip(API, 0), ip(DNS), 53, "UDP"), t)
        t += step
    return t


def falco(t: float, pod: str, priority: str = "critical", namespace: str = "shop") -> SecurityAlert:
    return SecurityAlert(t, namespace, pod, "Terminal shell in container", priority, output="A shell was spawned")  # type: ignore[arg-type]


def health(t: float, pod: str, ready: bool, restarts: int = 0, namespace: str = "shop") -> HealthSignal:
    return HealthSignal(t, namespace, pod, ready, restarts)


def with_config(**changes: Any) -> CoreConfig:
    return replace(FAST, **changes)
