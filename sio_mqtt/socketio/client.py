"""The Socket.IO client: :class:`Client` (the default namespace and owner of the connection),
its :class:`Manager` (one Engine.IO connection shared by every namespace, reconnection,
the dispatcher and scheduler threads) and :meth:`Client.socket` for more namespaces."""

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
from sio_mqtt.engineio.transports.base import TransportOptions
from sio_mqtt.errors import ConnectError, NotConnectedError
from sio_mqtt.socketio import packet as json_parser
from sio_mqtt.socketio.backoff import backoff_delay
from sio_mqtt.socketio.dispatcher import Dispatcher, Scheduler
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
        self.dispatcher = Dispatcher(dispatch_queue_size)
        self.scheduler = Scheduler()
        self._lock = threading.RLock()
        self._closing = False
        self._reconnect_thread: threading.Thread | None = None
        self._stop_reconnect = threading.Event()
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
        thread = self._reconnect_thread
        return thread is not None and thread.is_alive()

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
        """Open the connection if needed; False while a reconnect loop owns that job."""
        with self._lock:
            if self.engine is not None and not self.engine.session.closed:
                return True
            if self.reconnecting:
                return False
            self._generation += 1  # a close() still running must leave the threads alone
            self._closing = False
            self._stop_reconnect.clear()
            self.dispatcher.start()
            try:
                self._connect_engine()
            except ConnectError:
                self.dispatcher.stop()
                self.scheduler.stop()
                raise
            return True

    def _connect_engine(self) -> None:
        """Make and connect a new Engine.IO session (caller holds the lock)."""
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
        )
        self.engine = engine
        try:
            engine.connect()
        except ConnectError:
            self.engine = None
            raise
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
            if self.reconnecting or self._closing:
                return
            self._stop_reconnect.clear()
            thread = threading.Thread(
                target=self._reconnect_loop, name="sio-mqtt-reconnect", daemon=True
            )
            self._reconnect_thread = thread
            thread.start()

    def _notify(self, event: str, *args: Any) -> None:
        for sock in list(self.sockets.values()):
            if sock._active:
                self.dispatcher.submit(sock._emit_lifecycle, event, args, urgent=True)

    def _reconnect_loop(self) -> None:
        attempt = 0
        while True:
            if self.max_reconnect_attempts is not None and attempt >= self.max_reconnect_attempts:
                log.warning("reconnection failed after %d attempts", attempt)
                self._notify("reconnect_failed")
                for sock in list(self.sockets.values()):
                    sock._active = False
                    sock._fail_buffered("reconnection failed")
                self.close()
                return
            delay = backoff_delay(
                attempt, self.reconnect_delay, self.reconnect_delay_max, self.randomization_factor
            )
            if self._stop_reconnect.wait(delay):
                return
            attempt += 1
            self._notify("reconnect_attempt", attempt)
            try:
                with self._lock:
                    if self._closing or not any(s._active for s in self.sockets.values()):
                        return
                    self._connect_engine()
            except ConnectError as exc:
                log.info("reconnect attempt %d failed: %s", attempt, exc)
                self._notify("reconnect_error", exc)
                continue
            self.reconnects += 1
            log.info("reconnected after %d attempt(s)", attempt)
            self._notify("reconnect", attempt)
            for sock in list(self.sockets.values()):
                if sock._active:
                    with sock._lock:
                        try:
                            sock._send_connect()
                        except NotConnectedError:
                            pass  # lost again: the engine's close starts the next loop
            return

    # -- closing ---------------------------------------------------------------------------------
    def release(self, socket: Socket) -> None:
        """A namespace stopped being active; close everything once none is."""
        if any(s._active for s in self.sockets.values()):
            return
        self.close()

    def close(self, timeout: float = 5.0) -> None:
        """Close the connection and end every thread this client started."""
        with self._lock:
            self._closing = True
            self._stop_reconnect.set()
            engine = self.engine
            reconnect_thread = self._reconnect_thread
            generation = self._generation
        if engine is not None:
            engine.close(timeout)
        current = threading.current_thread()
        if reconnect_thread is not None and reconnect_thread is not current:
            reconnect_thread.join(timeout)
        with self._lock:
            # connect() may have opened a new connection meanwhile (e.g. right after a
            # refusal closed the old one): then the helper threads are its, not ours to stop
            if self._generation != generation:
                return
            dispatcher_thread = self.dispatcher.request_stop()
            self.scheduler.stop(0)
        self.scheduler.join(timeout)
        if dispatcher_thread is not None:
            self.dispatcher.wait_stopped(dispatcher_thread, timeout)


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
    ) -> None:
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
