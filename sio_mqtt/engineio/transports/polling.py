"""HTTP long-polling on ``requests``: one GET and one POST in flight at most.

GET and POST use separate ``requests.Session`` objects (each keeps its own keep-alive connection,
so a long GET never blocks a POST) that share one cookie jar for sticky sessions.
"""

from __future__ import annotations

import logging
import socket
import weakref
from collections.abc import Callable
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter

from sio_mqtt.engineio.transports.base import (
    TransportClosed,
    TransportError,
    TransportOptions,
    cache_buster,
    redact,
)

log = logging.getLogger("sio_mqtt.engineio")

_POST_HEADERS = {"Content-Type": "text/plain;charset=UTF-8"}


def _error_message(response: requests.Response) -> str:
    """A short description of an Engine.IO error reply ({"code","message"} JSON)."""
    try:
        body = response.json()
        if isinstance(body, dict) and "message" in body:
            return f"HTTP {response.status_code}: {str(body['message'])[:100]}"
    except ValueError:
        pass
    return f"HTTP {response.status_code}"


def _tracking_adapter(
    sockets: weakref.WeakSet[socket.socket], closed: Callable[[], bool]
) -> HTTPAdapter:
    """An adapter whose connections register their sockets, so ``close()`` can shut down a
    long-poll GET (or a handshake) blocked in ``recv`` at once instead of waiting out its read
    timeout; a socket connected after ``close()`` is shut down at once."""

    def track(sock: socket.socket | None) -> None:
        if sock is not None:
            sockets.add(sock)
            if closed():  # close() ran while this one was connecting
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    class TrackedHTTPConnection(urllib3.connection.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            track(self.sock)

    class TrackedHTTPSConnection(urllib3.connection.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            track(self.sock)

    class HTTPPool(urllib3.HTTPConnectionPool):
        ConnectionCls = TrackedHTTPConnection

    class HTTPSPool(urllib3.HTTPSConnectionPool):
        ConnectionCls = TrackedHTTPSConnection

    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1)
    adapter.poolmanager.pool_classes_by_scheme = {"http": HTTPPool, "https": HTTPSPool}
    return adapter


class BadPollBody(ValueError):
    """A poll body that is too large or not UTF-8: the session ends with "parse error"."""


class PollingTransport:
    """The polling side of one Engine.IO session (after the handshake gave us a sid)."""

    name = "polling"

    def __init__(self, options: TransportOptions, max_receive: int = 64 * 1024 * 1024) -> None:
        self.options = options
        #: a poll body above this is hostile (the server ignores our maxPayload when it writes)
        self.max_receive = max_receive
        self.sid: str | None = None
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._get = self._make_session()
        self._post = self._make_session()
        self._closed = False

    def _make_session(self) -> requests.Session:
        session = requests.Session()
        adapter = _tracking_adapter(self._sockets, lambda: self._closed)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.cookies = self.options.cookies
        session.headers.update(self.options.headers)
        session.verify = self.options.verify
        if self.options.proxy:
            session.proxies = {"http": self.options.proxy, "https": self.options.proxy}
        return session

    def _url(self) -> str:
        params = {"transport": "polling", "t": cache_buster()}
        if self.sid:
            params["sid"] = self.sid
        return self.options.endpoint("http", **params)

    def handshake(self) -> str:
        """The first GET; returns the response body (it starts with the OPEN packet)."""
        return self._request(self._get, "GET", self.options.connect_timeout, None)

    def poll(self, read_timeout: float) -> str:
        """One long-poll GET; ``read_timeout`` is the time left before a ping timeout."""
        return self._request(self._get, "GET", max(read_timeout, 0.05), None)

    def post(self, body: str) -> None:
        reply = self._request(self._post, "POST", self.options.connect_timeout, body)
        if reply != "ok":
            log.debug("unexpected POST reply %r", reply[:40])

    def _request(
        self, session: requests.Session, method: str, read_timeout: float, body: str | None
    ) -> str:
        if self._closed:
            raise TransportClosed("polling transport closed")
        kwargs: dict[str, Any] = {
            "timeout": (self.options.connect_timeout, read_timeout),
            # per request: a session-level verify=False or CA path would lose against
            # REQUESTS_CA_BUNDLE from the environment (a long-standing requests quirk)
            "verify": self.options.verify,
        }
        if body is not None:
            kwargs["data"] = body.encode("utf-8")
            kwargs["headers"] = _POST_HEADERS
        try:
            response = session.request(method, self._url(), stream=True, **kwargs)
            with response:
                if response.status_code != 200:
                    raise TransportError(f"polling {method} refused: {_error_message(response)}")
                return self._read_body(response)
        except requests.Timeout as exc:
            raise TimeoutError("polling request timed out") from exc
        except requests.RequestException as exc:
            if self._closed:
                raise TransportClosed("polling transport closed") from exc
            raise TransportError(f"polling {method} failed: {redact(str(exc))}") from exc

    def _read_body(self, response: requests.Response) -> str:
        """The body as text, refusing (without buffering) anything above ``max_receive``."""
        length = response.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_receive:
            raise BadPollBody(f"poll body of {length} bytes exceeds {self.max_receive}")
        chunks: list[bytes] = []
        total = 0
        for chunk in response.iter_content(chunk_size=65536):
            total += len(chunk)
            if total > self.max_receive:
                raise BadPollBody(f"poll body exceeds {self.max_receive} bytes")
            chunks.append(chunk)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadPollBody("poll body is not UTF-8") from exc

    def close(self) -> None:
        """Close both sessions, waking a GET or POST blocked on the network at once."""
        self._closed = True
        for sock in list(self._sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for session in (self._get, self._post):
            try:
                session.close()
            except Exception:  # closing must never raise
                log.debug("closing a polling session failed", exc_info=True)
