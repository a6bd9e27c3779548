"""Lease leader election between two instances on LocalKube: one writer, failover, 409 races."""

from __future__ import annotations


from netwarden.platform.kube import KubeClient
from netwarden.reconciler.leader import LeaderElector, LeaseTiming, NotLeader

from .conftest import wait_until

TIMING = LeaseTiming(lease_duration=1.5, renew_deadline=1.0, retry_period=0.1)


def elector(kube: KubeClient, identity: str) -> LeaderElector:
    return LeaderElector(kube, "kube-system", "netwarden-reconciler", identity, TIMING)


def test_first_candidate_creates_the_lease_and_the_second_does_not_lead(kube: KubeClient) -> None:
    a, b = elector(kube, "a"), elector(kube, "b")
    assert a.try_acquire_or_renew() is True
    assert b.try_acquire_or_renew() is False
    a.check()
    try:
        b.check()
        raise AssertionError("a non-leader passed the writer gate")
    except NotLeader:
        pass
    lease = kube.get_lease("kube-system", "netwarden-reconciler")
    spec = lease["spec"]
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 2
    assert spec["leaseTransitions"] == 0
    assert spec["acquireTime"] and spec["renewTime"]


def test_renewal_keeps_acquire_time_and_moves_renew_time(kube: KubeClient) -> None:
    a = elector(kube, "a")
    a.try_acquire_or_renew()
    first = kube.get_lease("kube-system", "netwarden-reconciler")["spec"]
    a.try_acquire_or_renew()
    second = kube.get_lease("kube-system", "netwarden-reconciler")["spec"]
    assert second["acquireTime"] == first["acquireTime"]
    assert second["renewTime"] >= first["renewTime"]
    assert second["leaseTransitions"] == 0


def test_stale_resource_version_is_a_lost_race(kube: KubeClient) -> None:
    a, b = elector(kube, "a"), elector(kube, "b")
    a.try_acquire_or_renew()
    lease = kube.get_lease("kube-system", "netwarden-reconciler")
    a.try_acquire_or_renew()  # moves the resourceVersion on
    stale = b._manifest(lease, b.wall(), transitions=1, acquired=b.wall())
    try:
        kube.replace_lease(stale)
        raise AssertionError("a stale resourceVersion was accepted")
    except Exception as exc:  # noqa: BLE001
        assert getattr(exc, "status", None) == 409


def test_standby_takes_over_when_the_leader_stops_renewing(kube: KubeClient) -> None:
    a, b = elector(kube, "a").start(), elector(kube, "b").start()
    try:
        wait_until(lambda: a.is_leader or b.is_leader)
        leader, standby = (a, b) if a.is_leader else (b, a)
        assert not standby.is_leader
        leader.stop(release=False)  # crashed: the Lease must expire before the standby takes it
        assert not leader.is_open()
        wait_until(lambda: standby.is_leader, timeout=10)
        spec = kube.get_lease("kube-system", "netwarden-reconciler")["spec"]
        assert spec["holderIdentity"] == standby.identity
        assert spec["leaseTransitions"] == 1
    finally:
        a.stop()
        b.stop()


def test_released_lease_is_taken_over_without_waiting_for_expiry(kube: KubeClient) -> None:
    a = elector(kube, "a")
    b = LeaderElector(kube, "kube-system", "netwarden-reconciler", "b",
                      LeaseTiming(lease_duration=60, renew_deadline=30, retry_period=0.1))
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a._thread = None
    a._leading = True
    a.stop(release=True)
    assert b.try_acquire_or_renew()


def test_gate_closes_when_renewals_fail_past_the_deadline(cluster, kube: KubeClient) -> None:
    now = [100.0]
    a = LeaderElector(kube, "kube-system", "netwarden-reconciler", "a", TIMING, monotonic=lambda: now[0])
    assert a.try_acquire_or_renew()
    cluster.faults.add(path_regex="/leases", status=500, times=None)
    now[0] += 0.5
    assert a.try_acquire_or_renew() is True  # renewal failed, but still within the renew deadline
    now[0] += 0.6
    assert a.is_open() is False
    assert a.try_acquire_or_renew() is False
