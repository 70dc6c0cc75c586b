"""Pure Engine.IO session logic: connection state, heartbeat deadline and the upgrade steps.

No sockets and no threads here: the transports and :mod:`sio_mqtt.engineio.client` feed events in
and act on what comes out. The clock is injectable so the deadlines are tested without sleeping.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from sio_mqtt.engineio.packet import Handshake, Packet, PacketType, parse_handshake
from sio_mqtt.errors import EngineIOParseError

Clock = Callable[[], float]

PROBE = "probe"
PING_PROBE = Packet(PacketType.PING, PROBE)
UPGRADE = Packet(PacketType.UPGRADE)
PONG = Packet(PacketType.PONG)


class State(enum.Enum):
    """Lifecycle of one Engine.IO session; never reopened (a reconnect makes a new one)."""

    OPENING = "opening"
    OPEN = "open"
    CLOSED = "closed"


class UpgradeState(enum.Enum):
    """Steps of the polling -> websocket upgrade (see protocol-notes: probe, pause, upgrade)."""

    NONE = "none"  # not started (or not possible)
    PROBING = "probing"  # websocket opened with the sid, "2probe" sent, waiting for "3probe"
    PAUSING = "pausing"  # probe answered; waiting for in-flight polling requests to finish
    DONE = "done"  # "5" sent, the websocket carries everything now
    FAILED = "failed"  # probe failed: polling goes on


@dataclass
class Heartbeat:
    """The ping-timeout rule of Engine.IO v4: the server pings, we expect one every
    ``interval + timeout`` seconds, measured from the handshake and from each ping."""

    interval: float
    timeout: float
    clock: Clock = time.monotonic
    deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.deadline = self.clock() + self.interval + self.timeout

    def remaining(self) -> float:
        """Seconds until the link counts as dead (negative once it does)."""
        return self.deadline - self.clock()

    def expired(self) -> bool:
        return self.clock() >= self.deadline


class EngineSession:
    """State of one Engine.IO session from the handshake to the close.

    ``open()`` validates the handshake; ``on_ping()`` keeps the heartbeat; the ``upgrade_*``
    methods walk the upgrade steps and refuse illegal transitions, which would otherwise show up as
    hard-to-debug races in the threaded client.
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.state = State.OPENING
        self.handshake: Handshake | None = None
        self.heartbeat: Heartbeat | None = None
        self.upgrade_state = UpgradeState.NONE

    # -- handshake -------------------------------------------------------------------------------
    def open(self, packet: Packet, known_transports: Collection[str]) -> Handshake:
        """Take the server's OPEN packet; raises EngineIOParseError when it is not one."""
        if self.state is not State.OPENING:
            raise EngineIOParseError("a second OPEN packet in one session")
        if packet.type is not PacketType.OPEN or not isinstance(packet.data, str):
            raise EngineIOParseError(f"expected an OPEN packet, got type {int(packet.type)}")
        handshake = parse_handshake(packet.data, known_transports)
        self.handshake = handshake
        self.heartbeat = Heartbeat(handshake.ping_interval, handshake.ping_timeout, self.clock)
        self.state = State.OPEN
        return handshake

    @property
    def sid(self) -> str:
        return self.handshake.sid if self.handshake else ""

    @property
    def max_payload(self) -> int:
        return self.handshake.max_payload if self.handshake else 1_000_000

    def can_upgrade_to(self, transport: str, allowed: Collection[str]) -> bool:
        return (
            self.handshake is not None
            and transport in allowed
            and transport in self.handshake.upgrades
            and self.upgrade_state is UpgradeState.NONE
        )

    # -- heartbeat -------------------------------------------------------------------------------
    def on_ping(self) -> Packet:
        """A server ping: reset the deadline and return the PONG to send."""
        if self.heartbeat is not None:
            self.heartbeat.reset()
        return PONG

    def ping_time_left(self) -> float:
        return self.heartbeat.remaining() if self.heartbeat else float("inf")

    def ping_expired(self) -> bool:
        return self.heartbeat is not None and self.heartbeat.expired()

    # -- upgrade ---------------------------------------------------------------------------------
    def upgrade_start(self) -> Packet:
        self._require_upgrade(UpgradeState.NONE)
        self.upgrade_state = UpgradeState.PROBING
        return PING_PROBE

    def upgrade_probe_reply(self, packet: Packet) -> bool:
        """True when the websocket answered the probe correctly; otherwise the upgrade failed."""
        self._require_upgrade(UpgradeState.PROBING)
        if packet.type is PacketType.PONG and packet.data == PROBE:
            self.upgrade_state = UpgradeState.PAUSING
            return True
        self.upgrade_state = UpgradeState.FAILED
        return False

    def upgrade_paused(self) -> Packet:
        """Polling has gone quiet: return the UPGRADE packet to send over the websocket."""
        self._require_upgrade(UpgradeState.PAUSING)
        self.upgrade_state = UpgradeState.DONE
        return UPGRADE

    def upgrade_failed(self) -> None:
        if self.upgrade_state in (UpgradeState.PROBING, UpgradeState.PAUSING):
            self.upgrade_state = UpgradeState.FAILED

    def _require_upgrade(self, expected: UpgradeState) -> None:
        if self.state is not State.OPEN:
            raise RuntimeError(f"upgrade step in session state {self.state.value}")
        if self.upgrade_state is not expected:
            raise RuntimeError(
                f"upgrade step out of order: in {self.upgrade_state.value}, "
                f"expected {expected.value}"
            )

    # -- close -----------------------------------------------------------------------------------
    def close(self) -> bool:
        """Mark the session closed; True only for the first call (so the close runs once)."""
        if self.state is State.CLOSED:
            return False
        self.state = State.CLOSED
        return True

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED
