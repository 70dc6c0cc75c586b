"""Dispatcher (one handler thread, bounded FIFO) and Scheduler (one deadline thread).

Blocking is made observable with Events: a "gate" handler holds the worker while the test
fills the queue, so nothing here depends on sleeping for the right amount of time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from sio_mqtt.socketio.dispatcher import Dispatcher, Scheduler, Timer

WAIT = 10.0  # generous bound for anything that should happen "at once"


class Gate:
    """A task that blocks the worker until opened; ``entered`` tells it is running."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def __call__(self) -> None:
        self.entered.set()
        assert self.opened.wait(WAIT), "gate never opened"

    def open(self) -> None:
        self.opened.set()


class Log:
    """Thread-safe list of what ran, with a wait for a count."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._cond = threading.Condition()

    def add(self, item: Any) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = WAIT) -> list[Any]:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.items) >= count, timeout)
            assert ok, f"got {len(self.items)} of {count}: {self.items[-10:]}"
            return list(self.items)


@pytest.fixture
def dispatcher() -> Iterator[Dispatcher]:
    d = Dispatcher(maxsize=4, name="sio-mqtt-test-dispatcher")
    d.start()
    yield d
    d.stop()
    assert d.thread is None or not d.thread.is_alive()


@pytest.fixture
def scheduler() -> Iterator[Scheduler]:
    s = Scheduler(name="sio-mqtt-test-scheduler")
    yield s
    s.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- Dispatcher ----------------------------------------------------------------------------------


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Dispatcher(maxsize=0)


def test_runs_tasks_in_submission_order_on_its_own_thread(dispatcher: Dispatcher) -> None:
    log = Log()
    for i in range(100):
        dispatcher.submit(lambda i=i: log.add((i, threading.current_thread().name)))
    got = log.wait_for(100)
    assert [i for i, _ in got] == list(range(100))
    assert {name for _, name in got} == {"sio-mqtt-test-dispatcher"}


def test_passes_arguments(dispatcher: Dispatcher) -> None:
    log = Log()
    dispatcher.submit(lambda *args: log.add(args), 1, "two", None)
    assert log.wait_for(1) == [(1, "two", None)]


def test_order_preserved_per_producer_across_threads(dispatcher: Dispatcher) -> None:
    """Several producers (the bound of 4 makes them block often): each one's tasks run in
    the order it submitted them, and nothing is lost or duplicated."""
    log = Log()
    producers, per_producer = 6, 300
    start = threading.Barrier(producers)

    def produce(p: int) -> None:
        start.wait()
        for i in range(per_producer):
            dispatcher.submit(log.add, (p, i))

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    got = log.wait_for(producers * per_producer)
    assert len(got) == producers * per_producer
    for p in range(producers):
        assert [i for q, i in got if q == p] == list(range(per_producer))


def test_happens_before_order_across_threads(dispatcher: Dispatcher) -> None:
    """A task submitted by thread B after thread A's submit returned runs after A's task."""
    log = Log()
    submitted = threading.Event()

    def a() -> None:
        dispatcher.submit(log.add, "a")
        submitted.set()

    def b() -> None:
        assert submitted.wait(WAIT)
        dispatcher.submit(log.add, "b")

    threads = [threading.Thread(target=b), threading.Thread(target=a)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert log.wait_for(2) == ["a", "b"]


def test_a_full_queue_blocks_the_producer_until_the_worker_drains(
    dispatcher: Dispatcher,
) -> None:
    log = Log()
    gate = Gate()
    dispatcher.submit(gate)
    assert gate.entered.wait(WAIT)  # the worker holds the gate; the queue is empty
    for i in range(dispatcher.maxsize):
        dispatcher.submit(log.add, i)  # fills the queue without blocking
    assert dispatcher.qsize() == dispatcher.maxsize

    about_to_submit = threading.Event()
    returned = threading.Event()

    def producer() -> None:
        about_to_submit.set()
        dispatcher.submit(log.add, "late")
        returned.set()

    thread = threading.Thread(target=producer)
    thread.start()
    assert about_to_submit.wait(WAIT)
    # Detection bound: a producer that was not blocked would return within microseconds.
    assert not returned.wait(0.3), "submit() did not block on a full queue"
    assert dispatcher.qsize() == dispatcher.maxsize
    assert log.items == []

    gate.open()
    assert returned.wait(WAIT), "the blocked producer never resumed"
    thread.join(WAIT)
    assert log.wait_for(dispatcher.maxsize + 1) == [*range(dispatcher.maxsize), "late"]


def test_urgent_submit_bypasses_the_bound(dispatcher: Dispatcher) -> None:
    log = Log()
    gate = Gate()
    dispatcher.submit(gate)
    assert gate.entered.wait(WAIT)
    for i in range(dispatcher.maxsize):
        dispatcher.submit(log.add, i)
    dispatcher.submit(log.add, "urgent", urgent=True)  # returns at once despite the full queue
    assert dispatcher.qsize() == dispatcher.maxsize + 1
    gate.open()
    # urgent skips the wait, not the line: it still runs in FIFO order
    assert log.wait_for(dispatcher.maxsize + 1) == [*range(dispatcher.maxsize), "urgent"]


def test_a_raising_handler_is_logged_and_the_thread_goes_on(
    dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    log = Log()

    def boom() -> None:
        raise RuntimeError("handler bug")

    caplog.set_level(logging.ERROR, logger="sio_mqtt.socketio")
    dispatcher.submit(boom)
    dispatcher.submit(log.add, "after")
    assert log.wait_for(1) == ["after"]
    records = [r for r in caplog.records if r.name == "sio_mqtt.socketio"]
    assert len(records) == 1
    assert "boom" in records[0].getMessage()
    assert records[0].exc_info is not None and records[0].exc_info[0] is RuntimeError
    assert dispatcher.thread is not None and dispatcher.thread.is_alive()


def test_in_dispatcher(dispatcher: Dispatcher) -> None:
    log = Log()
    dispatcher.submit(lambda: log.add(dispatcher.in_dispatcher()))
    assert log.wait_for(1) == [True]
    assert not dispatcher.in_dispatcher()


def test_start_twice_keeps_one_thread(dispatcher: Dispatcher) -> None:
    first = dispatcher.thread
    dispatcher.start()
    assert dispatcher.thread is first


def test_stop_runs_what_is_queued_then_joins() -> None:
    d = Dispatcher(maxsize=100, name="sio-mqtt-test-dispatcher")
    d.start()
    log = Log()
    gate = Gate()
    d.submit(gate)
    assert gate.entered.wait(WAIT)
    for i in range(20):
        d.submit(log.add, i)
    stopper = threading.Thread(target=d.stop)
    stopper.start()
    gate.open()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    thread = d.thread
    assert thread is not None and not thread.is_alive()  # stop() joined it
    assert log.items == list(range(20))  # drained, in order, before the thread ended


def test_stop_from_a_handler_does_not_deadlock() -> None:
    d = Dispatcher(name="sio-mqtt-test-dispatcher")
    d.start()
    log = Log()
    gate = Gate()
    d.submit(gate)  # hold the worker so both tasks below are queued before stop() runs
    assert gate.entered.wait(WAIT)
    d.submit(d.stop)
    d.submit(log.add, "queued before the stop marker")
    gate.open()
    thread = d.thread
    assert thread is not None
    thread.join(WAIT)
    assert not thread.is_alive()
    assert log.items == ["queued before the stop marker"]


def test_stop_without_start_and_twice_are_harmless() -> None:
    d = Dispatcher(name="sio-mqtt-test-dispatcher")
    d.stop()
    d.start()
    d.stop()
    d.stop()
    assert d.thread is not None and not d.thread.is_alive()


def test_restart_after_stop_uses_a_new_thread() -> None:
    d = Dispatcher(name="sio-mqtt-test-dispatcher")
    d.start()
    log = Log()
    d.submit(log.add, 1)
    log.wait_for(1)
    first = d.thread
    d.stop()
    assert first is not None and not first.is_alive()
    d.start()
    second = d.thread
    assert second is not None and second is not first and second.is_alive()
    d.submit(log.add, 2)
    assert log.wait_for(2) == [1, 2]
    d.stop()
    assert not second.is_alive()


# -- Scheduler -----------------------------------------------------------------------------------


def _block_scheduler(scheduler: Scheduler) -> Gate:
    """Occupy the scheduler thread with a due call, so the test can queue more meanwhile."""
    gate = Gate()
    scheduler.call_later(0, gate)
    assert gate.entered.wait(WAIT)
    return gate


def test_fires_in_deadline_order_not_submission_order() -> None:
    clock = FakeClock()
    scheduler = Scheduler(name="sio-mqtt-test-scheduler", clock=clock)
    try:
        log = Log()
        gate = _block_scheduler(scheduler)
        for name, delay in [("c", 3.0), ("a", 1.0), ("b1", 2.0), ("b2", 2.0), ("z", 50.0)]:
            scheduler.call_later(delay, lambda name=name: log.add(name))
        clock.now = 10.0  # a, b1, b2 and c are due, z is not
        gate.open()
        assert log.wait_for(4) == ["a", "b1", "b2", "c"]  # ties keep submission order
        clock.now = 100.0
        # a new earliest deadline (5) wakes the thread, which then finds z (50) due as well
        scheduler.call_later(-95, lambda: log.add("wake"))
        assert log.wait_for(6) == ["a", "b1", "b2", "c", "wake", "z"]
    finally:
        scheduler.stop()


def test_fires_after_the_delay_on_the_real_clock(scheduler: Scheduler) -> None:
    fired = threading.Event()
    scheduler.call_later(0.05, fired.set)
    assert fired.wait(WAIT)


def test_an_earlier_deadline_preempts_a_later_one(scheduler: Scheduler) -> None:
    log = Log()
    scheduler.call_later(60, lambda: log.add("late"))
    scheduler.call_later(0.01, lambda: log.add("early"))  # must wake the waiting thread
    assert log.wait_for(1) == ["early"]


def test_cancelled_calls_do_not_run() -> None:
    clock = FakeClock()
    scheduler = Scheduler(name="sio-mqtt-test-scheduler", clock=clock)
    try:
        log = Log()
        gate = _block_scheduler(scheduler)
        timers: dict[str, Timer] = {}
        for name in ("a", "b", "c"):
            timers[name] = scheduler.call_later(1, lambda name=name: log.add(name))
        timers["b"].cancel()
        assert timers["b"].cancelled and not timers["a"].cancelled
        clock.now = 5
        gate.open()
        assert log.wait_for(2) == ["a", "c"]
        scheduler.call_later(-1, lambda: log.add("marker"))  # everything before it has run
        assert log.wait_for(3) == ["a", "c", "marker"]
    finally:
        scheduler.stop()


def test_a_cancelled_head_timer_is_skipped() -> None:
    clock = FakeClock()
    scheduler = Scheduler(name="sio-mqtt-test-scheduler", clock=clock)
    try:
        log = Log()
        timer = scheduler.call_later(1, lambda: log.add("cancelled"))  # the head, waited for
        timer.cancel()
        clock.now = 5
        scheduler.call_later(-3, lambda: log.add("marker"))  # deadline 2: after the cancelled
        scheduler.call_later(-4.5, lambda: log.add("wake"))  # deadline 0.5: the new head
        assert log.wait_for(2) == ["wake", "marker"]  # the cancelled one (deadline 1) skipped
    finally:
        scheduler.stop()


def test_a_raising_call_is_logged_and_the_thread_goes_on(
    scheduler: Scheduler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="sio_mqtt.socketio")
    log = Log()

    def boom() -> None:
        raise ValueError("scheduled bug")

    scheduler.call_later(0, boom)
    scheduler.call_later(0.01, lambda: log.add("after"))
    assert log.wait_for(1) == ["after"]
    assert any(r.exc_info and r.exc_info[0] is ValueError for r in caplog.records)


def _scheduler_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_stop_ends_the_thread_and_drops_pending_calls() -> None:
    name = "sio-mqtt-test-scheduler-stop"
    scheduler = Scheduler(name=name)
    log = Log()
    scheduler.call_later(60, lambda: log.add("never"))
    (thread,) = _scheduler_threads(name)
    assert thread.is_alive()
    scheduler.stop()
    assert not thread.is_alive()  # stop() joined it
    assert log.items == []
    assert _scheduler_threads(name) == []


def test_stop_without_a_thread_is_harmless() -> None:
    Scheduler(name="sio-mqtt-test-scheduler").stop()


def test_call_later_after_stop_starts_a_new_thread() -> None:
    name = "sio-mqtt-test-scheduler-restart"
    scheduler = Scheduler(name=name)
    try:
        scheduler.call_later(60, lambda: None)
        (first,) = _scheduler_threads(name)
        scheduler.stop()
        fired = threading.Event()
        scheduler.call_later(0, fired.set)
        assert fired.wait(WAIT)
        (second,) = _scheduler_threads(name)
        assert second is not first
    finally:
        scheduler.stop()
    assert _scheduler_threads(name) == []


def test_stop_from_a_scheduled_call_does_not_deadlock() -> None:
    name = "sio-mqtt-test-scheduler-self-stop"
    scheduler = Scheduler(name=name)
    log = Log()

    def stop_and_note() -> None:
        scheduler.stop()
        log.add("stopped")

    scheduler.call_later(0, stop_and_note)
    assert log.wait_for(1) == ["stopped"]
    for thread in _scheduler_threads(name):
        thread.join(WAIT)
    assert _scheduler_threads(name) == []
