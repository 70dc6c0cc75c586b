"""The hostile-input cases of docs/protocol-notes.md, for tests/servers/hostile.py.

``PARSE_ERROR_CASES``: one case per item of the hostile-input list (several per line); each,
sent after a good CONNECT, must end the connection with "parse error". ``HANDSHAKE_CASES``:
malformed handshakes, each of which must make the connection attempt fail. Shared by
tests/interop/test_hostile_server.py (one connection per case) and
tests/interop/test_garbage_fuzz.py (every case on one long-lived client).
"""

from __future__ import annotations

import json
from typing import Any

from servers.hostile import OP_BINARY, OP_CONT, OP_TEXT, HostileCase, RawBody, WsFrame

__all__ = ["HANDSHAKE_CASES", "OVERSIZE", "PARSE_ERROR_CASES", "MiB"]

MiB = 1 << 20
OVERSIZE = 20 * MiB  # above the client's limit max(64 * 1000, 16 MiB) for maxPayload 1000
_CHUNK = b"x" * MiB  # shared by the fragments of a 20 MiB message


def _ph(placeholder: Any = True, **num: Any) -> str:
    """A BINARY_EVENT header with one attachment and a (possibly broken) placeholder."""
    obj: dict[str, Any] = {"_placeholder": placeholder, **num}
    return "451-" + json.dumps(["a", obj])


# The hostile-input list of protocol-notes.md, one case per item (several per line).
PARSE_ERROR_CASES: list[HostileCase] = [
    # huge digit runs in the header; attachment counts far above what is sane
    HostileCase("ack-id-digit-run", frames=("42" + "1" * 100_000 + '["a"]',)),
    HostileCase("ack-id-above-2**53", frames=('429007199254740993["a"]',)),
    HostileCase("attachment-count-digit-run", frames=("45" + "1" * 100_000 + '-["a"]',)),
    HostileCase("attachment-count-insane", frames=('45999999-["a",' + '{"_placeholder":true}]',)),
    HostileCase("attachment-count-above-limit", frames=('4565-["a"]',)),
    HostileCase("binary-ack-count-insane", frames=('46999999-0[{"_placeholder":true,"num":0}]',)),
    HostileCase("attachment-count-not-digits", frames=('45x-["a"]',)),
    # placeholders with a bad num / _placeholder not exactly true
    HostileCase("placeholder-num-out-of-range", frames=(_ph(num=1),)),
    HostileCase("placeholder-num-negative", frames=(_ph(num=-1),)),
    HostileCase("placeholder-num-string", frames=(_ph(num="0"),)),
    HostileCase("placeholder-num-float", frames=(_ph(num=0.0),)),
    HostileCase("placeholder-num-bool", frames=(_ph(num=True),)),
    HostileCase("placeholder-num-missing", frames=(_ph(),)),
    HostileCase("placeholder-false", frames=(_ph(False, num=0),)),
    HostileCase("placeholder-string-true", frames=(_ph("true", num=0),)),
    HostileCase("placeholder-one", frames=(_ph(1, num=0),)),
    HostileCase("placeholder-without-count", frames=('450-["a",{"_placeholder":true,"num":0}]',)),
    # event names that are not strings; reserved names
    HostileCase("event-name-object", frames=('42[{"toString":"x"}]',)),
    HostileCase("event-name-true", frames=('42[true,"x"]',)),
    HostileCase("event-name-null", frames=("42[null]",)),
    HostileCase("event-name-number", frames=("42[1]",)),
    HostileCase("event-name-connect", frames=('42["connect"]',)),
    HostileCase("event-name-disconnect", frames=('42["disconnect",1]',)),
    HostileCase("event-name-connect-error", frames=('42["connect_error"]',)),
    HostileCase("event-name-new-listener", frames=('42["newListener"]',)),
    HostileCase("binary-event-name-null", frames=('451-[null,{"_placeholder":true,"num":0}]',)),
    # truncated / invalid JSON
    HostileCase("truncated-json", frames=('42["a"',)),
    HostileCase("truncated-json-object", frames=('42["a",{"k":',)),
    HostileCase("trailing-garbage", frames=('42["a"]x',)),
    HostileCase("json-nan", frames=('42["a",NaN]',)),
    HostileCase("json-deep-nesting", frames=('42["a",' + "[" * 100_000 + "]" * 100_000 + "]",)),
    # wrong payload kinds
    HostileCase("event-object", frames=("42{}",)),
    HostileCase("event-empty-array", frames=("42[]",)),
    HostileCase("event-string", frames=('42"a"',)),
    HostileCase("connect-array", frames=("40[]",)),
    HostileCase("disconnect-with-payload", frames=("41/admin,{}",)),
    HostileCase("disconnect-root-with-payload", frames=('41["x"]',)),
    HostileCase("ack-without-id", frames=("43[]",)),
    HostileCase("ack-object", frames=("430{}",)),
    HostileCase("connect-error-array", frames=("44[]",)),
    HostileCase("connect-with-ack-id", frames=('405{"sid":"y"}',)),
    # bad ack ids
    HostileCase("ack-id-letters", frames=('42abc["a"]',)),
    HostileCase("ack-id-negative", frames=('42-1["a"]',)),
    HostileCase("ack-letters", frames=("43abc[]",)),
    # unknown types
    HostileCase("socketio-type-9", frames=("4999",)),
    HostileCase("socketio-type-letter", frames=("4abc",)),
    HostileCase("engine-type-letter", frames=("a123",)),
    HostileCase("engine-second-open", frames=('0{"sid":"again"}',)),
    HostileCase("engine-unexpected-upgrade", frames=("5",)),
    # empty packets
    HostileCase("socketio-empty", frames=("4",)),
    HostileCase(
        "engine-empty",
        ws_frames=(WsFrame(OP_TEXT, b""),),
        poll_body=RawBody(b"6\x1e\x1e6"),
    ),
    HostileCase("poll-body-empty", poll_body=RawBody(b"")),
    # invalid base64 after "b" (polling only: websocket binary frames are raw)
    HostileCase("base64-invalid-chars", poll_body=RawBody(b"b!!!!")),
    HostileCase("base64-bad-padding", poll_body=RawBody(b"bAQI")),
    HostileCase("base64-after-header", poll_body=RawBody(_ph(num=0).encode() + b"\x1eb@@==")),
    HostileCase("poll-body-not-utf8", poll_body=RawBody(b'42["\xff\xfe"]')),
    HostileCase("ws-text-not-utf8", ws_frames=(WsFrame(OP_TEXT, b'42["\xff"]'),)),
    # websocket framing (the client parses frames itself)
    HostileCase("ws-reserved-bits", ws_frames=(WsFrame(OP_TEXT, b'42["a"]', rsv=0x40),)),
    HostileCase("ws-unknown-opcode", ws_frames=(WsFrame(0x3, b"x"),)),
    HostileCase("ws-unknown-control-opcode", ws_frames=(WsFrame(0xB),)),
    HostileCase("ws-continuation-without-start", ws_frames=(WsFrame(OP_CONT, b"x"),)),
    HostileCase(
        "ws-data-frame-inside-fragmented",
        ws_frames=(WsFrame(OP_TEXT, b"42", fin=False), WsFrame(OP_TEXT, b'["a"]')),
    ),
    HostileCase(
        "ws-fragments-not-utf8",
        ws_frames=(WsFrame(OP_TEXT, b'42["\xe2', fin=False), WsFrame(OP_CONT, b'"]')),
    ),
    # binary without a pending header; text while attachments are expected
    HostileCase("binary-without-header", frames=(b"\x01\x02\x03",)),
    HostileCase("binary-empty-without-header", frames=(b"",)),
    HostileCase("binary-one-too-many", frames=(_ph(num=0), b"\x01", b"\x02")),
    HostileCase("text-while-attachments-pending", frames=(_ph(num=0), '42["b"]')),
    HostileCase("text-after-partial-attachments", frames=('452-["a"]', b"\x01", '42["b"]')),
    # far above maxPayload (the client's limit is max(64 * maxPayload, 16 MiB))
    HostileCase("oversize-message", big_message=OVERSIZE, max_payload=1000),
    HostileCase(
        "oversize-poll-body-unannounced",
        poll_body=RawBody(b"4", big=OVERSIZE, content_length=False),
        max_payload=1000,
    ),
    HostileCase(
        "oversize-poll-body-announced", poll_body=RawBody(b"4", big=OVERSIZE), max_payload=1000
    ),
    HostileCase(
        "oversize-ws-length-announced-only",
        ws_frames=(WsFrame(OP_BINARY, length=2**62),),
        max_payload=1000,
    ),
    HostileCase(
        "oversize-ws-fragments",
        ws_frames=(
            WsFrame(OP_TEXT, b"4" + _CHUNK[1:], fin=False),
            *[WsFrame(OP_CONT, _CHUNK, fin=False)] * (OVERSIZE // MiB),
            WsFrame(OP_CONT, b"x"),
        ),
        max_payload=1000,
    ),
]


HANDSHAKE_CASES: list[HostileCase] = [
    HostileCase("handshake-truncated-json", handshake='0{"sid":'),
    HostileCase("handshake-not-json", handshake="0sid=abc"),
    HostileCase("handshake-array", handshake="0[]"),
    HostileCase("handshake-no-sid", handshake='0{"pingInterval":25000,"pingTimeout":20000}'),
    HostileCase("handshake-sid-empty", handshake_extra={"sid": ""}),
    HostileCase("handshake-sid-number", handshake_extra={"sid": 12}),
    HostileCase("handshake-ping-interval-string", handshake_extra={"pingInterval": "25000"}),
    HostileCase("handshake-ping-timeout-negative", handshake_extra={"pingTimeout": -1}),
    HostileCase("handshake-ping-interval-huge", handshake_extra={"pingInterval": 10**30}),
    HostileCase("handshake-max-payload-zero", handshake_extra={"maxPayload": 0}),
    HostileCase("handshake-upgrades-string", handshake_extra={"upgrades": "websocket"}),
    HostileCase("handshake-upgrades-numbers", handshake_extra={"upgrades": [1]}),
    HostileCase("handshake-nan", handshake='0{"sid":"a","pingInterval":NaN,"pingTimeout":1}'),
    HostileCase("handshake-not-open", handshake='40{"sid":"x"}'),
    HostileCase("handshake-empty", handshake=""),
]
