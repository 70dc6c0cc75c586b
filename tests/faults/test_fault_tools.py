"""The fault suite's own tools: the TCP proxy's faults, the MQTT tap, the stream checker."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from fault_support import MqttTap, StreamCheck, stream_payload
from servers.tcp_proxy import TcpProxy

pytestmark = pytest.mark.faults


class EchoServer:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                conn.close()
                return
            conn.sendall(data)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def echo_proxy() -> Iterator[TcpProxy]:
    echo = EchoServer()
    with TcpProxy(echo.port) as proxy:
        yield proxy
    echo.close()


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk, "connection closed"
        out += chunk
    return out


def test_proxy_blackhole_holds_data_without_closing(echo_proxy: TcpProxy) -> None:
    with socket.create_connection(("127.0.0.1", echo_proxy.port), timeout=5) as c:
        c.sendall(b"hello")
        assert _recv_exactly(c, 5) == b"hello"
        echo_proxy.blackhole()
        c.sendall(b"during the cut")
        c.settimeout(0.3)
        with pytest.raises(TimeoutError):
            c.recv(100)  # nothing comes back, and nothing is closed either
        echo_proxy.resume()
        c.settimeout(5)
        assert _recv_exactly(c, 14) == b"during the cut"


def test_proxy_holds_new_connections_during_the_cut(echo_proxy: TcpProxy) -> None:
    echo_proxy.blackhole()
    with socket.create_connection(("127.0.0.1", echo_proxy.port), timeout=5) as c:
        c.sendall(b"x")
        c.settimeout(0.3)
        with pytest.raises(TimeoutError):
            c.recv(1)
        echo_proxy.resume()
        c.settimeout(5)
        assert _recv_exactly(c, 1) == b"x"


def test_proxy_refuse_and_drop(echo_proxy: TcpProxy) -> None:
    with socket.create_connection(("127.0.0.1", echo_proxy.port), timeout=5) as c:
        c.sendall(b"a")
        assert _recv_exactly(c, 1) == b"a"
        assert echo_proxy.drop_all() == 1
        with pytest.raises(OSError):
            c.sendall(b"b")
            if c.recv(1) == b"":
                raise ConnectionResetError
    echo_proxy.refuse_new = True
    with socket.create_connection(("127.0.0.1", echo_proxy.port), timeout=5) as c:
        c.settimeout(5)
        try:
            assert c.recv(1) == b""
        except ConnectionResetError:
            pass


def _publish_packet(topic: str, packet_id: int, payload: bytes, v5: bool = True) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic.encode() + packet_id.to_bytes(2, "big")
    if v5:
        body += b"\x00"  # no properties
    body += payload
    return bytes([0x32]) + _remaining(len(body)) + body


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_mqtt_tap_counts_only_acknowledged_publishes() -> None:
    tap = MqttTap()
    connect = b"\x10\x10\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x03gw1"
    stream = connect + b"".join(
        _publish_packet("t/out", i + 1, stream_payload("t/out", i, "x" * 200)) for i in range(3)
    )
    for i in range(0, len(stream), 7):  # split anywhere
        tap(1, "up", stream[i : i + 7])
    tap(1, "down", b"\x40\x02\x00\x01" + b"\x40\x03\x00\x03\x00")  # PUBACK 1, PUBACK 3 (v5)
    assert tap.snapshot() == {"t/out": {0, 2}}


def test_stream_check_reports_loss_duplicates_and_order() -> None:
    check = StreamCheck(["a"], 6)
    for seq in (0, 1, 3, 2, 3, 5):
        check.add("a", seq)
    (report,) = check.report()
    assert report.missing == [4]
    assert report.duplicates == 1
    assert report.out_of_order == [(2, 3)]
    with pytest.raises(AssertionError, match=r"a: 1 lost: 4\n.*a: 1 out of order"):
        check.assert_ok()
