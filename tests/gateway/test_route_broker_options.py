"""Route options for what brokers and devices do differently, end to end (the real CLI, mosquitto,
the Node socket.io server, paho devices):

* ``retained: ignore | deliver``: a retained command replayed by the broker when the gateway
  subscribes is not emitted again at every start (MQTT 5 and 3.1.1);
* ``mqtt.topic_safe: strict`` and object values refused in topic templates;
* ``reply_envelope: always``: an MQTT 3.1.1 device answers a server ack request through an MQTT 5
  gateway.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gw_support import Env, GatewayProc, metric, payload_json
from servers.procs import NodeServer, ServerProcess
from support import wait_until


def _ignored(gw: GatewayProc) -> float:
    return metric(gw, "sio_mqtt_retained_ignored_total", 'route="cmd"') or 0.0


def _unacked(gw: GatewayProc) -> float | None:
    return metric(gw, "sio_mqtt_queue_depth", 'queue="mqtt_unacked"')


def _echoed(env: Env, start: int = 0) -> list[Any]:
    return [payload_json(m) for m in env.device.on(f"{env.prefix}/out/echo")[start:]]


def test_retained_commands_ignored_state_delivered(env: Env) -> None:
    """A retained message on a ``retained: ignore`` route (the default) is replayed by the broker
    at every subscribe and never emitted; a ``retained: deliver`` route emits it; a live message
    is delivered even when its publisher set retain."""
    _retained_scenario(env)


def test_retained_commands_on_amqtt(
    tmp_path: Path, amqtt: ServerProcess, node_server_default: NodeServer
) -> None:
    """The same on amqtt (MQTT 3.1.1 only): replayed messages flagged, live ones not; it may
    replay one retained message twice, which a ``deliver`` route then emits twice."""
    env = Env(tmp_path, amqtt, node_server_default.url, "3.1.1")  # type: ignore[arg-type]
    try:
        _retained_scenario(env, replays_may_repeat=True)
    finally:
        env.close()


def _retained_scenario(env: Env, replays_may_repeat: bool = False) -> None:
    """``replays_may_repeat``: the broker may replay a retained message more than once to one
    SUBSCRIBE with several filters (amqtt 0.12 does, now and then)."""
    p, dev = env.prefix, env.device
    env.config["mqtt_to_socketio"].append(
        {"name": "state", "topic": f"{p}/state/{{event}}", "retained": "deliver"}
    )
    dev.publish(f"{p}/in/echo", '"stale command"', retain=True)
    dev.publish(f"{p}/state/echo", '"last state"', retain=True)
    for run in range(2):  # the broker replays both at every start of the gateway
        mark = len(dev.on(f"{p}/out/echo"))
        gw = env.start(extra_args=["--log-level", "DEBUG"])
        # the replayed state went through: the one SUBSCRIBE (every filter) was handled, so the
        # stale command was replayed before what the device publishes now
        dev.expect(f"{p}/out/echo", lambda m: payload_json(m) == "last state", start=mark)
        live = f"live {run}"
        dev.publish(f"{p}/in/echo", json.dumps(live), retain=True)  # retained for the next run
        dev.expect(f"{p}/out/echo", lambda m, live=live: payload_json(m) == live, start=mark)
        # acknowledged (nothing left in flight), counted, logged at DEBUG, not an error
        wait_until(lambda gw=gw: _ignored(gw) >= 1, what="the ignored count")
        echoed = _echoed(env, mark)
        if replays_may_repeat:
            assert echoed[0] == "last state" and echoed.count(live) == 1, echoed
            assert set(echoed) == {"last state", live}, echoed  # never "stale command"
            wait_until(lambda gw=gw: _unacked(gw) == 0, what="nothing unacknowledged")
        else:
            assert echoed == ["last state", live]
            assert _ignored(gw) == 1 and _unacked(gw) == 0
        assert f"route cmd: retained message on '{p}/in/echo' ignored" in gw.output
        assert dev.on(f"{env.base}/errors") == []
        assert gw.terminate() == 0
    dev.publish(f"{p}/in/echo", b"", retain=True)  # clear the retained messages
    dev.publish(f"{p}/state/echo", b"", retain=True)


@pytest.mark.parametrize("protocol", [5], ids=["mqtt5"])
def test_topic_safe_strict_and_object_values_refused(env: Env) -> None:
    """``strict``: '.' and '*' in a value become '_' (RabbitMQ would read them as '/' and '+');
    an object value in a topic template is an error report, and the rest keeps flowing."""
    p, dev = env.prefix, env.device
    env.config["mqtt"]["topic_safe"] = "strict"
    gw = env.start()

    def telemetry(device: Any) -> None:
        spec = {"event": "telemetry", "args": [{"device": device, "t": 1}]}
        dev.publish(f"{p}/in/broadcast", json.dumps(spec))

    telemetry("fw.1*2")
    assert payload_json(dev.expect(f"{p}/telemetry/fw_1_2"))["device"] == "fw.1*2"
    mark = dev.mark()
    telemetry({"id": 7})
    report = payload_json(dev.expect(f"{env.base}/errors", start=mark))
    assert report["route"] == "telemetry" and report["event"] == "telemetry"
    assert "{arg0.device}" in report["reason"] and "is an object" in report["reason"]
    telemetry("after")
    dev.expect(f"{p}/telemetry/after", start=mark)
    assert [m.topic for m in dev.messages[mark:] if m.topic.startswith(f"{p}/telemetry/")] == [
        f"{p}/telemetry/after"
    ]
    assert metric(gw, "sio_mqtt_errors_total", 'kind="template"') == 1.0


@pytest.mark.parametrize("protocol", [5], ids=["mqtt5"])
def test_reply_envelope_always_lets_a_v311_device_answer_a_v5_gateway(env: Env) -> None:
    p = env.prefix
    for route in env.config["socketio_to_mqtt"]:
        if route["name"] == "ask":
            route["reply_envelope"] = "always"
    env.start()
    device = env.new_device(protocol="3.1.1")  # paho with MQTTv311: never sees properties
    device.subscribe(f"{p}/devices/+/ask")
    spec = {"event": "ask_device", "args": [{"device": "d311", "q": "temp"}], "timeout": 4000}
    env.device.publish(f"{p}/in/server_emit_with_ack", json.dumps(spec))
    req = device.expect(f"{p}/devices/d311/ask")
    assert req.properties is None or not hasattr(req.properties, "ResponseTopic")
    envelope = payload_json(req)
    assert envelope["args"] == [{"device": "d311", "q": "temp"}]
    assert envelope["reply_to"].startswith(f"{env.base}/reply/") and envelope["correlation"]
    # the MQTT 5 side still carries the properties, with the same address
    seen_v5 = env.device.expect(f"{p}/devices/d311/ask")
    assert seen_v5.properties.ResponseTopic == envelope["reply_to"]
    device.publish(envelope["reply_to"], '{"temp": 19}')
    result = payload_json(env.device.expect(f"{p}/out/ack_result"))
    assert result == {"err": None, "res": [{"temp": 19}]}
