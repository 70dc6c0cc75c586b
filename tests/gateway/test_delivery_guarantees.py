"""Delivery guarantees (README.md, "Delivery guarantees"), end to end: the gateway CLI as a
subprocess, real mosquitto, the real Node socket.io server, real SIGKILLs.

Socket.IO -> MQTT traffic is produced by a test Socket.IO client asking the Node server to
``broadcast`` an ``echo`` event: every socket of ``/`` (the gateway's too) receives it, so it can
be produced while the gateway or the broker is down. Waits are on observable state (messages,
``/metrics``, the outbox database), never sleeps.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gw_support import (
    Device,
    Env,
    broadcast,
    enable_outbox,
    metric,
    payload_json,
    use_broker,
    wait_metric,
)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from servers.procs import Mosquitto, NodeServer

from sio_mqtt.socketio.client import Client

MSG_ID = "sio-mqtt-id"


# -- helpers -------------------------------------------------------------------------------------
def wait_db(path: Path, query: str, ok: Callable[[list[Any]], bool], timeout: float = 15.0) -> None:
    """Poll the outbox database (WAL: a concurrent reader is fine) until ``ok(rows)``."""
    deadline = time.monotonic() + timeout
    rows: list[Any] = []
    while time.monotonic() < deadline:
        if path.exists():
            try:
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    rows = db.execute(query).fetchall()
                finally:
                    db.close()
            except sqlite3.OperationalError:
                rows = []
            if ok(rows):
                return
        time.sleep(0.05)
    raise AssertionError(f"{query!r} never satisfied the condition (last {rows})")


def wait_count(dev: Device, topic: str, n: int, timeout: float = 20.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    with dev._cond:
        while len([m for m in dev.messages if m.topic == topic]) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                got = [m.payload for m in dev.messages if m.topic == topic]
                raise AssertionError(f"{len(got)} < {n} messages on {topic}: {got}")
            dev._cond.wait(left)
    return [payload_json(m) for m in dev.on(topic)]


# -- MQTT -> Socket.IO -----------------------------------------------------------------------------
def test_manual_ack_holds_while_socketio_down_then_delivers_in_order(
    env: Env, node_server: Callable[..., NodeServer], free_sio_port: int
) -> None:
    """Socket.IO down: messages are held unacknowledged (the gauge counts them), nothing is lost;
    once the server is up they are emitted in order."""
    p, dev = env.prefix, env.device
    env.config["socketio"]["url"] = f"http://127.0.0.1:{free_sio_port}"
    gw = env.start(wait_ready=False)
    dev.expect(f"{env.base}/status", lambda m: m.payload == b"online")
    n = 30
    for i in range(n):
        dev.publish(f"{p}/in/echo", json.dumps(i))
    # MQTT 5: Receive Maximum = queues.mqtt_to_socketio; 3.1.1: mosquitto's max_inflight (20)
    held = n if env.protocol == 5 else 20
    wait_metric(gw, "sio_mqtt_queue_depth", 'queue="mqtt_unacked"', lambda v: v == held)
    node_server(port=free_sio_port)
    gw.wait_ready()
    assert wait_count(dev, f"{p}/out/echo", n) == list(range(n))
    wait_metric(gw, "sio_mqtt_queue_depth", 'queue="mqtt_unacked"', lambda v: v == 0)


def test_sigkilled_gateway_gets_unacked_messages_redelivered(
    env: Env, node_server: Callable[..., NodeServer], free_sio_port: int
) -> None:
    """clean_start false + session expiry: what the killed gateway had not acknowledged is
    redelivered by the broker to the restarted one (same client id), in order."""
    p, dev = env.prefix, env.device
    env.config["mqtt"].update({"clean_start": False, "session_expiry": 300})
    env.config["socketio"]["url"] = f"http://127.0.0.1:{free_sio_port}"
    gw = env.start(wait_ready=False)
    dev.expect(f"{env.base}/status", lambda m: m.payload == b"online")
    n = 10
    for i in range(n):
        dev.publish(f"{p}/in/echo", json.dumps(i))
    wait_metric(gw, "sio_mqtt_queue_depth", 'queue="mqtt_unacked"', lambda v: v == n)
    gw.kill()
    node_server(port=free_sio_port)
    gw2 = env.start()
    assert wait_count(dev, f"{p}/out/echo", n) == list(range(n))
    wait_metric(gw2, "sio_mqtt_queue_depth", 'queue="mqtt_unacked"', lambda v: v == 0)


def test_message_id_argument_and_publisher_id(env: Env) -> None:
    """``message_id: true`` appends {"sio-mqtt-id": ...}; an MQTT 5 publisher's own
    ``sio-mqtt-id`` user property is passed through (end-to-end dedup)."""
    p, dev = env.prefix, env.device
    env.config["mqtt_to_socketio"][0]["message_id"] = True
    env.start()
    dev.publish(f"{p}/in/echo", '"a"')
    first = payload_json(dev.expect(f"{p}/out/echo"))
    assert first[0] == "a" and set(first[1]) == {MSG_ID} and first[1][MSG_ID]
    if env.protocol == 5:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [(MSG_ID, "publisher-42")]
        mark = dev.mark()
        dev.client.publish(f"{p}/in/echo", '"b"', qos=1, properties=props).wait_for_publish(10)
        assert payload_json(dev.expect(f"{p}/out/echo", start=mark)) == [
            "b",
            {MSG_ID: "publisher-42"},
        ]


# -- Socket.IO -> MQTT -----------------------------------------------------------------------------
def test_outbox_survives_sigkill_with_broker_down(
    env: Env,
    mosquitto_factory: Callable[..., Mosquitto],
    node_server_default: NodeServer,
    sio_client: Callable[[str], Client],
) -> None:
    """Broker down, events stored in the outbox, gateway SIGKILLed; broker back, gateway
    restarted: every event is published, in order, each with a distinct message id (MQTT 5)."""
    p = env.prefix
    broker = mosquitto_factory()
    use_broker(env, broker)
    db = enable_outbox(env)
    gw = env.start()
    client = sio_client(node_server_default.url)
    broker.stop()
    gw.wait_http("/readyz", 503)
    n = 20
    for i in range(n):
        broadcast(client, i)
    wait_db(db, "SELECT COUNT(*) FROM messages", lambda rows: rows[0][0] == n)
    gw.kill()
    broker.start()
    dev = Device(broker.port, env.protocol)
    env.devices.append(dev)
    dev.subscribe(f"{p}/out/#")
    env.start()
    assert wait_count(dev, f"{p}/out/echo", n) == list(range(n))
    if env.protocol == 5:
        ids = [dict(m.properties.UserProperty)[MSG_ID] for m in dev.on(f"{p}/out/echo")]
        assert len(set(ids)) == n
    wait_db(db, "SELECT COUNT(*) FROM messages", lambda rows: rows[0][0] == 0)


@pytest.mark.parametrize("policy", ["drop-oldest", "drop-newest"])
def test_outbox_overflow_policy_drops_with_metric(
    env: Env,
    mosquitto_factory: Callable[..., Mosquitto],
    node_server_default: NodeServer,
    sio_client: Callable[[str], Client],
    policy: str,
) -> None:
    """MQTT down, more events than ``outbox.max_messages``: the policy decides which are kept;
    every drop is counted (exactly) and reported; the kept ones survive a restart."""
    p = env.prefix
    broker = mosquitto_factory()
    use_broker(env, broker)
    enable_outbox(env, max_messages=3, overflow=policy)
    gw = env.start()
    client = sio_client(node_server_default.url)
    broker.stop()
    gw.wait_http("/readyz", 503)
    for i in range(7):
        broadcast(client, i)
    labels = 'direction="socketio_to_mqtt",reason="outbox_full"'
    wait_metric(gw, "sio_mqtt_dropped_total", labels, lambda v: v == 4)
    assert metric(gw, "sio_mqtt_queue_depth", 'queue="socketio_to_mqtt"') == 3
    assert gw.terminate() == 0  # graceful: the outbox keeps what was not acknowledged
    assert "outbox is full" in gw.output
    broker.start()
    dev = Device(broker.port, env.protocol)
    env.devices.append(dev)
    dev.subscribe(f"{p}/out/#")
    env.start()
    expected = [4, 5, 6] if policy == "drop-oldest" else [0, 1, 2]
    assert wait_count(dev, f"{p}/out/echo", 3) == expected


def test_recovery_state_persisted_across_restart(
    env: Env, node_server: Callable[..., NodeServer], sio_client: Callable[[str], Client]
) -> None:
    """With connection-state recovery on the server, a broadcast made while the gateway was
    down (SIGKILL) is recovered by the restarted gateway and published to MQTT."""
    p, dev = env.prefix, env.device
    server = node_server(connection_state_recovery=True)
    env.config["socketio"]["url"] = server.url
    db = enable_outbox(env, recovery_interval=0.05)
    gw = env.start()
    client = sio_client(server.url)
    broadcast(client, "before")
    assert payload_json(dev.expect(f"{p}/out/echo")) == "before"
    wait_db(
        db, "SELECT \"offset\" FROM recovery WHERE namespace = '/'", lambda r: bool(r and r[0][0])
    )
    gw.kill()
    broadcast(client, "missed-1")
    broadcast(client, "missed-2")
    mark = dev.mark()
    env.start()
    got = [payload_json(dev.expect(f"{p}/out/echo", start=mark))]
    got.append(
        payload_json(dev.expect(f"{p}/out/echo", lambda m: payload_json(m) != got[0], start=mark))
    )
    assert got == ["missed-1", "missed-2"]
    stats = client.call("get_stats", timeout=5)
    assert stats["recovered"] >= 1
