"""The websocket transport on ``websocket-client``: one packet per frame, TCP_NODELAY."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Sequence
from typing import Any

import websocket as wsc

from sio_mqtt.engineio.transports.base import TransportClosed, TransportError, TransportOptions

log = logging.getLogger("sio_mqtt.engineio")

_OP_TEXT = wsc.ABNF.OPCODE_TEXT
_OP_BINARY = wsc.ABNF.OPCODE_BINARY
_OP_CLOSE = wsc.ABNF.OPCODE_CLOSE
_NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


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
    if options.proxy:
        proxy = urllib.parse.urlsplit(options.proxy)
        kwargs["http_proxy_host"] = proxy.hostname
        kwargs["http_proxy_port"] = proxy.port or 80
        kwargs["proxy_type"] = proxy.scheme if proxy.scheme in ("socks4", "socks5") else "http"
        if proxy.username:
            kwargs["http_proxy_auth"] = (
                urllib.parse.unquote(proxy.username),
                urllib.parse.unquote(proxy.password or ""),
            )
    return kwargs


class WebSocketTransport:
    """One open websocket. ``send`` may be called from any thread; ``recv`` from one reader."""

    name = "websocket"

    def __init__(self, ws: wsc.WebSocket) -> None:
        self._ws = ws
        self._lock = threading.Lock()
        self._closed = False

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
            raise TransportError(f"websocket connect failed: {exc}") from exc
        headers = ws.getheaders() or {}
        set_cookie = headers.get("set-cookie")
        if set_cookie:
            options.store_set_cookie([set_cookie])
        return cls(ws)

    def send(self, frames: Sequence[str | bytes]) -> None:
        """Send frames back to back (a binary event's header and attachments stay together)."""
        ws = self._ws
        try:
            with self._lock:
                for frame in frames:
                    if frame.__class__ is str:
                        ws.send(frame, _OP_TEXT)
                    else:
                        ws.send(frame, _OP_BINARY)
        except (OSError, wsc.WebSocketException) as exc:
            raise TransportError(f"websocket send failed: {exc}") from exc

    def recv(self, timeout: float) -> str | bytes | None:
        """The next message, or None when ``timeout`` passed without one."""
        ws = self._ws
        sock = ws.sock
        if sock is None:
            raise TransportClosed("websocket closed")
        sock.settimeout(max(timeout, 0.001))
        try:
            opcode, data = ws.recv_data()
        except wsc.WebSocketTimeoutException:
            return None
        except TimeoutError:
            return None
        except wsc.WebSocketConnectionClosedException as exc:
            raise TransportClosed("websocket closed by the server") from exc
        except (OSError, wsc.WebSocketException) as exc:
            if self._closed:
                raise TransportClosed("websocket closed") from exc
            raise TransportError(f"websocket receive failed: {exc}") from exc
        if opcode == _OP_TEXT:
            try:
                return data.decode("utf-8")  # type: ignore[no-any-return]
            except UnicodeDecodeError as exc:
                raise TransportError("websocket text frame is not UTF-8") from exc
        if opcode == _OP_BINARY:
            return data  # type: ignore[no-any-return]
        if opcode == _OP_CLOSE:
            raise TransportClosed("websocket closed by the server")
        return None

    def close(self) -> None:
        """Close the socket; a reader blocked in ``recv`` wakes with TransportClosed."""
        if self._closed:
            return
        self._closed = True
        sock = self._ws.sock
        try:
            if sock is not None:
                try:
                    sock.settimeout(0.5)
                    with self._lock:
                        self._ws.send_close()  # an orderly close frame (status 1000)
                except (OSError, wsc.WebSocketException):
                    pass
                try:
                    # shutdown wakes a reader blocked in recv at once; ws.close() would wait for it
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._ws.shutdown()  # type: ignore[no-untyped-call]
        except Exception:  # closing must never raise
            log.debug("websocket close failed", exc_info=True)
