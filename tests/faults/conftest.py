"""Fixtures of the fault-injection suite (``-m faults``): real mosquitto, the real Node
socket.io server, the gateway CLI as a subprocess, TCP proxies, killed and restarted for real.

:class:`World` owns every process and client a scenario starts and stops them all at teardown,
in reverse order. Each scenario's numbers (messages, duplicates, down time) are printed in the
terminal summary.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers.procs import Mosquitto, NodeServer, free_port, node_modules_ok
from servers.tcp_proxy import TcpProxy

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_support import Gateway, Publisher, StreamCheck, Subscriber, gateway_config

from sio_mqtt.socketio.client import Client

#: scenario results for the terminal summary: (test id, text)
RESULTS: list[tuple[str, str]] = []

#: mosquitto: never drop queued QoS 1 messages for a slow or offline session (the default
#: max_queued_messages of 1000 would be the broker's own loss, not the gateway's)
BROKER_EXTRA = "max_queued_messages 0\n"


class World:
    """One scenario's processes and clients (see the module docstring)."""

    def __init__(self, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.tmp_path = tmp_path
        self.request = request
        self.prefix = f"f{uuid.uuid4().hex[:8]}"
        self.record_file = tmp_path / "record.jsonl"
        self.t0 = time.monotonic()
        self._owned: list[Any] = []

    # -- processes ---------------------------------------------------------------------------
    def mosquitto(self, persistent: bool = True) -> Mosquitto:
        broker = Mosquitto(
            config_extra=BROKER_EXTRA,
            persistence_dir=(self.tmp_path / "mosquitto-db") if persistent else None,
        )
        self._owned.append(broker)
        return broker.start()

    def node(self, **options: Any) -> NodeServer:
        if not node_modules_ok():
            pytest.exit("tests/servers/node/node_modules is missing: run `make test`", 2)
        options.setdefault("record_file", str(self.record_file))
        options.setdefault("transports", ["websocket"])
        srv = NodeServer(**options)
        self._owned.append(srv)
        return srv.start()

    def proxy(self, upstream_port: int) -> TcpProxy:
        proxy = TcpProxy(upstream_port)
        self._owned.append(proxy)
        return proxy.start()

    def gateway(self, *, mqtt_port: int, sio_url: str, **options: Any) -> Gateway:
        cfg = gateway_config(
            self.prefix,
            mqtt_port=mqtt_port,
            sio_url=sio_url,
            http_port=free_port(),
            tmp_path=self.tmp_path,
            **options,
        )
        gw = Gateway(self.tmp_path, cfg)
        self._owned.append(gw)
        return gw

    # -- clients -----------------------------------------------------------------------------
    def publisher(self, port: int) -> Publisher:
        pub = Publisher(port)
        self._owned.append(pub)
        return pub

    def subscriber(self, port: int, filters: list[str], check: StreamCheck) -> Subscriber:
        sub = Subscriber(port, filters, check, client_id=f"sub-{self.prefix}")
        self._owned.append(sub)
        return sub

    def driver(self, url: str, namespaces: tuple[str, ...] = ("/", "/chat")) -> Client:
        """A Socket.IO client of the test itself (starts server streams, reads records)."""
        client = Client(url, transports=["websocket"], reconnect=False, connect_timeout=5)
        self._owned.append(client)
        client.connect()
        for ns in namespaces[1:]:
            client.socket(ns).connect()
        return client

    # -- reporting ---------------------------------------------------------------------------
    def result(self, text: str) -> None:
        RESULTS.append((self.request.node.name, f"{text} [{time.monotonic() - self.t0:.1f} s]"))

    def close(self) -> None:
        for obj in reversed(self._owned):
            try:
                if isinstance(obj, Client):
                    obj.disconnect()
                elif isinstance(obj, (Publisher, Subscriber)):
                    obj.close()
                elif isinstance(obj, Mosquitto):
                    obj.stop()
                    obj.cleanup()
                else:
                    obj.stop()
            except Exception as exc:  # keep stopping the others
                print(f"teardown of {obj!r} failed: {exc!r}", file=sys.stderr)


@pytest.fixture
def world(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    w = World(tmp_path, request)
    yield w
    w.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("fault-injection scenarios")
    for name, text in RESULTS:
        terminalreporter.write_line(f"{name}: {text}")
