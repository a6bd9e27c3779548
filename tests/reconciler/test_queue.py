"""The work queue: dedup, coalescing of bursts, one worker per key, per-key backoff."""

from __future__ import annotations

from netwarden.reconciler.queue import WorkQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_of_adds_for_one_workload_yields_one_reconcile() -> None:
    clock = FakeClock()
    queue = WorkQueue(coalesce=0.05, clock=clock)
    for _ in range(100):
        queue.add("shop.deploy.api")
    queue.add("shop.deploy.db")
    clock.now = 1.0
    got = {queue.get(timeout=0), queue.get(timeout=0)}
    assert got == {"shop.deploy.api", "shop.deploy.db"}
    assert queue.get(timeout=0) is None
    assert queue.stats.coalesced == 99


def test_key_added_while_processing_comes_back_once_after_done() -> None:
    clock = FakeClock()
    queue = WorkQueue(coalesce=0.0, clock=clock)
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.add("a")
    queue.add("a")
    assert queue.get(timeout=0) is None  # never handed to a second worker while in progress
    queue.done("a")
    assert queue.get(timeout=0) == "a"
    queue.done("a")
    assert queue.get(timeout=0) is None


def test_failures_back_off_exponentially_per_key_and_forget_resets() -> None:
    clock = FakeClock()
    queue = WorkQueue(coalesce=0.0, base_backoff=0.1, max_backoff=1.0, clock=clock)
    delays = []
    for _ in range(6):
        delays.append(queue.add_rate_limited("a"))
        clock.now += 10
        assert queue.get(timeout=0) == "a"
        queue.done("a")
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    queue.forget("a")
    assert queue.add_rate_limited("a") == 0.1
    assert queue.failures("b") == 0


def test_key_is_not_handed_out_before_it_is_due() -> None:
    clock = FakeClock()
    queue = WorkQueue(coalesce=0.0, clock=clock)
    queue.add("later", delay=5.0)
    assert queue.get(timeout=0) is None
    queue.add("later", delay=0.0)  # an earlier due time wins
    assert queue.get(timeout=0) == "later"


def test_idle_only_once_every_key_added_has_been_handled() -> None:
    clock = FakeClock()
    queue = WorkQueue(coalesce=0.0, clock=clock)
    assert queue.idle()
    queue.add("a")
    assert not queue.idle()  # due
    assert queue.get(timeout=0) == "a"
    assert not queue.idle()  # being processed
    queue.add("a")
    queue.done("a")
    assert not queue.idle()  # added again while processing: due again
    assert queue.get(timeout=0) == "a"
    queue.done("a")
    assert queue.idle()
