"""Device sessions end to end: every MQTT device its own socket on the Node server's /devices
namespace (auth middleware, rooms, Last Will, refusals, replicas), through mosquitto."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from gw_support import Env, GatewayProc, metric, payload_json
from paho.mqtt.enums import CallbackAPIVersion
from servers.procs import NodeServer, free_port
from support import wait_until

from sio_mqtt.socketio.client import Client


@pytest.fixture
def protocol() -> int:
    return 5


@pytest.fixture
def ctl(node_server_default: NodeServer, sio_client: Callable[[str], Client]) -> Client:
    """The test's own client on "/": the Node server's device control API."""
    return sio_client(node_server_default.url)


def enable_devices(env: Env, **devices: Any) -> None:
    p = env.prefix
    env.config["devices"] = {
        "enabled": True,
        "topic": f"{p}/dev/{{device}}/#",
        "presence": {"topic": f"{p}/dev/{{device}}/status"},
        "auth": {"device": "{device}", "token": "t-{device}"},
        "connect_rate": 2000,
        **devices,
    }
    env.config["mqtt_to_socketio"].append(
        {
            "name": "dev-cmd",
            "session": "device",
            "topic": f"{p}/dev/{{device}}/cmd/{{event}}",
            "ack": True,
            "reply_topic": f"{p}/dev/{{device}}/reply/{{event}}",
        }
    )
    env.config["socketio_to_mqtt"].append(
        {
            "name": "dev-out",
            "session": "device",
            "event": "*",
            "topic": f"{p}/dev/{{device}}/out/{{event}}",
            "ack_timeout": 3.0,
        }
    )


def sockets(ctl: Client, prefix: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = ctl.call("devices_list", prefix, timeout=10)
    return result


def log_of(ctl: Client, prefix: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = ctl.call("devices_log", prefix, timeout=10)
    return result


def devices_json(gw: GatewayProc) -> dict[str, dict[str, Any]]:
    status, body = gw.get("/devices")
    assert status == 200
    return {row["device"]: row for row in json.loads(body)["devices"]}


class WillDevice:
    """A real MQTT device: retained birth ``online``, Last Will ``offline`` (retained)."""

    def __init__(self, port: int, status_topic: str) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        self.client.will_set(status_topic, "offline", qos=1, retain=True)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.publish(status_topic, "online", qos=1, retain=True).wait_for_publish(10)

    def die(self) -> None:
        """Drop the TCP connection without DISCONNECT: the broker publishes the Last Will."""
        self.client.loop_stop()
        sock = self.client.socket()
        assert sock is not None
        sock.close()


@pytest.fixture
def births(env: Env) -> Iterator[Callable[..., None]]:
    """Publish retained births (cleared again at the end: the broker outlives the test)."""
    topics: list[str] = []

    def send(items: list[tuple[str, str | bytes]]) -> None:
        """One MQTT client publishes them all back to back (QoS 1), then waits for the PUBACKs."""
        infos = [env.device.client.publish(t, p, qos=1, retain=True) for t, p in items]
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()

    def publish(*devices: str, payload: str = "online") -> None:
        items: list[tuple[str, str | bytes]] = []
        for d in devices:
            topic = f"{env.prefix}/dev/{d}/status"
            topics.append(topic)
            items.append((topic, payload))
        send(items)

    yield publish
    send([(topic, b"") for topic in set(topics)])


def test_births_open_one_socket_per_device_rooms_and_last_will(
    env: Env, ctl: Client, births: Callable[..., None]
) -> None:
    p = env.prefix
    enable_devices(env)
    d1, d2 = f"{p}-d1", f"{p}-d2"
    births(d1)  # retained before the gateway starts: replayed at subscribe
    gw = env.start()
    will = WillDevice(env.mosquitto.port, f"{p}/dev/{d2}/status")
    wait_until(lambda: {s["device"] for s in sockets(ctl, p)} == {d1, d2}, 15, "two sockets")
    connects = [e for e in log_of(ctl, p) if e["type"] == "connect"]
    assert sorted((e["device"], e["token"]) for e in connects) == [(d1, f"t-{d1}"), (d2, f"t-{d2}")]
    rows = devices_json(gw)
    assert rows[d1]["state"] == rows[d2]["state"] == "connected"
    by_device = {s["device"]: s["id"] for s in sockets(ctl, p)}
    assert rows[d1]["sid"] == by_device[d1]
    # rooms: the server joins d1 and d2, emits to the room and to d1's socket alone
    for d in (d1, d2):
        assert ctl.call("devices_join", {"device": d, "room": f"{p}-room"}, timeout=5) is True
    assert ctl.call("devices_emit", {"room": f"{p}-room", "event": "hello", "args": [1]}) is True
    for d in (d1, d2):
        assert payload_json(env.device.expect(f"{p}/dev/{d}/out/hello")) == 1
    mark = env.device.mark()
    assert ctl.call("devices_emit", {"device": d1, "event": "only", "args": ["x"]}) is True
    env.device.expect(f"{p}/dev/{d1}/out/only", start=mark)
    # the Last Will closes d2's socket, d1 stays
    will.die()
    wait_until(lambda: [s["device"] for s in sockets(ctl, p)] == [d1], 5, "d2's socket closed")
    assert {"device": d2, "type": "disconnect", "reason": "client namespace disconnect"} in (
        log_of(ctl, p)
    )
    assert env.device.on(f"{p}/dev/{d1}/out/only") and not env.device.on(f"{p}/dev/{d2}/out/only")
    wait_until(lambda: devices_json(gw)[d2]["state"] == "closed", 5)
    assert metric(gw, "sio_mqtt_device_sessions", 'state="connected"') == 1.0
    assert metric(gw, "sio_mqtt_device_session_events_total", 'outcome="opened"') == 2.0


def test_device_and_shared_routes_side_by_side_with_acks_both_ways(
    env: Env, ctl: Client, births: Callable[..., None]
) -> None:
    p = env.prefix
    enable_devices(env)
    d1 = f"{p}-d1"
    births(d1)
    env.start()
    wait_until(lambda: len(sockets(ctl, p)) == 1, 15, "d1's socket")
    # MQTT -> the device's own socket, with the server's ack published as the reply
    env.device.publish(f"{p}/dev/{d1}/cmd/ping", json.dumps({"n": 1}))
    reply = payload_json(env.device.expect(f"{p}/dev/{d1}/reply/ping"))
    assert reply == {"status": "ok", "args": [{"device": d1, "event": "ping", "args": [{"n": 1}]}]}
    # the shared session still works next to it
    env.device.publish(f"{p}/req/dx/echo_ack", json.dumps("hi"))
    assert payload_json(env.device.expect(f"{p}/reply/dx/echo_ack")) == {
        "status": "ok",
        "args": ["hi"],
    }

    # the server asks d1 for an ack: the request is published, the device's answer acks it
    def answer() -> None:
        msg = env.device.expect(f"{p}/dev/{d1}/out/ask")
        env.device.publish(msg.properties.ResponseTopic, json.dumps(["fine"]))

    t = threading.Thread(target=answer)
    t.start()
    asked = ctl.call("devices_emit", {"device": d1, "event": "ask", "args": [1], "ack": True})
    t.join(10)
    assert asked == {"res": ["fine"]}


def test_refused_session_is_reported_and_retried(
    env: Env, ctl: Client, births: Callable[..., None]
) -> None:
    p = env.prefix
    enable_devices(env)
    intruder = f"{p}-intruder"
    gw = env.start()
    births(intruder)
    err = env.device.expect(
        f"{env.base}/errors", lambda m: payload_json(m).get("device") == intruder
    )
    assert f"unknown device {intruder}" in payload_json(err)["reason"]
    assert devices_json(gw)[intruder]["state"] in ("refused", "connecting")
    assert ctl.call("devices_allow", intruder, timeout=5) is True
    wait_until(lambda: [s["device"] for s in sockets(ctl, p)] == [intruder], 15, "retried")
    refused = [e for e in log_of(ctl, p) if e["type"] == "refused"]
    assert refused
    assert (metric(gw, "sio_mqtt_device_session_events_total", 'outcome="refused"') or 0) >= 1


def test_server_disconnect_reopens_only_on_the_next_online(
    env: Env, ctl: Client, births: Callable[..., None]
) -> None:
    p = env.prefix
    enable_devices(env)
    d1 = f"{p}-d1"
    gw = env.start()
    births(d1)
    wait_until(lambda: len(sockets(ctl, p)) == 1, 15, "d1's socket")
    assert ctl.call("devices_disconnect", d1, timeout=5) is True
    wait_until(lambda: devices_json(gw)[d1]["state"] == "closed", 5, "closed")
    # a message does not reopen it (open_on: presence): refused "no session", replied, acked
    env.device.publish(f"{p}/dev/{d1}/cmd/ping", "1")
    reply = payload_json(env.device.expect(f"{p}/dev/{d1}/reply/ping"))
    assert reply["status"] == "error" and "no session" in reply["error"]
    err = env.device.expect(f"{env.base}/errors", lambda m: payload_json(m).get("device") == d1)
    assert payload_json(err)["reason"] == "no session"
    assert sockets(ctl, p) == []
    births(d1)  # live (not retained-replayed) birth: opens it again
    wait_until(lambda: len(sockets(ctl, p)) == 1, 15, "reopened")
    connects = [e for e in log_of(ctl, p) if e["type"] == "connect"]
    assert len(connects) == 2


def test_open_on_message_opens_and_delivers_in_order(env: Env, ctl: Client) -> None:
    p = env.prefix
    enable_devices(env, open_on="message")
    d1 = f"{p}-d1"
    env.start()
    for i in range(20):
        env.device.publish(f"{p}/dev/{d1}/cmd/seq", str(i))
    for i in range(20):
        env.device.expect(
            f"{p}/dev/{d1}/reply/seq", lambda m, i=i: payload_json(m)["args"][0]["args"] == [i]
        )
    events = ctl.call("devices_events", p, timeout=5)
    assert [e["args"] for e in events if e["event"] == "seq"] == [[i] for i in range(20)]
    assert len(sockets(ctl, p)) == 1


def test_thousand_devices_from_one_publisher(
    env: Env, ctl: Client, births: Callable[..., None]
) -> None:
    p = env.prefix
    enable_devices(env)
    gw = env.start()
    names = [f"{p}-n{i:04d}" for i in range(1000)]
    births(*names)
    wait_until(lambda: len(sockets(ctl, p)) == 1000, 60, "1,000 device sockets")
    assert {s["device"] for s in sockets(ctl, p)} == set(names)
    wait_until(lambda: metric(gw, "sio_mqtt_device_sessions", 'state="connected"') == 1000.0, 15)


def test_three_replicas_split_the_devices(
    env: Env, ctl: Client, births: Callable[..., None]
) -> None:
    p = env.prefix
    enable_devices(env)
    names = [f"{p}-r{i:03d}" for i in range(60)]
    births(*names)
    gws: list[GatewayProc] = []
    for index in range(3):
        env.config["devices"]["partition"] = {"index": index, "count": 3}
        env.config["mqtt"]["client_id"] = f"gw-{p}-{index}"
        env.http_port = free_port()
        env.config["http"]["port"] = env.http_port
        gws.append(env.start())
    wait_until(lambda: len(sockets(ctl, p)) == 60, 30, "60 sockets over 3 replicas")
    assert sorted(s["device"] for s in sockets(ctl, p)) == sorted(names)  # each exactly once
    owned = [set(devices_json(gw)) for gw in gws]
    assert sum(len(o) for o in owned) == 60 and set().union(*owned) == set(names)
    assert all(owned), "every replica owns some devices"
    # a message for any device is handled by its owner only (the others ack it at once)
    for d in names[:6]:
        env.device.publish(f"{p}/dev/{d}/cmd/ping", "1")
        env.device.expect(f"{p}/dev/{d}/reply/ping")
    assert sum(len(env.device.on(f"{p}/dev/{d}/reply/ping")) for d in names[:6]) == 6
    # restart replica 1: its devices disconnect, then reconnect from the retained births
    gws[1].terminate()
    wait_until(lambda: len(sockets(ctl, p)) == 60 - len(owned[1]), 15, "replica 1 gone")
    env.config["devices"]["partition"] = {"index": 1, "count": 3}
    env.config["mqtt"]["client_id"] = f"gw-{p}-1"
    env.http_port = free_port()
    env.config["http"]["port"] = env.http_port
    again = env.start()
    wait_until(lambda: len(sockets(ctl, p)) == 60, 30, "replica 1's devices back")
    assert set(devices_json(again)) == owned[1]
    assert sorted(s["device"] for s in sockets(ctl, p)) == sorted(names)


def test_plain_device_with_no_session_route_unaffected(env: Env) -> None:
    """devices.enabled with the shared routes of base_config: everything else flows."""
    enable_devices(env)
    env.start()
    env.device.publish(f"{env.prefix}/req/d9/echo_ack", json.dumps(5))
    assert payload_json(env.device.expect(f"{env.prefix}/reply/d9/echo_ack"))["args"] == [5]


def test_max_sessions_refuses_more_devices(
    env: Env, ctl: Client, births: Callable[..., None]
) -> None:
    p = env.prefix
    enable_devices(env, max_sessions=2)
    gw = env.start()
    births(f"{p}-m1", f"{p}-m2")
    wait_until(lambda: len(sockets(ctl, p)) == 2, 15, "two sockets")
    births(f"{p}-m3")
    err = env.device.expect(
        f"{env.base}/errors", lambda m: payload_json(m).get("device") == f"{p}-m3"
    )
    assert "max_sessions (2) reached" in payload_json(err)["reason"]
    assert sorted(s["device"] for s in sockets(ctl, p)) == [f"{p}-m1", f"{p}-m2"]
    assert f"{p}-m3" not in devices_json(gw)
    assert metric(gw, "sio_mqtt_errors_total", 'kind="device"') == 1.0


def test_idle_session_is_closed(env: Env, ctl: Client, births: Callable[..., None]) -> None:
    p = env.prefix
    enable_devices(env, idle_timeout=0.5)
    gw = env.start()
    births(f"{p}-i1")
    wait_until(lambda: devices_json(gw).get(f"{p}-i1", {}).get("state") == "closed", 15)
    assert sockets(ctl, p) == []
    kinds = [(e["type"], e["reason"]) for e in log_of(ctl, p)]
    assert kinds == [("connect", None), ("disconnect", "client namespace disconnect")]
