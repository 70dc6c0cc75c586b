"""The Engine.IO v4 client: wires the pure session to the transports, the I/O loop and threads.

A websocket session (direct or upgraded) has no thread of its own: the process-wide I/O loop
(:mod:`sio_mqtt.engineio.loop`) reads it and its ping-timeout check is a timer on the loop's
heap; the caller's thread writes. A polling session keeps two blocking ``requests`` threads
(the GET reader and the POST writer, one request in flight each) plus a short-lived upgrader
that probes the websocket and, on success, hands it to the loop while the polling threads end.

Callbacks run on the loop thread (websocket) or the polling reader: ``on_message(data)`` for
every Engine.IO message, then ``on_close(reason)`` exactly once, with the reference client's
reason strings. They must not block.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence

import websocket as wsc

from sio_mqtt.engineio.loop import IOLoop, TimerHandle
from sio_mqtt.engineio.packet import (
    Packet,
    PacketType,
    batch_payloads,
    check_message_sizes,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
)
from sio_mqtt.engineio.session import EngineSession, UpgradeState
from sio_mqtt.engineio.transports.base import (
    TransportClosed,
    TransportError,
    TransportOptions,
    redact,
)
from sio_mqtt.engineio.transports.polling import BadPollBody, PollingTransport
from sio_mqtt.engineio.transports.websocket import Handshake, WebSocketTransport
from sio_mqtt.errors import (
    ConnectError,
    EngineIOParseError,
    NotConnectedError,
    ParseError,
)

log = logging.getLogger("sio_mqtt.engineio")

KNOWN_TRANSPORTS = ("polling", "websocket")

# Reasons, as the reference client names them.
IO_CLIENT_DISCONNECT = "io client disconnect"
PING_TIMEOUT = "ping timeout"
TRANSPORT_CLOSE = "transport close"
TRANSPORT_ERROR = "transport error"
PARSE_ERROR = "parse error"

MessageHandler = Callable[[str | bytes], None]
CloseHandler = Callable[[str], None]

_MESSAGE = PacketType.MESSAGE
_CLOSE_PACKET = Packet(PacketType.CLOSE)


class EngineIOClient:
    """One Engine.IO session. Not reusable: the Socket.IO manager makes a new one per connect."""

    #: messages waiting for the polling writer before ``send`` blocks (back-pressure, not growth)
    max_send_queue = 10_000

    def __init__(
        self,
        options: TransportOptions,
        transports: Sequence[str] = KNOWN_TRANSPORTS,
        *,
        on_message: MessageHandler,
        on_close: CloseHandler,
        upgrade: bool = True,
        max_receive: int | None = None,
        loop: IOLoop,
    ) -> None:
        unknown = [t for t in transports if t not in KNOWN_TRANSPORTS]
        if unknown or not transports:
            raise ValueError(f"transports must be from {KNOWN_TRANSPORTS}, got {list(transports)}")
        self.options = options
        self.transports = tuple(transports)
        self.upgrade = upgrade
        self._on_message = on_message
        self._on_close = on_close
        self._max_receive_override = max_receive
        self.session = EngineSession()
        self.close_reason: str | None = None
        # active transports
        self._ws: WebSocketTransport | None = None  # set once websocket carries the session
        self._polling: PollingTransport | None = None
        # polling send queue, guarded by _cond
        self._cond = threading.Condition()
        self._queue: collections.deque[Packet] = collections.deque()
        # upgrade in progress: the reader starts no new GET once the probe succeeded; the writer
        # goes on POSTing until that GET came back (the server only releases it on its 100 ms
        # timer: holding writes for it stalled them), then stops for the switch
        self._reader_paused = False
        self._paused = False
        self._post_in_flight = False
        self._poll_stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loop = loop
        self._ping_timer: TimerHandle | None = None
        self._handshake: Handshake | None = None  # a websocket handshake in progress

    # -- properties --------------------------------------------------------------------------
    @property
    def transport(self) -> str:
        return "websocket" if self._ws is not None else "polling"

    @property
    def sid(self) -> str:
        return self.session.sid

    @property
    def connected(self) -> bool:
        return not self.session.closed and self.session.handshake is not None

    @property
    def writable(self) -> bool:
        """True when a write goes out now: the websocket is up, or polling has nothing queued,
        no POST in flight and no upgrade pause (the reference client's ``transport.writable``)."""
        if self.session.closed or self.session.handshake is None:
            return False
        if self._ws is not None:
            return True
        return not self._post_in_flight and not self._paused and not self._queue

    @property
    def max_payload(self) -> int:
        """The server's ``maxPayload`` (bytes per message on a websocket, per body on polling)."""
        return self.session.max_payload

    @property
    def max_receive(self) -> int:
        if self._max_receive_override is not None:
            return self._max_receive_override
        return max(64 * self.session.max_payload, 16 * 1024 * 1024)

    # -- connect -----------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the session (blocking); raises ConnectError naming the cause."""
        try:
            if self.transports[0] == "polling" or "websocket" not in self.transports:
                self._connect_polling()
            else:
                self._connect_websocket()
        except (TransportError, TimeoutError, ParseError, BadPollBody, OSError) as exc:
            self.session.close()
            if self._polling is not None:
                self._polling.close()
            if self._ws is not None:
                self._ws.close()
            raise ConnectError(
                f"cannot connect to {redact(self.options.url)}: {redact(str(exc))}"
            ) from exc

    def _connect_polling(self) -> None:
        polling = PollingTransport(self.options)
        self._polling = polling
        body = polling.handshake()
        packets = decode_payload(body)
        handshake = self.session.open(packets[0], self.transports)
        polling.sid = handshake.sid
        polling.max_receive = self.max_receive
        log.debug("engine.io open on polling, sid=%s", handshake.sid)
        self._start(self._polling_reader, "reader", packets[1:])
        self._start(self._polling_writer, "writer")
        if self.upgrade and self.session.can_upgrade_to("websocket", self.transports):
            self._start(self._upgrader, "upgrader")

    def _connect_websocket(self) -> None:
        ws = self._open_websocket(None, self.options.connect_timeout)
        self._ws = ws
        first = ws.recv(self.options.connect_timeout)
        if first is None:
            raise TimeoutError("no handshake on the websocket")
        with self._cond:
            if self.session.closed:
                raise TransportClosed("closed while connecting")
            handshake = self.session.open(decode_packet(first), self.transports)
        ws.max_message = self.max_receive
        log.debug("engine.io open on websocket, sid=%s", handshake.sid)
        self._attach(ws)

    def _open_websocket(self, sid: str | None, timeout: float) -> WebSocketTransport:
        """The blocking websocket handshake, abortable from another thread by :meth:`abort`."""

        def hold(ws: Handshake) -> None:
            with self._cond:
                if self.session.closed:
                    raise TransportClosed("closed while connecting")
                self._handshake = ws

        try:
            return WebSocketTransport.open_with(
                wsc.WebSocket, self.options, sid=sid, timeout=timeout, on_socket=hold
            )
        finally:
            with self._cond:
                self._handshake = None

    def _attach(self, ws: WebSocketTransport) -> None:
        """Hand the websocket to the I/O loop and arm the ping-timeout timer."""
        ws.attach(self._loop, self._ws_message, self._ws_lost)
        self._arm_ping_timer()

    def _arm_ping_timer(self) -> None:
        with self._cond:  # never armed after the close that would have cancelled it
            if self.session.closed:
                return
            self._ping_timer = self._loop.call_later(
                self.session.ping_time_left() + 0.001, self._check_ping
            )

    def _check_ping(self) -> None:
        """Loop thread: one timer per session, re-armed for the current deadline (a PING
        moves the deadline; no timer work per PING)."""
        if self.session.closed:
            return
        if self.session.ping_expired():
            self._fail(PING_TIMEOUT)
        else:
            self._arm_ping_timer()

    def pause_reading(self) -> None:
        """Stop reading this session's websocket until :meth:`resume_reading` (the consumer
        is full): TCP pushes back on the server, every other session keeps flowing."""
        ws = self._ws
        if ws is not None:
            ws.pause_reading()

    def resume_reading(self) -> None:
        ws = self._ws
        if ws is not None:
            ws.resume_reading()

    def _start(self, target: Callable[..., None], role: str, *args: object) -> None:
        thread = threading.Thread(
            target=target, args=args, name=f"sio-mqtt-{role}-{self.sid[:8]}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    # -- sending -----------------------------------------------------------------------------
    def send(self, messages: Sequence[str | bytes]) -> None:
        """Send Engine.IO messages back to back (a binary event and its attachments together).

        Raises PayloadTooLargeError, sending none of them, when one exceeds the server's
        maxPayload: the server would otherwise end the whole connection over it.
        """
        ws = self._ws
        check_message_sizes(messages, self.session.max_payload, ws is None)
        if ws is not None:
            frames = ["4" + m if m.__class__ is str else m for m in messages]
            try:
                ws.send(frames)
            except TransportError as exc:
                self._fail(TRANSPORT_ERROR, exc)
                raise NotConnectedError(f"send failed: {exc}") from exc
            return
        self._enqueue([Packet(_MESSAGE, m) for m in messages])

    def _enqueue(self, packets: list[Packet]) -> None:
        with self._cond:
            while True:
                if self.session.closed:
                    raise NotConnectedError("the Engine.IO session is closed")
                ws = self._ws
                if ws is not None:  # upgraded while we waited: send directly
                    break
                if len(self._queue) < self.max_send_queue:
                    self._queue.extend(packets)
                    self._cond.notify_all()
                    return
                self._cond.wait(1.0)  # back-pressure: the writer drains, then wakes us
        self._send_packets_ws(ws, packets)

    def _send_packets_ws(self, ws: WebSocketTransport, packets: Sequence[Packet]) -> None:
        try:
            ws.send([encode_packet(p) for p in packets])
        except TransportError as exc:
            self._fail(TRANSPORT_ERROR, exc)
            raise NotConnectedError(f"send failed: {exc}") from exc

    def _send_control(self, packet: Packet) -> None:
        """PONG and friends, on whichever transport carries the session."""
        ws = self._ws
        if ws is not None:
            self._send_packets_ws(ws, [packet])
        else:
            self._enqueue([packet])

    # -- polling -----------------------------------------------------------------------------
    def _polling_reader(self, first: list[Packet]) -> None:
        polling = self._polling
        assert polling is not None
        try:
            if first and not self._handle_packets(first):
                return
            while True:
                with self._cond:
                    if self._reader_paused or self.session.closed:
                        break
                try:
                    body = polling.poll(self.session.ping_time_left())
                except TimeoutError:
                    if self.session.ping_expired():
                        self._fail(PING_TIMEOUT)
                        return
                    continue
                packets = decode_payload(body)
                if not self._handle_packets(packets):
                    return
                if self.session.ping_expired():
                    self._fail(PING_TIMEOUT)
                    return
        except (ParseError, BadPollBody) as exc:
            self._fail(PARSE_ERROR, exc)
        except TransportClosed as exc:
            self._fail(TRANSPORT_CLOSE, exc)
        except (TransportError, NotConnectedError) as exc:
            self._fail(TRANSPORT_ERROR, exc)
        except Exception as exc:  # a bug must not leave a silent dead connection
            log.exception("engine.io polling reader failed")
            self._fail(TRANSPORT_ERROR, exc)
        finally:
            self._poll_stopped.set()

    def _polling_writer(self) -> None:
        polling = self._polling
        assert polling is not None
        try:
            while True:
                with self._cond:
                    while not self._queue or self._paused:
                        if self.session.closed or self._ws is not None:
                            return
                        self._cond.wait()
                    if self.session.closed:
                        return
                    packets = list(self._queue)
                    self._queue.clear()
                    self._post_in_flight = True
                    self._cond.notify_all()
                try:
                    for body in batch_payloads(packets, self.session.max_payload):
                        polling.post(body)
                finally:
                    with self._cond:
                        self._post_in_flight = False
                        self._cond.notify_all()
        except TransportClosed as exc:
            self._fail(TRANSPORT_CLOSE, exc)
        except (TransportError, TimeoutError, BadPollBody) as exc:
            self._fail(TRANSPORT_ERROR, exc)
        except Exception as exc:
            log.exception("engine.io polling writer failed")
            self._fail(TRANSPORT_ERROR, exc)

    # -- upgrade -----------------------------------------------------------------------------
    def _upgrader(self) -> None:
        """Probe the websocket; on success pause polling, send UPGRADE, then read the websocket."""
        session = self.session
        probe_timeout = min(self.options.connect_timeout, session.handshake.ping_timeout)  # type: ignore[union-attr]
        ws: WebSocketTransport | None = None
        try:
            ws = self._open_websocket(session.sid, probe_timeout)
            ws.max_message = self.max_receive
            with self._cond:
                if session.closed:
                    ws.close()
                    return
                probe = session.upgrade_start()
            ws.send([encode_packet(probe)])
            reply = ws.recv(probe_timeout)
            ok = reply is not None and session.upgrade_probe_reply(decode_packet(reply))
        except (TransportError, ParseError, RuntimeError) as exc:
            log.info("websocket upgrade failed, staying on polling: %s", exc)
            ok = False
        if not ok:
            with self._cond:
                session.upgrade_failed()
            if ws is not None:
                ws.close()
            return
        assert ws is not None
        # pause polling: no new GET (the server answers the pending one with a noop); writes
        # go on as POSTs meanwhile, then stop with the last one answered
        with self._cond:
            self._reader_paused = True
            self._cond.notify_all()
        self._poll_stopped.wait(session.ping_time_left() + 1)
        with self._cond:
            self._paused = True
            self._cond.notify_all()
            while self._post_in_flight and not session.closed:
                self._cond.wait(0.5)
            if session.closed or not self._poll_stopped.is_set():
                if not session.closed:  # the GET never came back: stay on polling
                    session.upgrade_failed()
                    self._paused = self._reader_paused = False
                    self._cond.notify_all()
                ws.close()
                return
            try:
                ws.send([encode_packet(session.upgrade_paused())])
                queued = [encode_packet(p) for p in self._queue]
                self._queue.clear()
                if queued:
                    ws.send(queued)
            except TransportError as exc:
                ws.close()
                upgrade_error: TransportError | None = exc
            else:
                upgrade_error = None
                self._ws = ws
                self._cond.notify_all()  # the polling writer ends, blocked senders go direct
        if upgrade_error is not None:
            self._fail(TRANSPORT_ERROR, upgrade_error)
            return
        polling = self._polling
        if polling is not None:
            polling.close()
        log.debug("engine.io upgraded to websocket, sid=%s", session.sid)
        self._attach(ws)

    # -- websocket ---------------------------------------------------------------------------
    def _ws_message(self, data: str | bytes) -> None:
        """Loop thread: one websocket message."""
        if data.__class__ is str:
            if data[:1] == "4":
                self._on_message(data[1:])
                return
            try:
                self._handle_control(decode_packet(data))
            except ParseError as exc:
                self._fail(PARSE_ERROR, exc)
            except (TransportError, NotConnectedError) as exc:
                self._fail(TRANSPORT_ERROR, exc)
        else:
            self._on_message(data)

    def _ws_lost(self, exc: TransportError | ParseError) -> None:
        """Loop thread: the websocket failed or the server closed it."""
        if isinstance(exc, ParseError):
            self._fail(PARSE_ERROR, exc)
        elif isinstance(exc, TransportClosed):
            self._fail(TRANSPORT_CLOSE, exc)
        else:
            self._fail(TRANSPORT_ERROR, exc)

    # -- packets -----------------------------------------------------------------------------
    def _handle_packets(self, packets: Sequence[Packet]) -> bool:
        """Deliver a polling batch; False once the session ended."""
        on_message = self._on_message
        for packet in packets:
            if packet.type is _MESSAGE:
                on_message(packet.data)
            elif not self._handle_control(packet):
                return False
        return True

    def _handle_control(self, packet: Packet) -> bool:
        kind = packet.type
        if kind is PacketType.PING:
            self._send_control(self.session.on_ping())
        elif kind is PacketType.CLOSE:
            self._fail(TRANSPORT_CLOSE)
            return False
        elif kind is PacketType.MESSAGE:
            self._on_message(packet.data)
        elif kind is not PacketType.NOOP and kind is not PacketType.PONG:
            raise EngineIOParseError(f"unexpected packet type {int(kind)} from the server")
        return not self.session.closed

    # -- closing -----------------------------------------------------------------------------
    def _fail(self, reason: str, exc: BaseException | None = None) -> None:
        """End the session from inside (reader/writer): close transports, report once."""
        with self._cond:
            if not self.session.close():
                return
            self.close_reason = reason
            self._cond.notify_all()
        if exc is not None:
            log.info("engine.io session %s closed: %s (%s)", self.sid, reason, exc)
        else:
            log.info("engine.io session %s closed: %s", self.sid, reason)
        if reason == PARSE_ERROR and self._ws is None and self._polling is not None:
            # the server would keep the session for pingInterval + pingTimeout: end it now
            try:
                self._post_close((), wait=1.0)
            except (TransportError, TimeoutError, OSError, BadPollBody):
                log.debug("could not send CLOSE after the parse error", exc_info=True)
        self._shutdown_transports()
        self._poll_stopped.set()
        self._notify_close(reason)

    def _notify_close(self, reason: str) -> None:
        try:
            self._on_close(reason)
        except Exception:
            log.exception("engine.io close handler failed")

    def _shutdown_transports(self) -> None:
        with self._cond:
            timer = self._ping_timer
            self._ping_timer = None
        if timer is not None:
            timer.cancel()
        if self._ws is not None:
            self._ws.close()
        if self._polling is not None:
            self._polling.close()

    def close(self, timeout: float = 5.0) -> None:
        """Close from our side ("io client disconnect") and wait for the threads to end."""
        with self._cond:
            first = self.session.close()
            if first:
                self.close_reason = IO_CLIENT_DISCONNECT
            queued = list(self._queue)
            self._queue.clear()
            handshake = self._handshake
            self._cond.notify_all()
        if handshake is not None:  # a connect in progress: fail it now, not at its timeout
            handshake.abort()
        if first:
            self._say_goodbye(queued)
            self._shutdown_transports()
            self._poll_stopped.set()
            self._notify_close(IO_CLIENT_DISCONNECT)
        self.join(timeout)

    def _say_goodbye(self, queued: list[Packet]) -> None:
        """Flush what is queued and send CLOSE, best effort within a short bound."""
        ws = self._ws
        try:
            if ws is not None:
                ws.send([encode_packet(p) for p in [*queued, _CLOSE_PACKET]])
            elif self._polling is not None and self.session.handshake is not None:
                self._post_close(queued)
        except (TransportError, TimeoutError, OSError, BadPollBody):
            log.debug("could not send CLOSE", exc_info=True)

    def _post_close(self, queued: Sequence[Packet], wait: float = 1.0) -> None:
        """On polling: the queued packets, then CLOSE in a POST of its own, as the reference
        client does. In one body the server ends the session before it handles the packets
        before the CLOSE (a namespace DISCONNECT would count as "transport close")."""
        polling = self._polling
        assert polling is not None
        deadline = time.monotonic() + wait
        with self._cond:  # the server refuses a POST overlapping the writer's
            while self._post_in_flight and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
        if queued:
            for body in batch_payloads(list(queued), self.session.max_payload):
                polling.post(body)
        polling.post(encode_payload([_CLOSE_PACKET]))

    def join(self, timeout: float = 5.0) -> None:
        """Wait for this session's threads (all but the caller's own) to end."""
        if self._loop.in_loop():
            return  # the loop never waits; polling threads end by themselves once closed
        deadline = time.monotonic() + timeout
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def upgrade_state(self) -> UpgradeState:
        return self.session.upgrade_state
