"""One Socket.IO namespace on a shared connection: handlers, acks, offline buffer, recovery.

A :class:`Socket` never touches the network itself; it asks its manager (the owner of the
Engine.IO connection) to send, and the manager's reader thread hands it decoded packets.
Ack futures resolve on the reader thread, so a handler blocked in ``call()`` gets its answer;
handlers and ack callbacks run on the client's queue of the shared dispatcher pool, in arrival
order.
"""

from __future__ import annotations

import collections
import enum
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from sio_mqtt.engineio.loop import TimerHandle
from sio_mqtt.engineio.packet import check_message_sizes
from sio_mqtt.errors import (
    AckCancelled,
    AckTimeout,
    BufferFullError,
    ConnectError,
    NotConnectedError,
    PayloadTooLargeError,
    ReservedEventError,
)
from sio_mqtt.socketio.packet import RESERVED_EVENTS, Packet, PacketType

if TYPE_CHECKING:
    from sio_mqtt.socketio.client import Manager

log = logging.getLogger("sio_mqtt.socketio")

Handler = Callable[..., Any]
AuthSource = Mapping[str, Any] | Callable[[], Mapping[str, Any] | None] | None
F = TypeVar("F", bound=Handler)

#: lifecycle events delivered through ``on()`` that a server can never send as data
LIFECYCLE_EVENTS = frozenset(
    {
        "connect",
        "disconnect",
        "connect_error",
        "reconnect_attempt",
        "reconnect",
        "reconnect_error",
        "reconnect_failed",
    }
)

IO_SERVER_DISCONNECT = "io server disconnect"
IO_CLIENT_DISCONNECT = "io client disconnect"


class _Default(enum.Enum):
    TIMEOUT = "default"  # call(): the client's ack_timeout, else 60 s


class SocketState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"


class _WakePair:
    """A thread's private socket pair for being woken from ``call()`` (see _CallWaiter)."""

    __slots__ = ("recv_end", "send_end", "timeout")

    def __init__(self) -> None:
        self.recv_end, self.send_end = socket.socketpair()
        self.send_end.setblocking(False)  # the reader thread must never block waking someone
        self.timeout: float | None = -1.0  # what recv_end's timeout is set to (-1: unset)

    def __del__(self) -> None:  # the thread ended: its thread-local pair goes
        self.recv_end.close()
        self.send_end.close()


_wake_pairs = threading.local()


class _CallWaiter:
    """The one-shot result slot of a ``call()``; the caller sleeps in ``recv`` on a socket.

    Why not a Future or a Lock: the reader thread resolves it while holding the GIL, so a
    lock-woken caller immediately blocks again on the GIL and is woken a second time when the
    reader gets back to its socket (two wake-ups on the round trip's critical path, plus a
    preempted reader). ``socket.send`` releases the GIL before it wakes the caller, which then
    runs at once. Resolved exactly once: every resolver first pops the ack from ``_acks`` under
    the socket's lock. A byte left over from an earlier waiter of the same thread (resolved
    after its caller stopped waiting) only costs one extra loop.
    """

    __slots__ = ("_done", "_error", "_pair", "_value")

    def __init__(self) -> None:
        pair: _WakePair | None = getattr(_wake_pairs, "pair", None)
        if pair is None:
            pair = _wake_pairs.pair = _WakePair()
        self._pair = pair
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._done

    def set_result(self, value: Any) -> None:
        self._value = value
        self._done = True
        self._wake()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._done = True
        self._wake()

    def _wake(self) -> None:
        try:
            self._pair.send_end.send(b"\0")
        except OSError:  # full (the caller has plenty to wake on) or closed (it is gone)
            pass

    def result(self, timeout: float | None) -> Any:
        """The value; raises the error, or FutureTimeoutError when ``timeout`` passed."""
        if not self._done:
            pair = self._pair
            wait = timeout  # the same every call in the common case: no settimeout syscall
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._done:
                if wait is not None and wait <= 0:
                    raise FutureTimeoutError()
                if wait != pair.timeout:
                    pair.recv_end.settimeout(wait)
                    pair.timeout = wait
                try:
                    pair.recv_end.recv(64)
                except TimeoutError:
                    pass
                if deadline is not None:
                    wait = deadline - time.monotonic()
        if self._error is not None:
            raise self._error
        return self._value


class PendingAck:
    """An emit waiting for its acknowledgement."""

    __slots__ = ("callback", "future", "messages", "sent", "timer")

    def __init__(
        self, future: Future[Any] | _CallWaiter | _RetryTry, callback: Handler | None
    ) -> None:
        self.future = future
        self.callback = callback
        self.sent = False
        self.timer: TimerHandle | None = None
        self.messages: list[str | bytes] = []


class _Queued:
    """An emit of the retry queue (``retries=``): resent with a new ack id until acked."""

    __slots__ = ("args", "callback", "event", "future", "pending", "timeout", "tries")

    def __init__(
        self,
        event: str,
        args: tuple[Any, ...],
        future: Future[Any] | None,
        callback: Handler | None,
        timeout: float | None,
    ) -> None:
        self.event = event
        self.args = args
        self.future = future
        self.callback = callback  # run by the ack of the try that succeeds
        self.timeout = timeout
        self.pending = False  # a try is in flight
        self.tries = 0

    def succeed(self, value: Any) -> None:
        if self.future is not None and not self.future.done():
            try:
                self.future.set_result(value)
            except Exception:  # cancelled by the user meanwhile
                pass

    def fail(self, error: BaseException) -> None:
        if self.future is not None and not self.future.done():
            try:
                self.future.set_exception(error)
            except Exception:
                pass


class _RetryTry:
    """The ack slot of one try of a queued emit: resolving it moves the queue on."""

    __slots__ = ("_done", "_item", "_socket")

    def __init__(self, socket: Socket, item: _Queued) -> None:
        self._socket = socket
        self._item = item
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, value: Any) -> None:
        if not self._done:
            self._done = True
            self._socket._retry_try_done(self._item, value, None)

    def set_exception(self, error: BaseException) -> None:
        if not self._done:
            self._done = True
            self._socket._retry_try_done(self._item, None, error)


class Ack:
    """Answers a server's ack request later, from any thread (handlers registered
    with ``with_ack=True`` receive one as their first argument). Only the first call counts."""

    __slots__ = ("_done", "_lock", "_send")

    def __init__(self, send: Callable[[tuple[Any, ...]], None]) -> None:
        self._send = send
        self._done = False
        self._lock = threading.Lock()

    def __call__(self, *args: Any) -> None:
        """Answer; raises PayloadTooLargeError (leaving the ack unanswered) when the answer
        exceeds the server's maxPayload, so a smaller one can still be sent."""
        with self._lock:
            if self._done:
                return
            self._done = True
        try:
            self._send(args)
        except PayloadTooLargeError:
            self._done = False
            raise

    @property
    def done(self) -> bool:
        return self._done


def ack_value(args: list[Any]) -> Any:
    """What a future holds for an ack: None, the single value, or a tuple of several."""
    if not args:
        return None
    if len(args) == 1:
        return args[0]
    return tuple(args)


class Socket:
    """A namespace: register handlers with :meth:`on`, then :meth:`connect`, :meth:`emit`,
    :meth:`emit_with_ack` and :meth:`call`. Get one from ``Client.socket("/ns")``."""

    def __init__(self, manager: Manager, namespace: str = "/", auth: AuthSource = None) -> None:
        if not namespace.startswith("/"):
            raise ValueError(f"a namespace starts with '/', got {namespace!r}")
        self._manager = manager
        self._namespace = namespace
        self._auth = auth
        self._handlers: dict[str, tuple[Handler, bool]] = {}
        self._any_handlers: list[tuple[Handler, bool]] = []
        self._lock = threading.RLock()
        self._state = SocketState.DISCONNECTED
        #: True while this namespace should be (re)connected; False after a user or server
        #: disconnect or a refused CONNECT
        self._active = False
        self._sid: str | None = None
        self._pid: str | None = None
        self._offset: str | None = None
        self.recovered = False
        self._acks: dict[int, PendingAck] = {}
        self._next_ack_id = 0
        self._buffer: collections.deque[
            tuple[list[str | bytes], PendingAck | None, tuple[str, tuple[Any, ...]] | None]
        ] = collections.deque()
        self._retry_queue: collections.deque[_Queued] = collections.deque()
        self._out_handlers: list[Handler] = []
        #: volatile emits dropped because the connection could not take them
        self.volatile_dropped = 0
        self._connect_waiter: threading.Event | None = None
        self._connect_error: ConnectError | None = None

    # -- properties --------------------------------------------------------------------------
    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def connected(self) -> bool:
        return self._state is SocketState.CONNECTED

    @property
    def sid(self) -> str | None:
        """The namespace's Socket.IO sid (not the Engine.IO one); None while disconnected."""
        return self._sid if self._state is SocketState.CONNECTED else None

    @property
    def transport(self) -> str | None:
        return self._manager.transport

    @property
    def max_payload(self) -> int | None:
        """The server's ``maxPayload`` in bytes (from the latest handshake; None before the
        first connect). A larger message is refused with :class:`PayloadTooLargeError`."""
        return self._manager.max_payload

    @property
    def recovery_state(self) -> tuple[str, str | None] | None:
        """``(pid, offset)`` of connection-state recovery, or None when the server offers none.

        Persist it (with :meth:`restore_recovery_state` after a restart) to recover the events
        a restarted process missed, as long as the server still holds the session."""
        pid = self._pid
        return (pid, self._offset) if pid is not None else None

    def restore_recovery_state(self, pid: str, offset: str | None) -> None:
        """Ask the next CONNECT to recover session ``pid`` from ``offset`` (see recovery_state)."""
        with self._lock:
            self._pid = pid
            self._offset = offset

    @property
    def buffered(self) -> int:
        """Emits waiting in the offline buffer."""
        return len(self._buffer)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self._manager.url!r} namespace={self._namespace!r} "
            f"state={self._state.value}>"
        )

    # -- handlers ----------------------------------------------------------------------------
    def on(self, event: str, handler: Handler | None = None, *, with_ack: bool = False) -> Any:
        """Register ``handler`` for ``event`` (also usable as a decorator).

        The handler gets the event's arguments; its return value answers the server's ack
        (a tuple answers with several arguments). With ``with_ack=True`` it instead gets an
        :class:`Ack` first (None when the server asked for none) to answer later, from any thread.
        """
        if not isinstance(event, str) or not event:
            raise ValueError("an event name is a non-empty string")

        def register(fn: F) -> F:
            self._handlers[event] = (fn, with_ack)
            return fn

        if handler is None:
            return register
        register(handler)
        return handler

    def off(self, event: str) -> None:
        self._handlers.pop(event, None)

    def on_any(self, handler: Handler | None = None, *, with_ack: bool = False) -> Any:
        """Register a catch-all handler ``handler(event, *args)`` for the server's events.

        It runs before the event's own handler. When the event has no own handler, the
        catch-all's return value answers the server's ack (``with_ack`` as for :meth:`on`,
        the Ack coming after the event name).
        """

        def register(fn: F) -> F:
            self._any_handlers.append((fn, with_ack))
            return fn

        if handler is None:
            return register
        register(handler)
        return handler

    def prepend_any(self, handler: Handler, *, with_ack: bool = False) -> Handler:
        """As :meth:`on_any`, but runs before the catch-alls registered so far."""
        self._any_handlers.insert(0, (handler, with_ack))
        return handler

    def off_any(self, handler: Handler | None = None) -> None:
        """Remove catch-all ``handler`` (its first registration), or all of them."""
        if handler is None:
            self._any_handlers.clear()
            return
        for i, (fn, _) in enumerate(self._any_handlers):
            if fn is handler or fn == handler:
                del self._any_handlers[i]
                return

    def on_any_outgoing(self, handler: Handler | None = None) -> Any:
        """Register ``handler(event, *args)`` for every event this socket sends (binary
        included; each try in retry mode; not a dropped volatile emit). It runs on the
        dispatcher, in send order (also usable as a decorator)."""

        def register(fn: F) -> F:
            self._out_handlers.append(fn)
            return fn

        if handler is None:
            return register
        register(handler)
        return handler

    def prepend_any_outgoing(self, handler: Handler) -> Handler:
        """As :meth:`on_any_outgoing`, but runs before those registered so far."""
        self._out_handlers.insert(0, handler)
        return handler

    def off_any_outgoing(self, handler: Handler | None = None) -> None:
        """Remove outgoing catch-all ``handler`` (its first registration), or all of them."""
        if handler is None:
            self._out_handlers.clear()
            return
        for i, fn in enumerate(self._out_handlers):
            if fn is handler or fn == handler:
                del self._out_handlers[i]
                return

    # -- connect / disconnect ----------------------------------------------------------------
    @property
    def active(self) -> bool:
        """True while this namespace is meant to be connected: connecting, connected, or
        waiting for the client's reconnection (as ``socket.active`` in the reference client)."""
        return self._active

    def connect(
        self, timeout: float | None = None, *, wait: bool = True, retry: bool = False
    ) -> None:
        """Connect this namespace (opening the shared connection first if needed).

        By default blocks until the server accepts it and raises :class:`ConnectError` (after
        a ``connect_error`` event) when the server refuses, the transport cannot be opened, or
        ``timeout`` (default: the client's ``connect_timeout``) passes.

        ``wait=False`` returns at once: the connection opens in the background and a failed
        open follows the reconnection policy (``connect_error``, ``reconnect_attempt(n)``,
        ``reconnect_error(err)``, finally ``reconnect_failed()``), as the reference client's
        ``io()`` does. ``retry=True`` applies that policy while blocking and raises after the
        last attempt (``timeout`` then bounds the whole series; default: no bound).
        """
        manager = self._manager
        with self._lock:
            if self._state is SocketState.CONNECTED:
                return
            waiter = threading.Event() if wait else None
            if wait or self._connect_waiter is None:
                self._connect_waiter = waiter
            self._connect_error = None
            self._active = True
        if waiter is None:
            manager.connect_socket(self, block=False)
            return
        if retry:
            manager.connect_socket(self, block=False)
        else:
            timeout = manager.connect_timeout if timeout is None else timeout
            try:
                manager.connect_socket(self, block=True)
            except ConnectError:
                with self._lock:
                    self._active = False
                    if self._connect_waiter is waiter:
                        self._connect_waiter = None
                manager.release(self)
                raise
        if not waiter.wait(timeout):
            with self._lock:
                self._active = False
                self._connect_waiter = None
                self._state = SocketState.DISCONNECTED
            error = ConnectError(
                f"namespace {self._namespace!r} not connected within {timeout:g} s"
            )
            self._fire("connect_error", (error,))
            manager.release(self)
            raise error
        with self._lock:
            refused = self._connect_error
        if refused is not None:
            raise refused

    def _abort_connect(self, error: ConnectError) -> None:
        """Wake a ``connect()`` waiting for this namespace with ``error``."""
        with self._lock:
            waiter = self._connect_waiter
            self._connect_waiter = None
            if waiter is not None:
                self._connect_error = error
        if waiter is not None:
            waiter.set()

    def _abandon(self, error: ConnectError) -> None:
        """Nothing will connect this namespace any more (the client gave up)."""
        with self._lock:
            self._active = False
            if self._state is SocketState.CONNECTING:
                self._state = SocketState.DISCONNECTED
        self._abort_connect(error)
        self._fail_buffered(error.message)

    def disconnect(self) -> None:
        """Leave this namespace ("io client disconnect"); the connection closes when no
        namespace uses it any more."""
        with self._lock:
            was = self._state
            self._active = False
            self._state = SocketState.DISCONNECTED
        if was is not SocketState.DISCONNECTED:
            try:
                self._manager.send(self._namespace, Packet(PacketType.DISCONNECT, self._namespace))
            except NotConnectedError:
                pass
        self._abort_connect(ConnectError("disconnected while connecting"))
        self._on_lost(IO_CLIENT_DISCONNECT, was)
        self._manager.release(self)

    def _auth_payload(self) -> dict[str, Any] | None:
        auth = self._auth() if callable(self._auth) else self._auth
        payload = dict(auth) if auth else {}
        if self._pid is not None:
            payload["pid"] = self._pid
            if self._offset is not None:
                payload["offset"] = self._offset
        return payload or None

    def _send_connect(self) -> None:
        """Send CONNECT (with fresh auth, and pid/offset for recovery). Caller holds the lock."""
        try:
            payload = self._auth_payload()
        except Exception as exc:
            self._refused(ConnectError(f"auth callable failed: {type(exc).__name__}"))
            return
        self._state = SocketState.CONNECTING
        try:
            self._manager.send(
                self._namespace, Packet(PacketType.CONNECT, self._namespace, payload)
            )
        except PayloadTooLargeError as exc:
            self._refused(ConnectError(f"the CONNECT packet (auth) is too large: {exc}"))

    # -- emitting ----------------------------------------------------------------------------
    def emit(self, event: str, *args: Any, volatile: bool = False) -> None:
        """Send an event; bytes anywhere in ``args`` make it a binary event. While
        disconnected it is buffered (bounded) and sent in order after (re)connecting.

        ``volatile=True``: dropped instead (not buffered) when not connected or when the
        transport cannot take a write right now, as the reference client's ``volatile``.
        In retry mode (``retries=``) every other emit waits for its ack, see the README."""
        if event in RESERVED_EVENTS or event.__class__ is not str:
            raise ReservedEventError(f"{event!r} is reserved or not a string event name")
        if volatile:
            if not self._volatile_ok(event):
                return
        elif self._retries:
            self._enqueue_retry(event, args, None, None, None)
            return
        messages = self._manager.encode_event(self._namespace, event, args, None)
        self._send_or_buffer(messages, None, (event, args) if self._out_handlers else None)

    def emit_with_ack(
        self,
        event: str,
        *args: Any,
        timeout: float | None = None,
        callback: Handler | None = None,
        volatile: bool = False,
    ) -> Future[Any]:
        """Send an event asking for an ack; returns a Future of the ack's value (None, the
        value, or a tuple for several). ``callback(*ack_args)`` runs on the dispatcher.
        The future fails with AckTimeout after ``timeout`` (default: the client's
        ``ack_timeout``) and with AckCancelled at once when the connection is lost after the
        event was sent. ``volatile=True``: a dropped emit (see :meth:`emit`) fails the future
        with NotConnectedError at once. In retry mode ``timeout`` is the wait of each try."""
        future: Future[Any] = Future()
        if timeout is None:
            timeout = self._manager.ack_timeout
        if volatile:
            if not self._volatile_ok(event):
                future.set_exception(NotConnectedError(f"volatile emit of {event!r} dropped"))
                return future
        elif self._retries:
            self._enqueue_retry(event, args, future, callback, timeout)
            return future
        self._emit_ack(event, args, timeout, PendingAck(future, callback))
        return future

    @property
    def _retries(self) -> int:
        return self._manager.retries

    def _volatile_ok(self, event: str) -> bool:
        """A volatile emit goes out now or never."""
        if event in RESERVED_EVENTS or event.__class__ is not str:
            raise ReservedEventError(f"{event!r} is reserved or not a string event name")
        if self._state is SocketState.CONNECTED and self._manager.writable:
            return True
        self.volatile_dropped += 1
        log.debug("volatile emit of %r on %s dropped: not writable", event, self._namespace)
        return False

    def _emit_ack(
        self, event: str, args: tuple[Any, ...], timeout: float | None, pending: PendingAck
    ) -> int:
        if event in RESERVED_EVENTS or event.__class__ is not str:
            raise ReservedEventError(f"{event!r} is reserved or not a string event name")
        with self._lock:
            ack_id = self._next_ack_id
            self._next_ack_id = ack_id + 1
            self._acks[ack_id] = pending
        messages = self._manager.encode_event(self._namespace, event, args, ack_id)
        if timeout is not None:
            pending.timer = self._manager.call_later(
                timeout, lambda: self._ack_timed_out(ack_id, timeout)
            )
        try:
            self._send_or_buffer(messages, pending, (event, args) if self._out_handlers else None)
        except (BufferFullError, PayloadTooLargeError):
            with self._lock:
                self._acks.pop(ack_id, None)
            if pending.timer is not None:
                pending.timer.cancel()
            raise
        return ack_id

    def call(
        self,
        event: str,
        *args: Any,
        timeout: float | Literal[_Default.TIMEOUT] | None = _Default.TIMEOUT,
    ) -> Any:
        """Emit and wait for the ack; returns its value. Raises AckTimeout (a TimeoutError)
        after ``timeout`` seconds (None: no bound; default: the client's ``ack_timeout``, else
        60 s; in retry mode: until the last try failed)."""
        manager = self._manager
        if self._retries:  # at-least-once: the queue's tries, each ack_timeout long
            if timeout is _Default.TIMEOUT:
                timeout = None if manager.ack_timeout is not None else 60.0
            future = self.emit_with_ack(event, *args)
            try:
                return future.result(timeout)
            except AckTimeout:  # the last try's (a TimeoutError too)
                raise
            except FutureTimeoutError:
                raise AckTimeout(
                    f"no ack within {timeout:g} s (namespace {self._namespace!r})"
                ) from None
        if timeout is _Default.TIMEOUT:
            timeout = manager.ack_timeout if manager.ack_timeout is not None else 60.0
        # the caller's own wait is the deadline: no scheduler entry (and wake-up) per call
        waiter = _CallWaiter()
        ack_id = self._emit_ack(event, args, None, PendingAck(waiter, None))
        try:
            return waiter.result(timeout)
        except FutureTimeoutError:
            self._ack_timed_out(ack_id, timeout or 0.0)
            return waiter.result(1.0)  # the ack if it won the race (being set now), else AckTimeout

    # -- retry mode: at-least-once, one emit in flight at a time -------------------------------
    def _enqueue_retry(
        self,
        event: str,
        args: tuple[Any, ...],
        future: Future[Any] | None,
        callback: Handler | None,
        timeout: float | None,
    ) -> None:
        if event in RESERVED_EVENTS or event.__class__ is not str:
            raise ReservedEventError(f"{event!r} is reserved or not a string event name")
        limit = self._manager.max_payload
        if limit is not None:  # refuse now what could never be sent
            check_message_sizes(
                self._manager.encode_event(self._namespace, event, args, 0), limit, polling=False
            )
        if timeout is None:
            timeout = self._manager.ack_timeout
        with self._lock:
            if len(self._retry_queue) >= self._manager.buffer_size:
                raise BufferFullError(
                    f"retry queue of namespace {self._namespace!r} is full "
                    f"({self._manager.buffer_size} emits waiting for their ack)"
                )
            self._retry_queue.append(_Queued(event, args, future, callback, timeout))
        self._drain_retry()

    def _drain_retry(self, force: bool = False) -> None:
        """Send the head of the retry queue (a new try, with a new ack id) unless it is in
        flight; only while connected: the queue waits while disconnected."""
        with self._lock:
            if self._state is not SocketState.CONNECTED or not self._retry_queue:
                return
            item = self._retry_queue[0]
            if item.pending and not force:
                return
            item.pending = True
            item.tries += 1
            ack_id = self._next_ack_id
            self._next_ack_id = ack_id + 1
            attempt = _RetryTry(self, item)
            pending = PendingAck(attempt, item.callback)
            self._acks[ack_id] = pending
            try:
                messages = self._manager.encode_event(
                    self._namespace, item.event, item.args, ack_id
                )
                pending.sent = True
                self._manager.send_messages(messages)
            except NotConnectedError:
                self._acks.pop(ack_id, None)
                item.pending = False  # sent again once connected
                item.tries -= 1
                return
            except PayloadTooLargeError as exc:
                self._acks.pop(ack_id, None)
                self._retry_queue.popleft()
                failed: Exception | None = exc
            else:
                failed = None
                if item.timeout is not None:
                    timeout = item.timeout
                    pending.timer = self._manager.call_later(
                        timeout, lambda: self._ack_timed_out(ack_id, timeout)
                    )
        if failed is not None:
            log.warning("emit of %r on %s dropped: %s", item.event, self._namespace, failed)
            item.fail(failed)
            self._drain_retry()
            return
        self._notify_outgoing(item.event, item.args)

    def _retry_try_done(self, item: _Queued, value: Any, error: BaseException | None) -> None:
        """A try of ``item`` was acked (``error`` None) or failed (timeout, connection lost)."""
        with self._lock:
            if not self._retry_queue or self._retry_queue[0] is not item:
                return  # acknowledged already
            item.pending = False
            if error is not None and item.tries <= self._retries:
                done = False  # tries left: the next drain resends it
            else:
                self._retry_queue.popleft()
                done = True
        if done:
            if error is None:
                item.succeed(value)
            else:
                log.info(
                    "emit of %r on %s failed after %d tries: %s",
                    item.event,
                    self._namespace,
                    item.tries,
                    error,
                )
                item.fail(error)
        self._drain_retry()

    # -- outgoing listeners ----------------------------------------------------------------------
    def _notify_outgoing(self, event: str, args: tuple[Any, ...]) -> None:
        """Tell the outgoing catch-alls about a sent event (on the dispatcher, in order)."""
        for handler in list(self._out_handlers):
            self._manager.dispatcher.submit(handler, event, *args)

    def _send_or_buffer(
        self,
        messages: list[str | bytes],
        pending: PendingAck | None,
        outgoing: tuple[str, tuple[Any, ...]] | None = None,
    ) -> None:
        # fast path without the lock: the buffer was flushed before the state became CONNECTED
        if self._state is SocketState.CONNECTED and self._send_now(messages, pending):
            if outgoing is not None:
                self._notify_outgoing(*outgoing)
            return
        with self._lock:
            if self._state is SocketState.CONNECTED and self._send_now(messages, pending):
                if outgoing is not None:
                    self._notify_outgoing(*outgoing)
                return
            limit = self._manager.max_payload
            if limit is not None:  # the last server's limit: refuse now what cannot be sent
                check_message_sizes(messages, limit, polling=False)
            if len(self._buffer) >= self._manager.buffer_size:
                raise BufferFullError(
                    f"offline buffer of namespace {self._namespace!r} is full "
                    f"({self._manager.buffer_size} emits); the connection is down"
                )
            if pending is not None:
                pending.messages = messages
            self._buffer.append((messages, pending, outgoing))

    def _send_now(self, messages: list[str | bytes], pending: PendingAck | None) -> bool:
        """Send on the live connection; False (nothing sent) when it was lost meanwhile."""
        if pending is not None:
            pending.sent = True  # first: a connection lost during the write must cancel the ack
        try:
            self._manager.send_messages(messages)
            return True
        except NotConnectedError:
            if pending is not None:
                pending.sent = False
            return False

    def _flush_buffer(self) -> None:
        """Send what was buffered while offline, in order. Caller holds the lock."""
        while self._buffer:
            messages, pending, outgoing = self._buffer[0]
            if pending is not None and pending.future.done():
                self._buffer.popleft()  # timed out while buffered
                continue
            try:
                self._manager.send_messages(messages)
            except PayloadTooLargeError as exc:  # the new server's maxPayload is smaller
                self._buffer.popleft()
                log.warning("buffered emit for namespace %s dropped: %s", self._namespace, exc)
                if pending is not None:
                    self._fail_pending(pending, exc)
                continue
            self._buffer.popleft()
            if pending is not None:
                pending.sent = True
            if outgoing is not None:
                self._notify_outgoing(*outgoing)

    def _fail_pending(self, pending: PendingAck, exc: Exception) -> None:
        """Fail an emit's ack that will never be sent (caller may hold the lock)."""
        for ack_id, p in list(self._acks.items()):
            if p is pending:
                del self._acks[ack_id]
        if pending.timer is not None:
            pending.timer.cancel()
        if not pending.future.done():
            pending.future.set_exception(exc)

    def _ack_timed_out(self, ack_id: int, timeout: float) -> None:
        with self._lock:
            pending = self._acks.pop(ack_id, None)
            if pending is None:
                return
            if not pending.sent:
                for i, item in enumerate(self._buffer):
                    if item[1] is pending:
                        del self._buffer[i]
                        break
        if not pending.future.done():
            pending.future.set_exception(
                AckTimeout(f"no ack within {timeout:g} s (namespace {self._namespace!r})")
            )

    # -- packets from the reader thread --------------------------------------------------------
    def _on_packet(self, packet: Packet) -> None:
        kind = packet.type
        if kind is PacketType.EVENT or kind is PacketType.BINARY_EVENT:
            if self._state is SocketState.DISCONNECTED:
                return  # not ours (any more)
            data = packet.data
            if (
                self._pid is not None
                and packet.id is None
                and len(data) > 1
                and data[-1].__class__ is str
            ):
                # connection-state recovery: the server appended the offset to the event
                self._offset = data.pop()
            self._manager.dispatcher.submit(self._run_event, data[0], data[1:], packet.id)
        elif kind is PacketType.ACK or kind is PacketType.BINARY_ACK:
            self._on_ack(packet)
        elif kind is PacketType.CONNECT:
            self._on_connect(packet.data)
        elif kind is PacketType.CONNECT_ERROR:
            data = packet.data if isinstance(packet.data, dict) else {}
            message = str(data.get("message", "connection refused"))
            self._refused(ConnectError(message, data.get("data")))
        elif kind is PacketType.DISCONNECT:
            with self._lock:
                was = self._state
                self._active = False
                self._state = SocketState.DISCONNECTED
            self._on_lost(IO_SERVER_DISCONNECT, was)
            self._manager.release(self)

    def _on_ack(self, packet: Packet) -> None:
        ack_id = packet.id
        with self._lock:
            pending = self._acks.pop(ack_id, None) if ack_id is not None else None
        if pending is None:
            log.debug("ack %s for namespace %s matches no emit", ack_id, self._namespace)
            return
        if pending.timer is not None:
            pending.timer.cancel()
        args = packet.data
        if not pending.future.done():
            try:
                pending.future.set_result(ack_value(args))
            except Exception:  # cancelled by the user meanwhile
                pass
        if pending.callback is not None:
            self._manager.dispatcher.submit(pending.callback, *args)

    def _on_connect(self, data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
            self._refused(
                ConnectError("the server's CONNECT reply has no sid (a Socket.IO v2/v3 server?)")
            )
            return
        with self._lock:
            if self._state is not SocketState.CONNECTING:
                log.debug("unexpected CONNECT for namespace %s", self._namespace)
                return
            pid = data.get("pid")
            pid = pid if isinstance(pid, str) else None
            self.recovered = pid is not None and pid == self._pid
            self._pid = pid
            self._sid = data["sid"]
            try:
                self._flush_buffer()
            except NotConnectedError:
                return  # the connection dropped again; the buffer waits for the next one
            self._state = SocketState.CONNECTED
            waiter = self._connect_waiter
            self._connect_waiter = None
        if self._retry_queue:
            self._drain_retry(force=True)  # the try in flight was lost with the connection
        self._fire("connect", ())
        if waiter is not None:
            waiter.set()

    def _refused(self, error: ConnectError) -> None:
        with self._lock:
            self._active = False
            self._state = SocketState.DISCONNECTED
            waiter = self._connect_waiter
            self._connect_waiter = None
            self._connect_error = error
        log.info("namespace %s refused: %s", self._namespace, error.message)
        self._fire("connect_error", (error,))
        if waiter is not None:
            waiter.set()
        self._manager.release(self)

    def _on_transport_lost(self, reason: str) -> None:
        """The Engine.IO connection ended (called by the manager)."""
        with self._lock:
            was = self._state
            self._state = SocketState.DISCONNECTED
            waiter = self._connect_waiter
            if waiter is not None and not self._manager.will_reconnect(reason):
                self._connect_waiter = None
                self._connect_error = ConnectError(f"connection lost while connecting: {reason}")
                self._active = False
            else:
                waiter = None
        self._on_lost(reason, was)
        if waiter is not None:
            waiter.set()

    def _on_lost(self, reason: str, was: SocketState) -> None:
        """Fail the acks that were sent (they will never come), tell the handlers."""
        with self._lock:
            lost = [(i, p) for i, p in self._acks.items() if p.sent]
            for ack_id, _ in lost:
                del self._acks[ack_id]
        for _, pending in lost:
            if pending.timer is not None:
                pending.timer.cancel()
            if not pending.future.done():
                pending.future.set_exception(
                    AckCancelled(f"connection lost before the ack arrived ({reason})")
                )
        if was is SocketState.CONNECTED:
            self._fire("disconnect", (reason,), urgent=True)

    def _fail_buffered(self, reason: str) -> None:
        """The socket will never reconnect: fail the acks still waiting in the buffer."""
        with self._lock:
            pendings = [p for _, p, _ in self._buffer if p is not None]
            self._buffer.clear()
            queued = list(self._retry_queue)
            self._retry_queue.clear()
        for item in queued:
            item.fail(AckCancelled(reason))
        with self._lock:
            for ack_id in [i for i, p in self._acks.items() if p in pendings]:
                del self._acks[ack_id]
        for pending in pendings:
            if pending.timer is not None:
                pending.timer.cancel()
            if not pending.future.done():
                pending.future.set_exception(AckCancelled(reason))

    # -- running handlers (dispatcher thread) --------------------------------------------------
    def _fire(self, event: str, args: tuple[Any, ...], urgent: bool = False) -> None:
        """Run the handler of lifecycle ``event`` on the dispatcher: the one registered now,
        as the event happens (one registered later is not called for it, as in JS)."""
        entry = self._handlers.get(event)
        if entry is not None:
            self._manager.dispatcher.submit(entry[0], *args, urgent=urgent)

    def _run_event(self, event: str, args: list[Any], ack_id: int | None) -> None:
        ack = Ack(lambda values: self._send_ack(ack_id, values)) if ack_id is not None else None
        entry = self._handlers.get(event)
        deferred = False  # a with_ack handler owns the answer
        result: Any = None
        for handler, with_ack in self._any_handlers:
            try:
                if with_ack:
                    handler(event, ack, *args)
                    deferred = deferred or entry is None
                else:
                    value = handler(event, *args)
                    if entry is None and result is None:
                        result = value
            except Exception:
                log.exception("on_any handler raised for event %r", event)
        if entry is not None:
            handler, with_ack = entry
            deferred = with_ack
            try:
                if with_ack:
                    handler(ack, *args)
                else:
                    result = handler(*args)
            except Exception:
                log.exception("handler for event %r raised", event)
        if ack is not None and not deferred and not ack.done:
            try:
                if result is None:
                    ack()
                elif isinstance(result, tuple):
                    ack(*result)
                else:
                    ack(result)
            except PayloadTooLargeError as exc:
                log.error("answer to event %r not sent: %s", event, exc)

    def _send_ack(self, ack_id: int | None, values: tuple[Any, ...]) -> None:
        packet = Packet(PacketType.ACK, self._namespace, list(values), ack_id)
        try:
            self._manager.send(self._namespace, packet)
        except NotConnectedError:
            log.info("ack %s for namespace %s lost: not connected", ack_id, self._namespace)
