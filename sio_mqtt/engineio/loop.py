"""The process-wide I/O loop: one thread reads every websocket of every client (``selectors``,
epoll on Linux) and runs one timer heap for all heartbeats, ack deadlines and reconnect backoff.

Why one thread for all: a thread per connection made the thread count (and memory) a property
of the number of clients; here it is a property of the process. The loop never blocks: reading
is non-blocking, callbacks must be short (hand user code to the dispatcher pool), and blocking
work (websocket handshakes) goes to :class:`BlockingPool`, a small bounded pool.

Lifecycle: :meth:`IOLoop.acquire` starts the thread (and keeps it), :meth:`IOLoop.release` by
the last holder ends it, so no thread of the library outlives the last client.
``Client(url)`` uses :func:`shared_loop`; ``Client(url, loop=IOLoop())`` a private one.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("sio_mqtt.engineio")


def join_workers(cond: threading.Condition, live: set[threading.Thread], timeout: float) -> bool:
    """Wait until every thread of ``live`` but the caller left it (a worker removes itself
    under ``cond`` as it ends, once unheld and idle), then join them; True when they did."""
    deadline = time.monotonic() + timeout
    me = threading.current_thread()
    with cond:
        cond.notify_all()
        threads = live - {me}
        while live - {me}:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            cond.wait(left)
    for thread in threads:  # past their last line: gone in a moment
        thread.join(max(0.0, deadline - time.monotonic()))
    return True


EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE


class IOHandler(Protocol):
    """What the loop calls when a registered socket is ready (on the loop thread)."""

    def on_io(self, mask: int) -> None: ...


class TimerHandle:
    """A scheduled call; :meth:`cancel` makes it a no-op (it stays in the heap until due, or
    until a loop without holders cleans up to end)."""

    __slots__ = ("_loop", "cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[[], Any], loop: IOLoop | None = None) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False
        self._loop = loop

    def cancel(self) -> None:
        self.cancelled = True
        loop = self._loop
        if loop is not None and loop.holders == 0:
            loop._wake()  # it may be running only for this timer: let it end


class IOLoop:
    """One selector thread plus one timer heap, shared by every connection that holds it."""

    def __init__(self, name: str = "sio-mqtt-loop", handshake_workers: int = 16) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._refs = 0
        self._thread: threading.Thread | None = None
        self._selector = selectors.DefaultSelector()
        self._sel_lock = threading.Lock()  # selector bookkeeping from any thread
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, EVENT_READ, None)
        self._woken = False
        self._ready: collections.deque[Callable[[], Any]] = collections.deque()
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        #: the bounded pool for blocking handshakes (connect storms), started with the loop
        self.blocking = BlockingPool(handshake_workers, name=f"{name}-handshake")

    # -- holders -----------------------------------------------------------------------------
    def acquire(self) -> None:
        """Keep the loop running (start it if needed) until the matching :meth:`release`."""
        with self._lock:
            self._refs += 1
            self._ensure_thread()
        self.blocking.acquire()

    def release(self) -> None:
        """The last release ends the loop thread (and the handshake pool's idle workers) and,
        unless called on the loop itself, waits briefly for it to be gone."""
        self.blocking.release()
        with self._lock:
            if self._refs <= 0:
                return
            self._refs -= 1
            if self._refs:
                return
            thread = self._thread
            ending = not self._live_timers_locked()
        self._wake()
        if ending and thread is not None and thread is not threading.current_thread():
            thread.join(1.0)
        self.blocking.join(0.25)  # idle handshake workers end at once; a hanging one is not waited

    @property
    def holders(self) -> int:
        return self._refs

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def join(self, timeout: float = 5.0) -> bool:
        """Wait until the loop thread ended (after the last release); True when it did."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        ok = self._thread is None or not self._thread.is_alive()
        return ok and self.blocking.join(timeout)

    # -- scheduling ----------------------------------------------------------------------------
    def call_soon(self, fn: Callable[[], Any]) -> None:
        """Run ``fn()`` on the loop thread, soon (thread-safe)."""
        with self._lock:
            self._ready.append(fn)
            self._ensure_thread()
        if not self.in_loop():
            self._wake()

    def call_later(self, delay: float, fn: Callable[[], Any]) -> TimerHandle:
        """Run ``fn()`` on the loop thread after ``delay`` seconds (thread-safe). A timer
        keeps the loop running without holders (e.g. the ack timeout of an emit buffered
        while disconnected) until it fired or was cancelled."""
        handle = TimerHandle(time.monotonic() + max(0.0, delay), fn, self)
        with self._lock:
            heapq.heappush(self._timers, (handle.when, next(self._seq), handle))
            head = self._timers[0][2] is handle
            self._ensure_thread()
        if head and not self.in_loop():
            self._wake()
        return handle

    def _ensure_thread(self) -> None:
        """Start the thread if it is not running (caller holds the lock)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def _live_timers_locked(self) -> int:
        """Drop cancelled timers; how many are left (caller holds the lock)."""
        timers = self._timers
        if any(entry[2].cancelled for entry in timers):
            timers[:] = [entry for entry in timers if not entry[2].cancelled]
            heapq.heapify(timers)
        return len(timers)

    def _wake(self) -> None:
        with self._lock:
            if self._woken:
                return
            self._woken = True
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full: the loop has a wake-up pending anyway
            pass

    # -- sockets -------------------------------------------------------------------------------
    def register(self, sock: socket.socket, handler: IOHandler, events: int = EVENT_READ) -> None:
        with self._sel_lock:
            self._selector.register(sock, events, handler)

    def modify(self, sock: socket.socket, handler: IOHandler, events: int) -> None:
        """Change what the loop waits for on ``sock`` (0: nothing, e.g. reading paused)."""
        with self._sel_lock:
            try:
                key = self._selector.get_key(sock)
            except KeyError:
                if events:
                    self._selector.register(sock, events, handler)
            except ValueError:
                return  # closed meanwhile
            else:
                if not events:
                    self._selector.unregister(sock)
                elif key.events != events:
                    self._selector.modify(sock, events, handler)
        # no wake-up: epoll applies the change to a select() already waiting

    def unregister(self, sock: socket.socket) -> None:
        """Forget ``sock``; call before closing it (its descriptor may be reused at once)."""
        with self._sel_lock:
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass

    # -- the thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        selector = self._selector
        timers = self._timers
        ready = self._ready
        lock = self._lock
        wake_r = self._wake_r
        while True:
            with lock:
                if self._refs == 0 and not ready and not self._live_timers_locked():
                    # the last holder left and no timer is pending: end
                    self._thread = None
                    return
                if ready:
                    timeout: float | None = 0.0
                elif timers:
                    timeout = max(0.0, timers[0][0] - time.monotonic())
                else:
                    timeout = None
            try:
                events = selector.select(timeout)
            except OSError:  # a descriptor closed under us; the next round is clean
                log.debug("select failed", exc_info=True)
                events = []
            for key, mask in events:
                handler = key.data
                if handler is None:
                    # drain first, then clear: a wake-up sent in between is never swallowed
                    # (its sender saw _woken set; its callback is in _ready, run below)
                    try:
                        while wake_r.recv(4096):
                            pass
                    except OSError:
                        pass
                    with lock:
                        self._woken = False
                    continue
                try:
                    handler.on_io(mask)
                except Exception:
                    log.exception("I/O handler failed")
            now = time.monotonic()
            due: list[Callable[[], Any]] = []
            with lock:
                while timers and timers[0][0] <= now:
                    handle = heapq.heappop(timers)[2]
                    if not handle.cancelled:
                        due.append(handle.fn)
                n = len(ready)
                for _ in range(n):
                    due.append(ready.popleft())
            for fn in due:
                try:
                    fn()
                except Exception:
                    log.exception("loop callback %s failed", getattr(fn, "__qualname__", fn))


class BlockingPool:
    """At most ``workers`` threads for blocking calls (handshakes), started on demand; an idle
    worker ends after ``idle`` seconds, and all end once the last holder released the pool."""

    def __init__(self, workers: int = 8, name: str = "sio-mqtt-handshake", idle: float = 2.0):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.name = name
        self.idle = idle
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[Callable[[], Any]] = collections.deque()
        self._threads: set[threading.Thread] = set()
        self._idle = 0
        self._refs = 0
        self._counter = itertools.count(1)

    def acquire(self) -> None:
        with self._cond:
            self._refs += 1

    def release(self) -> None:
        """The last release lets idle workers end; a worker busy with a (hanging) handshake
        ends when it returns, nobody waits for it."""
        with self._cond:
            if self._refs > 0:
                self._refs -= 1
            if self._refs == 0:
                self._cond.notify_all()

    def submit(self, fn: Callable[[], Any]) -> None:
        """Run ``fn()`` on a pool thread; queued (never a new thread) when all are busy."""
        with self._cond:
            self._queue.append(fn)
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

    @property
    def threads(self) -> int:
        return len(self._threads)

    def join(self, timeout: float = 5.0) -> bool:
        """Wait until every worker ended (they do once idle and unheld); True when they did."""
        return join_workers(self._cond, self._threads, timeout)

    def _work(self) -> None:
        me = threading.current_thread()
        cond = self._cond
        while True:
            with cond:
                deadline = time.monotonic() + self.idle
                while not self._queue:
                    left = deadline - time.monotonic()
                    if self._refs == 0 or left <= 0:
                        self._threads.discard(me)
                        cond.notify_all()
                        return
                    self._idle += 1
                    cond.wait(left)
                    self._idle -= 1
                fn = self._queue.popleft()
            try:
                fn()
            except Exception:
                log.exception("blocking call %s failed", getattr(fn, "__qualname__", fn))


_shared_lock = threading.Lock()
_shared: IOLoop | None = None


def shared_loop() -> IOLoop:
    """The process-wide loop every client uses unless given its own."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = IOLoop()
        return _shared
