"""A small threaded TCP proxy for fault injection (standard library only).

::

    with TcpProxy(upstream_port=server.port) as proxy:   # listens on proxy.port
        ...                      # point the client at 127.0.0.1:proxy.port
        proxy.blackhole()        # stop forwarding; every socket stays open (a network cut)
        proxy.resume()           # forward again (data sent meanwhile arrives late, as in TCP)
        proxy.refuse_new = True  # new connections are accepted and closed at once
        proxy.drop_all()         # close every connection abruptly (RST)

While blackholed nothing is read from either side, so the kernel buffers fill and the peers'
writes eventually block, exactly as with a cut cable; a connection accepted during the cut is
held (its upstream connection is opened only when forwarding resumes).

``taps`` see every chunk before it is forwarded: ``tap(conn_id, direction, data)`` with
``direction`` ``"up"`` (client -> server) or ``"down"`` (server -> client), called on the
connection's pump thread in stream order. A tap must be fast and must not raise.
"""

from __future__ import annotations

import contextlib
import itertools
import select
import socket
import struct
import threading
from collections.abc import Callable

__all__ = ["Tap", "TcpProxy"]

Tap = Callable[[int, str, bytes], None]

_POLL = 0.05
_CHUNK = 65536


def _free_port(host: str) -> int:
    try:
        from servers.procs import free_port  # the suite's port allocator, when importable
    except ImportError:  # pragma: no cover - standalone use
        with socket.socket() as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    return free_port(host)


class _Conn:
    """One proxied connection: the accepted client socket and its upstream socket."""

    def __init__(self, proxy: TcpProxy, conn_id: int, client: socket.socket) -> None:
        self.proxy = proxy
        self.id = conn_id
        self.client = client
        self.upstream: socket.socket | None = None
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self._eofs = 0
        self.thread = threading.Thread(
            target=self._run, name=f"tcp-proxy-{proxy.port}-{conn_id}", daemon=True
        )

    def _run(self) -> None:
        proxy = self.proxy
        try:
            # a connection accepted during a cut waits for the network to come back
            while not proxy._forwarding.wait(_POLL):
                if proxy._stopped.is_set() or self.closed.is_set():
                    return
            try:
                upstream = socket.create_connection(
                    (proxy.upstream_host, proxy.upstream_port), timeout=5
                )
            except OSError:
                return
            upstream.settimeout(None)
            self.upstream = upstream
            for s in (self.client, upstream):
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # one thread per direction: a blocked send never stops the other direction
            down = threading.Thread(
                target=self._pump_safe,
                args=(upstream, self.client, "down"),
                name=f"{self.thread.name}-down",
                daemon=True,
            )
            down.start()
            self._pump(self.client, upstream, "up")
            down.join()
        finally:
            self.close()
            proxy._forget(self)

    def _pump_safe(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            self._pump(src, dst, direction)
        except Exception:
            self.close()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        """Copy src -> dst until EOF (passed on as a half close) or an error (closes both)."""
        proxy = self.proxy
        forwarding = proxy._forwarding
        taps = proxy.taps
        while not self.closed.is_set() and not proxy._stopped.is_set():
            if not forwarding.is_set():
                forwarding.wait(_POLL)  # the cut: leave the data in the kernel buffers
                continue
            try:
                readable, _, _ = select.select([src], [], [], _POLL)
            except (OSError, ValueError):
                self.close()
                return
            if not readable or not forwarding.is_set():
                continue
            try:
                data = src.recv(_CHUNK)
            except OSError:
                self.close()
                return
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                with self._lock:
                    self._eofs += 1
                    both = self._eofs == 2
                if both:
                    self.close()
                return
            for tap in list(taps):
                tap(self.id, direction, data)
            try:
                dst.sendall(data)
            except OSError:
                self.close()
                return

    def close(self, abort: bool = False) -> None:
        with self._lock:
            if self.closed.is_set():
                return
            self.closed.set()
        for s in (self.client, self.upstream):
            if s is None:
                continue
            if abort:  # RST instead of FIN
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                s.close()


class TcpProxy:
    """Forward ``host:port`` to ``upstream_host:upstream_port`` (see the module docstring)."""

    def __init__(
        self,
        upstream_port: int,
        upstream_host: str = "127.0.0.1",
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = host
        self.port = port if port else _free_port(host)
        self.taps: list[Tap] = []
        #: accept new connections and close them at once (an unreachable service)
        self.refuse_new = False
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._stopped = threading.Event()
        self._conns: dict[int, _Conn] = {}
        self._conns_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self.accepted = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> TcpProxy:
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind((self.host, self.port))
        lst.listen(64)
        lst.settimeout(_POLL)
        self._listener = lst
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"tcp-proxy-{self.port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._forwarding.set()
        if self._accept_thread is not None:
            self._accept_thread.join(2)
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        for conn in self.connections():
            conn.close()
            conn.thread.join(2)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------------------------
    @property
    def forwarding(self) -> bool:
        return self._forwarding.is_set()

    def blackhole(self) -> None:
        """Stop forwarding in both directions without closing anything."""
        self._forwarding.clear()

    def resume(self) -> None:
        """Forward again."""
        self._forwarding.set()

    def drop_all(self) -> int:
        """Close every open connection abruptly (RST to both peers); returns how many."""
        conns = self.connections()
        for conn in conns:
            conn.close(abort=True)
        return len(conns)

    def connections(self) -> list[_Conn]:
        with self._conns_lock:
            return list(self._conns.values())

    # -- internals -----------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.refuse_new:
                with contextlib.suppress(OSError):
                    client.close()
                continue
            client.settimeout(None)
            conn = _Conn(self, next(self._ids), client)
            with self._conns_lock:
                self._conns[conn.id] = conn
            conn.thread.start()

    def _forget(self, conn: _Conn) -> None:
        with self._conns_lock:
            self._conns.pop(conn.id, None)

    def __repr__(self) -> str:
        state = "forwarding" if self.forwarding else "blackholed"
        return (
            f"<TcpProxy {self.host}:{self.port} -> {self.upstream_host}:{self.upstream_port} "
            f"{state}, {len(self.connections())} connections>"
        )
