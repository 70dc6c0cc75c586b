"""The gateway end to end: the real CLI against mosquitto and the Node socket.io server, for
MQTT 5 and 3.1.1. The Node server's ``echo`` / ``echo_ack`` / ``broadcast`` /
``server_emit_with_ack`` events turn what the gateway emits back into events the gateway mirrors
onto MQTT, so every assertion is made on what a paho "device" receives."""

from __future__ import annotations

import json

import pytest
from gw_support import Env, payload_json


def test_both_directions(env: Env) -> None:
    p = env.prefix
    env.start()
    env.device.publish(f"{p}/in/echo", json.dumps({"x": 1, "s": "é"}))
    msg = env.device.expect(f"{p}/out/echo")
    assert payload_json(msg) == {"x": 1, "s": "é"}
    assert msg.retain is False


def test_templates_captures_globs_and_sanitising(env: Env) -> None:
    p = env.prefix
    env.start()
    spec = {"event": "telemetry", "args": [{"device": "d/1+#", "t": 21.5}]}
    env.device.publish(f"{p}/in/broadcast", json.dumps(spec))
    msg = env.device.expect(f"{p}/telemetry/d_1__")
    assert payload_json(msg) == {"device": "d/1+#", "t": 21.5}
    spec = {"event": "sensor.temp", "args": [1, "two"]}
    env.device.publish(f"{p}/in/broadcast", json.dumps(spec))
    assert payload_json(env.device.expect(f"{p}/sensor/sensor.temp")) == [1, "two"]
    # the {device} capture of the request route names the reply topic
    env.device.publish(f"{p}/req/dev-9/echo_ack", "7")
    reply = env.device.expect(f"{p}/reply/dev-9/echo_ack")
    assert payload_json(reply) == {"status": "ok", "args": [7]}


def test_payload_rules(env: Env) -> None:
    p, dev = env.prefix, env.device
    env.start()
    out = f"{p}/out/echo"

    def roundtrip(topic: str, payload: bytes | str) -> bytes:
        mark = dev.mark()
        dev.publish(topic, payload)
        return bytes(dev.expect(out, start=mark).payload)

    assert roundtrip(f"{p}/in/echo", "hello") == b'"hello"'  # auto: not JSON -> text
    assert roundtrip(f"{p}/in/echo", b"\xff\x00\xfe") == b"\xff\x00\xfe"  # auto: bytes
    assert roundtrip(f"{p}/in/echo", "[1,2]") == b"[1,2]"  # one array argument
    assert roundtrip(f"{p}/text/echo", '{"a":1}') == b'"{\\"a\\":1}"'  # forced text
    assert roundtrip(f"{p}/bin/echo", "abc") == b"abc"  # forced binary: raw bytes back
    assert roundtrip(f"{p}/json/echo", '{"ok":true}') == b'{"ok":true}'
    # spread: a JSON array becomes several arguments (visible in the ack's args)
    dev.publish(f"{p}/sreq/echo_ack", '[1,"a",{"b":2}]')
    assert payload_json(dev.expect(f"{p}/sreply/echo_ack")) == {
        "status": "ok",
        "args": [1, "a", {"b": 2}],
    }
    dev.publish(f"{p}/req/d/echo_ack", '[1,"a"]')
    assert payload_json(dev.expect(f"{p}/reply/d/echo_ack")) == {"status": "ok", "args": [[1, "a"]]}


def test_bad_payload_is_reported_not_emitted(env: Env) -> None:
    p, dev = env.prefix, env.device
    env.start()
    mark = dev.mark()
    dev.publish(f"{p}/json/echo", "not json {")
    report = payload_json(dev.expect(f"{env.base}/errors", start=mark))
    assert report["route"] == "json"
    assert report["topic"] == f"{p}/json/echo"
    assert "JSON" in report["reason"]
    assert "not json" not in report["reason"]  # never the payload itself
    dev.publish(f"{p}/text/echo", b"\xff\xfe")
    report = payload_json(
        dev.expect(f"{env.base}/errors", lambda m: b'"text"' in m.payload, start=mark)
    )
    assert report["topic"] == f"{p}/text/echo" and "UTF-8" in report["reason"]
    # still serving; the bad ones were never emitted (order is kept: the next echo is this one)
    dev.publish(f"{p}/json/echo", '{"after":1}')
    assert payload_json(dev.expect(f"{p}/out/echo", start=mark)) == {"after": 1}


def test_refused_events(env: Env) -> None:
    p, dev = env.prefix, env.device
    env.start()
    mark = dev.mark()
    dev.publish(f"{p}/in/disconnect", "{}")
    report = payload_json(dev.expect(f"{env.base}/errors", start=mark))
    assert report["route"] == "cmd" and report["topic"] == f"{p}/in/disconnect"
    assert "reserved" in report["reason"]
    dev.publish(f"{p}/in/server_disconnect", "true")
    report = payload_json(
        dev.expect(f"{env.base}/errors", lambda m: b"server_disconnect" in m.payload, start=mark)
    )
    assert "allow_events" in report["reason"]
    # a refused request gets an error reply too
    dev.publish(f"{p}/req/d1/connect", "{}")
    reply = payload_json(dev.expect(f"{p}/reply/d1/connect"))
    assert reply["status"] == "error" and "reserved" in reply["error"]
    dev.publish(f"{p}/in/echo", '"still here"')
    assert payload_json(dev.expect(f"{p}/out/echo", start=mark)) == "still here"


def test_payload_above_max_payload_refused_connection_kept(env: Env) -> None:
    """The Node server's maxPayload is 1e6 bytes: a larger message would make it drop the
    connection; the gateway refuses that one message (report + error reply) and keeps going."""
    p, dev = env.prefix, env.device
    gw = env.start()
    big = "x" * 1_000_100
    mark = dev.mark()
    dev.publish(f"{p}/req/d1/echo_ack", big)
    reply = payload_json(dev.expect(f"{p}/reply/d1/echo_ack", start=mark))
    assert reply["status"] == "error" and "maxPayload of 1000000 bytes" in reply["error"]
    report = payload_json(dev.expect(f"{env.base}/errors", start=mark))
    assert report["route"] == "req" and report["event"] == "echo_ack"
    assert "maxPayload" in report["reason"] and "xxx" not in report["reason"]
    dev.publish(f"{p}/in/echo", big)  # a plain route: reported too
    dev.expect(f"{env.base}/errors", lambda m: payload_json(m)["event"] == "echo", start=mark)
    # still serving, on the same connection, in order
    dev.publish(f"{p}/in/echo", '"after"')
    assert payload_json(dev.expect(f"{p}/out/echo", start=mark)) == "after"
    dev.publish(f"{p}/req/d1/echo_ack", "1")
    reply = payload_json(dev.expect(f"{p}/reply/d1/echo_ack", lambda m: b"ok" in m.payload))
    assert reply == {"status": "ok", "args": [1]}
    text = gw.get("/metrics")[1].decode()
    assert 'sio_mqtt_reconnects_total{side="socketio"} 0.0' in text
    assert 'sio_mqtt_errors_total{kind="payload"} 2.0' in text


def test_device_reply_above_max_payload_answers_the_server_with_an_error(env: Env) -> None:
    p = env.prefix
    gw = env.start()
    device = env.new_device()
    device.subscribe(f"{p}/devices/+/ask")
    _server_asks(env, "d8")
    req = device.expect(f"{p}/devices/d8/ask")
    big = json.dumps(["y" * 1_000_100])
    if env.protocol == 5:
        device.publish(
            req.properties.ResponseTopic, big, correlation=req.properties.CorrelationData
        )
    else:
        device.publish(payload_json(req)["reply_to"], big)
    result = payload_json(env.device.expect(f"{p}/out/ack_result"))
    assert result["err"] is None
    assert result["res"][0]["status"] == "error"
    assert "maxPayload" in result["res"][0]["error"]
    report = payload_json(env.device.expect(f"{env.base}/errors"))
    assert report["route"] == "ask" and "device reply" in report["reason"]
    text = gw.get("/metrics")[1].decode()
    assert 'sio_mqtt_reconnects_total{side="socketio"} 0.0' in text


def test_ack_reply_topic_ok_timeout_error(env: Env) -> None:
    p, dev = env.prefix, env.device
    gw = env.start()
    dev.publish(f"{p}/req/d1/echo_ack", '{"n":1}')
    msg = dev.expect(f"{p}/reply/d1/echo_ack")
    assert payload_json(msg) == {"status": "ok", "args": [{"n": 1}]}
    assert msg.retain is False
    if env.protocol == 5:
        assert ("status", "ok") in msg.properties.UserProperty
    dev.publish(f"{p}/req/d1/no_ack", "1")
    reply = payload_json(dev.expect(f"{p}/reply/d1/no_ack"))
    assert reply["status"] == "timeout" and "error" in reply
    # the server closes the connection instead of acking: the ack can never come
    dev.publish(f"{p}/req/d1/close_transport", "1")
    reply = payload_json(dev.expect(f"{p}/reply/d1/close_transport"))
    assert reply["status"] == "error" and reply["error"]
    gw.wait_ready()  # the client reconnected by itself
    mark = dev.mark()
    dev.publish(f"{p}/req/d2/echo_ack", "2")
    assert payload_json(dev.expect(f"{p}/reply/d2/echo_ack", start=mark))["args"] == [2]


@pytest.mark.parametrize("protocol", [5], ids=["mqtt5"])  # 3.1.1 has no Response Topic
def test_ack_reply_v5_response_topic_and_correlation(env: Env) -> None:
    p, dev = env.prefix, env.device
    env.start()
    dev.publish(
        f"{p}/req/d1/echo_ack", '"hi"', response_topic=f"{p}/mine", correlation=b"\x00corr-1"
    )
    msg = dev.expect(f"{p}/mine")
    assert payload_json(msg) == {"status": "ok", "args": ["hi"]}
    assert msg.properties.CorrelationData == b"\x00corr-1"
    assert ("status", "ok") in msg.properties.UserProperty
    assert msg.retain is False
    assert dev.on(f"{p}/reply/d1/echo_ack") == []  # the response topic wins
    # a route without reply_topic still answers v5 requests
    dev.publish(f"{p}/req/d1/no_ack", "1", response_topic=f"{p}/mine2", correlation=b"c2")
    msg = dev.expect(f"{p}/mine2")
    assert payload_json(msg)["status"] == "timeout"
    assert msg.properties.CorrelationData == b"c2"
    assert ("status", "timeout") in msg.properties.UserProperty


def _server_asks(env: Env, device: str, timeout_ms: int = 4000) -> None:
    spec = {"event": "ask_device", "args": [{"device": device, "q": "temp"}], "timeout": timeout_ms}
    env.device.publish(f"{env.prefix}/in/server_emit_with_ack", json.dumps(spec))


def test_server_ack_answered_by_device(env: Env) -> None:
    p = env.prefix
    env.start()
    device = env.new_device()
    device.subscribe(f"{p}/devices/+/ask")
    _server_asks(env, "d7")
    req = device.expect(f"{p}/devices/d7/ask")
    assert req.retain is False
    if env.protocol == 5:
        assert payload_json(req) == {"device": "d7", "q": "temp"}
        reply_to = req.properties.ResponseTopic
        corr = req.properties.CorrelationData
        assert reply_to.startswith(f"{env.base}/reply/")
        device.publish(reply_to, '[{"temp":21},"C"]', correlation=corr)
    else:
        envelope = payload_json(req)
        assert envelope["args"] == [{"device": "d7", "q": "temp"}]
        assert envelope["reply_to"].startswith(f"{env.base}/reply/")
        assert envelope["correlation"]
        device.publish(envelope["reply_to"], '[{"temp":21},"C"]')
    result = payload_json(env.device.expect(f"{p}/out/ack_result"))
    assert result == {"err": None, "res": [{"temp": 21}, "C"]}


def test_server_ack_device_timeout(env: Env) -> None:
    p = env.prefix
    env.start()
    _server_asks(env, "silent")
    env.device.expect(f"{p}/devices/silent/ask")
    result = payload_json(env.device.expect(f"{p}/out/ack_result"))
    assert result["err"] is None
    assert result["res"][0]["status"] == "timeout"


def test_unavailable_then_held_traffic_delivered(env: Env, node_server, free_sio_port: int) -> None:  # type: ignore[no-untyped-def]
    """Socket.IO down: requests are held unacknowledged; beyond the bounded queue the broker
    keeps them (back-pressure, nothing answered ``unavailable``); all are delivered in order
    once the server comes up."""
    p, dev = env.prefix, env.device
    env.config["socketio"]["url"] = f"http://127.0.0.1:{free_sio_port}"
    env.config["queues"] = {"mqtt_to_socketio": 2}
    env.config["mqtt_to_socketio"][1]["ack_timeout"] = 20.0
    gw = env.start(wait_ready=False)
    body = json.loads(gw.wait_http("/readyz", 503))
    assert body["socketio"] is False
    dev.expect(f"{env.base}/status", lambda m: m.payload == b"online")
    for i in range(8):
        dev.publish(f"{p}/req/d{i}/echo_ack", str(i))
    node_server(port=free_sio_port)
    gw.wait_ready()
    replies = [payload_json(dev.expect(f"{p}/reply/d{i}/echo_ack", timeout=15)) for i in range(8)]
    assert replies == [{"status": "ok", "args": [i]} for i in range(8)]
    order = [m.topic for m in dev.messages if m.topic.startswith(f"{p}/reply/")]
    assert order == [f"{p}/reply/d{i}/echo_ack" for i in range(8)]
    dev.expect(f"{env.base}/socketio/state", lambda m: m.payload == b"connected")
