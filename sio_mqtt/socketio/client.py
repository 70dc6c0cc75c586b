"""The Socket.IO client: :class:`Client` (the default namespace and owner of the connection),
its :class:`Manager` (one Engine.IO connection shared by every namespace, reconnection) and
:meth:`Client.socket` for more namespaces.

A client owns no thread: its websocket is read by the process-wide I/O loop, its deadlines
(ping timeout, ack timeouts, reconnect backoff) are timers on that loop, its handlers run on the
shared dispatcher pool (in arrival order, one at a time per client) and its (re)connection
handshakes on the loop's small handshake pool."""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sio_mqtt.engineio.client import (
    IO_CLIENT_DISCONNECT,
    PARSE_ERROR,
    PING_TIMEOUT,
    TRANSPORT_CLOSE,
    TRANSPORT_ERROR,
    EngineIOClient,
)
from sio_mqtt.engineio.loop import IOLoop, TimerHandle, shared_loop
from sio_mqtt.engineio.transports.base import TransportOptions
from sio_mqtt.errors import ConnectError, NotConnectedError
from sio_mqtt.socketio import packet as json_parser
from sio_mqtt.socketio.backoff import ReconnectPolicy
from sio_mqtt.socketio.dispatcher import DispatchPool, SerialQueue, shared_pool
from sio_mqtt.socketio.packet import Packet, PacketType
from sio_mqtt.socketio.socket import AuthSource, Socket, SocketState

log = logging.getLogger("sio_mqtt.socketio")

RECONNECTABLE = frozenset({PING_TIMEOUT, TRANSPORT_CLOSE, TRANSPORT_ERROR, PARSE_ERROR})
_INHERIT: Any = object()
_RESERVED_QUERY = frozenset({"EIO", "transport", "sid", "t"})


def _query_params(query: Mapping[str, Any] | None) -> dict[str, str]:
    """The ``query`` option as URL parameters (values as text; True -> "true", as in JS)."""
    params: dict[str, str] = {}
    for key, value in (query or {}).items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"query keys are non-empty strings, got {key!r}")
        if key in _RESERVED_QUERY:
            raise ValueError(f"query key {key!r} is reserved by Engine.IO")
        if isinstance(value, bool):
            params[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            params[key] = str(value)
        else:
            raise ValueError(f"query value of {key!r} must be a str or number, got {value!r}")
    return params


class Manager:
    """Owns the Engine.IO connection that every namespace of one client shares."""

    def __init__(
        self,
        url: str,
        *,
        path: str = "/socket.io/",
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
        transports: Sequence[str] = ("polling", "websocket"),
        upgrade: bool = True,
        reconnect: bool = True,
        reconnect_delay: float = 1.0,
        reconnect_delay_max: float = 5.0,
        randomization_factor: float = 0.5,
        max_reconnect_attempts: int | None = None,
        connect_timeout: float = 20.0,
        verify: bool | str = True,
        proxy: str | None = None,
        parser: str = "default",
        buffer_size: int = 10_000,
        dispatch_queue_size: int = 10_000,
        ack_timeout: float | None = None,
        retries: int = 0,
        loop: IOLoop | None = None,
        dispatch_pool: DispatchPool | None = None,
    ) -> None:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in ("http", "https", "ws", "wss"):
            raise ValueError(f"url must be http(s):// or ws(s)://, got {url!r}")
        transports = tuple(transports)
        if not transports or any(t not in ("polling", "websocket") for t in transports):
            raise ValueError(f"transports must be 'polling' and/or 'websocket', got {transports}")
        if reconnect_delay < 0 or reconnect_delay_max < 0 or not 0 <= randomization_factor <= 1:
            raise ValueError("reconnect delays must be >= 0 and randomization_factor in [0, 1]")
        if buffer_size < 0:
            raise ValueError("buffer_size must be >= 0")
        if ack_timeout is not None and (
            isinstance(ack_timeout, bool)
            or not isinstance(ack_timeout, int | float)
            or not 0 < ack_timeout < float("inf")
        ):
            raise ValueError(f"ack_timeout must be seconds > 0 or None, got {ack_timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        if (
            isinstance(connect_timeout, bool)
            or not isinstance(connect_timeout, int | float)
            or not 0 < connect_timeout < float("inf")
        ):
            raise ValueError(f"connect_timeout must be seconds > 0, got {connect_timeout!r}")
        # validates the delays and max_reconnect_attempts once, here
        ReconnectPolicy(
            reconnect_delay, reconnect_delay_max, randomization_factor, max_reconnect_attempts
        )
        self.url = url
        self.options = TransportOptions(
            url=url,
            path=path,
            headers=dict(headers or {}),
            query=_query_params(query),
            verify=verify,
            proxy=proxy,
            connect_timeout=float(connect_timeout),
        )
        self.transports = transports
        self.upgrade = upgrade
        self._reconnect = bool(reconnect)
        self.reconnect_delay = reconnect_delay
        self.reconnect_delay_max = reconnect_delay_max
        self.randomization_factor = randomization_factor
        self.max_reconnect_attempts = max_reconnect_attempts
        self.connect_timeout = float(connect_timeout)
        self.buffer_size = buffer_size
        #: default timeout of emit_with_ack()/call() (None: none), and resends in retry mode
        self.ack_timeout = None if ack_timeout is None else float(ack_timeout)
        self.retries = retries
        if parser == "default":
            self._encode: Callable[[Packet], list[Any]] = json_parser.encode
            self._encode_event: Callable[..., list[Any]] = json_parser.encode_event
            self._decoder_factory: Callable[[], Any] = json_parser.Decoder
        elif parser == "msgpack":
            from sio_mqtt.socketio import msgpack_packet

            self._encode = msgpack_packet.encode
            self._encode_event = lambda ns, event, args, ack_id: msgpack_packet.encode(
                Packet(PacketType.EVENT, ns, [event, *args], ack_id)
            )
            self._decoder_factory = msgpack_packet.Decoder
        else:
            raise ValueError(f"parser must be 'default' or 'msgpack', got {parser!r}")
        self.sockets: dict[str, Socket] = {}
        self.engine: EngineIOClient | None = None
        #: the I/O loop that reads this client's websocket and runs its timers
        self.loop = loop if loop is not None else shared_loop()
        self.dispatcher = SerialQueue(
            dispatch_pool if dispatch_pool is not None else shared_pool(),
            dispatch_queue_size,
            never_block=self.loop.in_loop,
        )
        self.dispatcher.on_full = self._dispatch_full
        self.dispatcher.on_drained = self._dispatch_drained
        self._held = False  # holding the loop and the pool (between a series and close)
        self._lock = threading.RLock()  # state; never held while a connection opens
        self._open_lock = threading.Lock()  # one Engine.IO open at a time
        self._opening: EngineIOClient | None = None  # the engine being opened, for close()
        self._closing = False
        self._series: ReconnectPolicy | None = None  # the series of attempts running
        self._timer: TimerHandle | None = None  # its wait for the next attempt
        #: how many times the connection was re-established
        self.reconnects = 0
        self._generation = 0  # counts connection series; see close()
        #: the server's maxPayload from the latest handshake (None before the first one)
        self.max_payload: int | None = None

    # -- state -------------------------------------------------------------------------------
    @property
    def transport(self) -> str | None:
        engine = self.engine
        return engine.transport if engine is not None and engine.connected else None

    @property
    def reconnecting(self) -> bool:
        """True while a series of (re)connection attempts runs in the background."""
        return self._series is not None

    @property
    def reconnect(self) -> bool:
        """Whether a lost or failed connection is retried; settable at run time (False stops
        a series in progress before its next attempt, as the reference client does)."""
        return self._reconnect

    @reconnect.setter
    def reconnect(self, enabled: bool) -> None:
        self._reconnect = bool(enabled)
        if enabled:
            return
        with self._lock:
            timer = self._timer
            if timer is None:
                return  # no wait in progress; a running attempt ends the series if it fails
            timer.cancel()
            self._timer = None
            self._series = None
        log.info("reconnection turned off: the series of attempts ends")
        self._give_up("reconnection was turned off")

    def will_reconnect(self, reason: str) -> bool:
        return self._reconnect and not self._closing and reason in RECONNECTABLE

    def _engine_open(self) -> bool:
        """The connection is up and stays up (not being closed by a close() in progress)."""
        engine = self.engine
        return engine is not None and not engine.session.closed and not self._closing

    def _policy(self) -> ReconnectPolicy:
        return ReconnectPolicy(
            self.reconnect_delay,
            self.reconnect_delay_max,
            self.randomization_factor,
            self.max_reconnect_attempts,
        )

    def call_later(self, delay: float, fn: Callable[[], Any]) -> TimerHandle:
        """Run ``fn()`` after ``delay`` seconds on the loop (it must not block)."""
        return self.loop.call_later(delay, fn)

    def _dispatch_full(self) -> None:
        engine = self.engine
        if engine is not None:
            engine.pause_reading()

    def _dispatch_drained(self) -> None:
        engine = self.engine
        if engine is not None:
            engine.resume_reading()

    def _hold(self) -> None:
        """Keep the loop and the dispatcher pool running for this client (caller holds lock)."""
        if not self._held:
            self._held = True
            self.loop.acquire()
            self.dispatcher.pool.acquire()

    def _unhold(self) -> None:
        if self._held:
            self._held = False
            self.dispatcher.pool.release()
            self.loop.release()

    # -- encoding / sending --------------------------------------------------------------------
    def encode_event(
        self, namespace: str, event: str, args: Sequence[Any], ack_id: int | None
    ) -> list[str | bytes]:
        return self._encode_event(namespace, event, args, ack_id)

    def send(self, namespace: str, packet: Packet) -> None:
        self.send_messages(self._encode(packet))

    def send_messages(self, messages: Sequence[str | bytes]) -> None:
        engine = self.engine
        if engine is None:
            raise NotConnectedError("not connected")
        engine.send(messages)

    @property
    def writable(self) -> bool:
        """True when the connection is open and its transport takes a write now."""
        engine = self.engine
        return engine is not None and engine.writable

    # -- opening -------------------------------------------------------------------------------
    def connect_socket(self, sock: Socket, *, block: bool) -> None:
        """Get ``sock``'s CONNECT sent: at once when the connection is open, else once it is.

        ``block=True`` opens the connection in the caller's thread and raises ConnectError
        (after ``connect_error``) when that fails; ``block=False`` leaves the opening (and the
        retries the reconnection policy allows) to a background series and returns at once.
        """
        with self._lock:
            if self._engine_open():
                self._send_connects([sock])
                return
            if self._series is not None:
                return  # the running series sends our CONNECT when it gets through
            self._begin()
            if not block:
                self._start_series(immediate=True)
                return
        with self._open_lock:
            with self._lock:
                if self._engine_open():
                    self._send_connects([sock])
                    return
                if self._series is not None:
                    return
            try:
                self._open_engine()
            except ConnectError as exc:
                if not self._closing:
                    self._notify_connect_error(exc)
                raise
            with self._lock:
                self._send_connects(list(self.sockets.values()))

    def _begin(self) -> None:
        """A new connection series (caller holds the lock): the helper threads are its."""
        self._generation += 1  # a close() still running must leave the threads alone
        self._closing = False
        self._hold()

    def _send_connects(self, sockets: Sequence[Socket]) -> None:
        """CONNECT for each active socket not yet connecting (caller holds the lock)."""
        for sock in sockets:
            with sock._lock:
                if sock._active and sock._state is SocketState.DISCONNECTED:
                    try:
                        sock._send_connect()
                    except NotConnectedError:
                        pass  # lost again: the engine's close starts the next attempt

    def _open_engine(self) -> None:
        """Open a new Engine.IO session (caller holds _open_lock, not _lock)."""
        if self._closing:
            raise ConnectError("the client was closed while connecting")
        decoder = self._decoder_factory()
        sockets = self.sockets

        def on_message(data: str | bytes) -> None:
            packet = decoder.feed(data)
            if packet is not None:
                sock = sockets.get(packet.namespace)
                if sock is not None:
                    sock._on_packet(packet)

        engine = EngineIOClient(
            self.options,
            self.transports,
            on_message=on_message,
            on_close=lambda reason: self._on_engine_close(engine, reason),
            upgrade=self.upgrade,
            loop=self.loop,
        )
        self._opening = engine
        try:
            engine.connect()
        finally:
            self._opening = None
        with self._lock:
            closing = self._closing
            if not closing and not engine.session.closed:
                self.engine = engine
                self.max_payload = engine.max_payload
                return
        engine.close(1.0)
        if closing:
            raise ConnectError("the client was closed while connecting")
        raise ConnectError("the connection was lost right after it opened")

    def _notify(self, event: str, *args: Any) -> None:
        for sock in list(self.sockets.values()):
            if sock._active:
                sock._fire(event, args, urgent=True)

    def _notify_connect_error(self, error: ConnectError) -> None:
        for sock in list(self.sockets.values()):
            if sock._active and sock._state is not SocketState.CONNECTED:
                sock._fire("connect_error", (error,), urgent=True)

    # -- the background series of attempts -------------------------------------------------------
    # One series at a time (``_series``, its policy). The waits between attempts are timers on
    # the I/O loop; an attempt (it blocks in the handshake) runs on the loop's handshake pool.
    def _start_series(self, immediate: bool) -> None:
        """Start a series of attempts unless one runs. ``immediate``: the first attempt goes
        at once and is no "reconnect_attempt" (a first ``connect``); else after the backoff."""
        with self._lock:
            if self._series is not None or self._closing:
                return
            policy = self._series = self._policy()
            if immediate:
                self._run_attempt(policy, True, "")
                return
        self._schedule_attempt(policy, "")

    def _schedule_attempt(self, policy: ReconnectPolicy, last_error: str) -> None:
        """Arm the backoff timer of the next attempt, or end the series: attempts exhausted
        ("reconnect_failed") or reconnection turned off."""
        with self._lock:
            if self._series is not policy:
                return  # ended meanwhile (close(), reconnect set to False)
            if self._closing:
                self._series = None
                return
            delay = policy.next_delay() if self._reconnect else None
            if delay is not None:
                self._timer = self.loop.call_later(
                    delay, lambda: self._timer_fired(policy, last_error)
                )
                return
            self._series = None
            exhausted = self._reconnect
        if exhausted:
            log.warning("reconnection failed after %d attempts", policy.attempts)
            self._notify("reconnect_failed")
            self._give_up("reconnection failed")
        else:
            log.info("connection attempts end: reconnection is turned off")
            self._give_up(last_error or "reconnection is turned off")

    def _timer_fired(self, policy: ReconnectPolicy, last_error: str) -> None:
        with self._lock:
            if self._series is not policy or self._timer is None:
                return  # cancelled
            self._timer = None
            self._run_attempt(policy, False, last_error)

    def _run_attempt(self, policy: ReconnectPolicy, first: bool, last_error: str) -> None:
        """Queue one attempt on the loop's bounded handshake pool (it blocks in the
        handshake): thousands of clients reconnecting share its few threads."""
        self.loop.blocking.submit(lambda: self._attempt(policy, first, last_error))

    def _attempt(self, policy: ReconnectPolicy, first: bool, last_error: str) -> None:
        try:
            self._try_open(policy, first, last_error)
        except Exception:  # a bug must not leave the sockets waiting forever
            log.exception("a connection attempt failed unexpectedly")
            with self._lock:
                if self._series is policy:
                    self._series = None
            self._give_up("the connection attempt failed unexpectedly")

    def _try_open(self, policy: ReconnectPolicy, first: bool, last_error: str) -> None:
        if not first:
            if not self._reconnect:  # turned off while the timer ran
                self._schedule_attempt(policy, last_error)
                return
            self._notify("reconnect_attempt", policy.attempts)
        with self._open_lock:
            with self._lock:
                if self._series is not policy:
                    return
                if self._closing or not any(s._active for s in self.sockets.values()):
                    self._series = None
                    return
                ready = self._engine_open()  # a blocking connect() opened it meanwhile
            if not ready:
                try:
                    self._open_engine()
                except ConnectError as exc:
                    log.info("connection attempt %d failed: %s", policy.attempts, exc)
                    if self._closing:
                        with self._lock:
                            if self._series is policy:
                                self._series = None
                        return
                    self._notify_connect_error(exc)
                    if not first:
                        self._notify("reconnect_error", exc)
                    self._schedule_attempt(policy, exc.message)
                    return
            with self._lock:
                if self._series is policy:
                    self._series = None
                if policy.attempts:
                    self.reconnects += 1
                    log.info("reconnected after %d attempt(s)", policy.attempts)
                    self._notify("reconnect", policy.attempts)
                self._send_connects(list(self.sockets.values()))

    def _give_up(self, reason: str) -> None:
        """Nothing will (re)connect: the waiting sockets fail, the threads end."""
        error = ConnectError(reason)
        for sock in list(self.sockets.values()):
            if sock._active:
                sock._abandon(error)
        self.close()

    # -- losing the connection -------------------------------------------------------------------
    def _on_engine_close(self, engine: EngineIOClient, reason: str) -> None:
        with self._lock:
            if engine is not self.engine:
                return
            self.engine = None
            sockets = list(self.sockets.values())
        for sock in sockets:
            sock._on_transport_lost(reason)
        if self.will_reconnect(reason) and any(s._active for s in sockets):
            self._start_series(immediate=False)
        elif reason != IO_CLIENT_DISCONNECT:
            for sock in sockets:
                sock._active = False
                sock._fail_buffered(f"connection lost for good ({reason})")
            self.close()  # nothing will reconnect: end the helper threads too

    # -- closing ---------------------------------------------------------------------------------
    def release(self, socket: Socket) -> None:
        """A namespace stopped being active; close everything once none is."""
        if any(s._active for s in self.sockets.values()):
            return
        self.close(if_unused=True)

    def close(self, timeout: float = 5.0, *, if_unused: bool = False) -> None:
        """Close the connection (aborting a handshake in progress, never waiting for it) and
        let go of the loop and the pool (``if_unused``: unless a namespace became active
        meanwhile, e.g. a connect() racing a refusal); waits up to ``timeout`` for the handlers
        already queued."""
        with self._lock:
            if if_unused and any(s._active for s in self.sockets.values()):
                return
            self._closing = True
            self._series = None
            timer, self._timer = self._timer, None
            if timer is not None:
                timer.cancel()
            engine = self.engine
            # detached: its close must not touch a connection a racing connect() opens
            self.engine = None
            opening = self._opening
            generation = self._generation
        if opening is not None:
            opening.close(0.5)  # aborts a handshake blocked on the network
        if engine is not None:
            engine.close(min(timeout, 1.0))
        self.dispatcher.drain(timeout)
        with self._lock:
            # connect() may have opened a new connection meanwhile (e.g. right after a
            # refusal closed the old one): then the holds are its, not ours to release
            if self._generation != generation:
                return
            self._unhold()


class Client(Socket):
    """A Socket.IO client: the socket of its ``namespace`` and the owner of the connection.

    >>> client = Client("http://localhost:4200", namespace="/admin", auth={"token": "secret"})
    >>> client.connect()                          # doctest: +SKIP
    >>> client.emit("foo", {"token": 123})        # doctest: +SKIP
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "/",
        path: str = "/socket.io/",
        auth: AuthSource = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
        transports: Sequence[str] = ("polling", "websocket"),
        upgrade: bool = True,
        reconnect: bool = True,
        reconnect_delay: float = 1.0,
        reconnect_delay_max: float = 5.0,
        randomization_factor: float = 0.5,
        max_reconnect_attempts: int | None = None,
        connect_timeout: float = 20.0,
        verify: bool | str = True,
        proxy: str | None = None,
        parser: str = "default",
        buffer_size: int = 10_000,
        dispatch_queue_size: int = 10_000,
        ack_timeout: float | None = None,
        retries: int = 0,
        loop: IOLoop | None = None,
        dispatch_pool: DispatchPool | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.path not in ("", "/") and namespace == "/":
            namespace = parts.path  # io("http://host/admin") means namespace /admin, as in JS
        base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "", parts.query, ""))
        manager = Manager(
            base,
            path=path,
            headers=headers,
            query=query,
            transports=transports,
            upgrade=upgrade,
            reconnect=reconnect,
            reconnect_delay=reconnect_delay,
            reconnect_delay_max=reconnect_delay_max,
            randomization_factor=randomization_factor,
            max_reconnect_attempts=max_reconnect_attempts,
            connect_timeout=connect_timeout,
            verify=verify,
            proxy=proxy,
            parser=parser,
            buffer_size=buffer_size,
            dispatch_queue_size=dispatch_queue_size,
            ack_timeout=ack_timeout,
            retries=retries,
            loop=loop,
            dispatch_pool=dispatch_pool,
        )
        super().__init__(manager, namespace, auth)
        manager.sockets[namespace] = self

    @property
    def manager(self) -> Manager:
        return self._manager

    @property
    def reconnect(self) -> bool:
        """Whether a lost or failed connection is retried. Settable at run time: False stops
        a reconnection in progress (before its next attempt) and gives its sockets up."""
        return self._manager.reconnect

    @reconnect.setter
    def reconnect(self, enabled: bool) -> None:
        self._manager.reconnect = enabled

    def socket(self, namespace: str, auth: AuthSource = _INHERIT) -> Socket:
        """The socket of another namespace on the same connection (made once, then reused).
        ``auth`` defaults to this client's auth."""
        manager = self._manager
        existing = manager.sockets.get(namespace)
        if existing is not None:
            return existing
        sock = Socket(manager, namespace, self._auth if auth is _INHERIT else auth)
        manager.sockets[namespace] = sock
        return sock

    def disconnect(self) -> None:
        """Leave every namespace and close the connection; ends all of the client's threads."""
        manager = self._manager
        for sock in list(manager.sockets.values()):
            with sock._lock:
                was = sock._state
                sock._active = False
                sock._state = type(was).DISCONNECTED
            if was is was.CONNECTED:
                try:
                    manager.send(sock.namespace, Packet(PacketType.DISCONNECT, sock.namespace))
                except NotConnectedError:
                    pass
            sock._abort_connect(ConnectError("the client disconnected while connecting"))
            sock._on_lost(IO_CLIENT_DISCONNECT, was)
            sock._fail_buffered("the client disconnected")
        manager.close()

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()
