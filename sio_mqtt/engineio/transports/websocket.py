"""The websocket transport on ``websocket-client``: one packet per frame, TCP_NODELAY."""

from __future__ import annotations

import logging
import os
import select
import socket
import ssl
import struct
import threading
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

import requests.utils
import websocket as wsc

from sio_mqtt.engineio.transports.base import (
    TransportClosed,
    TransportError,
    TransportOptions,
    redact,
)
from sio_mqtt.errors import EngineIOParseError

log = logging.getLogger("sio_mqtt.engineio")

_OP_TEXT = wsc.ABNF.OPCODE_TEXT
_OP_BINARY = wsc.ABNF.OPCODE_BINARY
_OP_CLOSE = wsc.ABNF.OPCODE_CLOSE
_OP_PING = wsc.ABNF.OPCODE_PING
_OP_PONG = wsc.ABNF.OPCODE_PONG
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


_MASK_POOL_SIZE = 4096
_pack_short = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack
_unpack_short = struct.Struct("!H").unpack_from
_unpack_long = struct.Struct("!Q").unpack_from


class _MaskKeys:
    """Masking keys from ``os.urandom``, fetched 4 KiB at a time (one syscall per 1024 frames)."""

    __slots__ = ("_pool", "_pos")

    def __init__(self) -> None:
        self._pool = b""
        self._pos = _MASK_POOL_SIZE

    def next(self) -> bytes:
        pos = self._pos
        if pos >= _MASK_POOL_SIZE:
            self._pool = os.urandom(_MASK_POOL_SIZE)
            pos = 0
        self._pos = pos + 4
        return self._pool[pos : pos + 4]


def mask_payload(key: bytes, payload: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``key`` repeated (RFC 6455 5.3), in C via big ints."""
    n = len(payload)
    if not n:
        return b""
    repeated = (key * ((n + 3) >> 2))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes, key: bytes) -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        header = bytes((first, 0x80 | n))
    elif n < 65536:
        header = _pack_short(first, 0x80 | 126, n)
    else:
        header = _pack_long(first, 0x80 | 127, n)
    return header + key + mask_payload(key, payload)


class WebSocketTransport:
    """One open websocket. ``send`` may be called from any thread; ``recv`` from one reader.

    websocket-client does the handshake (proxies, TLS, headers); the frames are ours: writing a
    whole event (header and attachments) in one ``sendall`` and parsing frames straight from a
    buffer is several times cheaper per message, and lets us refuse an oversize frame from its
    header instead of after buffering it.
    """

    name = "websocket"

    def __init__(
        self,
        sock: socket.socket,
        *,
        ws: wsc.WebSocket | None = None,
        max_message: int = 64 * 1024 * 1024,
    ) -> None:
        """Take over ``sock`` after a completed handshake (``ws``: the websocket-client object
        that made it, kept for its lock and its shutdown)."""
        self._ws = ws
        sock.settimeout(None)  # blocking: readiness is polled, so a send never times out midway
        self._sock = sock
        self._ssl = isinstance(sock, ssl.SSLSocket)
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN | select.POLLPRI)
        # websocket-client's own lock: its pong replies and our frames never interleave
        lock = ws.lock if ws is not None else None
        self._lock: threading.Lock = lock if lock is not None else threading.Lock()
        self._keys = _MaskKeys()
        self._closed = False
        self.max_message = max_message
        self._buf = bytearray()
        self._pos = 0
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._fragment_size = 0

    @classmethod
    def open(
        cls, options: TransportOptions, sid: str | None = None, timeout: float | None = None
    ) -> WebSocketTransport:
        params = {"transport": "websocket"}
        if sid:
            params["sid"] = sid
        url = options.endpoint("ws", **params)
        try:
            ws = wsc.create_connection(
                url, **websocket_connect_options(options, timeout or options.connect_timeout)
            )
        except wsc.WebSocketBadStatusException as exc:
            raise TransportError(f"websocket handshake refused: HTTP {exc.status_code}") from exc
        except (OSError, wsc.WebSocketException) as exc:
            raise TransportError(f"websocket connect failed: {redact(str(exc))}") from exc
        headers = ws.getheaders() or {}
        set_cookie = headers.get("set-cookie")
        if set_cookie:
            options.store_set_cookie([set_cookie])
        if ws.sock is None:
            raise TransportError("websocket closed during the handshake")
        return cls(ws.sock, ws=ws)

    # -- writing ---------------------------------------------------------------------------------
    def send(self, frames: Sequence[str | bytes]) -> None:
        """Send messages back to back, in one write (a binary event stays together)."""
        keys = self._keys
        try:
            with self._lock:
                if len(frames) == 1:
                    frame = frames[0]
                    if isinstance(frame, str):
                        data = encode_frame(_OP_TEXT, frame.encode(), keys.next())
                    else:
                        data = encode_frame(_OP_BINARY, frame, keys.next())
                else:
                    data = b"".join(
                        encode_frame(_OP_TEXT, f.encode(), keys.next())
                        if isinstance(f, str)
                        else encode_frame(_OP_BINARY, f, keys.next())
                        for f in frames
                    )
                self._sock.sendall(data)
        except OSError as exc:
            raise TransportError(f"websocket send failed: {exc}") from exc

    # -- reading ---------------------------------------------------------------------------------
    def _fill(self, timeout: float) -> bool:
        """Read more bytes into the buffer; False when ``timeout`` passed without any."""
        sock = self._sock
        if not (self._ssl and sock.pending()) and not self._poller.poll(  # type: ignore[attr-defined]
            max(int(timeout * 1000), 1)
        ):
            return False
        try:
            chunk = sock.recv(262144)
        except (BlockingIOError, ssl.SSLWantReadError):
            return True
        except OSError as exc:
            if self._closed:
                raise TransportClosed("websocket closed") from exc
            raise TransportError(f"websocket receive failed: {exc}") from exc
        if not chunk:
            raise TransportClosed("websocket closed by the server")
        buf = self._buf
        if self._pos and self._pos == len(buf):
            buf.clear()
            self._pos = 0
        elif self._pos > 1 << 20:
            del buf[: self._pos]
            self._pos = 0
        buf += chunk
        return True

    def recv(self, timeout: float) -> str | bytes | None:
        """The next message, or None when ``timeout`` passed without one."""
        deadline = time.monotonic() + timeout
        while True:
            message = self._parse()
            if message is not None:
                return message
            left = deadline - time.monotonic()
            if left <= 0 or not self._fill(left):
                return None

    def _parse(self) -> str | bytes | None:
        """Take complete frames from the buffer until a whole message is there."""
        buf = self._buf
        while True:
            pos = self._pos
            avail = len(buf) - pos
            if avail < 2:
                return None
            b0 = buf[pos]
            b1 = buf[pos + 1]
            if b0 & 0x70:
                raise EngineIOParseError("websocket frame with reserved bits set")
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if avail < 4:
                    return None
                length = _unpack_short(buf, pos + 2)[0]
                head = 4
            elif length == 127:
                if avail < 10:
                    return None
                length = _unpack_long(buf, pos + 2)[0]
                head = 10
            masked = b1 & 0x80
            if masked:
                head += 4
            opcode = b0 & 0x0F
            if self._fragment_size + length > self.max_message:
                raise EngineIOParseError(
                    f"websocket message above {self.max_message} bytes refused"
                )
            if avail < head + length:
                return None
            start = pos + head
            payload = bytes(buf[start : start + length])
            if masked:  # servers must not mask; tolerate it anyway
                payload = mask_payload(bytes(buf[start - 4 : start]), payload)
            self._pos = start + length
            fin = b0 & 0x80
            if opcode >= 8:
                self._control(opcode, payload)
                continue
            if opcode == 0:
                if not self._fragment_opcode:
                    raise EngineIOParseError("websocket continuation frame without a start")
            elif self._fragment_opcode:
                raise EngineIOParseError("websocket data frame inside a fragmented message")
            elif not fin:
                self._fragment_opcode = opcode
            if not fin or opcode == 0:
                self._fragments.append(payload)
                self._fragment_size += length
                if not fin:
                    continue
                opcode = self._fragment_opcode
                payload = b"".join(self._fragments)
                self._fragments = []
                self._fragment_opcode = 0
                self._fragment_size = 0
            if opcode == _OP_TEXT:
                try:
                    return payload.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise EngineIOParseError("websocket text frame is not UTF-8") from exc
            if opcode == _OP_BINARY:
                return payload
            raise EngineIOParseError(f"websocket frame with unknown opcode {opcode}")

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == _OP_CLOSE:
            raise TransportClosed("websocket closed by the server")
        if opcode == _OP_PING:
            try:
                with self._lock:
                    self._sock.sendall(encode_frame(_OP_PONG, payload[:125], self._keys.next()))
            except OSError as exc:
                raise TransportError(f"websocket pong failed: {exc}") from exc
        elif opcode != _OP_PONG:
            raise EngineIOParseError(f"websocket control frame with unknown opcode {opcode}")

    def close(self) -> None:
        """Close the socket; a reader blocked in ``recv`` wakes with TransportClosed."""
        if self._closed:
            return
        self._closed = True
        sock = self._sock
        try:
            try:
                sock.settimeout(0.5)
                if self._lock.acquire(timeout=0.5):
                    try:  # an orderly close frame, status 1000
                        sock.sendall(encode_frame(_OP_CLOSE, b"\x03\xe8", self._keys.next()))
                    finally:
                        self._lock.release()
            except OSError:
                pass
            try:
                # shutdown wakes a reader blocked in poll/recv at once
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            if self._ws is not None:
                self._ws.shutdown()  # type: ignore[no-untyped-call]
            else:
                sock.close()
        except Exception:  # closing must never raise
            log.debug("websocket close failed", exc_info=True)
