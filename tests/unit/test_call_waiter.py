"""The one-shot waiter behind ``call()``: woken through the thread's socket pair."""

from __future__ import annotations

import threading
from concurrent.futures import TimeoutError as FutureTimeoutError

import pytest

from sio_mqtt.socketio.socket import _CallWaiter


def test_value_set_before_waiting_returns_at_once() -> None:
    waiter = _CallWaiter()
    waiter.set_result(42)
    assert waiter.done() and waiter.result(0.0) == 42


def test_value_from_another_thread_wakes_the_caller() -> None:
    waiter = _CallWaiter()
    threading.Thread(target=waiter.set_result, args=("hi",)).start()
    assert waiter.result(10) == "hi"


def test_error_is_raised() -> None:
    waiter = _CallWaiter()
    threading.Thread(target=waiter.set_exception, args=(KeyError("k"),)).start()
    with pytest.raises(KeyError):
        waiter.result(10)


@pytest.mark.parametrize("timeout", [0.0, 0.05])
def test_timeout(timeout: float) -> None:
    waiter = _CallWaiter()
    with pytest.raises(FutureTimeoutError):
        waiter.result(timeout)
    waiter.set_result(1)  # resolved after the caller gave up: readable, and no harm done
    assert waiter.result(0.0) == 1


def test_a_stray_wake_up_from_an_earlier_waiter_is_not_taken_as_a_result() -> None:
    early = _CallWaiter()
    early.set_result("early")
    assert early.result(0.0) == "early"  # done already: its byte stays in the pair
    late = _CallWaiter()
    with pytest.raises(FutureTimeoutError):
        late.result(0.05)  # woken by the stray byte, but not done: keeps waiting, then times out
    threading.Thread(target=late.set_result, args=("late",)).start()
    assert late.result(10) == "late"


def test_each_thread_has_its_own_pair() -> None:
    here = _CallWaiter()
    other: list[_CallWaiter] = []
    thread = threading.Thread(target=lambda: other.append(_CallWaiter()))
    thread.start()
    thread.join()
    assert other[0]._pair is not here._pair
    assert _CallWaiter()._pair is here._pair
