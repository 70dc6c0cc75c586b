"""Availability topics, /healthz /readyz /metrics, graceful shutdown and crashes."""

from __future__ import annotations

import json

from gw_support import Env, payload_json


def test_online_retained_state_and_offline_on_sigterm(env: Env) -> None:
    gw = env.start()
    # a subscriber that arrives later gets the retained state
    late = env.new_device()
    late.subscribe(f"{env.base}/#")
    status = late.expect(f"{env.base}/status")
    assert status.payload == b"online" and status.retain
    state = late.expect(f"{env.base}/socketio/state")
    assert state.payload == b"connected" and state.retain
    mark = late.mark()
    assert gw.terminate() == 0
    late.expect(f"{env.base}/socketio/state", lambda m: m.payload == b"disconnected", start=mark)
    late.expect(f"{env.base}/status", lambda m: m.payload == b"offline", start=mark)
    # retained: a new subscriber sees offline
    after = env.new_device()
    after.subscribe(f"{env.base}/status")
    assert after.expect(f"{env.base}/status").payload == b"offline"
    assert "stopped" in gw.output


def test_last_will_on_sigkill(env: Env) -> None:
    gw = env.start()
    env.device.expect(f"{env.base}/status", lambda m: m.payload == b"online")
    mark = env.device.mark()
    gw.kill()
    msg = env.device.expect(f"{env.base}/status", lambda m: m.payload == b"offline", start=mark)
    assert msg.payload == b"offline"


def test_health_ready_metrics(env: Env) -> None:
    p, dev = env.prefix, env.device
    gw = env.start()
    code, body = gw.get("/healthz")
    assert code == 200 and json.loads(body)["status"] == "ok"
    code, body = gw.get("/readyz")
    assert code == 200 and json.loads(body) == {"ready": True, "mqtt": True, "socketio": True}
    dev.publish(f"{p}/in/echo", "1")
    dev.expect(f"{p}/out/echo")
    dev.publish(f"{p}/req/d/echo_ack", "1")
    dev.expect(f"{p}/reply/d/echo_ack")
    dev.publish(f"{p}/json/echo", "{")
    dev.expect(f"{env.base}/errors")
    code, body = gw.get("/metrics")
    text = body.decode()
    assert code == 200
    for line in (
        'sio_mqtt_messages_total{direction="mqtt_to_socketio",route="cmd"} 1.0',
        'sio_mqtt_messages_total{direction="socketio_to_mqtt",route="echo"} 1.0',
        'sio_mqtt_acks_total{direction="mqtt_to_socketio",outcome="ok",route="req"} 1.0',
        'sio_mqtt_ack_latency_seconds_count{direction="mqtt_to_socketio"} 1.0',
        'sio_mqtt_connected{side="mqtt"} 1.0',
        'sio_mqtt_connected{side="socketio"} 1.0',
        'sio_mqtt_errors_total{kind="payload"} 1.0',
        'sio_mqtt_queue_depth{queue="mqtt_to_socketio"} 0.0',
        'sio_mqtt_reconnects_total{side="socketio"} 0.0',
    ):
        assert line in text, line
    assert gw.get("/nope")[0] == 404


def test_readyz_reports_the_side_that_is_down(env: Env, node_server, free_sio_port: int) -> None:  # type: ignore[no-untyped-def]
    env.config["socketio"]["url"] = f"http://127.0.0.1:{free_sio_port}"
    gw = env.start(wait_ready=False)
    body = json.loads(gw.wait_http("/readyz", 503))
    assert body["ready"] is False and body["socketio"] is False
    env.device.expect(f"{env.base}/socketio/state", lambda m: m.payload == b"disconnected")
    assert gw.get("/healthz")[0] == 200
    server = node_server(port=free_sio_port)
    gw.wait_ready()
    env.device.expect(f"{env.base}/socketio/state", lambda m: m.payload == b"connected")
    mark = env.device.mark()
    server.stop()
    env.device.expect(
        f"{env.base}/socketio/state", lambda m: m.payload == b"disconnected", start=mark
    )
    assert json.loads(gw.wait_http("/readyz", 503))["socketio"] is False
    server.start()
    gw.wait_ready()
    text = gw.get("/metrics")[1].decode()
    assert 'sio_mqtt_reconnects_total{side="socketio"} 1.0' in text


def test_graceful_shutdown_answers_and_exits_zero(env: Env) -> None:
    p, dev = env.prefix, env.device
    env.config["mqtt_to_socketio"][1]["ack_timeout"] = 30.0
    gw = env.start(extra_args=["--stop-timeout", "1.5"])
    dev.publish(f"{p}/req/d1/no_ack", "1")  # in flight when the signal arrives
    dev.publish(f"{p}/in/echo", '"last"')
    dev.expect(f"{p}/out/echo")
    assert gw.terminate() == 0
    reply = payload_json(dev.expect(f"{p}/reply/d1/no_ack"))
    assert reply["status"] == "unavailable"
    dev.expect(f"{env.base}/status", lambda m: m.payload == b"offline")
