"""The pure parts of FakeKubelet: pod IPs and the statuses it writes."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from localkube.kubelet import POD_CIDR, PodIPAllocator, needs_start, running_status, with_readiness, with_restart

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
POD = {
    "metadata": {"name": "web", "namespace": "shop", "uid": "u1"},
    "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}, {"name": "sidecar", "image": "envoy"}]},
    "status": {"phase": "Pending", "qosClass": "BestEffort"},
}


@given(st.integers(min_value=1, max_value=600))
def test_allocated_pod_ips_are_distinct_usable_and_in_the_pod_cidr(count: int) -> None:
    allocator = PodIPAllocator()
    ips = [allocator.allocate(f"pod-{i}") for i in range(count)]
    assert len(set(ips)) == count
    for ip in ips:
        address = ipaddress.ip_address(ip)
        assert address in POD_CIDR and address.packed[-1] not in (0, 255)


def test_the_same_pod_keeps_its_ip_and_a_released_ip_is_reused() -> None:
    allocator = PodIPAllocator()
    first = allocator.allocate("a")
    assert allocator.allocate("a") == first
    allocator.release("a")
    assert allocator.allocate("b") == first


def test_only_unscheduled_pending_pods_not_being_deleted_need_starting() -> None:
    assert needs_start(POD)
    assert not needs_start({**POD, "spec": {**POD["spec"], "nodeName": "n1"}})
    assert not needs_start({**POD, "status": {"phase": "Running"}})
    assert not needs_start({**POD, "metadata": {**POD["metadata"], "deletionTimestamp": "2025-01-01T00:00:00Z"}})


def test_running_status_is_ready_with_one_status_per_container_and_keeps_qos_class() -> None:
    status = running_status(POD, "10.244.0.7", NOW)
    assert status["phase"] == "Running"
    assert status["podIP"] == "10.244.0.7" and status["podIPs"] == [{"ip": "10.244.0.7"}]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert [c["name"] for c in status["containerStatuses"]] == ["app", "sidecar"]
    assert all(c["ready"] and c["restartCount"] == 0 for c in status["containerStatuses"])
    assert status["qosClass"] == "BestEffort"


def test_readiness_flip_changes_ready_conditions_and_containers_only() -> None:
    status = running_status(POD, "10.244.0.7", NOW)
    later = datetime(2025, 1, 2, 3, 5, 0, tzinfo=timezone.utc)
    unready = with_readiness(status, False, later)
    conditions = {c["type"]: c for c in unready["conditions"]}
    assert conditions["Ready"]["status"] == "False" and conditions["ContainersReady"]["status"] == "False"
    assert conditions["Ready"]["lastTransitionTime"] == "2025-01-02T03:05:00Z"
    assert conditions["PodScheduled"]["status"] == "True"
    assert not any(c["ready"] for c in unready["containerStatuses"])
    assert status["containerStatuses"][0]["ready"]  # input untouched


def test_restart_bumps_one_container_and_records_the_crash() -> None:
    status = with_restart(running_status(POD, "10.244.0.7", NOW), "sidecar", NOW)
    app, sidecar = status["containerStatuses"]
    assert (app["restartCount"], sidecar["restartCount"]) == (0, 1)
    assert sidecar["lastState"]["terminated"]["exitCode"] == 1
    assert with_restart(status, None, NOW)["containerStatuses"][0]["restartCount"] == 1
