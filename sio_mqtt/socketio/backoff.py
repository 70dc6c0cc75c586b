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
