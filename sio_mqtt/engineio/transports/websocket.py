"""The websocket transport on ``websocket-client`` (handshake) and our sans-IO frame codec;
read by the I/O loop, written by the caller's thread, TCP_NODELAY."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import select
import selectors
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import requests.utils
import websocket as wsc

from sio_mqtt.engineio.frames import (
    OP_CLOSE,
    OP_PONG,
    Close,
    FrameDecoder,
    MaskKeys,
    Ping,
    Pong,
    encode_frame,
    encode_messages,
    mask_payload,
)
from sio_mqtt.engineio.loop import IOLoop
from sio_mqtt.engineio.transports.base import (
    TransportClosed,
    TransportError,
    TransportOptions,
    redact,
)
from sio_mqtt.errors import ParseError

__all__ = [
    "Handshake",
    "WebSocketTransport",
    "encode_frame",
    "mask_payload",
    "websocket_connect_options",
]

log = logging.getLogger("sio_mqtt.engineio")

_NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)

# websocket-client would read http_proxy/NO_PROXY itself, with rules unlike requests' (no
# all_proxy; NO_PROXY also overriding an explicit proxy), so polling and the websocket could take
# different routes. The proxy is chosen once, below, with requests' rules (the polling
# transport's), and these ``http_no_proxy`` lists stop websocket-client from looking again.
_NO_PROXY_NONE = ["\x00"]  # matches no host ([] would mean "read NO_PROXY from the environment")
_NO_PROXY_ALL = ["*"]


def _proxy_url(options: TransportOptions) -> str | None:
    """The explicit proxy, else the environment's for this URL (http(s)_proxy, all_proxy and
    no_proxy, as requests applies them to the polling requests), else None."""
    if options.proxy:
        return options.proxy
    url = options.endpoint("http")
    proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
    if proxy and "://" not in proxy:
        proxy = "http://" + proxy  # requests accepts "host:port" too
    return proxy or None


def websocket_connect_options(options: TransportOptions, timeout: float) -> dict[str, Any]:
    """Keyword arguments for ``websocket.create_connection`` from our options."""
    kwargs: dict[str, Any] = {
        "timeout": timeout,
        "sockopt": _NODELAY,
        "enable_multithread": True,  # its own pong replies and our sends share one lock
        "skip_utf8_validation": True,  # JSON decoding validates what matters, much faster
    }
    header = [f"{k}: {v}" for k, v in options.headers.items()]
    if header:
        kwargs["header"] = header
    cookie = options.cookie_header()
    if cookie:
        kwargs["cookie"] = cookie
    if options.verify is False:
        kwargs["sslopt"] = {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
    elif isinstance(options.verify, str):
        kwargs["sslopt"] = {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": options.verify}
    proxy_url = _proxy_url(options)
    if proxy_url is None:
        kwargs["http_no_proxy"] = _NO_PROXY_ALL
    else:
        proxy = urllib.parse.urlsplit(proxy_url)
        kwargs["http_no_proxy"] = _NO_PROXY_NONE
        kwargs["http_proxy_host"] = proxy.hostname
        kwargs["http_proxy_port"] = proxy.port or 80
        kwargs["proxy_type"] = proxy.scheme if proxy.scheme in ("socks4", "socks5") else "http"
        if proxy.username:
            kwargs["http_proxy_auth"] = (
                urllib.parse.unquote(proxy.username),
                urllib.parse.unquote(proxy.password or ""),
            )
    return kwargs


_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_RESPONSE_HEAD = 64 * 1024


def upgrade_request(
    sock: socket.socket, parts: urllib.parse.SplitResult, header: list[str], cookie: str | None
) -> tuple[dict[str, list[str]], bytes]:
    """Send the HTTP upgrade on a connected socket, read the 101 response; returns its headers
    (lower-case names, values as lists) and the bytes after it (frames already sent)."""
    key = base64.b64encode(os.urandom(16))
    hostport = parts.netloc.rpartition("@")[2]
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"GET {target} HTTP/1.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Host: {hostport}",
        f"Origin: http://{hostport}",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
        *header,
    ]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise TransportError("websocket closed during the handshake")
        buf += chunk
        if len(buf) > _MAX_RESPONSE_HEAD:
            raise TransportError("websocket handshake response too large")
    head, _, rest = buf.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = status_line.split(" ", 2)
    status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
    if status != 101:
        raise TransportError(f"websocket handshake refused: HTTP {status}")
    headers: dict[str, list[str]] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest()).decode()
    if headers.get("upgrade", [""])[0].lower() != "websocket":
        raise TransportError("websocket handshake: no 'Upgrade: websocket' in the response")
    if headers.get("sec-websocket-accept", [""])[0] != accept:
        raise TransportError("websocket handshake: wrong Sec-WebSocket-Accept")
    return headers, rest


class Handshake:
    """A websocket handshake in progress, abortable from another thread: :meth:`abort` shuts
    its socket down (a blocked ``recv`` fails at once) and makes a TCP connect that is still
    running fail as soon as it returns. (websocket-client's own ``abort`` only acts once the
    handshake is complete.)"""

    def __init__(self, ws: wsc.WebSocket | None) -> None:
        self.ws = ws
        self.sock: socket.socket | None = None
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True
        for sock in (self.sock, self.ws.sock if self.ws is not None else None):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except (OSError, AttributeError):
                    pass


class WebSocketTransport:
    """One open websocket: ``send`` from any thread; reading either blocking with :meth:`recv`
    (handshake, upgrade probe) or, after :meth:`attach`, by the I/O loop.

    websocket-client does the handshake (proxies, TLS, headers); the frames are ours
    (:mod:`sio_mqtt.engineio.frames`, sans-IO). The socket is non-blocking: a send writes what
    the kernel takes at once, in one call per event; the rest waits in a bounded buffer the
    loop flushes when the socket is writable. A writer finding the buffer above
    ``max_buffer`` waits (up to ``send_timeout``) instead of memory growing.
    """

    name = "websocket"

    #: bytes waiting to be written before a sender blocks (back-pressure)
    max_buffer = 4 * 1024 * 1024
    #: how long a blocked sender waits for the buffer to drain before the send fails
    send_timeout = 30.0

    def __init__(
        self,
        sock: socket.socket,
        *,
        ws: wsc.WebSocket | None = None,
        max_message: int = 64 * 1024 * 1024,
        initial: bytes = b"",
    ) -> None:
        """Take over ``sock`` after a completed handshake (``ws``: the websocket-client object
        that made it, kept for its shutdown)."""
        self._ws = ws
        sock.setblocking(False)
        self._sock = sock
        self._ssl = isinstance(sock, ssl.SSLSocket)
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN | select.POLLPRI)
        self._lock = threading.Lock()  # the write side: frames of two senders never interleave
        self._out = bytearray()  # what the kernel did not take yet
        self._keys = MaskKeys()
        self._closed = False
        self._decoder = FrameDecoder(max_message)
        if initial:  # frames that came with the handshake's response
            self._decoder.feed(initial)
        self._loop: IOLoop | None = None
        self._events = 0  # what the loop waits for
        self._read_paused = False
        self._on_message: Callable[[str | bytes], None] | None = None
        self._on_lost: Callable[[TransportError | ParseError], None] | None = None

    @property
    def max_message(self) -> int:
        return self._decoder.max_message

    @max_message.setter
    def max_message(self, value: int) -> None:
        self._decoder.max_message = value

    @classmethod
    def open(
        cls, options: TransportOptions, sid: str | None = None, timeout: float | None = None
    ) -> WebSocketTransport:
        return cls.open_with(wsc.WebSocket, options, sid, timeout)

    @classmethod
    def open_with(
        cls,
        make: Callable[..., wsc.WebSocket],
        options: TransportOptions,
        sid: str | None = None,
        timeout: float | None = None,
        on_socket: Callable[[Handshake], None] | None = None,
    ) -> WebSocketTransport:
        """The blocking handshake; ``on_socket`` receives it as a :class:`Handshake` before it
        starts, so another thread can abort it when it hangs."""
        params = {"transport": "websocket"}
        if sid:
            params["sid"] = sid
        url = options.endpoint("ws", **params)
        timeout = timeout or options.connect_timeout
        kwargs = websocket_connect_options(options, timeout)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "ws" and "http_proxy_host" not in kwargs:
            handshake = Handshake(None)
            if on_socket is not None:
                on_socket(handshake)
            return cls._open_plain(parts, kwargs, timeout, handshake, options)
        ws = make(
            sockopt=kwargs.pop("sockopt"),
            sslopt=kwargs.pop("sslopt", None),
            enable_multithread=kwargs.pop("enable_multithread"),
            skip_utf8_validation=kwargs.pop("skip_utf8_validation"),
        )
        ws.settimeout(kwargs.pop("timeout"))
        handshake = Handshake(ws)
        if on_socket is not None:
            on_socket(handshake)
        try:
            ws.connect(url, **kwargs)  # type: ignore[no-untyped-call]
        except wsc.WebSocketBadStatusException as exc:
            ws.shutdown()  # type: ignore[no-untyped-call]
            raise TransportError(f"websocket handshake refused: HTTP {exc.status_code}") from exc
        except (OSError, wsc.WebSocketException) as exc:
            ws.shutdown()  # type: ignore[no-untyped-call]
            raise TransportError(f"websocket connect failed: {redact(str(exc))}") from exc
        headers = ws.getheaders() or {}
        set_cookie = headers.get("set-cookie")
        if set_cookie:
            options.store_set_cookie([set_cookie])
        if ws.sock is None:
            raise TransportError("websocket closed during the handshake")
        return cls(ws.sock, ws=ws)

    @classmethod
    def _open_plain(
        cls,
        parts: urllib.parse.SplitResult,
        kwargs: dict[str, Any],
        timeout: float,
        handshake: Handshake,
        options: TransportOptions,
    ) -> WebSocketTransport:
        """A plain, direct ws:// handshake of our own: one write, response read in blocks
        (websocket-client reads it a byte per ``recv``, the cost of a connect storm), and
        abortable at every point (the TCP connect included)."""
        try:
            sock = socket.create_connection((parts.hostname, parts.port or 80), timeout)
        except OSError as exc:
            raise TransportError(f"websocket connect failed: {redact(str(exc))}") from exc
        handshake.sock = sock
        try:
            if handshake.aborted:
                raise TransportClosed("websocket connect aborted")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            headers, rest = upgrade_request(
                sock, parts, kwargs.get("header", []), kwargs.get("cookie")
            )
        except OSError as exc:
            sock.close()
            raise TransportError(f"websocket connect failed: {redact(str(exc))}") from exc
        except TransportError:
            sock.close()
            raise
        if headers.get("set-cookie"):
            options.store_set_cookie(headers["set-cookie"])
        return cls(sock, initial=rest)

    # -- the loop ------------------------------------------------------------------------------
    def attach(
        self,
        loop: IOLoop,
        on_message: Callable[[str | bytes], None],
        on_lost: Callable[[TransportError | ParseError], None],
    ) -> None:
        """Hand reading to ``loop``: ``on_message`` for every message (loop thread), then
        ``on_lost`` once when the websocket fails or closes (not after our own :meth:`close`)."""
        self._on_message = on_message
        self._on_lost = on_lost
        with self._lock:
            if self._closed:
                return  # closed while being handed over (a close racing an upgrade)
            self._loop = loop
            self._events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self._out else 0)
            loop.register(self._sock, self, self._events)
        if self._decoder.buffered:  # bytes that came with the handshake's last read
            loop.call_soon(self._deliver)

    def pause_reading(self) -> None:
        """Stop reading (the consumer is full); TCP pushes back on the server."""
        self._read_paused = True
        self._set_events()

    def resume_reading(self) -> None:
        self._read_paused = False
        self._set_events()
        loop = self._loop
        if loop is not None and self._decoder.buffered:
            loop.call_soon(self._deliver)

    def _set_events(self) -> None:
        loop = self._loop
        if loop is None or self._closed:
            return
        with self._lock:
            events = (0 if self._read_paused else selectors.EVENT_READ) | (
                selectors.EVENT_WRITE if self._out else 0
            )
            if events != self._events:
                self._events = events
                loop.modify(self._sock, self, events)

    def on_io(self, mask: int) -> None:
        """Loop thread: the socket is readable and/or writable."""
        if mask & selectors.EVENT_WRITE:
            try:
                with self._lock:
                    self._flush_locked()
                    if not self._out:
                        events = self._events & ~selectors.EVENT_WRITE
                        if events != self._events and not self._closed and self._loop:
                            self._events = events
                            self._loop.modify(self._sock, self, events)
            except TransportError as exc:
                self._lost(exc)
                return
        if mask & selectors.EVENT_READ and not self._read_paused:
            try:
                if self._fill_nowait():
                    self._deliver()
            except (TransportError, ParseError) as exc:
                self._lost(exc)

    def _deliver(self) -> None:
        """Hand every complete message to the consumer; answer pings."""
        on_message = self._on_message
        decoder = self._decoder
        try:
            while not self._read_paused and not self._closed:
                event = decoder.next_event()
                if event is None:
                    return
                if event.__class__ is str or event.__class__ is bytes:
                    on_message(event)  # type: ignore[misc]
                else:
                    self._control(event)  # type: ignore[arg-type]
        except (TransportError, ParseError) as exc:
            self._lost(exc)

    def _lost(self, exc: TransportError | ParseError) -> None:
        if self._closed:
            return
        callback = self._on_lost
        self._on_lost = None
        self.close(send_close=False)
        if callback is not None:
            callback(exc)

    # -- writing ---------------------------------------------------------------------------------
    def send(self, frames: Sequence[str | bytes]) -> None:
        """Send messages back to back, in one write (a binary event stays together)."""
        self.send_raw(encode_messages(frames, self._keys))  # type: ignore[arg-type]

    def send_raw(self, data: bytes) -> None:
        lock = self._lock
        with lock:
            if self._closed:
                raise TransportClosed("websocket closed")
            out = self._out
            if not out:
                try:
                    n = self._sock.send(data)
                except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    n = 0
                except OSError as exc:
                    raise TransportError(f"websocket send failed: {exc}") from exc
                if n == len(data):
                    return
                out += memoryview(data)[n:]
            else:
                out += data
                self._flush_locked()
            if out:
                self._want_write_locked()
            loop = self._loop
            if len(out) <= (self.max_buffer if loop is not None else 0):
                return
            if loop is not None and loop.in_loop():
                return  # the loop itself never waits; it flushes this when it can
        self._wait_drained()

    def _flush_locked(self) -> None:
        out = self._out
        while out:
            try:
                n = self._sock.send(out)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            except OSError as exc:
                raise TransportError(f"websocket send failed: {exc}") from exc
            del out[:n]

    def _want_write_locked(self) -> None:
        loop = self._loop
        if loop is not None and not self._closed and not self._events & selectors.EVENT_WRITE:
            self._events |= selectors.EVENT_WRITE
            loop.modify(self._sock, self, self._events)

    def _wait_drained(self) -> None:
        """Back-pressure: wait (outside the lock) until the buffer is under its bound again."""
        deadline = time.monotonic() + self.send_timeout
        poller = select.poll()
        poller.register(self._sock, select.POLLOUT)
        limit = self.max_buffer if self._loop is not None else 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransportError(
                    f"websocket send buffer stayed full for {self.send_timeout:g} s"
                )
            try:
                poller.poll(max(int(min(left, 0.5) * 1000), 1))
            except OSError as exc:
                raise TransportError(f"websocket send failed: {exc}") from exc
            with self._lock:
                if self._closed:
                    raise TransportClosed("websocket closed")
                self._flush_locked()
                if len(self._out) <= limit:
                    if not self._out and self._loop is not None:
                        pass  # the loop drops its write interest on its next wake
                    return

    # -- reading ---------------------------------------------------------------------------------
    def _fill_nowait(self) -> bool:
        """Read what the socket has into the decoder; False when nothing was there."""
        sock = self._sock
        try:
            chunk = sock.recv(262144)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except OSError as exc:
            if self._closed:
                raise TransportClosed("websocket closed") from exc
            raise TransportError(f"websocket receive failed: {exc}") from exc
        if not chunk:
            raise TransportClosed("websocket closed by the server")
        self._decoder.feed(chunk)
        if self._ssl:
            while sock.pending():  # type: ignore[attr-defined]
                try:
                    chunk = sock.recv(262144)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    break
                except OSError as exc:
                    raise TransportError(f"websocket receive failed: {exc}") from exc
                if not chunk:
                    raise TransportClosed("websocket closed by the server")
                self._decoder.feed(chunk)
        return True

    def _fill(self, timeout: float) -> bool:
        """Blocking mode: wait up to ``timeout`` for bytes; False when none came."""
        if not (self._ssl and self._sock.pending()) and not self._poller.poll(  # type: ignore[attr-defined]
            max(int(timeout * 1000), 1)
        ):
            return False
        self._fill_nowait()
        return True

    def recv(self, timeout: float) -> str | bytes | None:
        """Blocking mode (before :meth:`attach`): the next message, or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        decoder = self._decoder
        while True:
            event = decoder.next_event()
            while event is not None:
                if event.__class__ is str or event.__class__ is bytes:
                    return event
                self._control(event)  # type: ignore[arg-type]
                event = decoder.next_event()
            left = deadline - time.monotonic()
            if left <= 0 or not self._fill(left):
                return None

    def _control(self, event: Ping | Pong | Close) -> None:
        if event.__class__ is Ping:
            self.send_raw(encode_frame(OP_PONG, event.payload, self._keys.next()))
        elif event.__class__ is Close:
            raise TransportClosed("websocket closed by the server")

    def close(self, send_close: bool = True) -> None:
        """Close the socket (sending a close frame, best effort, without waiting)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sock = self._sock
            if send_close and not self._out:
                try:  # an orderly close frame, status 1000
                    sock.send(encode_frame(OP_CLOSE, b"\x03\xe8", self._keys.next()))
                except (OSError, ValueError):
                    pass
            loop = self._loop
        try:
            if loop is not None:
                loop.unregister(sock)
            try:
                # shutdown wakes a thread blocked in poll on this socket at once
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            if self._ws is not None:
                self._ws.shutdown()  # type: ignore[no-untyped-call]
            else:
                sock.close()
        except Exception:  # closing must never raise
            log.debug("websocket close failed", exc_info=True)
