"""The I/O loop (timers, sockets, lifecycle), the handshake pool and the shared dispatcher pool.

Blocking is made observable with Events (a "gate" holds a worker), never with sleeps.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from sio_mqtt.engineio.loop import EVENT_READ, BlockingPool, IOLoop
from sio_mqtt.socketio.dispatcher import DispatchPool, SerialQueue

WAIT = 10.0


class Log:
    def __init__(self) -> None:
        self.items: list[Any] = []
        self._cond = threading.Condition()

    def add(self, item: Any) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait_for(self, count: int) -> list[Any]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.items) >= count, WAIT), self.items[-5:]
            return list(self.items)


@pytest.fixture
def loop() -> Iterator[IOLoop]:
    lp = IOLoop(name="sio-mqtt-test-loop", handshake_workers=3)
    lp.acquire()
    yield lp
    lp.release()
    assert lp.join(WAIT)


# -- the loop ------------------------------------------------------------------------------------


def test_timers_fire_on_the_loop_thread_in_deadline_order(loop: IOLoop) -> None:
    log = Log()
    for delay in (0.05, 0.0, 0.02):
        loop.call_later(delay, lambda d=delay: log.add((d, loop.in_loop())))
    assert log.wait_for(3) == [(0.0, True), (0.02, True), (0.05, True)]


def test_a_cancelled_timer_never_runs(loop: IOLoop) -> None:
    log = Log()
    loop.call_later(0.01, lambda: log.add("cancelled")).cancel()
    loop.call_later(0.02, lambda: log.add("kept"))
    assert log.wait_for(1) == ["kept"]
    done = threading.Event()
    loop.call_later(0.05, done.set)
    assert done.wait(WAIT)
    assert log.items == ["kept"]


def test_call_soon_from_many_threads_runs_everything(loop: IOLoop) -> None:
    log = Log()
    threads = [
        threading.Thread(
            target=lambda t=t: [loop.call_soon(lambda: log.add(t)) for _ in range(200)]
        )
        for t in range(5)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert sorted(log.wait_for(1000)) == sorted(t for t in range(5) for _ in range(200))


def test_a_registered_socket_is_read_on_the_loop(loop: IOLoop) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    log = Log()

    class Reader:
        def on_io(self, mask: int) -> None:
            log.add((mask, a.recv(100), loop.in_loop()))

    loop.register(a, Reader(), EVENT_READ)
    b.sendall(b"hello")
    assert log.wait_for(1) == [(EVENT_READ, b"hello", True)]
    loop.unregister(a)
    a.close()
    b.close()


def test_the_thread_ends_with_the_last_holder_and_comes_back_with_the_next() -> None:
    lp = IOLoop(name="sio-mqtt-test-loop")
    lp.acquire()
    lp.acquire()
    first = lp.thread
    assert first is not None and first.is_alive()
    lp.release()
    assert first.is_alive()  # one holder left
    lp.release()
    assert not first.is_alive()  # release() waited for it
    lp.acquire()
    second = lp.thread
    assert second is not None and second is not first and second.is_alive()
    done = threading.Event()
    lp.call_later(0, done.set)
    assert done.wait(WAIT)
    lp.release()
    assert lp.join(WAIT)


def test_the_handshake_pool_never_runs_more_than_its_workers() -> None:
    pool = BlockingPool(workers=3, name="sio-mqtt-test-handshake", idle=0.05)
    pool.acquire()
    gate = threading.Event()
    running = Log()
    for i in range(10):
        pool.submit(lambda i=i: (running.add(i), gate.wait(WAIT)))
    running.wait_for(3)
    assert pool.threads == 3 and len(running.items) == 3  # the other 7 queue, no new thread
    gate.set()
    assert len(running.wait_for(10)) == 10
    pool.release()
    assert pool.join(WAIT) and pool.threads == 0


# -- the dispatcher pool -------------------------------------------------------------------------


@pytest.fixture
def pool() -> Iterator[DispatchPool]:
    p = DispatchPool(workers=4, name="sio-mqtt-test-dispatch")
    p.acquire()
    yield p
    p.release()
    assert p.join(WAIT)


def test_each_client_runs_in_arrival_order_one_at_a_time(pool: DispatchPool) -> None:
    """20 clients fed by 3 producer threads each: every client's calls run in the order they
    were submitted, never two at once, on at most ``workers`` threads."""
    clients, producers, per_producer = 20, 3, 200
    queues = [SerialQueue(pool, maxsize=50) for _ in range(clients)]
    seen: list[list[tuple[int, int]]] = [[] for _ in range(clients)]
    busy = [False] * clients
    overlaps: list[int] = []
    threads_used: set[str] = set()
    done = Log()

    def task(c: int, p: int, i: int) -> None:
        if busy[c]:
            overlaps.append(c)
        busy[c] = True
        threads_used.add(threading.current_thread().name)
        seen[c].append((p, i))
        busy[c] = False
        done.add(None)

    def produce(p: int) -> None:
        for i in range(per_producer):
            for c, q in enumerate(queues):
                q.submit(task, c, p, i)

    ts = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(WAIT * 3)
    done.wait_for(clients * producers * per_producer)
    assert overlaps == []
    for c in range(clients):
        for p in range(producers):
            assert [i for q, i in seen[c] if q == p] == list(range(per_producer))
    assert len(threads_used) <= pool.workers


def test_a_blocked_client_delays_only_itself(pool: DispatchPool) -> None:
    blocked, other = SerialQueue(pool), SerialQueue(pool)
    gate = threading.Event()
    entered = threading.Event()
    log = Log()

    def hold() -> None:
        entered.set()
        assert gate.wait(WAIT)

    blocked.submit(hold)
    blocked.submit(log.add, "blocked client, after the gate")
    assert entered.wait(WAIT)
    for i in range(100):
        other.submit(log.add, i)
    assert log.wait_for(100) == list(range(100))  # served while the other client is held
    gate.set()
    assert log.wait_for(101)[-1] == "blocked client, after the gate"


def test_more_blocked_clients_than_workers_queue_instead_of_new_threads(
    pool: DispatchPool,
) -> None:
    gate = threading.Event()
    entered = Log()
    queues = [SerialQueue(pool) for _ in range(10)]
    for i, q in enumerate(queues):
        q.submit(lambda i=i: (entered.add(i), gate.wait(WAIT)))
    entered.wait_for(pool.workers)
    assert pool.threads == pool.workers
    gate.set()
    assert len(entered.wait_for(10)) == 10


def test_the_loop_never_blocks_on_a_full_queue_it_pauses_instead(pool: DispatchPool) -> None:
    """On the loop (``never_block``) a full queue takes the call anyway and says so once
    (the connection stops reading); drained to half, it says so again."""
    on_loop = threading.Event()
    q = SerialQueue(pool, maxsize=4, never_block=on_loop.is_set)
    hooks = Log()
    q.on_full = lambda: hooks.add("full")
    q.on_drained = lambda: hooks.add("drained")
    gate = threading.Event()
    entered = threading.Event()
    q.submit(lambda: (entered.set(), gate.wait(WAIT)))
    assert entered.wait(WAIT)
    on_loop.set()
    log = Log()
    for i in range(10):
        q.submit(log.add, i)  # would block a normal producer from the 5th on
    assert hooks.items == ["full"]
    gate.set()
    assert log.wait_for(10) == list(range(10))
    assert hooks.wait_for(2) == ["full", "drained"]


def test_drain_waits_for_what_is_queued(pool: DispatchPool) -> None:
    q = SerialQueue(pool)
    gate = threading.Event()
    log = Log()
    q.submit(gate.wait, WAIT)
    q.submit(log.add, "last")
    opener = threading.Timer(0.05, gate.set)
    opener.start()
    assert q.drain(WAIT)
    assert log.items == ["last"]
    opener.join()


def test_workers_end_with_the_last_holder() -> None:
    p = DispatchPool(workers=2, name="sio-mqtt-test-dispatch")
    p.acquire()
    q = SerialQueue(p)
    log = Log()
    q.submit(log.add, 1)
    log.wait_for(1)
    assert p.threads >= 1
    p.release()
    assert p.threads == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("sio-mqtt-test-dispatch")]


def test_a_raising_handler_is_logged_and_the_client_goes_on(
    pool: DispatchPool, caplog: pytest.LogCaptureFixture
) -> None:
    q = SerialQueue(pool)
    log = Log()

    def boom() -> None:
        raise RuntimeError("user bug")

    q.submit(boom)
    q.submit(log.add, "after")
    assert log.wait_for(1) == ["after"]
    assert any("user bug" in (r.exc_text or str(r.exc_info)) for r in caplog.records)


def test_a_full_queue_blocks_a_producer_until_the_client_drains(pool: DispatchPool) -> None:
    q = SerialQueue(pool, maxsize=2)
    gate = threading.Event()
    entered = threading.Event()
    q.submit(lambda: (entered.set(), gate.wait(WAIT)))
    assert entered.wait(WAIT)
    log = Log()
    q.submit(log.add, 0)
    q.submit(log.add, 1)
    third_in = threading.Event()

    def produce() -> None:
        q.submit(log.add, 2)  # the bound is reached: waits for room
        third_in.set()

    producer = threading.Thread(target=produce)
    producer.start()
    assert not third_in.wait(0.2)  # still held while the queue is full
    gate.set()
    assert third_in.wait(WAIT)
    producer.join(WAIT)
    assert log.wait_for(3) == [0, 1, 2]


def test_urgent_calls_pass_a_full_queue(pool: DispatchPool) -> None:
    q = SerialQueue(pool, maxsize=1)
    gate = threading.Event()
    entered = threading.Event()
    q.submit(lambda: (entered.set(), gate.wait(WAIT)))
    assert entered.wait(WAIT)
    log = Log()
    q.submit(log.add, "normal")
    q.submit(log.add, "urgent", urgent=True)  # a closing connection never waits on the bound
    gate.set()
    assert log.wait_for(2) == ["normal", "urgent"]
