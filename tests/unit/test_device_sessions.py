"""Device-session bookkeeping: presence, pacing, limits, refusals, idle expiry, partitioning."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sio_mqtt.gateway.device_sessions import (
    Close,
    DeviceState,
    DeviceTable,
    Open,
    Partition,
    Refuse,
    SessionPolicy,
)

SETTINGS = settings(max_examples=300, deadline=None)
devices = st.text(min_size=1, max_size=12)


def table(**policy: object) -> DeviceTable:
    return DeviceTable(SessionPolicy(**policy), rand=lambda: 0.0)  # type: ignore[arg-type]


def test_online_opens_once_and_offline_closes() -> None:
    t = table()
    assert t.online("a", 0.0) == [Open("a", 0.0)]
    assert t.online("a", 0.1) == []  # already opening: the retained birth and a live one
    t.connected("a", "sid-a", 0.2)
    assert t.online("a", 0.3) == []
    assert [(v.device, v.state, v.sid, v.since) for v in t.views()] == [
        ("a", DeviceState.CONNECTED, "sid-a", 0.2)
    ]
    assert t.offline("a", 1.0) == [Close("a", "offline")]
    assert t.offline("a", 1.1) == []
    assert t.state("a") is DeviceState.CLOSED
    assert t.online("a", 2.0) == [Open("a", 2.0)]


def test_offline_of_an_unknown_device_does_nothing() -> None:
    t = table()
    assert t.offline("ghost", 0.0) == []
    assert t.state("ghost") is None


def test_message_without_session_is_refused_when_sessions_open_on_presence() -> None:
    t = table(open_on="presence")
    assert t.message("a", 0.0) == [Refuse("a", "no session")]
    t.online("a", 0.0)
    assert t.message("a", 0.1) == []


def test_message_opens_the_session_when_sessions_open_on_message() -> None:
    t = table(open_on="message")
    assert t.message("a", 0.0) == [Open("a", 0.0)]
    assert t.message("a", 0.1) == []  # waits for the session being opened
    assert t.state("a") is DeviceState.CONNECTING


def test_opens_are_paced_by_connect_rate() -> None:
    t = table(connect_rate=10.0)
    opens = [t.online(f"d{i}", 0.0)[0] for i in range(5)]
    assert [a.at for a in opens if isinstance(a, Open)] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    later = t.online("late", 5.0)[0]
    assert isinstance(later, Open) and later.at == 5.0  # an idle bucket does not save up


def test_max_sessions_refuses_new_devices_but_not_open_ones() -> None:
    t = table(max_sessions=2)
    t.online("a", 0.0)
    t.online("b", 0.0)
    assert t.online("c", 0.0) == [Refuse("c", "max_sessions (2) reached")]
    assert t.state("c") is None
    assert t.online("a", 0.1) == []
    t.offline("a", 0.2)
    assert t.online("c", 0.3) == [Open("c", 0.3)]
    assert t.online("a", 0.4) == [Refuse("a", "max_sessions (2) reached")]


def test_a_refused_session_is_retried_with_growing_backoff() -> None:
    t = table(retry_base=1.0, retry_max=5.0, retry_jitter=0.0)
    t.online("a", 0.0)
    assert t.refused("a", 10.0) == [Open("a", 11.0)]
    assert t.state("a") is DeviceState.REFUSED
    assert t.retrying("a", 11.0)
    assert t.state("a") is DeviceState.CONNECTING
    assert t.refused("a", 12.0) == [Open("a", 14.0)]
    assert t.retrying("a", 14.0)
    assert t.refused("a", 15.0) == [Open("a", 19.0)]
    assert t.retrying("a", 19.0)
    assert t.refused("a", 20.0) == [Open("a", 25.0)]  # capped at retry_max
    assert t.retrying("a", 25.0)
    t.connected("a", "sid", 26.0)
    assert t.state("a") is DeviceState.CONNECTED
    t.offline("a", 27.0)
    t.online("a", 28.0)
    assert t.refused("a", 29.0) == [Open("a", 30.0)]  # a new series after success


def test_a_retry_is_dropped_when_the_device_went_offline_meanwhile() -> None:
    t = table()
    t.online("a", 0.0)
    t.refused("a", 0.5)
    assert t.offline("a", 0.7) == [Close("a", "offline")]
    assert not t.retrying("a", 1.5)
    assert t.refused("a", 1.6) == []


def test_server_disconnect_is_reopened_only_by_presence_or_message() -> None:
    t = table(open_on="message")
    t.online("a", 0.0)
    t.connected("a", "sid", 0.1)
    t.server_closed("a", 1.0)
    assert t.state("a") is DeviceState.CLOSED
    assert t.message("a", 2.0) == [Open("a", 2.0)]


def test_a_session_connected_after_offline_stays_closed() -> None:
    t = table()
    t.online("a", 0.0)
    t.offline("a", 0.1)
    t.connected("a", "late", 0.2)
    assert t.state("a") is DeviceState.CLOSED


def test_idle_sessions_expire_and_traffic_keeps_them() -> None:
    t = table(idle_timeout=10.0)
    for device in ("quiet", "busy"):
        t.online(device, 0.0)
        t.connected(device, device, 0.0)
    t.traffic("busy", 8.0)
    assert t.expire_idle(9.0) == []
    assert t.expire_idle(10.0) == [Close("quiet", "idle")]
    assert t.expire_idle(17.9) == []
    assert t.expire_idle(18.0) == [Close("busy", "idle")]


def test_idle_timeout_zero_never_expires() -> None:
    t = table(idle_timeout=0.0)
    t.online("a", 0.0)
    t.connected("a", "sid", 0.0)
    assert t.expire_idle(1e9) == []


@SETTINGS
@given(st.lists(devices, max_size=50), st.integers(1, 7))
def test_every_device_belongs_to_exactly_one_replica(ids: list[str], count: int) -> None:
    for device in ids:
        owners = [i for i in range(count) if Partition(i, count).owns(device)]
        assert len(owners) == 1


def test_partition_is_stable_across_runs() -> None:
    # blake2b, not hash(): the same split on every host, run and Python version
    owners = {d: [i for i in range(3) if Partition(i, 3).owns(d)] for d in "abcdefg"}
    assert owners == {"a": [2], "b": [2], "c": [0], "d": [2], "e": [2], "f": [0], "g": [1]}


@pytest.mark.parametrize(("index", "count"), [(0, 0), (1, 1), (-1, 2)])
def test_bad_partitions_are_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="partition"):
        Partition(index, count)


operations = st.lists(
    st.tuples(
        st.sampled_from(["online", "offline", "message", "connected", "refused", "closed", "idle"]),
        st.sampled_from(["a", "b", "c", "d", "e"]),
        st.floats(0, 5, allow_nan=False),
    ),
    max_size=80,
)


@SETTINGS
@given(operations, st.integers(1, 4), st.sampled_from(["presence", "message"]))
def test_random_histories_keep_the_invariants(
    ops: list[tuple[str, str, float]], max_sessions: int, open_on: str
) -> None:
    t = table(max_sessions=max_sessions, open_on=open_on, connect_rate=4.0, idle_timeout=3.0)
    now = 0.0
    last_open_at = float("-inf")
    for op, device, step in ops:
        now += step
        if op == "online":
            actions = t.online(device, now)
        elif op == "offline":
            actions = t.offline(device, now)
        elif op == "message":
            actions = t.message(device, now)
        elif op == "connected":
            t.connected(device, f"sid-{device}", now)
            actions = []
        elif op == "refused":
            actions = t.refused(device, now)
        elif op == "closed":
            t.server_closed(device, now)
            actions = []
        else:
            actions = t.expire_idle(now)
        for action in actions:
            if isinstance(action, Open):
                assert action.at >= now
                if op != "refused":  # first opens are paced; retries wait for their backoff
                    assert action.at >= last_open_at + 0.25 - 1e-9
                    last_open_at = action.at
        assert t.open_sessions() <= max_sessions
        counts = t.counts()
        assert sum(counts.values()) == len(list(t.views()))
        for view in t.views():
            assert (view.sid is not None) == (view.state is DeviceState.CONNECTED)
