"""Many clients in one process on the shared I/O loop, against the real Node socket.io server:
per-client ordering, a blocked handler stalling nobody else, 1,000 clients reconnecting after a
server restart, prompt disconnect against a black-holed server, no leaked thread, and a thread
count that does not grow with the number of clients."""

from __future__ import annotations

import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import Recorder, client_threads, wait_until

from sio_mqtt import Client, DispatchPool, IOLoop
from sio_mqtt.errors import ConnectError
from sio_mqtt.socketio.dispatcher import shared_pool

WS = ["websocket"]
#: the library's threads with every client idle: the loop plus at most the dispatcher pool
#: (handshake workers end when idle); the same bound for 10 clients as for 1,000
STEADY_THREADS = 1 + shared_pool().workers


@pytest.fixture(autouse=True)
def _enough_descriptors() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 and (hard == resource.RLIM_INFINITY or hard > soft):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        c.disconnect()
    assert client_threads() == []


class Counter:
    def __init__(self) -> None:
        self.value = 0
        self._cond = threading.Condition()

    def add(self, *_: Any) -> None:
        with self._cond:
            self.value += 1
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = 60.0) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: self.value >= n, timeout)
        assert ok, f"{self.value} of {n}"


def connect_all(
    clients: list[Client],
    url: str,
    n: int,
    setup: Callable[[Client], None] = lambda c: None,
    **options: Any,
) -> Counter:
    connected = Counter()
    for _ in range(n):
        c = Client(url, transports=WS, **options)
        c.on("connect", connected.add)
        setup(c)
        clients.append(c)
    for c in clients[-n:]:
        c.connect(wait=False)
    connected.wait_for(n)
    return connected


def steady_threads() -> int:
    """The library's thread count once the connect storm's handshake workers went idle."""
    wait_until(
        lambda: not any("handshake" in t for t in client_threads()), 10, "handshake workers idle"
    )
    return len(client_threads())


def test_events_of_each_client_run_in_arrival_order_one_at_a_time(
    node_server_default: Any, clients: list[Client]
) -> None:
    n_clients, n_events = 20, 300
    seen: list[list[int]] = [[] for _ in range(n_clients)]
    busy = [False] * n_clients
    overlaps: list[int] = []
    done = Counter()

    def setup_for(index: int) -> Callable[[Client], None]:
        def on_echo(i: int) -> None:
            if busy[index]:
                overlaps.append(index)
            busy[index] = True
            seen[index].append(i)
            busy[index] = False
            if i == n_events - 1:
                done.add()

        return lambda c: c.on("echo", on_echo)

    for k in range(n_clients):
        connect_all(clients, node_server_default.url, 1, setup_for(k))
    for i in range(n_events):
        for c in clients:
            c.emit("echo", i)
    done.wait_for(n_clients)
    assert overlaps == []
    assert all(s == list(range(n_events)) for s in seen)


def test_a_handler_blocked_in_call_delays_only_its_own_client(
    node_server_default: Any, clients: list[Client]
) -> None:
    """Client A's handler blocks (waiting on a gate, then in ``call()``); client B keeps
    receiving events and answering calls meanwhile; A's later events wait for A's handler."""
    url = node_server_default.url
    gate = threading.Event()
    a_log = Recorder()
    b_log = Recorder()

    def a_handler(i: int) -> None:
        a_log.record("entered", i)
        if i == 0:
            assert gate.wait(30)
            a_log.record("call", a.call("echo_ack", "from a handler", timeout=10))
        a_log.record("echo", i)

    connect_all(clients, url, 1, lambda c: c.on("echo", a_handler))
    connect_all(clients, url, 1, lambda c: c.on("echo", b_log.handler("echo")))
    a, b = clients
    a.emit("echo", 0)
    a_log.wait("entered", 1)
    a.emit("echo", 1)  # queued behind the blocked handler
    for i in range(50):
        b.emit("echo", i)
    assert [args[0] for args in b_log.wait("echo", 50)] == list(range(50))
    assert b.call("echo_ack", "b still answers", timeout=10) == "b still answers"
    assert a_log.get("echo") == []  # A's second event waits for A's first handler
    gate.set()
    assert [args[0] for args in a_log.wait("echo", 2)] == [0, 1]
    assert a_log.get("call") == [("from a handler",)]  # call() inside a handler: no deadlock


def test_1000_clients_reconnect_after_a_server_restart(node_server: Any) -> None:
    server = node_server()
    made: list[Client] = []
    reconnected = Counter()
    try:
        connect_all(
            made,
            server.url,
            1000,
            lambda c: c.on("reconnect", reconnected.add),
            reconnect_delay=0.2,
            reconnect_delay_max=2.0,
        )
        before = steady_threads()
        assert before <= STEADY_THREADS
        server.restart()
        reconnected.wait_for(1000, timeout=120)
        wait_until(lambda: all(c.connected for c in made), 60, "every client connected again")
        # the reconnection storm ran on the bounded pools: no thread per client
        assert steady_threads() <= STEADY_THREADS
        echoed = Counter()
        for c in made[::100]:
            c.on("echo", echoed.add)
            c.emit("echo", "after the restart")
        echoed.wait_for(10)
    finally:
        for c in made:
            c.disconnect()
    assert client_threads() == []


def test_thread_count_does_not_grow_with_the_number_of_clients(
    node_server_default: Any, clients: list[Client]
) -> None:
    connect_all(clients, node_server_default.url, 10)
    few = steady_threads()
    connect_all(clients, node_server_default.url, 500)
    many = steady_threads()
    assert few <= STEADY_THREADS and many <= STEADY_THREADS, (few, many)


def test_no_library_thread_is_left_after_every_client_disconnected(
    node_server_default: Any,
) -> None:
    made: list[Client] = []
    connect_all(made, node_server_default.url, 50)
    assert made[0].call("echo_ack", 1, timeout=10) == 1
    assert client_threads()
    for c in made:
        c.disconnect()
    assert client_threads() == []


def test_a_private_loop_and_pool_serve_their_clients_and_end_with_them(
    node_server_default: Any,
) -> None:
    loop = IOLoop(name="sio-mqtt-private-loop")
    pool = DispatchPool(workers=2, name="sio-mqtt-private-dispatch")
    made = [
        Client(node_server_default.url, transports=WS, loop=loop, dispatch_pool=pool)
        for _ in range(3)
    ]
    for c in made:
        c.connect()
    assert [c.call("echo_ack", i, timeout=10) for i, c in enumerate(made)] == [0, 1, 2]
    names = client_threads()
    assert "sio-mqtt-private-loop" in names and "sio-mqtt-loop" not in names
    assert all(n.startswith("sio-mqtt-private") for n in names)
    for c in made:
        c.disconnect()
    assert client_threads() == []


class BlackHole:
    """A TCP listener that accepts connections and never answers a byte; ``accepted`` is set
    once a client's connection got in (its handshake is then waiting for the answer)."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._held.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self.sock.close()
        self._thread.join(5)
        for conn in self._held:
            conn.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


# generous upper bound: a correctness bound for "does not wait connect_timeout" (30 s here)
PROMPT = 5.0


@pytest.mark.parametrize("transports", [["websocket"], ["polling", "websocket"]])
def test_disconnect_is_prompt_while_a_blocking_connect_hangs(
    black_hole: BlackHole, transports: list[str]
) -> None:
    c = Client(black_hole.url, transports=transports, connect_timeout=30)
    errors: list[BaseException] = []
    started = threading.Event()

    def connect() -> None:
        started.set()
        try:
            c.connect()
        except ConnectError as exc:
            errors.append(exc)

    t = threading.Thread(target=connect)
    t.start()
    assert started.wait(10)
    assert black_hole.accepted.wait(10)
    t0 = time.monotonic()
    c.disconnect()
    assert time.monotonic() - t0 < PROMPT
    t.join(PROMPT)
    assert not t.is_alive()  # the hanging connect failed now, not after connect_timeout
    assert len(errors) == 1
    wait_until(lambda: client_threads() == [], PROMPT, "no library thread left")


@pytest.mark.parametrize("transports", [["websocket"], ["polling", "websocket"]])
def test_disconnect_is_prompt_while_a_background_connect_hangs(
    black_hole: BlackHole, transports: list[str]
) -> None:
    c = Client(black_hole.url, transports=transports, connect_timeout=30)
    c.connect(wait=False)
    assert black_hole.accepted.wait(10)
    t0 = time.monotonic()
    c.disconnect()
    assert time.monotonic() - t0 < PROMPT
    wait_until(lambda: client_threads() == [], PROMPT, "no library thread left")


def test_disconnect_is_prompt_while_a_reconnection_attempt_hangs(node_server: Any) -> None:
    """Connected, then the server is replaced by a black hole on the same port: the
    reconnection attempt hangs in its handshake, and disconnect() still returns at once."""
    server = node_server()
    log = Recorder()
    c = Client(server.url, transports=WS, connect_timeout=30, reconnect_delay=0.05)
    c.on("reconnect_attempt", log.handler("reconnect_attempt"))
    c.connect()
    port = server.port
    server.stop()
    hole = BlackHole(port)
    try:
        log.wait("reconnect_attempt", 1, timeout=20)
        assert hole.accepted.wait(20)  # an attempt's handshake hangs on the black hole
        t0 = time.monotonic()
        c.disconnect()
        assert time.monotonic() - t0 < PROMPT
        wait_until(lambda: client_threads() == [], PROMPT, f"no thread left: {client_threads()}")
    finally:
        hole.close()
