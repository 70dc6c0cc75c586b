"""Reconnection backoff: exponential growth, jitter bounds, the cap, and agreement with the
reference client's computation (socket.io-client's backo2)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sio_mqtt.socketio.backoff import backoff_delay, backoff_delays

SETTINGS = settings(max_examples=300, deadline=None)

attempts = st.integers(0, 10_000)
bases = st.floats(0, 100, allow_nan=False)
maxima = st.floats(0, 1000, allow_nan=False)
factors = st.floats(0, 1, allow_nan=False)
rands = st.floats(0, 1, allow_nan=False, exclude_max=True)  # Math.random() is in [0, 1)


def reference_duration_ms(attempt: int, ms: int, max_ms: int, jitter: float, rand: float) -> int:
    """socket.io-client's ``Backoff.prototype.duration`` (contrib/backo2), factor 2, in ms."""
    value = ms * math.pow(2, attempt)
    if jitter:
        deviation = math.floor(rand * jitter * value)
        value = value - deviation if (math.floor(rand * 10) & 1) == 0 else value + deviation
    return int(min(value, max_ms))  # `| 0` truncates toward zero


def test_doubles_from_the_base_without_jitter() -> None:
    delays = [backoff_delay(n, 0.5, 100.0, 0.0) for n in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]


def test_capped_at_the_maximum() -> None:
    assert [backoff_delay(n, 1.0, 5.0, 0.0) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert backoff_delay(10**9, 1.0, 5.0, 0.0) == 5.0
    assert backoff_delay(10**9, 1.0, 5.0, 0.5, rand=lambda: 0.99) == 5.0


def test_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError):
        backoff_delay(-1, 1.0, 5.0, 0.5)


def test_zero_base_means_no_delay() -> None:
    assert backoff_delay(7, 0.0, 5.0, 0.5, rand=lambda: 0.55) == 0.0


@pytest.mark.parametrize(
    ("rand", "expected"),
    [
        (0.0, 1.0),  # no deviation
        (0.05, 1.0 - 0.05 * 0.5),  # int(0.5) = 0: even digit, shorter
        (0.15, 1.0 + 0.15 * 0.5),  # int(1.5) = 1: odd digit, longer
        (0.25, 1.0 - 0.25 * 0.5),
        (0.95, 1.0 + 0.95 * 0.5),
    ],
)
def test_jitter_direction_follows_the_first_decimal_digit(rand: float, expected: float) -> None:
    assert backoff_delay(0, 1.0, 10.0, 0.5, rand=lambda: rand) == pytest.approx(expected)


@SETTINGS
@given(attempt=attempts, base=bases, maximum=maxima, factor=factors, r=rands)
def test_always_within_zero_and_the_maximum(
    attempt: int, base: float, maximum: float, factor: float, r: float
) -> None:
    delay = backoff_delay(attempt, base, maximum, factor, rand=lambda: r)
    assert 0.0 <= delay <= maximum


@SETTINGS
@given(attempt=st.integers(0, 60), base=bases, maximum=maxima, factor=factors, r=rands)
def test_jitter_stays_within_the_randomization_factor(
    attempt: int, base: float, maximum: float, factor: float, r: float
) -> None:
    nominal = base * 2**attempt
    delay = backoff_delay(attempt, base, maximum, factor, rand=lambda: r)
    low = min(nominal * (1 - factor), maximum)
    high = min(nominal * (1 + factor), maximum)
    assert low * (1 - 1e-12) <= delay <= high * (1 + 1e-12)


@SETTINGS
@given(base=st.floats(0.001, 100), maximum=maxima, n=st.integers(1, 80))
def test_grows_monotonically_until_the_cap_without_jitter(
    base: float, maximum: float, n: int
) -> None:
    delays = [backoff_delay(i, base, maximum, 0.0) for i in range(n)]
    assert delays == sorted(delays)
    for previous, current in itertools.pairwise(delays):
        assert current == min(previous * 2, maximum) or previous == maximum


@SETTINGS
@given(
    attempt=st.integers(0, 40),
    base_ms=st.integers(0, 10_000),
    max_ms=st.integers(0, 100_000),
    factor=factors,
    r=rands,
)
def test_matches_the_reference_client(
    attempt: int, base_ms: int, max_ms: int, factor: float, r: float
) -> None:
    """Same delay as socket.io-client for the same random draw, up to its whole-ms rounding."""
    ours_ms = backoff_delay(attempt, base_ms / 1000, max_ms / 1000, factor, rand=lambda: r) * 1000
    reference = reference_duration_ms(attempt, base_ms, max_ms, factor, r)
    assert abs(ours_ms - reference) <= 1 + 1e-9 * ours_ms


def test_reference_defaults_first_delays() -> None:
    """The reference client's defaults (1 s, max 5 s, factor 0.5) with fixed draws."""
    draws = iter([0.0, 0.15, 0.42, 0.99, 0.3])
    got = [backoff_delay(n, 1.0, 5.0, 0.5, rand=lambda: next(draws)) for n in range(5)]
    assert got == pytest.approx([1.0, 2.15, 4.0 * (1 - 0.21), 5.0, 5.0])


def test_backoff_delays_is_the_sequence_of_attempts() -> None:
    draws = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    it = iter(draws)
    seq = list(itertools.islice(backoff_delays(0.2, 3.0, 0.5, rand=lambda: next(it)), 6))
    expected = [backoff_delay(n, 0.2, 3.0, 0.5, rand=lambda d=d: d) for n, d in enumerate(draws)]
    assert seq == expected


def test_default_random_source_stays_in_bounds() -> None:
    for attempt in range(20):
        delay = backoff_delay(attempt, 1.0, 5.0, 0.5)
        nominal = min(2.0**attempt, 5.0)
        assert min(nominal * 0.5, 5.0) <= delay <= 5.0
