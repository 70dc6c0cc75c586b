"""Through an HTTP proxy (tests/servers/proxy.py) to the real Node server: long-polling as
absolute-URI GET/POST, the websocket as a CONNECT tunnel; configured with ``proxy=`` or with
the standard environment variables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from servers.procs import NodeServer
from servers.proxy import ForwardingProxy
from support import Recorder, client_threads, wait_until

from sio_mqtt import Client

MODES = {
    "upgrade": ("polling", "websocket"),
    "websocket": ("websocket",),
    "polling": ("polling",),
}
PROXY_VARS = (
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
)


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy settings inherited from the machine running the tests."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def proxy() -> Iterator[ForwardingProxy]:
    with ForwardingProxy() as p:
        yield p


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.disconnect()
    wait_until(lambda: not client_threads(), 10, "client threads to end")


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(node_server: Callable[..., NodeServer], no_proxy_env: pytest.MonkeyPatch) -> NodeServer:
    """The Node server, started once the machine's proxy variables are cleared."""
    return node_server()


def _exercise(client: Client, mode: str) -> None:
    """Connect, reach the mode's final transport, and round-trip events both ways."""
    rec = Recorder()
    client.on("echo", rec.handler("echo"))
    client.connect()
    final = "polling" if mode == "polling" else "websocket"
    wait_until(lambda: client.transport == final, 10, f"the {final} transport")
    client.emit("echo", "hello", {"n": 1}, b"\x00\x01")
    assert rec.wait("echo")[0] == ("hello", {"n": 1}, b"\x00\x01")
    assert client.call("echo_ack", "x", 2, timeout=10) == ("x", 2)


@dataclass
class Rig:
    """What most tests here combine: the server, the proxy, the transport mode and the cleared
    environment (``env``, for the test's own proxy variables), so each test states only the
    proxy settings it is about."""

    server: NodeServer
    proxy: ForwardingProxy
    mode: str
    env: pytest.MonkeyPatch
    clients: list[Client]

    def exercise(self, **options: Any) -> None:
        """A client of the server in this mode, with ``options``, run through :func:`_exercise`
        (and disconnected at teardown)."""
        client = Client(self.server.url, transports=MODES[self.mode], **options)
        self.clients.append(client)
        _exercise(client, self.mode)

    def assert_proxied(self) -> None:
        """The session went through the proxy, the way the mode says, and nothing else did."""
        proxy, port, mode = self.proxy, self.server.port, self.mode
        origin = f"http://127.0.0.1:{port}/socket.io/"
        gets = proxy.count("GET", origin)
        posts = proxy.count("POST", origin)
        tunnels = proxy.count("CONNECT", f"127.0.0.1:{port}")
        if mode == "polling":
            assert gets >= 2  # the handshake and at least one long-poll
            assert posts >= 1  # the namespace CONNECT and the events
            assert tunnels == 0
        elif mode == "websocket":
            assert tunnels == 1  # the whole session in one tunnel
            assert gets == posts == 0
        else:
            assert gets >= 1  # the handshake on polling
            assert tunnels == 1  # the upgrade
        # nothing else went through it (e.g. a request to a wrong host)
        assert len(proxy.requests) == gets + posts + tunnels


@pytest.fixture
def rig(
    server: NodeServer,
    proxy: ForwardingProxy,
    clients: list[Client],
    mode: str,
    no_proxy_env: pytest.MonkeyPatch,
) -> Rig:
    return Rig(server, proxy, mode, no_proxy_env, clients)


def test_explicit_proxy_option(rig: Rig) -> None:
    rig.exercise(proxy=rig.proxy.url)
    rig.assert_proxied()


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_proxy_from_the_environment(rig: Rig, variable: str) -> None:
    rig.env.setenv(variable, rig.proxy.url)
    rig.exercise()
    rig.assert_proxied()


@pytest.mark.parametrize("variable", ["ALL_PROXY", "all_proxy"])
def test_all_proxy_from_the_environment_covers_both_transports(rig: Rig, variable: str) -> None:
    """requests (polling) honours all_proxy; websocket-client alone would not, and the
    websocket would bypass the proxy that carries the polling requests."""
    rig.env.setenv(variable, rig.proxy.url)
    rig.exercise()
    rig.assert_proxied()


def test_proxy_env_without_scheme(rig: Rig) -> None:
    """``http_proxy=host:port`` (no scheme), which requests accepts, works for both."""
    rig.env.setenv("http_proxy", f"{rig.proxy.host}:{rig.proxy.port}")
    rig.exercise()
    rig.assert_proxied()


def test_explicit_proxy_wins_over_no_proxy_env(rig: Rig) -> None:
    """``proxy=`` is used even for a host NO_PROXY names, on both transports alike (requests
    applies NO_PROXY only to environment proxies; websocket-client alone would skip even an
    explicit proxy, splitting the session between two routes)."""
    rig.env.setenv("NO_PROXY", "localhost,127.0.0.1")
    rig.exercise(proxy=rig.proxy.url)
    rig.assert_proxied()


def test_without_proxy_settings_nothing_goes_through_the_proxy(
    server: NodeServer, proxy: ForwardingProxy, clients: list[Client]
) -> None:
    client = Client(server.url)
    clients.append(client)
    _exercise(client, "upgrade")
    assert proxy.requests == []


@pytest.mark.parametrize("variable", ["NO_PROXY", "no_proxy"])
def test_no_proxy_env_bypasses_an_env_proxy(rig: Rig, variable: str) -> None:
    rig.env.setenv("HTTP_PROXY", rig.proxy.url)
    rig.env.setenv(variable, "localhost,127.0.0.1")
    rig.exercise()
    assert rig.proxy.requests == []


def test_a_dead_proxy_fails_connect(server: NodeServer, clients: list[Client], mode: str) -> None:
    from servers.procs import free_port

    from sio_mqtt import ConnectError

    client = Client(
        server.url,
        transports=MODES[mode],
        proxy=f"http://127.0.0.1:{free_port()}",
        connect_timeout=5,
    )
    clients.append(client)
    with pytest.raises(ConnectError):
        client.connect()
