"""EngineSession and Heartbeat: handshake, ping deadline, upgrade steps and close, on a fake
clock (no sleeping, no sockets)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sio_mqtt.engineio.packet import DEFAULT_MAX_PAYLOAD, Packet, PacketType
from sio_mqtt.engineio.session import (
    PING_PROBE,
    PONG,
    UPGRADE,
    EngineSession,
    Heartbeat,
    State,
    UpgradeState,
)
from sio_mqtt.errors import EngineIOParseError

KNOWN = ("polling", "websocket")


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def open_packet(**overrides: Any) -> Packet:
    data: dict[str, Any] = {
        "sid": "abc",
        "upgrades": ["websocket"],
        "pingInterval": 25000,
        "pingTimeout": 20000,
        "maxPayload": 1000,
    }
    data.update(overrides)
    return Packet(PacketType.OPEN, json.dumps(data))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def session(clock: FakeClock) -> EngineSession:
    s = EngineSession(clock)
    s.open(open_packet(), KNOWN)
    return s


# -- Heartbeat -----------------------------------------------------------------------------------


def test_heartbeat_deadline_is_interval_plus_timeout_from_creation(clock: FakeClock) -> None:
    hb = Heartbeat(interval=25.0, timeout=20.0, clock=clock)
    assert hb.deadline == 1045.0
    assert hb.remaining() == 45.0
    clock.advance(44.999)
    assert not hb.expired()
    assert hb.remaining() == pytest.approx(0.001)
    clock.advance(0.001)
    assert hb.expired()  # the deadline itself counts as expired
    clock.advance(1)
    assert hb.remaining() == pytest.approx(-1.0)


def test_heartbeat_reset_moves_the_deadline(clock: FakeClock) -> None:
    hb = Heartbeat(interval=1.0, timeout=0.5, clock=clock)
    clock.advance(1.4)
    hb.reset()
    assert hb.remaining() == 1.5
    clock.advance(1.4)
    assert not hb.expired()
    clock.advance(0.1)
    assert hb.expired()


@settings(max_examples=200, deadline=None)
@given(
    interval=st.integers(1, 100_000),
    timeout=st.integers(1, 100_000),
    steps=st.lists(st.tuples(st.integers(0, 300_000), st.booleans()), max_size=20),
)
def test_heartbeat_expired_iff_no_reset_within_interval_plus_timeout(
    interval: int, timeout: int, steps: list[tuple[int, bool]]
) -> None:
    """Model check: expired exactly when interval + timeout passed since the last reset.
    Whole seconds keep the float arithmetic exact, so the boundary is tested too."""
    clock = FakeClock(0.0)
    hb = Heartbeat(float(interval), float(timeout), clock)
    last_reset = 0
    now = 0
    for advance, ping in steps:
        now += advance
        clock.now = float(now)
        assert hb.expired() == (now - last_reset >= interval + timeout)
        assert hb.remaining() == last_reset + interval + timeout - now
        if ping:
            hb.reset()
            last_reset = now
            assert not hb.expired()


# -- handshake -----------------------------------------------------------------------------------


def test_new_session_is_opening_without_deadline(clock: FakeClock) -> None:
    s = EngineSession(clock)
    assert s.state is State.OPENING
    assert s.sid == ""
    assert s.max_payload == DEFAULT_MAX_PAYLOAD
    assert s.ping_time_left() == float("inf")
    assert not s.ping_expired()
    assert not s.closed
    assert s.upgrade_state is UpgradeState.NONE
    assert not s.can_upgrade_to("websocket", KNOWN)
    assert s.on_ping() == PONG  # harmless before the handshake


def test_open_takes_the_handshake(clock: FakeClock) -> None:
    s = EngineSession(clock)
    hs = s.open(open_packet(), KNOWN)
    assert s.state is State.OPEN
    assert s.handshake == hs
    assert (hs.sid, hs.upgrades, hs.ping_interval, hs.ping_timeout, hs.max_payload) == (
        "abc",
        ("websocket",),
        25.0,
        20.0,
        1000,
    )
    assert s.sid == "abc"
    assert s.max_payload == 1000
    assert s.ping_time_left() == 45.0  # the deadline starts at the handshake


def test_unknown_upgrades_are_dropped(clock: FakeClock) -> None:
    s = EngineSession(clock)
    hs = s.open(open_packet(upgrades=["webtransport", "websocket", "quic"]), KNOWN)
    assert hs.upgrades == ("websocket",)
    assert s.can_upgrade_to("websocket", KNOWN)
    assert not s.can_upgrade_to("websocket", ("polling",))  # not allowed by the user


def test_no_upgrade_when_the_server_offers_none(clock: FakeClock) -> None:
    s = EngineSession(clock)
    s.open(open_packet(upgrades=[]), KNOWN)
    assert not s.can_upgrade_to("websocket", KNOWN)


@pytest.mark.parametrize(
    "packet",
    [
        Packet(PacketType.MESSAGE, '{"sid":"a"}'),
        Packet(PacketType.NOOP),
        Packet(PacketType.MESSAGE, b"\x00"),
        Packet(PacketType.OPEN, "not json"),
        Packet(PacketType.OPEN, "[]"),
        Packet(PacketType.OPEN, '{"sid":"a"}'),
        open_packet(pingInterval=-1),
        open_packet(sid=""),
    ],
    ids=["message", "noop", "binary", "bad-json", "array", "no-intervals", "negative", "no-sid"],
)
def test_a_bad_first_packet_is_a_parse_error_and_changes_nothing(
    clock: FakeClock, packet: Packet
) -> None:
    s = EngineSession(clock)
    with pytest.raises(EngineIOParseError):
        s.open(packet, KNOWN)
    assert s.state is State.OPENING
    assert s.handshake is None
    assert s.heartbeat is None


def test_double_open_is_a_parse_error(session: EngineSession) -> None:
    with pytest.raises(EngineIOParseError, match="second OPEN"):
        session.open(open_packet(sid="other"), KNOWN)
    assert session.sid == "abc"
    assert session.state is State.OPEN


def test_open_after_close_is_a_parse_error(session: EngineSession) -> None:
    session.close()
    with pytest.raises(EngineIOParseError):
        session.open(open_packet(), KNOWN)
    assert session.closed


# -- heartbeat through the session ---------------------------------------------------------------


def test_ping_resets_the_deadline_and_answers_pong(
    session: EngineSession, clock: FakeClock
) -> None:
    clock.advance(40)
    assert session.ping_time_left() == 5
    assert session.on_ping() == PONG
    assert session.ping_time_left() == 45
    clock.advance(44.5)
    assert not session.ping_expired()
    assert session.on_ping() == PONG
    clock.advance(44.5)
    assert not session.ping_expired()


def test_no_ping_within_interval_plus_timeout_expires(
    session: EngineSession, clock: FakeClock
) -> None:
    clock.advance(45 - 1e-6)
    assert not session.ping_expired()
    clock.advance(1e-6)
    assert session.ping_expired()
    assert session.ping_time_left() <= 0


# -- upgrade -------------------------------------------------------------------------------------


def test_upgrade_happy_path(session: EngineSession) -> None:
    assert session.can_upgrade_to("websocket", KNOWN)
    assert session.upgrade_start() == PING_PROBE == Packet(PacketType.PING, "probe")
    assert session.upgrade_state is UpgradeState.PROBING
    assert not session.can_upgrade_to("websocket", KNOWN)  # one attempt at a time
    assert session.upgrade_probe_reply(Packet(PacketType.PONG, "probe"))
    assert session.upgrade_state is UpgradeState.PAUSING
    assert session.upgrade_paused() == UPGRADE == Packet(PacketType.UPGRADE)
    assert session.upgrade_state is UpgradeState.DONE
    assert not session.can_upgrade_to("websocket", KNOWN)


@pytest.mark.parametrize(
    "reply",
    [
        Packet(PacketType.PONG, "other"),
        Packet(PacketType.PONG, ""),
        Packet(PacketType.PING, "probe"),
        Packet(PacketType.MESSAGE, "probe"),
        Packet(PacketType.MESSAGE, b"probe"),
        Packet(PacketType.CLOSE),
    ],
    ids=["pong-other", "pong-empty", "ping", "message", "binary", "close"],
)
def test_a_wrong_probe_reply_fails_the_upgrade(session: EngineSession, reply: Packet) -> None:
    session.upgrade_start()
    assert session.upgrade_probe_reply(reply) is False
    assert session.upgrade_state is UpgradeState.FAILED
    with pytest.raises(RuntimeError):
        session.upgrade_paused()
    with pytest.raises(RuntimeError):
        session.upgrade_start()  # no second attempt on this session
    assert not session.can_upgrade_to("websocket", KNOWN)


@pytest.mark.parametrize("step", ["probe", "pause"])
def test_upgrade_failed_from_an_active_step(session: EngineSession, step: str) -> None:
    session.upgrade_start()
    if step == "pause":
        session.upgrade_probe_reply(Packet(PacketType.PONG, "probe"))
    session.upgrade_failed()
    assert session.upgrade_state is UpgradeState.FAILED


@pytest.mark.parametrize("state", [UpgradeState.NONE, UpgradeState.DONE])
def test_upgrade_failed_is_a_no_op_outside_an_attempt(
    session: EngineSession, state: UpgradeState
) -> None:
    if state is UpgradeState.DONE:
        session.upgrade_start()
        session.upgrade_probe_reply(Packet(PacketType.PONG, "probe"))
        session.upgrade_paused()
    session.upgrade_failed()
    assert session.upgrade_state is state


def test_upgrade_steps_out_of_order_raise(session: EngineSession) -> None:
    with pytest.raises(RuntimeError, match="out of order"):
        session.upgrade_probe_reply(Packet(PacketType.PONG, "probe"))
    with pytest.raises(RuntimeError, match="out of order"):
        session.upgrade_paused()
    session.upgrade_start()
    with pytest.raises(RuntimeError, match="out of order"):
        session.upgrade_start()
    with pytest.raises(RuntimeError, match="out of order"):
        session.upgrade_paused()  # the probe was not answered yet
    assert session.upgrade_state is UpgradeState.PROBING  # refused steps change nothing
    session.upgrade_probe_reply(Packet(PacketType.PONG, "probe"))
    with pytest.raises(RuntimeError, match="out of order"):
        session.upgrade_probe_reply(Packet(PacketType.PONG, "probe"))
    session.upgrade_paused()
    for step in (
        session.upgrade_start,
        session.upgrade_paused,
        lambda: session.upgrade_probe_reply(Packet(PacketType.PONG, "probe")),
    ):
        with pytest.raises(RuntimeError):
            step()
    assert session.upgrade_state is UpgradeState.DONE


def test_upgrade_steps_need_an_open_session(clock: FakeClock) -> None:
    s = EngineSession(clock)
    with pytest.raises(RuntimeError, match="opening"):
        s.upgrade_start()
    s.open(open_packet(), KNOWN)
    s.upgrade_start()
    s.close()
    with pytest.raises(RuntimeError, match="closed"):
        s.upgrade_probe_reply(Packet(PacketType.PONG, "probe"))
    assert s.upgrade_state is UpgradeState.PROBING


# -- close ---------------------------------------------------------------------------------------


def test_close_reports_only_the_first_call(session: EngineSession) -> None:
    assert session.close() is True
    assert session.closed
    assert session.state is State.CLOSED
    assert session.close() is False
    assert session.closed
    assert session.sid == "abc"  # still known for logs


def test_close_before_the_handshake(clock: FakeClock) -> None:
    s = EngineSession(clock)
    assert s.close() is True
    assert s.close() is False
    assert not s.ping_expired()
