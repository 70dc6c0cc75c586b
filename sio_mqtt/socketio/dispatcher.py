"""The two helper threads of a client: the handler dispatcher and the deadline scheduler.

Dispatcher: runs user code (event handlers, ack callbacks, lifecycle events) on ONE thread, in
arrival order, so handlers never race each other and a slow handler never stalls the reader.
Its queue is bounded; when full, the reader waits (back-pressure reaches the server through TCP)
instead of memory growing. Lifecycle notices (``urgent=True``) may exceed the bound by a few
items so a closing connection never deadlocks on a full queue.

Scheduler: one thread for all deadlines (ack timeouts), instead of a timer thread per message.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("sio_mqtt.socketio")

Task = tuple[Callable[..., Any], tuple[Any, ...]]


class Dispatcher:
    """A single worker thread with a bounded FIFO of calls."""

    def __init__(self, maxsize: int = 10_000, name: str = "sio-mqtt-dispatcher") -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.name = name
        self._queue: collections.deque[Task | None] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._waiting = False
        self._thread: threading.Thread | None = None
        self._last_thread: threading.Thread | None = None
        self._stopping = False

    @property
    def thread(self) -> threading.Thread | None:
        """The current (or, once stopped, the last) dispatcher thread."""
        return self._thread or self._last_thread

    def start(self) -> None:
        """Start the thread, or cancel a stop that has not taken effect yet (a client that is
        connected again right after its last namespace closed keeps its dispatcher)."""
        with self._cond:
            if self._thread is not None:
                self._stopping = False  # the thread skips the stop marker it finds later
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._last_thread = self._thread
            self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any, urgent: bool = False) -> None:
        """Queue ``fn(*args)``; blocks while the queue is full unless ``urgent``."""
        cond = self._cond
        with cond:
            if not urgent:
                while len(self._queue) >= self.maxsize and not self._stopping:
                    cond.wait(0.5)
            self._queue.append((fn, args))
            if self._waiting:
                cond.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        """Run what is queued, then end the thread (not waiting when called from it)."""
        thread = self.request_stop()
        if thread is not None:
            self.wait_stopped(thread, timeout)

    def request_stop(self) -> threading.Thread | None:
        """Ask the thread to end once the queue is done, without waiting; returns the thread.
        A later :meth:`start` cancels the request if the thread has not ended yet."""
        with self._cond:
            thread = self._thread
            if thread is None:
                return None
            if not self._stopping:
                self._stopping = True
                self._queue.append(None)
                self._cond.notify_all()
            return thread

    def wait_stopped(self, thread: threading.Thread, timeout: float = 5.0) -> None:
        """Wait until ``thread`` ended, or its stop was cancelled (never from the thread itself)."""
        if thread is threading.current_thread():
            return
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._thread is thread and self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)
            if self._thread is thread:
                return  # the stop was cancelled: the thread serves a new connection
        thread.join(max(0.0, deadline - time.monotonic()))  # it is past its last line

    def in_dispatcher(self) -> bool:
        return threading.current_thread() is self._thread

    def qsize(self) -> int:
        return len(self._queue)

    def _run(self) -> None:
        cond = self._cond
        queue = self._queue
        while True:
            with cond:
                while not queue:
                    self._waiting = True
                    cond.wait()
                self._waiting = False
                batch = list(queue)
                queue.clear()
                cond.notify_all()  # producers blocked on a full queue may go on
            for task in batch:
                if task is None:
                    with cond:
                        if self._stopping:  # else start() cancelled this stop: go on
                            self._stopping = False
                            self._thread = None
                            cond.notify_all()
                            return
                    continue
                fn, args = task
                try:
                    fn(*args)
                except Exception:
                    log.exception("handler %s raised", getattr(fn, "__qualname__", fn))


class Timer:
    """A handle to cancel a scheduled call."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """Runs calls at deadlines on one thread, started on first use and ended by ``stop``."""

    def __init__(
        self, name: str = "sio-mqtt-scheduler", clock: Callable[[], float] = time.monotonic
    ):
        self.name = name
        self.clock = clock
        self._heap: list[tuple[float, int, Timer, Callable[[], Any]]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._last_thread: threading.Thread | None = None
        self._stopped = False

    def call_later(self, delay: float, fn: Callable[[], Any]) -> Timer:
        timer = Timer()
        with self._cond:
            if self._stopped:
                self._stopped = False
            heapq.heappush(self._heap, (self.clock() + delay, next(self._counter), timer, fn))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            elif self._heap[0][2] is timer:
                self._cond.notify()
        return timer

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            thread = self._thread
            self._thread = None
            self._last_thread = thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def join(self, timeout: float = 5.0) -> None:
        """Wait for a stopped scheduler's thread to end (not if a new one runs meanwhile)."""
        thread = self._last_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        cond = self._cond
        heap = self._heap
        while True:
            with cond:
                while True:
                    if self._stopped or self._thread is not threading.current_thread():
                        return
                    if heap and heap[0][2].cancelled:
                        heapq.heappop(heap)
                        continue
                    wait = heap[0][0] - self.clock() if heap else None
                    if wait is not None and wait <= 0:
                        fn = heapq.heappop(heap)[3]
                        break
                    cond.wait(wait)
            try:
                fn()
            except Exception:
                log.exception("scheduled call failed")
