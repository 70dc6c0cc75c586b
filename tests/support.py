"""Test helpers: wait for events instead of sleeping."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

# the three ways a client reaches a server, as the interop tests parametrise them
MODES = {
    "upgrade": ("polling", "websocket"),
    "websocket": ("websocket",),
    "polling": ("polling",),
}


class Recorder:
    """Collects calls per event name; ``wait(name, n)`` blocks until n of them arrived."""

    def __init__(self) -> None:
        self.events: dict[str, list[tuple[Any, ...]]] = {}
        self.order: list[str] = []
        self._cond = threading.Condition()

    def handler(self, name: str, result: Any = None) -> Callable[..., Any]:
        def record(*args: Any) -> Any:
            self.record(name, *args)
            return result

        return record

    def record(self, name: str, *args: Any) -> None:
        with self._cond:
            self.events.setdefault(name, []).append(args)
            self.order.append(name)
            self._cond.notify_all()

    def wait(self, name: str, count: int = 1, timeout: float = 10.0) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.events.get(name, [])) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    got = len(self.events.get(name, []))
                    raise AssertionError(
                        f"waited {timeout} s for {count} x {name!r}, got {got}; "
                        f"seen {self.order[-20:]}"
                    )
                self._cond.wait(left)
            return list(self.events[name])

    def get(self, name: str) -> list[tuple[Any, ...]]:
        with self._cond:
            return list(self.events.get(name, []))


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll a condition that has no event to wait on (e.g. thread counts)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.01)


def client_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("sio-mqtt")]
