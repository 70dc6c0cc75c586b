"""Credentials on both sides of the gateway.

* MQTT: mosquitto with a password file and ``allow_anonymous false``; the gateway logs in with
  ``mqtt.password_file`` or the environment (``SIO_MQTT_MQTT__PASSWORD``); a wrong password is a
  clear log line and ``/readyz`` says MQTT is down.
* Socket.IO: the Node server's ``/admin`` namespace requires ``auth.token == "secret"``. The
  token from the environment (``SIO_MQTT_SOCKETIO__AUTH__TOKEN``) is sent on every (re)connect;
  ``socketio.auth_file`` is read again on every (re)connect, so a rotated token is used without
  restarting the gateway. ``get_handshake`` on the server shows what the gateway sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from gw_support import GatewayProc, base_config, payload_json
from paho.mqtt.enums import CallbackAPIVersion
from sec_support import (
    SecureDevice,
    _pbkdf2_line,
    make_password_file,
    start_gateway,
    wait_readyz,
)
from sec_support import wait_output as wait_log
from servers.procs import Mosquitto, NodeServer, free_port

GW_USER, GW_PASSWORD = "gateway", "gw-pässword-1"
DEV_USER, DEV_PASSWORD = "device", "dev-password-2"
HANDMADE_USER, HANDMADE_PASSWORD = "handmade", "made-by-python-3"
ADMIN_TOKEN = "secret"  # what tests/servers/node/server.js requires on /admin


@pytest.fixture(scope="module")
def password_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_password_file(
        tmp_path_factory.mktemp("mosq-auth") / "passwd",
        {GW_USER: GW_PASSWORD, DEV_USER: DEV_PASSWORD},
    )
    # one entry in the $7$ (PBKDF2-SHA512) format written by the test helper itself, so the
    # fallback for hosts without mosquitto_passwd is proven against the real broker too
    with path.open("a") as f:
        f.write(_pbkdf2_line(HANDMADE_USER, HANDMADE_PASSWORD) + "\n")
    return path


@pytest.fixture(scope="module")
def auth_broker(password_file: Path) -> Iterator[Mosquitto]:
    # later lines win: this overrides procs.py's "allow_anonymous true"
    extra = f"allow_anonymous false\npassword_file {password_file}\n"
    with Mosquitto(config_extra=extra) as broker:
        yield broker


@pytest.fixture
def device(auth_broker: Mosquitto) -> Iterator[SecureDevice]:
    dev = SecureDevice(auth_broker.port, username=DEV_USER, password=DEV_PASSWORD)
    yield dev
    dev.close()


def mqtt_connect_reason(port: int, username: str | None, password: str | None) -> str:
    """The CONNACK reason code a plain paho client gets (MQTT 5)."""
    done = threading.Event()
    reason: list[str] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    if username is not None:
        client.username_pw_set(username, password)

    def on_connect(c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        reason.append(str(rc))
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert done.wait(10), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return reason[0]


def test_broker_requires_a_password(auth_broker: Mosquitto) -> None:
    """The broker set-up itself: anonymous and wrong passwords are refused, the hand-made
    PBKDF2 entry works."""
    assert mqtt_connect_reason(auth_broker.port, None, None) == "Not authorized"
    assert mqtt_connect_reason(auth_broker.port, GW_USER, "nope") == "Not authorized"
    assert mqtt_connect_reason(auth_broker.port, GW_USER, GW_PASSWORD) == "Success"
    assert mqtt_connect_reason(auth_broker.port, HANDMADE_USER, HANDMADE_PASSWORD) == "Success"


def auth_config(broker: Mosquitto, sio_url: str, prefix: str) -> dict[str, Any]:
    cfg = base_config(prefix, broker.port, sio_url, 5, free_port())
    cfg["mqtt"]["username"] = GW_USER
    return cfg


def roundtrip(device: SecureDevice, prefix: str) -> None:
    mark = device.mark()
    device.publish(f"{prefix}/in/echo", '"hi"')
    assert payload_json(device.expect(f"{prefix}/out/echo", start=mark)) == "hi"


@pytest.mark.parametrize("source", ["password_file", "env"])
def test_mqtt_login_with_password(
    tmp_path: Path,
    auth_broker: Mosquitto,
    node_server_default: NodeServer,
    device: SecureDevice,
    source: str,
) -> None:
    p = f"auth-{source}"
    cfg = auth_config(auth_broker, node_server_default.url, p)
    env: dict[str, str] = {}
    if source == "password_file":
        secret = tmp_path / "mqtt-password"
        secret.write_text(GW_PASSWORD + "\n")  # the trailing newline is stripped
        cfg["mqtt"]["password_file"] = str(secret)
    else:
        env["SIO_MQTT_MQTT__PASSWORD"] = GW_PASSWORD
    device.subscribe(f"{p}/#")
    gw = start_gateway(tmp_path, cfg, env=env)
    gw.wait_ready()
    roundtrip(device, p)
    assert gw.terminate() == 0


@pytest.mark.parametrize("protocol", [5, "3.1.1"], ids=["mqtt5", "mqtt311"])
def test_mqtt_wrong_password_fails_clearly(
    tmp_path: Path, auth_broker: Mosquitto, node_server_default: NodeServer, protocol: Any
) -> None:
    cfg = auth_config(auth_broker, node_server_default.url, "auth-wrong")
    cfg["mqtt"]["protocol"] = protocol
    gw = start_gateway(tmp_path, cfg, env={"SIO_MQTT_MQTT__PASSWORD": "wrong-password"})
    # mosquitto answers "Not authorized" (5: 0x87; 3.1.1: return code 5)
    out = wait_log(gw, "MQTT: broker refused the connection: Not authorized")
    assert wait_readyz(gw, socketio=True) == {"ready": False, "mqtt": False, "socketio": True}
    assert "wrong-password" not in out
    assert gw.terminate() == 0


# --------------------------------------------------------------------------------------------
# Socket.IO auth
# --------------------------------------------------------------------------------------------


def admin_config(
    broker: Mosquitto, sio_url: str, prefix: str, namespaces: tuple[str, ...] = ("/admin",)
) -> dict[str, Any]:
    """A gateway using /admin (first by default: the client's main namespace), with a request
    route to get_handshake there."""
    cfg = auth_config(broker, sio_url, prefix)
    cfg["socketio"]["namespaces"] = list(namespaces)
    cfg["mqtt_to_socketio"].append(
        {
            "name": "admin",
            "namespace": "/admin",
            "topic": f"{prefix}/admin/{{event}}",
            "ack": True,
            "ack_timeout": 10,
            "reply_topic": f"{prefix}/admin-reply/{{event}}",
            "allow_events": ["get_handshake"],
        }
    )
    return cfg


def admin_handshake(device: SecureDevice, prefix: str) -> dict[str, Any]:
    """What the server's /admin socket got in the handshake (asked through the gateway)."""
    mark = device.mark()
    device.publish(f"{prefix}/admin/get_handshake", "")
    reply = payload_json(device.expect(f"{prefix}/admin-reply/get_handshake", start=mark))
    assert reply["status"] == "ok", reply
    hs: dict[str, Any] = reply["args"][0]
    assert hs["nsp"] == "/admin"
    return hs


def wait_sio_reconnected(device: SecureDevice, prefix: str, mark: int) -> None:
    state = f"{prefix}/gw/socketio/state"
    device.expect(state, lambda m: m.payload == b"disconnected", start=mark, timeout=15)
    device.expect(state, lambda m: m.payload == b"connected", start=mark, timeout=15)


@pytest.fixture
def restartable_node(node_server: Callable[..., NodeServer]) -> NodeServer:
    return node_server()


def test_env_token_is_sent_on_every_reconnect(
    tmp_path: Path, auth_broker: Mosquitto, restartable_node: NodeServer, device: SecureDevice
) -> None:
    p = "auth-env-token"
    cfg = admin_config(auth_broker, restartable_node.url, p)
    device.subscribe(f"{p}/#")
    env = {"SIO_MQTT_MQTT__PASSWORD": GW_PASSWORD, "SIO_MQTT_SOCKETIO__AUTH__TOKEN": ADMIN_TOKEN}
    gw = start_gateway(tmp_path, cfg, env=env)
    gw.wait_ready()  # /admin connected: the middleware accepted the token
    first = admin_handshake(device, p)
    assert first["auth"] == {"token": ADMIN_TOKEN}
    mark = device.mark()
    restartable_node.restart()
    wait_sio_reconnected(device, p, mark)
    again = admin_handshake(device, p)
    assert again["id"] != first["id"]  # a new connection, authorised again
    assert again["auth"] == {"token": ADMIN_TOKEN}
    assert gw.terminate() == 0


def test_wrong_token_is_refused_clearly(
    tmp_path: Path, auth_broker: Mosquitto, node_server_default: NodeServer
) -> None:
    cfg = admin_config(auth_broker, node_server_default.url, "auth-bad-token")
    env = {"SIO_MQTT_MQTT__PASSWORD": GW_PASSWORD, "SIO_MQTT_SOCKETIO__AUTH__TOKEN": "wrong-tok"}
    gw = start_gateway(tmp_path, cfg, env=env)
    out = wait_log(gw, "Socket.IO: namespace /admin refused: not authorized")
    assert wait_readyz(gw, mqtt=True) == {"ready": False, "mqtt": True, "socketio": False}
    assert "wrong-tok" not in out
    assert gw.terminate() == 0


def start_refused_by_auth_file(tmp_path: Path, cfg: dict[str, Any]) -> tuple[GatewayProc, Path]:
    """Start the gateway with a ``socketio.auth_file`` holding a token /admin refuses, and wait
    for the refusal; the test then fixes the file (returned), which the next attempt must read."""
    auth_file = tmp_path / "sio-auth.json"
    auth_file.write_text(json.dumps({"token": "not-yet-valid"}))
    cfg["socketio"]["auth_file"] = str(auth_file)
    gw = start_gateway(tmp_path, cfg, env={"SIO_MQTT_MQTT__PASSWORD": GW_PASSWORD})
    wait_log(gw, "Socket.IO: namespace /admin refused: not authorized")
    return gw, auth_file


def test_auth_file_is_read_again_on_every_reconnect(
    tmp_path: Path, auth_broker: Mosquitto, restartable_node: NodeServer, device: SecureDevice
) -> None:
    """Token rotation without restarting the gateway: the file is read on each CONNECT."""
    p = "auth-file"
    # "/" first: it keeps the connection open while /admin is refused
    # (the next test covers a lone namespace)
    cfg = admin_config(auth_broker, restartable_node.url, p, ("/", "/admin"))
    cfg["socketio"]["auth"] = {"client": "gw"}  # explicit keys are kept (and win)
    device.subscribe(f"{p}/#")
    gw, auth_file = start_refused_by_auth_file(tmp_path, cfg)
    # the operator fixes the file: the gateway's next attempt uses it (no restart)
    auth_file.write_text(json.dumps({"token": ADMIN_TOKEN, "rev": 1}))
    gw.wait_ready()
    assert admin_handshake(device, p)["auth"] == {"token": ADMIN_TOKEN, "rev": 1, "client": "gw"}
    # rotation: the file changes, the server restarts, the reconnect sends the new contents
    auth_file.write_text(json.dumps({"token": ADMIN_TOKEN, "rev": 2, "client": "ignored"}))
    mark = device.mark()
    restartable_node.restart()
    wait_sio_reconnected(device, p, mark)
    assert admin_handshake(device, p)["auth"] == {"token": ADMIN_TOKEN, "rev": 2, "client": "gw"}
    assert gw.terminate() == 0


def test_gateway_recovers_when_its_only_namespace_is_accepted_after_a_refusal(
    tmp_path: Path, auth_broker: Mosquitto, node_server_default: NodeServer, device: SecureDevice
) -> None:
    cfg = admin_config(auth_broker, node_server_default.url, "auth-file-first")  # /admin first
    gw, auth_file = start_refused_by_auth_file(tmp_path, cfg)
    auth_file.write_text(json.dumps({"token": ADMIN_TOKEN}))
    try:
        gw.wait_ready(timeout=8)
    finally:
        gw.terminate()
