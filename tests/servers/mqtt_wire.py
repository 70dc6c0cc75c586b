"""MQTT packets built by hand, independently of paho and of sio_mqtt's own codec.

Standard library only, so it serves both the test suite (``from servers.mqtt_wire import
varint``: the byte streams tests/unit/test_paho_fast.py feeds to paho and ``FastClient``) and
the raw-socket load generators of benchmarks/gateway_bench.py and benchmarks/paho_fast_bench.py
(which put ``<repo>/tests`` on sys.path, as they do for ``servers.procs``).
"""

from __future__ import annotations

import struct

__all__ = ["connect_packet", "publish_packet", "varint"]


def varint(n: int) -> bytes:
    """An MQTT Variable Byte Integer: the remaining length, v5 property lengths and ids."""
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(client_id: str) -> bytes:
    """An MQTT 3.1.1 CONNECT: clean session, keep-alive 60 s, no will, no credentials."""
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    return b"\x10" + varint(len(var)) + var


def publish_packet(
    topic: bytes,
    payload: bytes,
    qos: int,
    mid: int,
    v5: bool,
    props: bytes = b"\x00",
    retain: bool = False,
    dup: bool = False,
) -> bytes:
    """A PUBLISH; ``mid`` is written only for QoS > 0 and ``props`` (already encoded, with
    their length; default: none) only for v5."""
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    if v5:
        body += props
    body += payload
    return bytes([0x30 | (dup << 3) | (qos << 1) | retain]) + varint(len(body)) + body
