"""Where user code runs: :class:`DispatchPool` (a bounded pool of handler threads shared by
every client of the process) with one :class:`SerialQueue` per client (that client's events in
arrival order, one at a time; a blocked handler delays only its own client).

A queue is bounded: a producer finding it full waits (back-pressure), except the I/O loop,
which must never wait: there the connection pauses its reading until the queue drained, so TCP
pushes back on that server while every other connection keeps flowing. Lifecycle notices
(``urgent=True``) may exceed the bound so a closing connection never deadlocks on a full queue.

Deadlines (heartbeats, ack timeouts, reconnect backoff) live on the I/O loop's timer heap
(:mod:`sio_mqtt.engineio.loop`), not here.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sio_mqtt.engineio.loop import join_workers

log = logging.getLogger("sio_mqtt.socketio")

Task = tuple[Callable[..., Any], tuple[Any, ...]]


class DispatchPool:
    """A bounded pool of handler threads shared by every client of the process.

    Each client has a :class:`SerialQueue` on it: its calls run in arrival order, one at a
    time, on whichever worker is free; a client whose handler blocks (e.g. in ``call()``)
    holds one worker and delays only its own later events. Workers start on demand (up to
    ``workers``) and end once the last holder released the pool and nothing is queued.
    """

    def __init__(self, workers: int = 8, name: str = "sio-mqtt-dispatch") -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.name = name
        self._cond = threading.Condition(threading.Lock())
        self._ready: collections.deque[SerialQueue] = collections.deque()
        self._threads: set[threading.Thread] = set()
        self._idle = 0
        self._refs = 0
        self._counter = itertools.count(1)

    def acquire(self) -> None:
        """Hold the pool; the first holder starts all its workers (a thread count that does
        not depend on the load or the number of clients)."""
        with self._cond:
            self._refs += 1
            missing = self.workers - len(self._threads)
            new = [
                threading.Thread(
                    target=self._work, name=f"{self.name}-{next(self._counter)}", daemon=True
                )
                for _ in range(missing)
            ]
            self._threads.update(new)
        for thread in new:
            thread.start()

    def release(self) -> None:
        """The last release ends the workers once idle and waits briefly for them (not for
        the caller's own thread)."""
        with self._cond:
            if self._refs > 0:
                self._refs -= 1
            if self._refs:
                return
            self._cond.notify_all()
        self.join(1.0)

    @property
    def threads(self) -> int:
        return len(self._threads)

    def join(self, timeout: float = 5.0) -> bool:
        """Wait until every worker but the caller ended (once unheld and idle); True when
        they did."""
        return join_workers(self._cond, self._threads, timeout)

    def _schedule(self, queue: SerialQueue) -> None:
        with self._cond:
            self._ready.append(queue)
            if self._idle:
                self._cond.notify()
                return
            if len(self._threads) >= self.workers:
                return
            thread = threading.Thread(
                target=self._work, name=f"{self.name}-{next(self._counter)}", daemon=True
            )
            self._threads.add(thread)
        thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        cond = self._cond
        ready = self._ready
        while True:
            with cond:
                while not ready:
                    if self._refs == 0:
                        self._threads.discard(me)
                        cond.notify_all()
                        return
                    self._idle += 1
                    cond.wait()
                    self._idle -= 1
                queue = ready.popleft()
            queue._run_batch(me)


class SerialQueue:
    """One client's calls on a :class:`DispatchPool`: arrival order, one at a time.

    Bounded: a producer finding ``maxsize`` calls queued waits, except on the I/O loop
    (``never_block()`` true), which must never wait: there the call is queued anyway and
    ``on_full()`` runs once, ``on_drained()`` when the queue is back under half (the
    connection pauses its reading meanwhile, so TCP pushes back on the server).
    Lifecycle notices (``urgent=True``) may exceed the bound.
    """

    #: calls run per turn on a worker before other clients get theirs
    batch = 256

    def __init__(
        self,
        pool: DispatchPool,
        maxsize: int = 10_000,
        *,
        never_block: Callable[[], bool] = lambda: False,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.pool = pool
        self.maxsize = maxsize
        self.never_block = never_block
        self.on_full: Callable[[], None] | None = None
        self.on_drained: Callable[[], None] | None = None
        self._queue: collections.deque[Task] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._scheduled = False  # in the pool's ready list or running on a worker
        self._running: threading.Thread | None = None
        self._blocked = 0  # producers waiting for room
        self._full = False  # on_full ran, on_drained not yet

    def submit(self, fn: Callable[..., Any], *args: Any, urgent: bool = False) -> None:
        """Queue ``fn(*args)``; blocks while the queue is full unless ``urgent`` (or on the
        loop, see the class doc)."""
        cond = self._cond
        full_hook = None
        with cond:
            queue = self._queue
            if not urgent and len(queue) >= self.maxsize:
                if self.never_block():
                    if not self._full:
                        self._full = True
                        full_hook = self.on_full
                elif threading.current_thread() is not self._running:
                    self._blocked += 1
                    while len(queue) >= self.maxsize:
                        cond.wait(0.5)
                    self._blocked -= 1
            queue.append((fn, args))
            schedule = not self._scheduled
            if schedule:
                self._scheduled = True
        if schedule:
            self.pool._schedule(self)
        if full_hook is not None:
            full_hook()

    def in_dispatcher(self) -> bool:
        """True on the worker currently running this client's calls."""
        return threading.current_thread() is self._running

    def qsize(self) -> int:
        return len(self._queue)

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far ran (not from this queue's own worker, nor
        from a thread that must not block); True when it did."""
        if self.in_dispatcher() or self.never_block():
            return False
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._scheduled:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def _run_batch(self, worker: threading.Thread) -> None:
        cond = self._cond
        queue = self._queue
        with cond:
            n = min(len(queue), self.batch)
            tasks = [queue.popleft() for _ in range(n)]
            self._running = worker
            if self._blocked:
                cond.notify_all()
        for fn, args in tasks:
            try:
                fn(*args)
            except Exception:
                log.exception("handler %s raised", getattr(fn, "__qualname__", fn))
        drained_hook = None
        with cond:
            self._running = None
            if self._full and len(queue) <= self.maxsize // 2:
                self._full = False
                drained_hook = self.on_drained
            again = bool(queue)
            if not again:
                self._scheduled = False
                cond.notify_all()
        if drained_hook is not None:
            try:
                drained_hook()
            except Exception:
                log.exception("dispatcher drained hook failed")
        if again:
            self.pool._schedule(self)


_shared_lock = threading.Lock()
_shared_pool: DispatchPool | None = None


def shared_pool() -> DispatchPool:
    """The process-wide dispatcher pool every client uses unless given its own."""
    global _shared_pool
    with _shared_lock:
        if _shared_pool is None:
            _shared_pool = DispatchPool()
        return _shared_pool
