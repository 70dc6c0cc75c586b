"""Shared fixtures: real peer servers (Node socket.io 4.8, python-socketio, mosquitto).

Every server runs as a child process on a port picked upfront (never 1883), so
``server.restart()`` brings it back on the same port. See tests/servers/procs.py.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_TESTS_DIR = Path(__file__).resolve().parent
if str(_TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(_TESTS_DIR))

from servers.procs import (  # noqa: E402
    NODE_DIR,
    Amqtt,
    Mosquitto,
    NodeServer,
    PySocketIOServer,
    make_tls_cert,
    node_modules_ok,
)

_NODE_HELP = (
    f"Node test server dependencies are missing ({NODE_DIR}/node_modules). "
    f"Run `make test`, or `cd {NODE_DIR} && npm ci`."
)


@pytest.fixture(scope="session", autouse=True)
def _node_test_server_installed(request: pytest.FixtureRequest) -> None:
    """Fail early, with instructions, if a selected test needs the Node server
    but `npm ci` has not been run."""
    needs_node = False
    for item in request.session.items:
        names = getattr(item, "fixturenames", ())
        if "node_server" in names or "node_server_default" in names:
            needs_node = True
            break
    if not needs_node:
        return
    if shutil.which("node") is None:
        pytest.exit("`node` (Node.js >= 18) is not on PATH; it is needed by the interop tests", 2)
    if not node_modules_ok():
        pytest.exit(_NODE_HELP, 2)


@pytest.fixture
def node_server() -> Iterator[Callable[..., NodeServer]]:
    """Factory: ``node_server(**options) -> NodeServer`` (started).

    Options: port, transports, ping_interval, ping_timeout (ms),
    max_http_buffer_size, connection_state_recovery, parser ("default" |
    "msgpack"), cookie, tls ({key, cert}), path, welcome, server_options.
    All servers are stopped at teardown.
    """
    servers: list[NodeServer] = []

    def factory(**options: Any) -> NodeServer:
        srv = NodeServer(**options)
        servers.append(srv)
        return srv.start()

    yield factory
    for srv in servers:
        srv.stop()


@pytest.fixture(scope="module")
def node_server_default() -> Iterator[NodeServer]:
    """One Node socket.io server (polling + websocket, default options) per module."""
    if not node_modules_ok():
        pytest.exit(_NODE_HELP, 2)
    with NodeServer() as srv:
        yield srv


@pytest.fixture
def py_server() -> Iterator[Callable[..., PySocketIOServer]]:
    """Factory: ``py_server(**options) -> PySocketIOServer`` (started); same options
    as node_server except connection_state_recovery and dynamic namespaces."""
    servers: list[PySocketIOServer] = []

    def factory(**options: Any) -> PySocketIOServer:
        srv = PySocketIOServer(**options)
        servers.append(srv)
        return srv.start()

    yield factory
    for srv in servers:
        srv.stop()


@pytest.fixture
def mosquitto_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Mosquitto]]:
    """Factory: ``mosquitto_factory(port=None, config_extra="", persistence_dir=None,
    persistent=False) -> Mosquitto`` (started). ``persistent=True`` creates a fresh
    persistence directory. All brokers are stopped and cleaned up at teardown."""
    brokers: list[Mosquitto] = []

    def factory(
        port: int | None = None,
        config_extra: str = "",
        persistence_dir: str | Path | None = None,
        persistent: bool = False,
        verbose: bool = False,
    ) -> Mosquitto:
        if persistent and persistence_dir is None:
            persistence_dir = tmp_path_factory.mktemp("mosquitto-db")
        broker = Mosquitto(
            port=port,
            config_extra=config_extra,
            persistence_dir=persistence_dir,
            verbose=verbose,
        )
        brokers.append(broker)
        return broker.start()

    yield factory
    for broker in brokers:
        broker.stop()
        broker.cleanup()


@pytest.fixture(scope="module")
def amqtt() -> Iterator[Amqtt]:
    """One private amqtt broker (MQTT 3.1.1 only, no shared subscriptions) per module."""
    with Amqtt() as broker:
        yield broker


@pytest.fixture(scope="module")
def mosquitto() -> Iterator[Mosquitto]:
    """One private mosquitto broker (no persistence) per module."""
    with Mosquitto() as broker:
        yield broker


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Self-signed ``{"key": path, "cert": path}`` for 127.0.0.1/localhost; pass as
    ``node_server(tls=tls_files)``; use the cert as the client's CA bundle."""
    return make_tls_cert(tmp_path_factory.mktemp("tls"))
