"""A tiny forwarding HTTP proxy for tests (threads, stdlib sockets), in the test process.

* absolute-URI requests (``GET http://host:port/path HTTP/1.1``), as ``requests`` sends
  plain-http traffic through a proxy: forwarded to the origin in origin-form, one request per
  client connection (``Connection: close`` both ways), the response streamed back;
* ``CONNECT host:port`` tunnels, as websocket-client uses for ``ws://`` through a proxy (and
  every client for https): a blind byte pipe once ``200`` is sent.

Every request is recorded as ``(method, target)`` in :attr:`ForwardingProxy.requests`, e.g.
``("GET", "http://127.0.0.1:4000/socket.io/?EIO=4...")`` or ``("CONNECT", "127.0.0.1:4000")``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.parse
from collections.abc import Iterator

__all__ = ["ForwardingProxy"]

HOST = "127.0.0.1"
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
}
_MAX_HEAD = 64 * 1024


class _HeadTooLarge(Exception):
    pass


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read up to the end of an HTTP head; returns (head, bytes already read past it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before the end of the head")
        data += chunk
        if len(data) > _MAX_HEAD:
            raise _HeadTooLarge
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    """Copy bytes until ``src`` ends, then half-close ``dst``."""
    try:
        while True:
            chunk = src.recv(65536)
            if not chunk:
                break
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class ForwardingProxy:
    """``with ForwardingProxy() as proxy: ... proxy.url ... proxy.requests``"""

    def __init__(self, host: str = HOST, port: int = 0) -> None:
        self._listener = socket.create_server((host, port))
        self.host = host
        self.port = int(self._listener.getsockname()[1])
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()
        self._accepter: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- statistics ----------------------------------------------------------------------------
    def methods(self) -> list[str]:
        with self._lock:
            return [method for method, _ in self.requests]

    def count(self, method: str, contains: str = "") -> int:
        with self._lock:
            return sum(1 for m, target in self.requests if m == method and contains in target)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> ForwardingProxy:
        self._accepter = threading.Thread(target=self._accept, name="test-proxy", daemon=True)
        self._accepter.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
            threads = list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(5)
        if self._accepter is not None:
            self._accepter.join(5)

    def __enter__(self) -> ForwardingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _tracked(self, sock: socket.socket) -> Iterator[socket.socket]:
        with self._lock:
            self._sockets.add(sock)
        try:
            yield sock
        finally:
            with self._lock:
                self._sockets.discard(sock)
            sock.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(
                target=self._serve, args=(client,), name="test-proxy-conn", daemon=True
            )
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
            thread.start()

    def _serve(self, client_sock: socket.socket) -> None:
        with self._tracked(client_sock) as client:
            try:
                head, rest = _read_head(client)
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, target, version = request_line.split(" ", 2)
            except (OSError, ValueError, _HeadTooLarge):
                return
            with self._lock:
                self.requests.append((method, target))
            if method == "CONNECT":
                self._tunnel(client, target, rest)
            else:
                self._forward(client, method, target, version, header_lines, rest)

    def _tunnel(self, client: socket.socket, target: str, rest: bytes) -> None:
        host, _, port = target.rpartition(":")
        try:
            upstream_sock = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        with self._tracked(upstream_sock) as upstream:
            upstream.settimeout(None)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
            back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            back.start()
            _pipe(client, upstream)
            back.join()

    def _forward(
        self,
        client: socket.socket,
        method: str,
        target: str,
        version: str,
        header_lines: list[str],
        rest: bytes,
    ) -> None:
        url = urllib.parse.urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        headers = [
            line
            for line in header_lines
            if line and line.split(":", 1)[0].strip().lower() not in _HOP_BY_HOP
        ]
        head = "\r\n".join([f"{method} {path} {version}", *headers, "Connection: close", "", ""])
        try:
            upstream_sock = socket.create_connection((url.hostname, url.port or 80), timeout=10)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        with self._tracked(upstream_sock) as upstream:
            upstream.settimeout(None)
            upstream.sendall(head.encode("latin-1") + rest)  # and the body that came with it
            # the rest of a request body, if any, follows on the client socket
            sender = threading.Thread(target=_pipe, args=(client, upstream), daemon=True)
            sender.start()
            try:
                response_head, body_start = _read_head(upstream)
            except (OSError, _HeadTooLarge):
                return
            status_line, *response_headers = response_head.decode("latin-1").split("\r\n")
            kept = [
                line
                for line in response_headers
                if line.split(":", 1)[0].strip().lower() not in _HOP_BY_HOP
            ]
            out = "\r\n".join([status_line, *kept, "Connection: close", "", ""])
            try:
                client.sendall(out.encode("latin-1") + body_start)
            except OSError:
                return
            _pipe(upstream, client)  # until the origin closes (we asked it to)
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            sender.join(5)
