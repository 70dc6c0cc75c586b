"""Secrets never leave the gateway: a test runs everything with known secret strings and greps
all output for them.

The secrets: the MQTT password (from ``mqtt.password_file``), a wrong MQTT password (from
``SIO_MQTT_MQTT__PASSWORD``), the Socket.IO token (``SIO_MQTT_SOCKETIO__AUTH__TOKEN``), the
contents of ``socketio.auth_file``, a password in the Socket.IO URL (``user:pass@``) and a token
in its query string, and a credential header. Everything these runs print is searched: stdout
and stderr of ``sio-mqtt run`` at DEBUG in text and JSON log formats (a working gateway with
traffic, error reports and a restart of the Socket.IO server; a refused MQTT login; a refused
Socket.IO namespace; an unreachable server), ``sio-mqtt check``, invalid configurations,
``/metrics`` and ``/readyz``, and every message on ``{base_topic}/errors``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gw_support import base_config, payload_json, run_cli
from sec_support import SecureDevice, make_password_file, start_gateway, wait_output
from servers.procs import Mosquitto, NodeServer, free_port

GW_USER = "gateway"
MQTT_PASSWORD = "mqttPW-7f3a9c-SECRET"
WRONG_MQTT_PASSWORD = "wrongPW-51d0e2-SECRET"
SIO_TOKEN = "sioTOKEN-c0ffee-SECRET"
AUTH_FILE_KEY = "authfileKEY-9e8d7c-SECRET"
URL_PASSWORD = "urlPASS-4b4b4b-SECRET"
QUERY_TOKEN = "queryTOK-a1a1a1-SECRET"
HEADER_TOKEN = "hdrBEARER-777abc-SECRET"
SECRETS = (
    MQTT_PASSWORD,
    WRONG_MQTT_PASSWORD,
    SIO_TOKEN,
    AUTH_FILE_KEY,
    URL_PASSWORD,
    QUERY_TOKEN,
    HEADER_TOKEN,
)


def assert_no_secret(where: str, text: str | bytes) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for secret in SECRETS:
        # also a distinctive part of it (a secret cut or re-encoded would still show it)
        for needle in (secret, secret.split("-")[1]):
            assert needle not in text, f"{where} shows a secret ({needle!r}):\n{text}"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    pwfile = make_password_file(
        tmp_path_factory.mktemp("secrets-broker") / "passwd",
        {GW_USER: MQTT_PASSWORD, "device": "device-pw"},
    )
    with Mosquitto(config_extra=f"allow_anonymous false\npassword_file {pwfile}\n") as b:
        yield b


@pytest.fixture
def device(broker: Mosquitto) -> Iterator[SecureDevice]:
    dev = SecureDevice(broker.port, username="device", password="device-pw")
    yield dev
    dev.close()


def secret_config(tmp_path: Path, broker: Mosquitto, sio_url: str, prefix: str) -> dict[str, Any]:
    pw = tmp_path / "mqtt-password"
    pw.write_text(MQTT_PASSWORD + "\n")
    auth_file = tmp_path / "auth.yaml"
    auth_file.write_text(f"api_key: {AUTH_FILE_KEY}\n")
    cfg = base_config(prefix, broker.port, sio_url, 5, free_port())
    cfg["mqtt"]["username"] = GW_USER
    cfg["mqtt"]["password_file"] = str(pw)
    cfg["socketio"]["auth_file"] = str(auth_file)
    cfg["socketio"]["headers"] = {"X-Api-Key": HEADER_TOKEN}
    cfg["mqtt_to_socketio"].append(
        {
            "name": "hs",
            "topic": f"{prefix}/hs/{{event}}",
            "ack": True,
            "ack_timeout": 10,
            "reply_topic": f"{prefix}/hs-reply/{{event}}",
            "allow_events": ["get_handshake"],
        }
    )
    return cfg


def with_url_secrets(url: str, query: bool = False) -> str:
    """``http://host:port`` -> ``http://gwuser:<password>@host:port`` (+ ``/?token=<token>``)."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://gwuser:{URL_PASSWORD}@{rest}" + (f"/?token={QUERY_TOKEN}" if query else "")


ENV = {"SIO_MQTT_SOCKETIO__AUTH__TOKEN": SIO_TOKEN}
FORMATS = ["text", "json"]


def run_args(fmt: str) -> list[str]:
    return ["--log-level", "DEBUG", "--log-format", fmt]


def check_json_lines(out: str) -> None:
    """With --log-format json every stderr log line is a JSON object (nothing unformatted)."""
    for line in out.splitlines():
        if line.strip():
            json.loads(line)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_working_gateway_shows_no_secret(
    tmp_path: Path,
    broker: Mosquitto,
    node_server: Callable[..., NodeServer],
    device: SecureDevice,
    fmt: str,
) -> None:
    node = node_server()
    p = f"sec-ok-{fmt}"
    cfg = secret_config(tmp_path, broker, node.url, p)
    cfg["socketio"]["url"] = with_url_secrets(node.url)
    device.subscribe(f"{p}/#")
    gw = start_gateway(tmp_path, cfg, env=ENV, extra_args=run_args(fmt))
    gw.wait_ready()
    # the secrets were really in use: the server got them in the handshake
    device.publish(f"{p}/hs/get_handshake", "")
    hs = payload_json(device.expect(f"{p}/hs-reply/get_handshake"))["args"][0]
    assert hs["auth"] == {"token": SIO_TOKEN, "api_key": AUTH_FILE_KEY}
    assert hs["headers"]["x-api-key"] == HEADER_TOKEN
    # the URL's user:password became HTTP basic auth
    basic = base64.b64encode(f"gwuser:{URL_PASSWORD}".encode()).decode()
    assert hs["headers"]["authorization"] == f"Basic {basic}"
    # traffic, error reports (bad JSON, a refused event name, a template error)
    device.publish(f"{p}/in/echo", '"x"')
    device.expect(f"{p}/out/echo")
    device.publish(f"{p}/json/echo", "{not json")
    device.publish(f"{p}/in/not_allowed", "1")
    device.expect(f"{p}/gw/errors", lambda m: b"not_allowed" in m.payload)
    # a reconnect (auth sent again, reconnect logging)
    mark = device.mark()
    node.restart()
    state = f"{p}/gw/socketio/state"
    device.expect(state, lambda m: m.payload == b"disconnected", start=mark, timeout=15)
    device.expect(state, lambda m: m.payload == b"connected", start=mark, timeout=15)
    code, metrics = gw.get("/metrics")
    assert code == 200 and b"sio_mqtt_messages_total" in metrics
    assert_no_secret("/metrics", metrics)
    assert_no_secret("/readyz", gw.get("/readyz")[1])
    assert_no_secret("/healthz", gw.get("/healthz")[1])
    assert gw.terminate() == 0
    errors = device.on(f"{p}/gw/errors")
    assert len(errors) >= 2
    for msg in errors:
        assert_no_secret(f"error report {msg.payload!r}", msg.payload)
    out = gw.output
    assert "DEBUG" in out  # the most talkative level really ran
    assert_no_secret(f"sio-mqtt run ({fmt})", out)
    if fmt == "json":
        check_json_lines(out)


@pytest.mark.parametrize("fmt", FORMATS)
def test_failed_logins_and_unreachable_server_show_no_secret(
    tmp_path: Path,
    broker: Mosquitto,
    node_server_default: NodeServer,
    fmt: str,
) -> None:
    """A refused MQTT login (wrong password from the environment), a refused Socket.IO
    namespace (/admin: wrong token), then a Socket.IO server that is not there."""
    p = f"sec-fail-{fmt}"
    cfg = secret_config(tmp_path, broker, node_server_default.url, p)
    cfg["socketio"]["url"] = with_url_secrets(node_server_default.url)
    cfg["socketio"]["namespaces"] = ["/", "/admin"]
    del cfg["mqtt"]["password_file"]
    env = {**ENV, "SIO_MQTT_MQTT__PASSWORD": WRONG_MQTT_PASSWORD}
    gw = start_gateway(tmp_path, cfg, env=env, extra_args=run_args(fmt))
    wait_output(gw, "MQTT: broker refused the connection")
    wait_output(gw, "namespace /admin refused")
    assert_no_secret("/metrics", gw.get("/metrics")[1])
    assert gw.terminate() == 0
    assert_no_secret(f"sio-mqtt run, refused ({fmt})", gw.output)

    # nothing listens at the Socket.IO URL (connection refused, with the URL in the error;
    # a password in that URL is tested below)
    cfg["socketio"]["url"] = f"http://127.0.0.1:{free_port()}"
    cfg["http"]["port"] = free_port()
    gw = start_gateway(tmp_path, cfg, env=env, extra_args=run_args(fmt), name="unreachable")
    wait_output(gw, "Socket.IO: cannot connect namespace")
    assert gw.terminate() == 0
    assert_no_secret(f"sio-mqtt run, unreachable ({fmt})", gw.output)


def test_check_shows_no_secret(tmp_path: Path, broker: Mosquitto) -> None:
    cfg = secret_config(tmp_path, broker, "http://127.0.0.1:1", "sec-check")
    cfg["socketio"]["url"] = with_url_secrets("http://127.0.0.1:1")
    path = tmp_path / "check.yaml"
    path.write_text(json.dumps(cfg))
    proc = run_cli("check", "-c", str(path), env=ENV)
    assert proc.returncode == 0, proc.stderr
    resolved = json.loads(proc.stdout.split("resolved configuration (secrets redacted):", 1)[1])
    assert resolved["mqtt"]["password"] == "***"
    assert resolved["socketio"]["auth"] == {"token": "***", "api_key": "***"}
    assert_no_secret("sio-mqtt check", proc.stdout + proc.stderr)


@pytest.mark.parametrize(
    "case",
    [
        "bad-port",  # an unrelated error next to the secrets
        "bad-url-scheme",  # the URL itself is invalid: it holds the password
        "bad-auth-file",  # the auth file is not YAML/JSON
        "secret-of-wrong-type",  # a secret value of the wrong type
        "bad-password-file",  # password_file is a directory
    ],
)
def test_invalid_configs_show_no_secret(tmp_path: Path, broker: Mosquitto, case: str) -> None:
    cfg = secret_config(tmp_path, broker, "http://127.0.0.1:1", "sec-bad")
    cfg["socketio"]["url"] = with_url_secrets("http://127.0.0.1:1")
    env = dict(ENV)
    if case == "bad-port":
        cfg["mqtt"]["port"] = "not-a-port"
    elif case == "bad-url-scheme":
        cfg["socketio"]["url"] = cfg["socketio"]["url"].replace("http://", "ftp://")
    elif case == "bad-auth-file":
        Path(cfg["socketio"]["auth_file"]).write_text(f"api_key: [{AUTH_FILE_KEY}\n")
    elif case == "secret-of-wrong-type":
        del cfg["mqtt"]["password_file"]
        cfg["mqtt"]["password"] = [WRONG_MQTT_PASSWORD]
    elif case == "bad-password-file":
        cfg["mqtt"]["password_file"] = str(tmp_path)
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(cfg))
    for cmd in (["check"], ["run", "--log-level", "DEBUG"]):
        proc = run_cli(*cmd, "-c", str(path), env=env)
        assert proc.returncode == 2, (cmd, proc.stdout, proc.stderr)
        assert "error:" in proc.stderr
        assert_no_secret(f"sio-mqtt {cmd[0]} ({case})", proc.stdout + proc.stderr)


def test_a_token_in_the_url_query_is_not_logged(
    tmp_path: Path, broker: Mosquitto, node_server_default: NodeServer
) -> None:
    p = "sec-query"
    cfg = secret_config(tmp_path, broker, node_server_default.url, p)
    cfg["socketio"]["url"] = with_url_secrets(node_server_default.url, query=True)
    gw = start_gateway(tmp_path, cfg, env=ENV, extra_args=run_args("text"))
    gw.wait_ready()
    assert gw.terminate() == 0
    # and an unreachable server: the connect error quotes the request URL
    cfg["socketio"]["url"] = with_url_secrets(f"http://127.0.0.1:{free_port()}", query=True)
    cfg["http"]["port"] = free_port()
    gw2 = start_gateway(tmp_path, cfg, env=ENV, name="unreachable")
    wait_output(gw2, "Socket.IO: cannot connect namespace")
    assert gw2.terminate() == 0
    assert_no_secret("sio-mqtt run (token in the URL query)", gw.output + gw2.output)


def test_a_password_in_the_url_is_not_in_connect_errors(tmp_path: Path, broker: Mosquitto) -> None:
    cfg = secret_config(tmp_path, broker, "http://127.0.0.1:1", "sec-url-pw")
    cfg["socketio"]["url"] = with_url_secrets(f"http://127.0.0.1:{free_port()}")
    gw = start_gateway(tmp_path, cfg, env=ENV)
    wait_output(gw, "Socket.IO: cannot connect namespace")
    assert gw.terminate() == 0
    assert_no_secret("sio-mqtt run (password in the URL)", gw.output)
