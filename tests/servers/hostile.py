"""A scriptable, deliberately misbehaving Engine.IO v4 / Socket.IO v5 server for tests.

It runs in the test process on background threads and serves both transports on one port:
HTTP long-polling (``http.server``) and WebSocket (the HTTP Upgrade and RFC 6455 framing are
done by hand: server frames are unmasked, client frames masked).

Each Engine.IO connection (one handshake) gets the next :class:`HostileCase` from the list the
test passes (``None`` or running past the end means "behave"). A connection does a correct
handshake (unless the case replaces it), accepts the Socket.IO CONNECT for ``/`` with
``40{"sid":...}``, then sends the case's hostile payload. Otherwise it behaves like a tiny
echo server: an EVENT with an ack id is acknowledged with the event's arguments, an ``echo``
event without one is emitted back. Every connection records what the client sent.
``server.push_case(case)`` scripts the next connection instead; ``conn.send_case(case)`` sends a
case's payload on a connection at any time (both for fuzzing a long-lived client).

    with HostileServer([HostileCase("bad", frames=("42[null]",))]) as server:
        client = Client(server.url, transports=("websocket",))
        ...
        server.connections[0].received  # ["40", ...]
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import io
import json
import re
import secrets
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any

__all__ = ["Connection", "HostileCase", "HostileServer", "RawBody", "WsFrame"]

HOST = "127.0.0.1"
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RS = "\x1e"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_EVENT_RE = re.compile(r"^2(\d*)(\[.*)$", re.DOTALL)


@dataclass(frozen=True)
class WsFrame:
    """A websocket frame sent verbatim (e.g. a text frame whose bytes are not UTF-8).

    ``fin=False`` starts or continues a fragmented message, ``rsv`` sets reserved bits
    (0x10..0x70) and ``length`` announces a length other than the payload's.
    """

    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv: int = 0
    length: int | None = None


@dataclass(frozen=True)
class RawBody:
    """A long-polling GET answer sent verbatim.

    ``big`` > 0 appends that many ``x`` after ``body`` (built only when sent, so a 20 MiB
    case costs nothing while it waits); ``content_length=False`` streams the body in chunks
    with ``Connection: close`` and no length, so the client cannot refuse it upfront.
    """

    body: bytes
    big: int = 0
    content_length: bool = True


@dataclass(frozen=True)
class HostileCase:
    """What one connection does wrong.

    ``frames``: Engine.IO packets sent after the CONNECT reply (text with its type digit, or
    bytes for a binary message); over polling they are encoded into one body (bytes become
    ``b`` + base64). ``poll_body`` / ``ws_frames`` replace ``frames`` for that transport.
    ``big_message``: after the CONNECT reply, one text message ``4xxx...`` of that many bytes.
    ``instead_of_connect_reply``: send the hostile payload in place of the CONNECT reply.
    ``handshake``: the raw first packet (normally ``0{...}``), replacing the correct one;
    ``handshake_extra``: keys merged into the correct one (``{"upgrades": [...]}``).
    ``max_payload``: the ``maxPayload`` the handshake announces.

    Over ``("polling", "websocket")`` a payload still queued for polling when the upgrade
    completes is dropped: script hostile payloads for single-transport clients.
    """

    name: str
    frames: tuple[str | bytes, ...] = ()
    poll_body: RawBody | None = None
    ws_frames: tuple[WsFrame, ...] | None = None
    big_message: int = 0
    instead_of_connect_reply: bool = False
    handshake: str | None = None
    handshake_extra: dict[str, Any] = field(default_factory=dict)
    max_payload: int | None = None

    def applies_to(self, transport: str) -> bool:
        if self.handshake is not None or self.handshake_extra or self.big_message:
            return True
        if transport == "polling":
            return self.poll_body is not None or bool(self.frames)
        return self.ws_frames is not None or bool(self.frames)

    def __str__(self) -> str:
        return self.name


def _ws_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + _WS_GUID).encode("ascii")).digest()).decode()


def _unmask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    mask = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")


def _frame_header(opcode: int, length: int, fin: bool = True, rsv: int = 0) -> bytes:
    first = (0x80 if fin else 0) | rsv | opcode
    if length < 126:
        return struct.pack("!BB", first, length)
    if length < 1 << 16:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def _read_exact(stream: IO[bytes] | io.BufferedIOBase, n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) < n:
        raise ConnectionError("websocket stream ended")
    return data


class _WebSocket:
    """The server side of one websocket (already upgraded)."""

    def __init__(self, sock: socket.socket, rfile: IO[bytes] | io.BufferedIOBase) -> None:
        self.sock = sock
        self.rfile = rfile
        self.lock = threading.Lock()
        self.closed = False

    def send(self, opcode: int, payload: bytes) -> None:
        with self.lock:
            if self.closed:
                raise ConnectionError("websocket closed")
            self.sock.sendall(_frame_header(opcode, len(payload)) + payload)

    def send_frame(self, frame: WsFrame) -> None:
        length = len(frame.payload) if frame.length is None else frame.length
        with self.lock:
            if self.closed:
                raise ConnectionError("websocket closed")
            header = _frame_header(frame.opcode, length, frame.fin, frame.rsv)
            self.sock.sendall(header + frame.payload)

    def send_message(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.send(OP_TEXT, message.encode("utf-8"))
        else:
            self.send(OP_BINARY, message)

    def send_messages(self, messages: Sequence[str | bytes]) -> None:
        """Several data messages, one frame each, in a single write (bulk fuzzing)."""
        parts: list[bytes] = []
        for message in messages:
            if isinstance(message, str):
                payload = message.encode("utf-8")
                parts.append(_frame_header(OP_TEXT, len(payload)))
            else:
                payload = message
                parts.append(_frame_header(OP_BINARY, len(payload)))
            parts.append(payload)
        with self.lock:
            if self.closed:
                raise ConnectionError("websocket closed")
            self.sock.sendall(b"".join(parts))

    def recv(self) -> str | bytes | None:
        """The next data message; None once the peer closed (or the socket broke)."""
        parts: list[bytes] = []
        message_op = None
        while True:
            try:
                b1, b2 = _read_exact(self.rfile, 2)
                length = b2 & 0x7F
                if length == 126:
                    (length,) = struct.unpack("!H", _read_exact(self.rfile, 2))
                elif length == 127:
                    (length,) = struct.unpack("!Q", _read_exact(self.rfile, 8))
                key = _read_exact(self.rfile, 4) if b2 & 0x80 else b""
                payload = _read_exact(self.rfile, length) if length else b""
            except (OSError, ValueError):
                return None
            if key:
                payload = _unmask(payload, key)
            opcode = b1 & 0x0F
            if opcode == OP_CLOSE:
                self.close()
                return None
            if opcode == OP_PING:
                with contextlib.suppress(OSError):
                    self.send(OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                continue
            if opcode != OP_CONT:
                message_op = opcode
                parts = []
            parts.append(payload)
            if b1 & 0x80:
                data = b"".join(parts)
                if message_op == OP_TEXT:
                    return data.decode("utf-8", "replace")
                return data

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            with contextlib.suppress(OSError):
                self.sock.sendall(_frame_header(OP_CLOSE, 2) + struct.pack("!H", 1000))
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


# An item of a polling connection's outgoing queue: an Engine.IO packet or a verbatim body.
_Item = str | bytes | RawBody


class Connection:
    """One Engine.IO session as the server sees it; ``received`` holds every Engine.IO packet
    the client sent (text with its type digit, bytes for binary messages), in order."""

    def __init__(self, server: HostileServer, index: int, case: HostileCase | None) -> None:
        self.server = server
        self.index = index
        self.case = case
        self.sid = secrets.token_urlsafe(12)
        self.socketio_sid = secrets.token_urlsafe(8)
        self.transport = "polling"
        self.received: list[str | bytes] = []
        self.closed = threading.Event()
        self.upgraded = threading.Event()
        self._cond = threading.Condition()
        self._queue: list[_Item] = []
        self._ws: _WebSocket | None = None
        self._get_in_flight = False

    def __repr__(self) -> str:
        return f"<Connection #{self.index} {self.transport} case={self.case}>"

    # -- what the client sent ---------------------------------------------------------------
    def socketio_packets(self) -> list[str | bytes]:
        """The Socket.IO packets (Engine.IO messages without the ``4``) the client sent."""
        with self._cond:
            return [
                p if isinstance(p, bytes) else p[1:]
                for p in self.received
                if isinstance(p, bytes) or p.startswith("4")
            ]

    def wait_received(self, packet: str, timeout: float = 10.0, start: int = 0) -> None:
        """Block until the client sent ``packet`` (an Engine.IO packet, e.g. ``"40"``), looking
        from ``received[start]`` on (each packet is looked at once: cheap on long sessions)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while packet not in self.received[start:]:
                start = max(start, len(self.received))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self!r} never got {packet!r}: {self.received[-10:]}")
                self._cond.wait(left)

    # -- sending ----------------------------------------------------------------------------
    def send(self, packets: Iterable[str | bytes]) -> None:
        """Send Engine.IO packets (text with type digit, or bytes for binary messages).

        Over polling they join the queue the next GET answers (one body for all of them);
        over websocket they go one frame each, in one write."""
        packets = list(packets)
        with self._cond:
            ws = self._ws if self.transport == "websocket" else None
            if ws is None:
                self._queue.extend(packets)
                self._cond.notify_all()
                return
        with contextlib.suppress(OSError):
            ws.send_messages(packets)

    def send_raw_body(self, body: RawBody) -> None:
        with self._cond:
            self._queue.append(body)
            self._cond.notify_all()

    def send_ws_frames(self, frames: Iterable[WsFrame]) -> None:
        ws = self._ws
        if ws is None:
            raise RuntimeError("not on websocket")
        for frame in frames:
            try:
                ws.send_frame(frame)
            except OSError:
                return

    def close(self) -> None:
        with self._cond:
            if self.closed.is_set():
                return
            self.closed.set()
            ws = self._ws
            self._cond.notify_all()
        if ws is not None:
            ws.close()

    # -- protocol ---------------------------------------------------------------------------
    def handshake_text(self, upgrades: list[str]) -> str:
        case = self.case
        if case is not None and case.handshake is not None:
            return case.handshake
        max_payload = self.server.max_payload
        if case is not None and case.max_payload is not None:
            max_payload = case.max_payload
        data: dict[str, Any] = {
            "sid": self.sid,
            "upgrades": upgrades,
            "pingInterval": self.server.ping_interval,
            "pingTimeout": self.server.ping_timeout,
            "maxPayload": max_payload,
        }
        if case is not None:
            data.update(case.handshake_extra)
        return "0" + json.dumps(data)

    def on_packet(self, packet: str | bytes) -> None:
        """Handle one Engine.IO packet from the client (from a POST body or a frame)."""
        with self._cond:
            self.received.append(packet)
            self._cond.notify_all()
        if isinstance(packet, bytes) or not packet:
            return
        kind, data = packet[0], packet[1:]
        if kind == "1":
            self.close()
        elif kind == "2" and data != "probe":
            self.send(["3" + data])
        elif kind == "4":
            self._on_socketio(data)

    def _on_socketio(self, data: str) -> None:
        if data == "0" or data.startswith("0{"):
            case = self.case
            if case is None or not case.instead_of_connect_reply:
                self.send(["40" + json.dumps({"sid": self.socketio_sid})])
            self._send_hostile()
            return
        if data.startswith("0/"):
            nsp = data[1:].split(",", 1)[0]
            self.send([f"44{nsp}," + json.dumps({"message": "Invalid namespace"})])
            return
        match = _EVENT_RE.match(data)
        if match is None:
            return
        try:
            args = json.loads(match.group(2))
        except ValueError:
            return
        if not isinstance(args, list) or not args:
            return
        if match.group(1):
            self.send(["43" + match.group(1) + json.dumps(args[1:])])
        elif args[0] == "echo":
            self.send(["42" + json.dumps(args)])

    def _send_hostile(self) -> None:
        if self.case is not None:
            self.send_case(self.case)

    def send_case(self, case: HostileCase) -> None:
        """Send ``case``'s hostile payload now, as the transport in use gets it (what a
        connection scripted with ``case`` sends after its CONNECT reply)."""
        ws = self._ws if self.transport == "websocket" else None
        if case.big_message:
            if ws is None:  # a body of its own, not joined to the CONNECT reply's
                self.send_raw_body(RawBody(b"4", big=case.big_message - 1))
            else:
                self.send(["4" + "x" * (case.big_message - 1)])
        if ws is not None and case.ws_frames is not None:
            self.send_ws_frames(case.ws_frames)
        elif ws is None and case.poll_body is not None:
            self.send_raw_body(case.poll_body)
        elif case.frames:
            if ws is None:
                # one body of its own, after the CONNECT reply's
                self.send_raw_body(RawBody(_encode_payload(case.frames)))
            else:
                self.send(case.frames)

    # -- polling ----------------------------------------------------------------------------
    def next_poll_body(self, timeout: float) -> RawBody | None:
        """What the pending GET answers: queued packets, a raw body, or a noop on timeout.
        None when the session ended or moved to websocket."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._queue:
                if self.closed.is_set() or self.transport != "polling":
                    return None
                if self._ws is not None:
                    # upgrading: a noop within 100 ms, as the reference server sends them, for
                    # a client that polled again after the noop answering the probe
                    deadline = min(deadline, time.monotonic() + 0.1)
                left = deadline - time.monotonic()
                if left <= 0:
                    return RawBody(b"6")
                self._cond.wait(left)
            if isinstance(self._queue[0], RawBody):
                item = self._queue.pop(0)
                assert isinstance(item, RawBody)
                return item
            packets: list[str | bytes] = []
            while self._queue and not isinstance(self._queue[0], RawBody):
                item = self._queue.pop(0)
                assert not isinstance(item, RawBody)
                packets.append(item)
            return RawBody(_encode_payload(packets))

    # -- websocket ---------------------------------------------------------------------------
    def run_websocket(self, ws: _WebSocket, upgrading: bool) -> None:
        """The read loop of this connection's websocket (in the handler thread)."""
        if upgrading:
            first = ws.recv()
            if first != "2probe":
                ws.close()
                return
            ws.send_message("3probe")
            with self._cond:
                self._ws = ws
                self._queue.append("6")  # answers the pending GET so the client pauses
                self._cond.notify_all()
            upgrade = ws.recv()
            if upgrade != "5":
                ws.close()
                return
            with self._cond:
                self.transport = "websocket"
                pending = [p for p in self._queue if not isinstance(p, RawBody) and p != "6"]
                self._queue.clear()
                self._cond.notify_all()
            self.upgraded.set()
            for packet in pending:
                ws.send_message(packet)
        else:
            with self._cond:
                self._ws = ws
                self.transport = "websocket"
        while not self.closed.is_set():
            message = ws.recv()
            if message is None:
                break
            self.on_packet(message)
        self.close()


def _encode_payload(packets: Sequence[str | bytes]) -> bytes:
    parts = [
        p if isinstance(p, str) else "b" + base64.b64encode(p).decode("ascii") for p in packets
    ]
    return RS.join(parts).encode("utf-8")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: headers and body (and websocket frames) are separate writes, and Nagle's
    # algorithm would hold each small one back until the client's delayed ACK (~40 ms)
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- helpers -----------------------------------------------------------------------------
    def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: int, message: str) -> None:
        body = json.dumps({"code": code, "message": message}).encode()
        self._reply(status, body, "application/json")

    def _send_raw(self, raw: RawBody) -> None:
        if raw.content_length:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=UTF-8")
            self.send_header("Content-Length", str(len(raw.body) + raw.big))
            self.end_headers()
        else:
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=UTF-8")
            self.send_header("Connection", "close")
            self.end_headers()
        self.wfile.write(raw.body)
        chunk = b"x" * (1 << 20)
        left = raw.big
        while left > 0:
            self.wfile.write(chunk[:left])
            left -= len(chunk)
        self.wfile.flush()

    def _params(self) -> tuple[str, dict[str, str]]:
        parts = urllib.parse.urlsplit(self.path)
        return parts.path, dict(urllib.parse.parse_qsl(parts.query))

    # -- entry points ------------------------------------------------------------------------
    def do_GET(self) -> None:
        try:
            self._get()
        except OSError:  # the client went away (e.g. refused an oversize body): fine
            self.close_connection = True

    def do_POST(self) -> None:
        try:
            self._post()
        except OSError:
            self.close_connection = True

    def _get(self) -> None:
        hostile = self.server.hostile
        path, params = self._params()
        if path != hostile.path:
            self._reply(404, b"not found")
            return
        hostile.count_request()
        if params.get("EIO") != "4":
            self._error(400, 5, "Unsupported protocol version")
            return
        transport = params.get("transport")
        sid = params.get("sid")
        if transport == "websocket" and self.headers.get("Upgrade", "").lower() == "websocket":
            self._websocket(sid)
            return
        if transport != "polling":
            self._error(400, 0, "Transport unknown")
            return
        if sid is None:
            conn = hostile.new_connection()
            body = conn.handshake_text(["websocket"]).encode("utf-8")
            self._reply(200, body, "text/plain; charset=UTF-8")
            return
        conn_or_none = hostile.by_sid(sid)
        if conn_or_none is None or conn_or_none.transport != "polling":
            self._error(400, 1, "Session ID unknown")
            return
        conn = conn_or_none
        with conn._cond:
            if conn._get_in_flight:
                conn.close()
                self._error(400, 3, "Bad request")
                return
            conn._get_in_flight = True
        try:
            raw = conn.next_poll_body(hostile.ping_interval / 1000)
        finally:
            with conn._cond:
                conn._get_in_flight = False
        if raw is None:
            if conn.closed.is_set():
                self._reply(200, b"1")
            else:
                self._reply(200, b"6")
            return
        self._send_raw(raw)

    def _post(self) -> None:
        hostile = self.server.hostile
        path, params = self._params()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if path != hostile.path:
            self._reply(404, b"not found")
            return
        hostile.count_request()
        conn = hostile.by_sid(params.get("sid", ""))
        if conn is None or conn.transport != "polling":
            self._error(400, 1, "Session ID unknown")
            return
        self._reply(200, b"ok", "text/html")
        for part in body.decode("utf-8", "replace").split(RS):
            if part.startswith("b"):
                try:
                    conn.on_packet(base64.b64decode(part[1:]))
                except ValueError:
                    conn.on_packet(part)
            else:
                conn.on_packet(part)

    def _websocket(self, sid: str | None) -> None:
        hostile = self.server.hostile
        conn: Connection | None
        if sid is not None:
            conn = hostile.by_sid(sid)
            if conn is None or conn.transport != "polling":
                self._error(400, 1, "Session ID unknown")
                return
        else:
            conn = None
        key = self.headers.get("Sec-WebSocket-Key", "")
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", _ws_accept(key))
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        ws = _WebSocket(self.connection, self.rfile)
        hostile.track(ws)
        try:
            if conn is None:
                conn = hostile.new_connection()
                conn._ws = ws
                conn.transport = "websocket"
                ws.send_message(conn.handshake_text([]))
                conn.run_websocket(ws, upgrading=False)
            else:
                conn.run_websocket(ws, upgrading=True)
        finally:
            ws.close()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hostile: HostileServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hangs up mid-answer is normal here; anything else is a server bug
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        self.hostile.errors.append(exc)
        super().handle_error(request, client_address)


class HostileServer:
    """The server; ``cases[n]`` scripts the n-th Engine.IO connection (None: behave), unless
    :meth:`push_case` scripted it.

    Times are in ms as in the handshake. ``errors`` collects exceptions raised by the server's
    own handler code (tests may assert it stays empty).
    """

    def __init__(
        self,
        cases: Sequence[HostileCase | None] = (),
        *,
        ping_interval: int = 25_000,
        ping_timeout: int = 20_000,
        max_payload: int = 1_000_000,
        path: str = "/socket.io/",
        port: int = 0,
    ) -> None:
        self.cases = list(cases)
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_payload = max_payload
        self.path = path
        self.connections: list[Connection] = []
        self.errors: list[BaseException | None] = []
        self._pushed: collections.deque[HostileCase | None] = collections.deque()
        self.requests = 0
        self._lock = threading.Condition()
        self._sockets: list[_WebSocket] = []
        self._httpd = _HTTPServer((HOST, port), _Handler)
        self._httpd.hostile = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> HostileServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="hostile-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        with self._lock:
            conns = list(self.connections)
            sockets = list(self._sockets)
        for conn in conns:
            conn.close()
        for ws in sockets:
            ws.close()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- connections -------------------------------------------------------------------------
    def push_case(self, case: HostileCase | None) -> None:
        """Script the next connection made with ``case`` (before ``cases``; FIFO)."""
        with self._lock:
            self._pushed.append(case)

    def new_connection(self) -> Connection:
        with self._lock:
            index = len(self.connections)
            if self._pushed:
                case = self._pushed.popleft()
            else:
                case = self.cases[index] if index < len(self.cases) else None
            conn = Connection(self, index, case)
            self.connections.append(conn)
            self._lock.notify_all()
            return conn

    def by_sid(self, sid: str) -> Connection | None:
        with self._lock:
            for conn in self.connections:
                if conn.sid == sid:
                    return conn
        return None

    def connection(self, index: int, timeout: float = 10.0) -> Connection:
        """The ``index``-th connection, waiting for it to be made."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.connections) <= index:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"connection #{index} never came ({len(self.connections)} made)"
                    )
                self._lock.wait(left)
            return self.connections[index]

    def track(self, ws: _WebSocket) -> None:
        with self._lock:
            self._sockets.append(ws)

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1
