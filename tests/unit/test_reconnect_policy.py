"""The pure reconnection policy: attempt counting, delays from the backoff, giving up."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sio_mqtt.socketio.backoff import ReconnectPolicy, backoff_delay


def test_counts_attempts_and_gives_up_after_the_maximum() -> None:
    policy = ReconnectPolicy(0.1, 1.0, 0.0, max_attempts=2)
    assert policy.next_delay() == 0.1
    assert policy.attempts == 1
    assert policy.next_delay() == 0.2
    assert policy.attempts == 2
    assert policy.exhausted
    assert policy.next_delay() is None  # give up: "reconnect_failed"
    assert policy.attempts == 2
    policy.reset()  # a fresh series
    assert policy.attempts == 0 and policy.next_delay() == 0.1


def test_zero_attempts_gives_up_at_once_and_none_never() -> None:
    assert ReconnectPolicy(1, 5, 0.5, max_attempts=0).next_delay() is None
    endless = ReconnectPolicy(1, 5, 0.5, max_attempts=None)
    assert all(endless.next_delay() is not None for _ in range(1000))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": -1, "maximum": 1, "randomization_factor": 0},
        {"base": 1, "maximum": -1, "randomization_factor": 0},
        {"base": 1, "maximum": 1, "randomization_factor": 1.5},
        {"base": 1, "maximum": 1, "randomization_factor": 0, "max_attempts": -1},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ReconnectPolicy(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    base=st.floats(0, 10, allow_nan=False),
    maximum=st.floats(0, 100, allow_nan=False),
    factor=st.floats(0, 1, allow_nan=False),
    rand=st.floats(0, 1, allow_nan=False, exclude_max=True),
    limit=st.integers(0, 30),
)
def test_delays_are_the_backoff_of_each_attempt(
    base: float, maximum: float, factor: float, rand: float, limit: int
) -> None:
    policy = ReconnectPolicy(base, maximum, factor, max_attempts=limit, rand=lambda: rand)
    delays = []
    while (delay := policy.next_delay()) is not None:
        delays.append(delay)
    assert delays == [backoff_delay(i, base, maximum, factor, lambda: rand) for i in range(limit)]
