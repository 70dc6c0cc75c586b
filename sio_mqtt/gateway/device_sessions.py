"""Pure bookkeeping of device sessions: which MQTT device has which Socket.IO session state.

Each device under ``devices.topic`` may appear to the Socket.IO server as a client of its own. This
module decides, without sockets, threads or a clock of its own, what should happen when a
presence message, a device message or a session outcome arrives: it returns *actions* (open a
session at a given time, close one, refuse with a reason, skip a device another replica owns) and
the runtime executes them. Keeping the decisions here makes every rule (pacing by
``connect_rate``, ``max_sessions``, retry-after-refusal, no reopen after ``io server disconnect``,
idle expiry, partitioning) testable exhaustively.
"""

from __future__ import annotations

import enum
import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from sio_mqtt.socketio.backoff import backoff_delay

__all__ = [
    "Close",
    "DeviceState",
    "DeviceTable",
    "DeviceView",
    "Open",
    "Partition",
    "Refuse",
    "SessionPolicy",
]


class DeviceState(str, enum.Enum):
    """What ``/devices`` and the ``sio_mqtt_device_sessions{state}`` metric show."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    REFUSED = "refused"
    CLOSED = "closed"


@dataclass(frozen=True)
class Open:
    """Open (or retry) the device's session, not before ``at`` (pacing and backoff)."""

    device: str
    at: float


@dataclass(frozen=True)
class Close:
    """Close the device's session: the server sees its socket disconnect."""

    device: str
    reason: str


@dataclass(frozen=True)
class Refuse:
    """Nothing is opened or delivered for the device; report ``reason`` and count it."""

    device: str
    reason: str


Action = Open | Close | Refuse


@dataclass(frozen=True)
class Partition:
    """Replicas split devices by a stable hash of the id (the same on every host and run)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"partition count must be >= 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"partition index must be in 0..{self.count - 1}, got {self.index}")

    def owns(self, device: str) -> bool:
        if self.count == 1:
            return True
        digest = hashlib.blake2b(device.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count == self.index


@dataclass(frozen=True)
class SessionPolicy:
    """The ``devices`` settings that shape decisions (validated by the config layer)."""

    open_on: Literal["presence", "message"] = "presence"
    idle_timeout: float = 0.0
    max_sessions: int = 10_000
    connect_rate: float = 500.0
    retry_base: float = 1.0
    retry_max: float = 30.0
    retry_jitter: float = 0.5


@dataclass(frozen=True)
class DeviceView:
    """One row of ``/devices``."""

    device: str
    state: DeviceState
    sid: str | None
    since: float


@dataclass
class _Entry:
    state: DeviceState
    since: float
    sid: str | None = None
    refusals: int = 0
    last_traffic: float = 0.0


class DeviceTable:
    """The state of every device session this replica owns, and the rules that change it.

    Times are seconds on the runtime's monotonic clock, passed in by the caller.
    """

    def __init__(
        self,
        policy: SessionPolicy,
        partition: Partition | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self.partition = partition or Partition()
        self._rand = rand
        self._entries: dict[str, _Entry] = {}
        self._next_slot = float("-inf")

    # ---- inputs -------------------------------------------------------------------------

    def owns(self, device: str) -> bool:
        """False for another replica's device: its messages are acknowledged at once."""
        return self.partition.owns(device)

    def online(self, device: str, now: float) -> list[Action]:
        """A presence ``online`` (birth) message: open the session unless it is open or opening."""
        entry = self._entries.get(device)
        if entry is not None and entry.state in (DeviceState.CONNECTING, DeviceState.CONNECTED):
            return []
        return [self._open(device, now)]

    def offline(self, device: str, now: float) -> list[Action]:
        """A presence ``offline`` (Last Will) message: close the session if there is one."""
        entry = self._entries.get(device)
        if entry is None or entry.state is DeviceState.CLOSED:
            return []
        self._set(entry, DeviceState.CLOSED, now)
        entry.sid = None
        return [Close(device, "offline")]

    def message(self, device: str, now: float) -> list[Action]:
        """A device message on a ``session: device`` route.

        Returns nothing when the message can go to the session (at once or, for a session being
        opened, once it is connected); else what to do instead.
        """
        entry = self._entries.get(device)
        if entry is not None and entry.state in (DeviceState.CONNECTING, DeviceState.CONNECTED):
            entry.last_traffic = now
            return []
        if self.policy.open_on == "presence":
            return [Refuse(device, "no session")]
        action = self._open(device, now)
        if isinstance(action, Open):
            self._entries[device].last_traffic = now
        return [action]

    def traffic(self, device: str, now: float) -> None:
        """Traffic in either direction keeps a session from expiring."""
        entry = self._entries.get(device)
        if entry is not None:
            entry.last_traffic = now

    # ---- session outcomes ---------------------------------------------------------------

    def connected(self, device: str, sid: str, now: float) -> None:
        entry = self._entries.get(device)
        if entry is None or entry.state is DeviceState.CLOSED:
            return  # closed while connecting: the runtime closes the late session
        self._set(entry, DeviceState.CONNECTED, now)
        entry.sid = sid
        entry.refusals = 0

    def refused(self, device: str, now: float) -> list[Action]:
        """The server refused the CONNECT (auth middleware): retry with backoff."""
        entry = self._entries.get(device)
        if entry is None or entry.state is DeviceState.CLOSED:
            return []
        delay = backoff_delay(
            entry.refusals,
            self.policy.retry_base,
            self.policy.retry_max,
            self.policy.retry_jitter,
            self._rand,
        )
        entry.refusals += 1
        self._set(entry, DeviceState.REFUSED, now)
        entry.sid = None
        return [Open(device, now + delay)]

    def retrying(self, device: str, now: float) -> bool:
        """A scheduled retry is due: True when it should still run (the device did not leave)."""
        entry = self._entries.get(device)
        if entry is None or entry.state is not DeviceState.REFUSED:
            return False
        self._set(entry, DeviceState.CONNECTING, now)
        return True

    def server_closed(self, device: str, now: float) -> None:
        """``io server disconnect``: reopened only by the next ``online`` or message."""
        entry = self._entries.get(device)
        if entry is not None:
            self._set(entry, DeviceState.CLOSED, now)
            entry.sid = None

    def expire_idle(self, now: float) -> list[Action]:
        """Close sessions without traffic for ``idle_timeout`` seconds (0: never)."""
        timeout = self.policy.idle_timeout
        if timeout <= 0:
            return []
        actions: list[Action] = []
        for device, entry in self._entries.items():
            if entry.state is DeviceState.CONNECTED and now - entry.last_traffic >= timeout:
                self._set(entry, DeviceState.CLOSED, now)
                entry.sid = None
                actions.append(Close(device, "idle"))
        return actions

    # ---- views --------------------------------------------------------------------------

    def state(self, device: str) -> DeviceState | None:
        entry = self._entries.get(device)
        return None if entry is None else entry.state

    def views(self) -> Iterator[DeviceView]:
        for device, entry in sorted(self._entries.items()):
            yield DeviceView(device, entry.state, entry.sid, entry.since)

    def counts(self) -> dict[DeviceState, int]:
        counts = dict.fromkeys(DeviceState, 0)
        for entry in self._entries.values():
            counts[entry.state] += 1
        return counts

    def open_sessions(self) -> int:
        """Sessions that hold (or are about to hold) a connection."""
        return sum(1 for e in self._entries.values() if e.state is not DeviceState.CLOSED)

    # ---- rules --------------------------------------------------------------------------

    def _open(self, device: str, now: float) -> Action:
        entry = self._entries.get(device)
        holds_one = entry is not None and entry.state is not DeviceState.CLOSED
        if not holds_one and self.open_sessions() >= self.policy.max_sessions:
            return Refuse(device, f"max_sessions ({self.policy.max_sessions}) reached")
        if entry is None:
            entry = self._entries[device] = _Entry(DeviceState.CONNECTING, now, last_traffic=now)
        else:
            self._set(entry, DeviceState.CONNECTING, now)
            entry.refusals = 0
        return Open(device, self._pace(now))

    def _pace(self, now: float) -> float:
        """The next start time that keeps opens at most ``connect_rate`` per second."""
        spacing = 1.0 / self.policy.connect_rate
        slot = max(now, self._next_slot + spacing)
        self._next_slot = slot
        return slot

    @staticmethod
    def _set(entry: _Entry, state: DeviceState, now: float) -> None:
        if entry.state is not state:
            entry.state = state
            entry.since = now
