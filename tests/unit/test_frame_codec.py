"""The sans-IO WebSocket frame decoder: bytes in, events out, never a write of its own."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sio_mqtt.engineio.frames import (
    OP_BINARY,
    OP_PING,
    OP_TEXT,
    Close,
    Event,
    FrameDecoder,
    MaskKeys,
    Ping,
    Pong,
    encode_messages,
    mask_payload,
)
from sio_mqtt.errors import EngineIOParseError


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def message_frames(message: str | bytes, pieces: int) -> bytes:
    """``message`` as 1..pieces frames (a fragmented message when more than one)."""
    data = message.encode() if isinstance(message, str) else message
    opcode = OP_TEXT if isinstance(message, str) else OP_BINARY
    if pieces <= 1 or len(data) < 2:
        return server_frame(opcode, data)
    step = max(1, len(data) // pieces)
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    out = [server_frame(opcode, chunks[0], fin=len(chunks) == 1)]
    for i, chunk in enumerate(chunks[1:], 1):
        out.append(server_frame(0, chunk, fin=i == len(chunks) - 1))
    return b"".join(out)


def drain(decoder: FrameDecoder) -> list[Event]:
    events: list[Event] = []
    while (event := decoder.next_event()) is not None:
        events.append(event)
    return events


messages = st.lists(
    st.one_of(st.text(max_size=300), st.binary(max_size=70_000)), min_size=1, max_size=8
)


@settings(max_examples=150, deadline=None)
@given(messages, st.integers(1, 4), st.lists(st.integers(1, 5000), max_size=20), st.data())
def test_any_split_of_any_frames_gives_the_messages_in_order(
    msgs: list[str | bytes], pieces: int, cuts: list[int], data: st.DataObject
) -> None:
    """Fragmented or not, cut at any byte boundaries, with pings between the messages: the
    messages come out whole and in order, each ping as an event at its place."""
    stream = bytearray()
    expected: list[Event] = []
    for m in msgs:
        stream += message_frames(m, pieces)
        expected.append(m)
        if data.draw(st.booleans()):
            payload = data.draw(st.binary(max_size=125))
            stream += server_frame(OP_PING, payload)
            expected.append(Ping(payload))
    decoder = FrameDecoder()
    got: list[Event] = []
    pos = 0
    for cut in cuts:
        decoder.feed(bytes(stream[pos : pos + cut]))
        pos += cut
        got += drain(decoder)
    decoder.feed(bytes(stream[pos:]))
    got += drain(decoder)
    assert got == expected
    assert decoder.buffered == 0


def test_a_partial_frame_waits_for_more_bytes() -> None:
    decoder = FrameDecoder()
    frame = server_frame(OP_TEXT, b"4hello")
    decoder.feed(frame[:3])
    assert decoder.next_event() is None
    assert decoder.buffered == 3
    decoder.feed(frame[3:])
    assert decoder.next_event() == "4hello"


def test_control_frames_are_events_not_writes() -> None:
    decoder = FrameDecoder()
    decoder.feed(server_frame(OP_PING, b"p") + server_frame(0xA, b"q"))
    decoder.feed(server_frame(0x8, b"\x03\xe8bye") + server_frame(0x8, b""))
    assert drain(decoder) == [Ping(b"p"), Pong(b"q"), Close(1000, "bye"), Close(None)]


def test_an_oversize_message_is_refused_from_its_header() -> None:
    decoder = FrameDecoder(max_message=1000)
    decoder.feed(struct.pack("!BBH", 0x82, 126, 1001))  # no payload sent at all
    with pytest.raises(EngineIOParseError, match="above 1000"):
        decoder.next_event()


@given(st.lists(st.one_of(st.text(max_size=200), st.binary(max_size=300)), min_size=1))
def test_encoded_client_frames_are_masked_and_decode_back(msgs: list[str | bytes]) -> None:
    """What we send: masked frames (RFC 6455 5.3) that unmask to the messages."""
    data = encode_messages(msgs, MaskKeys())
    decoded: list[str | bytes] = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert b0 & 0x80 and b1 & 0x80  # final and masked
        n, head = b1 & 0x7F, 2
        if n == 126:
            n, head = struct.unpack_from("!H", data, pos + 2)[0], 4
        elif n == 127:
            n, head = struct.unpack_from("!Q", data, pos + 2)[0], 10
        key = data[pos + head : pos + head + 4]
        payload = mask_payload(key, data[pos + head + 4 : pos + head + 4 + n])
        decoded.append(payload.decode() if b0 & 0x0F == OP_TEXT else payload)
        pos += head + 4 + n
    assert decoded == msgs
