"""Messages above the server's maxPayload are refused by the client, not sent.

Sent anyway, such a message makes the Node server close the websocket (1009) or refuse the
POST (413): the whole connection, with every other namespace and pending ack, would go. The
client refuses it upfront with PayloadTooLargeError and keeps serving. The boundary is exact:
a message of exactly maxPayload bytes is sent and arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from servers.procs import NodeServer, PySocketIOServer
from support import Recorder, client_threads, wait_until

from sio_mqtt import Client, PayloadTooLargeError
from sio_mqtt.engineio.packet import message_size

LIMIT = 4000
MODES = {"websocket": ("websocket",), "polling": ("polling",)}


@pytest.fixture(scope="module")
def node() -> Iterator[NodeServer]:
    with NodeServer(max_http_buffer_size=LIMIT) as srv:
        yield srv


@pytest.fixture(scope="module")
def pysrv() -> Iterator[PySocketIOServer]:
    with PySocketIOServer(max_http_buffer_size=LIMIT) as srv:
        yield srv


@pytest.fixture(params=[f"{s}-{m}" for s in ("node", "python") for m in MODES])
def client(
    request: pytest.FixtureRequest, node: NodeServer, pysrv: PySocketIOServer
) -> Iterator[Client]:
    server_kind, mode = request.param.split("-")
    server = node if server_kind == "node" else pysrv
    client = Client(server.url, transports=MODES[mode], reconnect_delay=0.05)
    client.connect()
    client.call("reset_count", timeout=5)
    yield client
    client.disconnect()
    wait_until(lambda: not client_threads(), 5, "client threads to end")


def _sizes(client: Client, arg: str | bytes) -> list[int]:
    """Wire sizes of the messages of ``emit("count", arg)`` on the client's transport."""
    messages = client.manager.encode_event("/", "count", [arg], None)
    return [message_size(m, client.transport == "polling") for m in messages]


def _text_of_size(client: Client, size: int) -> str:
    """A string argument whose ``count`` event is exactly ``size`` bytes on the wire."""
    base = _sizes(client, "")[0]
    return "x" * (size - base)


def _bytes_of_size(client: Client, size: int) -> bytes:
    """The largest attachment whose wire size is at most ``size``."""
    n = size
    while max(_sizes(client, b"x" * n)) > size:
        n -= 1
    return b"x" * n


def test_max_payload_is_the_servers(client: Client) -> None:
    assert client.max_payload == LIMIT


@pytest.mark.parametrize("kind", ["text", "binary"])
def test_at_the_limit_sent_above_refused_connection_kept(client: Client, kind: str) -> None:
    rec = Recorder()
    client.on("disconnect", rec.handler("disconnect"))
    make: Callable[[Client, int], Any] = _text_of_size if kind == "text" else _bytes_of_size
    at_limit = make(client, LIMIT)
    assert max(_sizes(client, at_limit)) == LIMIT or kind == "binary"
    client.emit("count", at_limit)
    assert client.call("get_count", timeout=5) == 1  # it arrived: the server took LIMIT bytes

    over = make(client, LIMIT + 3) if kind == "binary" else make(client, LIMIT + 1)
    with pytest.raises(PayloadTooLargeError) as info:
        client.emit("count", over)
    assert info.value.limit == LIMIT and info.value.size > LIMIT
    assert str(LIMIT) in str(info.value)
    with pytest.raises(PayloadTooLargeError):
        client.emit_with_ack("echo_ack", over, timeout=5)
    with pytest.raises(PayloadTooLargeError):
        client.call("echo_ack", over, timeout=5)

    # nothing was sent, the connection is the same one, and it still works
    assert client.call("echo_ack", "still here", timeout=5) == "still here"
    assert client.call("get_count", timeout=5) == 1
    assert client.connected and rec.get("disconnect") == []
    assert client.manager.reconnects == 0


def test_answer_too_large_for_a_servers_ack_is_refused_then_a_small_one_goes(
    client: Client,
) -> None:
    rec = Recorder()
    client.on("client_ack_result", rec.handler("result"))
    refusals: list[PayloadTooLargeError] = []

    def answer(ack: Any, *args: Any) -> None:
        try:
            ack("y" * (LIMIT + 10))
        except PayloadTooLargeError as exc:
            refusals.append(exc)
            ack("small")  # the refused answer left the ack open

    client.on("server_ack", answer, with_ack=True)
    client.emit("server_emit_with_ack", {"event": "server_ack", "args": [1], "timeout": 5000})
    (result,) = rec.wait("result")[0]
    assert result == {"err": None, "res": ["small"]}
    assert len(refusals) == 1 and refusals[0].limit == LIMIT
    assert client.connected and client.manager.reconnects == 0


def test_offline_emits_are_checked_against_the_last_servers_limit(client: Client) -> None:
    over = _text_of_size(client, LIMIT + 1)
    fits = _text_of_size(client, LIMIT)
    client.disconnect()
    with pytest.raises(PayloadTooLargeError):
        client.emit("count", over)  # refused now rather than failing after the reconnect
    client.emit("count", fits)
    assert client.buffered == 1
    client.connect()
    assert client.buffered == 0
    assert client.call("get_count", timeout=5) == 1
