"""One Socket.IO namespace on a shared connection: handlers, acks, offline buffer, recovery.

A :class:`Socket` never touches the network itself; it asks its manager (the owner of the
Engine.IO connection) to send, and the manager's reader thread hands it decoded packets.
Ack futures resolve on the reader thread, so a handler blocked in ``call()`` gets its answer;
handlers and ack callbacks run on the manager's dispatcher thread, in arrival order.
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
from typing import TYPE_CHECKING, Any, TypeVar

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
from sio_mqtt.socketio.dispatcher import Timer
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

    def __init__(self, future: Future[Any] | _CallWaiter, callback: Handler | None) -> None:
        self.future = future
        self.callback = callback
        self.sent = False
        self.timer: Timer | None = None
        self.messages: list[str | bytes] = []


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
        self._buffer: collections.deque[tuple[list[str | bytes], PendingAck | None]] = (
            collections.deque()
        )
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
    def emit(self, event: str, *args: Any) -> None:
        """Send an event; bytes anywhere in ``args`` make it a binary event. While
        disconnected it is buffered (bounded) and sent in order after (re)connecting."""
        if event in RESERVED_EVENTS or event.__class__ is not str:
            raise ReservedEventError(f"{event!r} is reserved or not a string event name")
        self._send_or_buffer(self._manager.encode_event(self._namespace, event, args, None), None)

    def emit_with_ack(
        self,
        event: str,
        *args: Any,
        timeout: float | None = None,
        callback: Handler | None = None,
    ) -> Future[Any]:
        """Send an event asking for an ack; returns a Future of the ack's value (None, the
        value, or a tuple for several). ``callback(*ack_args)`` runs on the dispatcher.
        The future fails with AckTimeout after ``timeout`` and with AckCancelled at once when
        the connection is lost after the event was sent."""
        future: Future[Any] = Future()
        self._emit_ack(event, args, timeout, PendingAck(future, callback))
        return future

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
            pending.timer = self._manager.scheduler.call_later(
                timeout, lambda: self._ack_timed_out(ack_id, timeout)
            )
        try:
            self._send_or_buffer(messages, pending)
        except (BufferFullError, PayloadTooLargeError):
            with self._lock:
                self._acks.pop(ack_id, None)
            if pending.timer is not None:
                pending.timer.cancel()
            raise
        return ack_id

    def call(self, event: str, *args: Any, timeout: float | None = 60.0) -> Any:
        """Emit and wait for the ack; returns its value. Raises AckTimeout (a TimeoutError)."""
        # the caller's own wait is the deadline: no scheduler entry (and wake-up) per call
        waiter = _CallWaiter()
        ack_id = self._emit_ack(event, args, None, PendingAck(waiter, None))
        try:
            return waiter.result(timeout)
        except FutureTimeoutError:
            self._ack_timed_out(ack_id, timeout or 0.0)
            return waiter.result(1.0)  # the ack if it won the race (being set now), else AckTimeout

    def _send_or_buffer(self, messages: list[str | bytes], pending: PendingAck | None) -> None:
        # fast path without the lock: the buffer was flushed before the state became CONNECTED
        if self._state is SocketState.CONNECTED and self._send_now(messages, pending):
            return
        with self._lock:
            if self._state is SocketState.CONNECTED and self._send_now(messages, pending):
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
            self._buffer.append((messages, pending))

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
            messages, pending = self._buffer[0]
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
            pendings = [p for _, p in self._buffer if p is not None]
            self._buffer.clear()
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
