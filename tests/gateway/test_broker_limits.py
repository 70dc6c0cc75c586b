"""What brokers refuse, and how the gateway tells (issue 13): packet size limits, refused
subscriptions and publishes, an MQTT 5 CONNECT to a 3.1.1-only broker, shared subscriptions a
broker does not have, and one WARNING per broker outage.

Real brokers: mosquitto with ``max_packet_size`` and an ``acl_file``; amqtt (MQTT 3.1.1 only,
no shared subscriptions). Socket.IO -> MQTT traffic comes from a test Socket.IO client asking
the Node server to ``broadcast`` an ``echo`` event (the gateway's ``echo`` route publishes it on
``{prefix}/out/echo``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from gw_support import (
    Env,
    GatewayProc,
    broadcast,
    enable_outbox,
    metric,
    payload_json,
    use_broker,
    wait_metric,
)
from sec_support import wait_output
from servers.procs import MOSQUITTO_DYNSEC, Amqtt, Mosquitto, NodeServer
from support import wait_until

from sio_mqtt.socketio.client import Client

LIMIT = 20_000


def errors_on(env: Env, dev_topic: str, route: str) -> dict[str, str]:
    """The first error report of ``route`` on the gateway's errors topic."""
    msg = env.devices[-1].expect(dev_topic, where=lambda m: payload_json(m).get("route") == route)
    return payload_json(msg)  # type: ignore[no-any-return]


def acl_broker(factory: Callable[..., Mosquitto], tmp_path: Path, prefix: str) -> Mosquitto:
    """mosquitto with an ACL for anonymous clients: everything under ``prefix/`` only (so
    ``secret/...`` can be neither subscribed to nor published on)."""
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite {prefix}/#\n")
    return factory(config_extra=f"acl_file {acl}")  # type: ignore[no-any-return]


def dynsec_broker(factory: Callable[..., Mosquitto], tmp_path: Path, denied: str) -> Mosquitto:
    """mosquitto with its dynamic security plugin denying anonymous clients ``denied``: unlike
    ``acl_file`` (mosquitto 2.0 grants every subscription and filters on delivery), it refuses
    the SUBSCRIBE itself (SUBACK 0x87 Not authorized for MQTT 5, 0x80 for 3.1.1)."""
    config = {
        "defaultACLAccess": {
            "publishClientSend": True,
            "publishClientReceive": True,
            "subscribe": True,
            "unsubscribe": True,
        },
        "clients": [],
        "groups": [{"groupname": "anonymous", "roles": [{"rolename": "limits"}], "clients": []}],
        "roles": [
            {
                "rolename": "limits",
                "acls": [
                    {"acltype": "subscribePattern", "topic": denied, "priority": 0, "allow": False}
                ],
            }
        ],
        "anonymousGroup": "anonymous",
    }
    path = tmp_path / "dynamic-security.json"
    path.write_text(json.dumps(config))
    return factory(  # type: ignore[no-any-return]
        config_extra=f"plugin {MOSQUITTO_DYNSEC}\nplugin_opt_config_file {path}"
    )


# -- 1. Maximum Packet Size ------------------------------------------------------------------------
def test_oversize_message_is_refused_alone(
    env: Env,
    mosquitto_factory: Callable[..., Mosquitto],
    node_server_default: NodeServer,
    sio_client: Callable[[str], Client],
) -> None:
    """mosquitto ``max_packet_size 20000`` and a 50 kB event: that message alone is refused
    (error report, drop metric, gone from the outbox); the messages before and after it arrive,
    and the connection is never dropped. MQTT 5: the broker's CONNACK says the limit; 3.1.1:
    ``mqtt.max_packet_size``."""
    p = env.prefix
    broker = mosquitto_factory(config_extra=f"max_packet_size {LIMIT}")
    dev = use_broker(env, broker)
    db = enable_outbox(env)
    if env.protocol == "3.1.1":
        env.config["mqtt"]["max_packet_size"] = LIMIT
    gw = env.start()
    client = sio_client(node_server_default.url)
    broadcast(client, "before")
    broadcast(client, "x" * 50_000)
    broadcast(client, "after")
    dev.expect(f"{p}/out/echo", where=lambda m: payload_json(m) == "after")
    got = [payload_json(m) for m in dev.on(f"{p}/out/echo")]
    assert got == ["before", "after"]
    report = errors_on(env, f"{env.base}/errors", "echo")
    assert report["event"] == "echo"
    assert f"Maximum Packet Size {LIMIT} bytes" in report["reason"], report
    drops = 'direction="socketio_to_mqtt",reason="too_large"'
    assert wait_metric(gw, "sio_mqtt_dropped_total", drops, lambda v: v == 1) == 1
    assert metric(gw, "sio_mqtt_reconnects_total", 'side="mqtt"') == 0
    wait_metric(gw, "sio_mqtt_queue_depth", 'queue="socketio_to_mqtt"', lambda v: v == 0)
    assert gw.terminate() == 0
    # nothing left for the next run
    import sqlite3

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
    assert " lost " not in gw.output


# -- 2. refused subscriptions ----------------------------------------------------------------------
def test_refused_subscription_is_reported_and_not_ready(
    env: Env, mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    """An ACL refuses one route's filter (SUBACK >= 0x80): logged with the route's name and the
    reason, an error report, a metric, and ``/readyz`` 503 listing the filter; the other routes
    keep working."""
    p = env.prefix
    broker = dynsec_broker(mosquitto_factory, tmp_path, f"secret/{p}/#")
    dev = use_broker(env, broker)
    env.config["mqtt_to_socketio"].append({"name": "secret", "topic": f"secret/{p}/{{event}}"})
    gw = env.start(wait_ready=False)
    seen: list[dict[str, object]] = []

    def both_up_but_refused() -> bool:
        seen.append(json.loads(gw.wait_http("/readyz", 503)))
        return (
            seen[-1]["mqtt"] is True
            and seen[-1]["socketio"] is True
            and "subscriptions" in seen[-1]
        )

    wait_until(both_up_but_refused, 15, "/readyz: both sides up, a subscription refused")
    body = seen[-1]
    assert body["ready"] is False and body["subscriptions"] is False
    (refused,) = body["refused_subscriptions"]  # type: ignore[misc]
    assert refused["filter"] == f"secret/{p}/+"
    assert "0x8" in refused["reason"], refused  # 0x80 (3.1.1) / 0x87 Not authorized (MQTT 5)
    report = errors_on(env, f"{env.base}/errors", "secret")
    assert f"secret/{p}/+" in report["reason"] and "refused" in report["reason"]
    assert wait_metric(gw, "sio_mqtt_errors_total", 'kind="subscribe"', lambda v: v == 1) == 1
    line = next(x for x in gw.output.splitlines() if "refused the subscription" in x)
    assert "route secret" in line and "WARNING" in line, line
    # the rest flows
    dev.publish(f"{p}/in/echo", json.dumps("still"))
    assert payload_json(dev.expect(f"{p}/out/echo")) == "still"
    assert gw.terminate() == 0


# -- 3. refused publishes (MQTT 5 PUBACK reason codes) ---------------------------------------------
@pytest.mark.parametrize("protocol", [5], ids=["mqtt5"])  # 3.1.1 has no PUBACK reason codes
def test_refused_publish_is_not_delivered_and_reported(
    env: Env,
    mosquitto_factory: Callable[..., Mosquitto],
    node_server_default: NodeServer,
    sio_client: Callable[[str], Client],
    tmp_path: Path,
) -> None:
    """mosquitto answers a publish its ACL denies with PUBACK 0x87 (Not authorized) to an
    MQTT 5 client: not counted as delivered, an error report naming the route and the reason,
    a drop metric by reason, out of the outbox; the rest keeps flowing."""
    p = env.prefix
    broker = acl_broker(mosquitto_factory, tmp_path, p)
    dev = use_broker(env, broker)
    db = enable_outbox(env)
    env.config["socketio_to_mqtt"].insert(
        0, {"name": "denied", "event": "echo", "topic": f"secret/{p}/echo", "qos": 1}
    )
    gw = env.start()
    client = sio_client(node_server_default.url)
    broadcast(client, "one")
    broadcast(client, "two")
    assert [payload_json(dev.expect(f"{p}/out/echo", where=lambda m: payload_json(m) == "two"))]
    report = errors_on(env, f"{env.base}/errors", "denied")
    assert "not authorized" in report["reason"] and f"secret/{p}/echo" in report["reason"]
    drops = 'direction="socketio_to_mqtt",reason="refused_not_authorized"'
    assert wait_metric(gw, "sio_mqtt_dropped_total", drops, lambda v: v == 2) == 2
    wait_metric(gw, "sio_mqtt_queue_depth", 'queue="socketio_to_mqtt"', lambda v: v == 0)
    assert [payload_json(m) for m in dev.on(f"{p}/out/echo")] == ["one", "two"]
    assert gw.terminate() == 0
    import sqlite3

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0


# -- 4. an MQTT 5 CONNECT to a 3.1.1-only broker ---------------------------------------------------
def start_on(env: Env, port: int, *, debug: bool = False) -> GatewayProc:
    env.config["mqtt"]["port"] = port
    gw = GatewayProc(env.write_config(), env.http_port, ["--log-level", "DEBUG"] if debug else [])
    env.gateways.append(gw)
    return gw


def wait_count(gw: GatewayProc, text: str, n: int, timeout: float = 30.0) -> str:
    """Wait until ``text`` occurs ``n`` times in the gateway's output (a log has no event)."""
    import time

    deadline = time.monotonic() + timeout
    while gw.output.count(text) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not {n} times within {timeout} s:\n{gw.output}")
        time.sleep(0.05)
    return gw.output


@pytest.mark.parametrize("protocol", [5], ids=["mqtt5"])
def test_v5_connect_to_a_311_broker_says_so_once(env: Env, amqtt: Amqtt) -> None:
    """amqtt does not answer the gateway's MQTT 5 CONNECT (it closes the connection at the
    keep-alive timeout; a CONNECT without properties gets "unsupported protocol version"): the
    gateway says once that the broker may speak only 3.1.1 and how to set it; no "connection
    lost" for the connections that were never made, no ERROR line."""
    env.config["mqtt"]["keepalive"] = 2  # amqtt never answers paho's MQTT 5 CONNECT
    gw = start_on(env, amqtt.port, debug=True)
    out = wait_count(gw, "the broker at", 3)
    assert out.count("it may speak only MQTT 3.1.1") == 1, out
    assert out.count("closed the connection before answering CONNECT") >= 2
    line = next(x for x in out.splitlines() if "it may speak only MQTT 3.1.1" in x)
    assert 'mqtt.protocol: "3.1.1"' in line and "WARNING" in line
    assert " lost " not in out, out
    assert not [x for x in out.splitlines() if " ERROR " in x], out
    # the same broker with mqtt.protocol 3.1.1 works
    assert gw.terminate() == 0
    env.config["mqtt"]["protocol"] = "3.1.1"
    ok = start_on(env, amqtt.port)
    ok.wait_ready()
    assert "it may speak only" not in ok.output
    assert ok.terminate() == 0


# -- 5. one WARNING per outage ---------------------------------------------------------------------
def test_broker_outage_is_one_warning_and_one_when_back(
    env: Env, mosquitto_factory: Callable[..., Mosquitto]
) -> None:
    """The broker is down for several reconnect attempts: one WARNING when the connection is
    lost, one when it is back (with the duration); every attempt in between is DEBUG; no ERROR
    line (paho's "Client is not connected" per attempt is gone)."""
    broker = mosquitto_factory()
    use_broker(env, broker)
    gw = start_on(env, broker.port, debug=True)
    gw.wait_ready()
    env.devices[-1].close()
    env.devices.pop()
    broker.stop()
    wait_count(gw, "MQTT: cannot connect to", 3)
    broker.start()
    gw.wait_ready()
    out = wait_count(gw, "without a connection", 1)
    mqtt_warnings = [x for x in out.splitlines() if " WARNING " in x and "MQTT:" in x]
    assert len(mqtt_warnings) == 2, mqtt_warnings
    assert " lost " in mqtt_warnings[0]
    assert re.search(r"connected to .* after [\d.]+ s without a connection \(\d+ failed", out)
    assert not [x for x in out.splitlines() if " ERROR " in x], out
    assert "Client is not connected" not in out
    assert gw.terminate() == 0


# -- 6. shared subscriptions on a broker without them ----------------------------------------------
@pytest.mark.parametrize("protocol", ["3.1.1"], ids=["mqtt311"])
def test_shared_group_on_a_broker_without_shared_subscriptions_refuses_to_run(
    env: Env, amqtt: Amqtt
) -> None:
    """amqtt grants ``$share/g/...`` as a literal filter and never delivers through it: the
    probe message does not arrive, the gateway says why and exits with code 2 (never ready)."""
    env.config["mqtt"]["shared_group"] = "g"
    gw = start_on(env, amqtt.port)
    out = wait_output(gw, "does not support shared subscriptions", timeout=30, exited_ok=True)
    assert gw.proc.wait(30) == 2, out
    line = next(x for x in gw.output.splitlines() if "does not support shared" in x)
    assert "mqtt.shared_group" in line and "ERROR" in line
    assert "probe message" in line


@pytest.mark.parametrize("protocol", ["3.1.1"], ids=["mqtt311"])
def test_shared_group_probe_passes_on_mosquitto(env: Env) -> None:
    """mosquitto shares: the 3.1.1 probe arrives and the gateway becomes ready."""
    env.config["mqtt"]["shared_group"] = "g"
    gw = env.start()
    assert "shared subscriptions work" in gw.output
    env.device.publish(f"{env.prefix}/in/echo", json.dumps("shared"))
    assert payload_json(env.device.expect(f"{env.prefix}/out/echo")) == "shared"
    assert gw.terminate() == 0
