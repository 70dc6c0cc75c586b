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
from sio_mqtt.socketio.backoff import backoff_delay
from sio_mqtt.socketio.dispatcher import DispatchPool, SerialQueue, shared_pool
from sio_mqtt.socketio.packet import Packet, PacketType
from sio_mqtt.socketio.socket import AuthSource, Socket

log = logging.getLogger("sio_mqtt.socketio")

RECONNECTABLE = frozenset({PING_TIMEOUT, TRANSPORT_CLOSE, TRANSPORT_ERROR, PARSE_ERROR})
_INHERIT: Any = object()


class Manager:
    """Owns the Engine.IO connection that every namespace of one client shares."""

    def __init__(
        self,
        url: str,
        *,
        path: str = "/socket.io/",
        headers: Mapping[str, str] | None = None,
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
        self.url = url
        self.options = TransportOptions(
            url=url,
            path=path,
            headers=dict(headers or {}),
            verify=verify,
            proxy=proxy,
            connect_timeout=connect_timeout,
        )
        self.transports = transports
        self.upgrade = upgrade
        self.reconnect = reconnect
        self.reconnect_delay = reconnect_delay
        self.reconnect_delay_max = reconnect_delay_max
        self.randomization_factor = randomization_factor
        self.max_reconnect_attempts = max_reconnect_attempts
        self.connect_timeout = connect_timeout
        self.buffer_size = buffer_size
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
        self._lock = threading.RLock()
        self._closing = False
        self._held = False  # holding the loop and the pool (between open and close)
        self._reconnecting = False
        self._reconnect_timer: TimerHandle | None = None
        self._attempt = 0
        self._connecting: threading.Event | None = None  # set once an open() in flight ends
        self._connect_failure: str | None = None
        #: how many times the connection was re-established
        self.reconnects = 0
        self._generation = 0  # counts open() calls; see close()
        #: the server's maxPayload from the latest handshake (None before the first one)
        self.max_payload: int | None = None

    # -- state -------------------------------------------------------------------------------
    @property
    def transport(self) -> str | None:
        engine = self.engine
        return engine.transport if engine is not None and engine.connected else None

    @property
    def reconnecting(self) -> bool:
        return self._reconnecting

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

    def will_reconnect(self, reason: str) -> bool:
        return self.reconnect and not self._closing and reason in RECONNECTABLE

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

    # -- opening -------------------------------------------------------------------------------
    def open(self) -> bool:
        """Open the connection if needed; False while a reconnect loop owns that job.

        Blocks on the caller's thread for the handshake, without holding the lock, so
        :meth:`close` from another thread aborts it at once; a second caller meanwhile
        waits for the first one's outcome."""
        with self._lock:
            engine = self.engine
            if engine is not None and engine.connected:
                return True
            if self.reconnecting:
                return False
            pending = self._connecting
            mine = pending is None
            if pending is None:
                pending = self._connecting = threading.Event()
                self._generation += 1
                self._closing = False
                self._hold()
        if not mine:
            pending.wait(self.connect_timeout + 1.0)
            with self._lock:
                engine = self.engine
                if engine is not None and engine.connected:
                    return True
                error = self._connect_failure
            raise ConnectError(error or "the connection could not be opened")
        try:
            self._connect_engine()
        except ConnectError as exc:
            with self._lock:
                self._connect_failure = exc.message
                if self.engine is None and not self.reconnecting:
                    self._unhold()
            raise
        finally:
            with self._lock:
                self._connecting = None
            pending.set()
        return True

    def open_in_background(self, done: Callable[[ConnectError | None], None]) -> None:
        """:meth:`open` on the loop's handshake pool: ``done(None)`` once open (at once when
        it already is), ``done(error)`` when it failed; nothing while a reconnection owns it
        (that one sends the namespaces' CONNECT)."""

        def run() -> None:
            try:
                opened = self.open()
            except ConnectError as exc:
                done(exc)
                return
            if opened:
                done(None)

        with self._lock:
            engine = self.engine
            ready = engine is not None and engine.connected
            if not ready and self.reconnecting:
                return
        if ready:
            done(None)
        else:
            self.loop.blocking.submit(run)

    def _connect_engine(self) -> None:
        """Make and connect a new Engine.IO session (blocking; not under the lock)."""
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
        with self._lock:
            if self._closing:
                raise ConnectError("the client was closed while connecting")
            self.engine = engine
        try:
            engine.connect()
        except ConnectError:
            with self._lock:
                if self.engine is engine:
                    self.engine = None
            raise
        with self._lock:
            if self._closing or self.engine is not engine:
                engine.close(0)
                raise ConnectError("the client was closed while connecting")
        self.max_payload = engine.max_payload

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
            self._start_reconnect()
        elif reason != IO_CLIENT_DISCONNECT:
            for sock in sockets:
                sock._active = False
                sock._fail_buffered(f"connection lost for good ({reason})")
            self.close()  # nothing will reconnect: end the helper threads too

    def _start_reconnect(self) -> None:
        with self._lock:
            if self._reconnecting or self._closing:
                return
            self._reconnecting = True
            self._attempt = 0
            self._schedule_attempt()

    def _notify(self, event: str, *args: Any) -> None:
        for sock in list(self.sockets.values()):
            if sock._active:
                self.dispatcher.submit(sock._emit_lifecycle, event, args, urgent=True)

    def _schedule_attempt(self) -> None:
        """Arm the backoff timer of the next attempt (caller holds the lock); the attempt
        itself runs on the loop's bounded handshake pool, never on the loop."""
        delay = backoff_delay(
            self._attempt, self.reconnect_delay, self.reconnect_delay_max, self.randomization_factor
        )
        pool = self.loop.blocking
        self._reconnect_timer = self.loop.call_later(
            delay, lambda: pool.submit(self._reconnect_attempt)
        )

    def _reconnect_attempt(self) -> None:
        with self._lock:
            if not self._reconnecting or self._closing:
                return
            if not any(s._active for s in self.sockets.values()):
                self._reconnecting = False
                return
            if self.max_reconnect_attempts is not None and (
                self._attempt >= self.max_reconnect_attempts
            ):
                give_up = True
            else:
                give_up = False
                self._attempt += 1
            attempt = self._attempt
        if give_up:
            log.warning("reconnection failed after %d attempts", attempt)
            self._notify("reconnect_failed")
            for sock in list(self.sockets.values()):
                sock._active = False
                sock._fail_buffered("reconnection failed")
            with self._lock:
                self._reconnecting = False
            self.close()
            return
        self._notify("reconnect_attempt", attempt)
        try:
            self._connect_engine()
        except ConnectError as exc:
            log.info("reconnect attempt %d failed: %s", attempt, exc)
            with self._lock:
                if self._closing or not self._reconnecting:
                    return
            self._notify("reconnect_error", exc)
            with self._lock:
                if not self._closing and self._reconnecting:
                    if self.max_reconnect_attempts is not None and (
                        attempt >= self.max_reconnect_attempts
                    ):
                        self._reconnect_timer = None
                        self.loop.blocking.submit(self._reconnect_attempt)
                    else:
                        self._schedule_attempt()
            return
        with self._lock:
            self._reconnecting = False
            self.reconnects += 1
        log.info("reconnected after %d attempt(s)", attempt)
        self._notify("reconnect", attempt)
        for sock in list(self.sockets.values()):
            if sock._active:
                with sock._lock:
                    try:
                        sock._send_connect()
                    except NotConnectedError:
                        pass  # lost again: the engine's close starts the next round

    # -- closing ---------------------------------------------------------------------------------
    def release(self, socket: Socket) -> None:
        """A namespace stopped being active; close everything once none is."""
        if any(s._active for s in self.sockets.values()):
            return
        self.close()

    def close(self, timeout: float = 5.0) -> None:
        """Close the connection (aborting a handshake in progress) and let go of the loop and
        the pool; waits (up to ``timeout``) for the handlers already queued, never for a
        hanging connect."""
        with self._lock:
            self._closing = True
            self._reconnecting = False
            timer = self._reconnect_timer
            self._reconnect_timer = None
            engine = self.engine
            generation = self._generation
        if timer is not None:
            timer.cancel()
        if engine is not None:
            engine.close(min(timeout, 1.0))
        self.dispatcher.drain(timeout)
        with self._lock:
            # connect() may have opened a new connection meanwhile (e.g. right after a
            # refusal closed the old one): then the holds are its, not ours to release
            if self._generation == generation and self._closing:
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
        loop: IOLoop | None = None,
        dispatch_pool: DispatchPool | None = None,
    ) -> None:
        """``loop`` / ``dispatch_pool``: private ones instead of the process-wide ones."""
        parts = urllib.parse.urlsplit(url)
        if parts.path not in ("", "/") and namespace == "/":
            namespace = parts.path  # io("http://host/admin") means namespace /admin, as in JS
        base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "", parts.query, ""))
        manager = Manager(
            base,
            path=path,
            headers=headers,
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
            loop=loop,
            dispatch_pool=dispatch_pool,
        )
        super().__init__(manager, namespace, auth)
        manager.sockets[namespace] = self

    @property
    def manager(self) -> Manager:
        return self._manager

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
            sock._on_lost(IO_CLIENT_DISCONNECT, was)
            sock._fail_buffered("the client disconnected")
        manager.close()

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()
