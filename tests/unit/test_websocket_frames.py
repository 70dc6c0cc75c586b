"""Our websocket framing: masking, frame encoding, and the buffered frame parser (over a real
socketpair, with a fake server side that writes raw frames)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sio_mqtt.engineio.transports.base import TransportClosed
from sio_mqtt.engineio.transports.websocket import (
    WebSocketTransport,
    encode_frame,
    mask_payload,
)
from sio_mqtt.errors import EngineIOParseError


def server_frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> bytes:
    """An unmasked frame, as a server sends it."""
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def unmask_client_frame(data: bytes) -> tuple[int, bytes, int]:
    """Decode one masked client frame: (opcode, payload, bytes used)."""
    b0, b1 = data[0], data[1]
    assert b1 & 0x80, "client frames must be masked"
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        n = struct.unpack_from("!H", data, 2)[0]
        pos = 4
    elif n == 127:
        n = struct.unpack_from("!Q", data, 2)[0]
        pos = 10
    key = data[pos : pos + 4]
    payload = mask_payload(key, data[pos + 4 : pos + 4 + n])
    return b0 & 0x0F, payload, pos + 4 + n


@pytest.fixture
def pair() -> Iterator[tuple[WebSocketTransport, socket.socket]]:
    client_sock, server_sock = socket.socketpair()
    transport = WebSocketTransport(client_sock, max_message=1 << 20)
    yield transport, server_sock
    transport.close()
    server_sock.close()


@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
def test_masking_is_an_involution(payload: bytes, key: bytes) -> None:
    masked = mask_payload(key, payload)
    assert len(masked) == len(payload)
    assert mask_payload(key, masked) == payload
    assert masked == bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@settings(max_examples=60)
@given(st.sampled_from([0, 1, 125, 126, 127, 65535, 65536, 70000]), st.sampled_from([1, 2]))
def test_encode_frame_lengths(size: int, opcode: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    frame = encode_frame(opcode, payload, b"\x01\x02\x03\x04")
    op, decoded, used = unmask_client_frame(frame)
    assert (op, decoded, used) == (opcode, payload, len(frame))


def test_send_writes_a_whole_event_in_order(pair: tuple[WebSocketTransport, socket.socket]) -> None:
    transport, server = pair
    transport.send(['451-["e",{"_placeholder":true,"num":0}]', b"\x00\x01", b""])
    data = b""
    frames = []
    while len(frames) < 3:
        data += server.recv(65536)
        while data:
            try:
                op, payload, used = unmask_client_frame(data)
            except (IndexError, struct.error):
                break
            if used > len(data):
                break
            frames.append((op, payload))
            data = data[used:]
    assert frames == [(1, b'451-["e",{"_placeholder":true,"num":0}]'), (2, b"\x00\x01"), (2, b"")]


def test_parser_reads_split_and_batched_frames(
    pair: tuple[WebSocketTransport, socket.socket],
) -> None:
    transport, server = pair
    stream = (
        server_frame(1, "4héllo".encode())
        + server_frame(2, b"\xff" * 70000)
        + server_frame(1, b"42[", fin=False)
        + server_frame(9, b"ping!")  # a control frame between fragments
        + server_frame(0, b'"x"]')
    )
    for i in range(0, len(stream), 999):  # dribble it in
        server.sendall(stream[i : i + 999])
    assert transport.recv(2) == "4héllo"
    assert transport.recv(2) == b"\xff" * 70000
    assert transport.recv(2) == '42["x"]'
    op, payload, _ = unmask_client_frame(server.recv(100))
    assert (op, payload) == (10, b"ping!")  # the ping was answered with a pong


def test_timeout_returns_none_and_keeps_partial_frame(
    pair: tuple[WebSocketTransport, socket.socket],
) -> None:
    transport, server = pair
    frame = server_frame(1, b"4partial")
    server.sendall(frame[:5])
    assert transport.recv(0.05) is None
    server.sendall(frame[5:])
    assert transport.recv(2) == "4partial"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (server_frame(1, b"x", rsv=0x40), "reserved bits"),
        (server_frame(0, b"x"), "continuation"),
        (server_frame(1, b"a", fin=False) + server_frame(1, b"b"), "inside a fragmented"),
        (server_frame(3, b"x"), "unknown opcode"),
        (server_frame(11, b"x"), "unknown opcode"),
        (server_frame(1, b"\xff\xfe"), "UTF-8"),
        (struct.pack("!BBQ", 0x82, 127, 1 << 40), "refused"),  # announced size, no data sent
        (server_frame(2, b"a", fin=False) + struct.pack("!BBQ", 0x00, 127, 1 << 20), "refused"),
    ],
)
def test_hostile_frames_are_parse_errors(
    pair: tuple[WebSocketTransport, socket.socket], raw: bytes, message: str
) -> None:
    transport, server = pair
    server.sendall(raw)
    with pytest.raises(EngineIOParseError, match=message):
        transport.recv(2)


def test_close_frame_and_eof_end_the_transport(
    pair: tuple[WebSocketTransport, socket.socket],
) -> None:
    transport, server = pair
    server.sendall(server_frame(8, b"\x03\xe8"))
    with pytest.raises(TransportClosed):
        transport.recv(2)


def test_eof_is_transport_close() -> None:
    client_sock, server_sock = socket.socketpair()
    transport = WebSocketTransport(client_sock)
    server_sock.close()
    with pytest.raises(TransportClosed):
        transport.recv(2)
    transport.close()


def test_close_sends_close_frame_and_wakes_reader() -> None:
    client_sock, server_sock = socket.socketpair()
    transport = WebSocketTransport(client_sock)
    transport.close()
    op, payload, _ = unmask_client_frame(server_sock.recv(100))
    assert (op, payload) == (8, b"\x03\xe8")
    with pytest.raises((TransportClosed, OSError)):
        transport.recv(0.5)
    server_sock.close()
