"""Reconnection delays: exponential backoff with jitter, as the reference client computes them."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator


def backoff_delay(
    attempt: int,
    base: float,
    maximum: float,
    randomization_factor: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Delay in seconds before reconnection ``attempt`` (0 for the first).

    ``base * 2**attempt``, moved up or down by at most ``randomization_factor`` of itself, and
    never above ``maximum``. Jitter keeps a fleet of clients from reconnecting in lock step.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    delay = base * float(2 ** min(attempt, 62))
    if randomization_factor:
        r = rand()
        deviation = r * randomization_factor * delay
        delay = delay - deviation if int(r * 10) & 1 == 0 else delay + deviation
    return max(0.0, min(delay, maximum))


def backoff_delays(
    base: float,
    maximum: float,
    randomization_factor: float,
    rand: Callable[[], float] = random.random,
) -> Iterator[float]:
    """The endless sequence of delays for attempts 0, 1, 2, ..."""
    attempt = 0
    while True:
        yield backoff_delay(attempt, base, maximum, randomization_factor, rand)
        attempt += 1


class ReconnectPolicy:
    """The pure state of one series of connection attempts (the reference client's backoff).

    ``next_delay()`` returns how long to wait before the next attempt and counts it, or None
    once ``max_attempts`` were made (give up: "reconnect_failed"). ``reset()`` starts a fresh
    series (after a success, or a new ``connect()``). No clock, no threads: the manager (or a
    timer loop) acts on what it returns.
    """

    __slots__ = ("attempts", "base", "max_attempts", "maximum", "rand", "randomization_factor")

    def __init__(
        self,
        base: float,
        maximum: float,
        randomization_factor: float,
        max_attempts: int | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if base < 0 or maximum < 0 or not 0 <= randomization_factor <= 1:
            raise ValueError("reconnect delays must be >= 0 and randomization_factor in [0, 1]")
        if max_attempts is not None and max_attempts < 0:
            raise ValueError("max_reconnect_attempts must be >= 0 or None")
        self.base = base
        self.maximum = maximum
        self.randomization_factor = randomization_factor
        self.max_attempts = max_attempts
        self.rand = rand
        #: attempts made in this series (the number ``reconnect_attempt`` reports)
        self.attempts = 0

    @property
    def exhausted(self) -> bool:
        return self.max_attempts is not None and self.attempts >= self.max_attempts

    def next_delay(self) -> float | None:
        """The wait before attempt ``attempts + 1`` (counted now), or None to give up."""
        if self.exhausted:
            return None
        delay = backoff_delay(
            self.attempts, self.base, self.maximum, self.randomization_factor, self.rand
        )
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0
