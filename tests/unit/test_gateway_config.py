"""Tests of the gateway configuration (YAML + env, validation errors, secrets)."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from sio_mqtt.gateway.config import (
    ConfigError,
    GatewayConfig,
    all_namespaces,
    config_from_mapping,
    env_var_name,
    load_config,
    redacted_dump,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.upper().startswith("SIO_MQTT_"):
            monkeypatch.delenv(key)
    yield


def write(tmp_path: Path, text: str, name: str = "gw.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    assert ei.value.errors, "ConfigError without errors"
    assert str(ei.value) == "\n".join(ei.value.errors)
    return ei.value.errors


MINIMAL = "socketio: {url: 'http://localhost:3000'}\n"


# ---------------------------------------------------------------------------------- defaults


def test_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    s, m = cfg.socketio, cfg.mqtt
    assert s.url == "http://localhost:3000"
    assert s.path == "/socket.io/"
    assert s.namespaces == ["/"]
    assert s.auth == {} and s.headers == {} and s.auth_file is None
    assert s.transports == ["polling", "websocket"]
    assert (s.reconnect.delay, s.reconnect.delay_max) == (1.0, 5.0)
    assert s.reconnect.randomization_factor == 0.5 and s.reconnect.max_attempts is None
    assert s.parser == "default" and s.connect_timeout == 20 and s.verify is True
    assert (m.host, m.port, m.protocol, m.client_id) == ("localhost", 1883, 5, "sio-mqtt")
    assert m.username is None and m.password is None and m.password_file is None
    assert (m.keepalive, m.clean_start, m.session_expiry) == (30, False, 3600)
    assert m.tls.enabled is False and m.tls.verify is True and m.tls.ca_file is None
    assert m.base_topic == "sio-mqtt" and m.shared_group is None and m.tcp_nodelay is True
    assert (cfg.http.enabled, cfg.http.host, cfg.http.port) == (True, "127.0.0.1", 9080)
    assert cfg.socketio_to_mqtt == [] and cfg.mqtt_to_socketio == []
    assert cfg.queues.mqtt_to_socketio == 10000 and cfg.queues.socketio_to_mqtt == 10000
    assert cfg.outbox.enabled is False and cfg.outbox.path == "sio-mqtt-outbox.sqlite3"
    assert cfg.outbox.max_messages == 100000 and cfg.outbox.overflow == "drop-oldest"
    assert cfg.logging.level == "INFO" and cfg.logging.format == "text"


def test_route_defaults_and_derived_names(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            MINIMAL
            + """
socketio_to_mqtt:
  - {event: a, topic: t/a}
  - {event: b, topic: t/b, name: bee}
mqtt_to_socketio:
  - {topic: "x/{event}"}
""",
        )
    )
    o0, o1 = cfg.socketio_to_mqtt
    assert o0.name == "socketio_to_mqtt[0]" and o1.name == "bee"
    assert (o0.namespace, o0.qos, o0.retain, o0.ack_timeout, o0.reply) == ("/", 1, False, 5.0, True)
    (i0,) = cfg.mqtt_to_socketio
    assert i0.name == "mqtt_to_socketio[0]"
    assert (i0.event, i0.namespace, i0.qos, i0.ack, i0.ack_timeout) == (
        "{event}",
        "/",
        1,
        False,
        5.0,
    )
    assert (i0.reply_topic, i0.payload, i0.spread, i0.allow_events, i0.retries) == (
        None,
        "auto",
        False,
        None,
        0,
    )


@pytest.mark.parametrize("path", ["config/gateway.yaml", "sio_mqtt/demo/demo.yaml"])
def test_shipped_configs_load(path: str) -> None:
    cfg = load_config(REPO / path)
    assert cfg.mqtt_to_socketio and cfg.socketio_to_mqtt
    assert all_namespaces(cfg) == ["/"]


def test_demo_config_contents() -> None:
    cfg = load_config(REPO / "sio_mqtt" / "demo" / "demo.yaml")
    assert cfg.socketio.url == "http://127.0.0.1:3000"
    assert cfg.http.port == 9080 and cfg.mqtt.base_topic == "sio-mqtt"
    topics = {r.event: r.topic for r in cfg.socketio_to_mqtt}
    assert topics["telemetry"] == "demo/telemetry/{arg0.device}"
    assert topics["ask_device"] == "devices/{arg0.device}/ask"
    (cmd,) = cfg.mqtt_to_socketio
    assert cmd.topic == "devices/{device}/cmd/{event}" and cmd.ack
    assert cmd.reply_topic == "devices/{device}/reply/{event}"


def test_reference_config_lists_every_key() -> None:
    """config/gateway.yaml documents every key: its values equal the model defaults."""
    cfg = load_config(REPO / "config" / "gateway.yaml")
    defaults = config_from_mapping({"socketio": {"url": "http://localhost:3000"}})
    d_ref, d_def = redacted_dump(cfg), redacted_dump(defaults)
    # the one documented deviation: the shipped config turns the durable outbox on
    assert d_ref["outbox"].pop("enabled") is True and d_def["outbox"].pop("enabled") is False
    for section in ("socketio", "mqtt", "http", "queues", "outbox", "logging"):
        assert d_ref[section] == d_def[section], section
    text = (REPO / "config" / "gateway.yaml").read_text()
    for rc in (cfg.socketio_to_mqtt[0], cfg.mqtt_to_socketio[0]):
        for key in type(rc).model_fields:
            assert f" {key}:" in text, key


def test_full_example(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    path = write(
        tmp_path,
        f"""
        socketio:
          url: https://sio.example.com
          path: /custom/
          namespaces: ["/", "/admin"]
          auth: {{token: abc, n: 1}}
          headers: {{X-Trace: "1"}}
          transports: [websocket]
          reconnect: {{delay: 0.5, delay_max: 10, randomization_factor: 0, max_attempts: 3}}
          parser: msgpack
          connect_timeout: 5
          verify: {ca}
        mqtt:
          host: broker
          port: 8883
          protocol: "3.1.1"
          client_id: gw-1
          username: u
          password: p
          keepalive: 10
          clean_start: true
          session_expiry: 0
          tls: {{enabled: true, ca_file: {ca}, verify: false}}
          base_topic: gw/one
          shared_group: grp
          tcp_nodelay: false
        http: {{enabled: false, host: 0.0.0.0, port: 0}}
        queues: {{mqtt_to_socketio: 5, socketio_to_mqtt: 6}}
        outbox: {{enabled: true, path: /tmp/x.db, max_messages: 7, overflow: block}}
        logging: {{level: debug, format: json}}
        socketio_to_mqtt:
          - event: "sensor.*"
            namespace: /metrics
            topic: "sio/{{event}}/{{arg0.device}}"
            qos: 0
            retain: true
        mqtt_to_socketio:
          - topic: "devices/{{device}}/cmd/{{event}}"
            namespace: /devices
            ack: true
            reply_topic: "devices/{{device}}/reply/{{event}}"
            allow_events: [reboot, "config.*"]
            payload: json
            spread: true
            retries: 2
        """,
    )
    cfg = load_config(path)
    assert cfg.socketio.transports == ["websocket"] and cfg.socketio.parser == "msgpack"
    assert cfg.socketio.verify == str(ca)
    assert cfg.socketio.auth_payload() == {"token": "abc", "n": 1}
    assert cfg.mqtt.protocol == "3.1.1" and cfg.mqtt.tls.ca_file == ca
    assert cfg.mqtt.password is not None and cfg.mqtt.password.get_secret_value() == "p"
    assert cfg.logging.level == "DEBUG" and cfg.outbox.overflow == "block"
    assert cfg.http.port == 0 and cfg.queues.mqtt_to_socketio == 5
    assert all_namespaces(cfg) == ["/", "/admin", "/devices", "/metrics"]


def test_empty_file_needs_url(tmp_path: Path) -> None:
    p = write(tmp_path, "")
    assert errors_of(p) == [f"{p}: socketio: Field required"]


# ---------------------------------------------------------------------------------- env


def test_env_overrides_nested(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write(
        tmp_path,
        MINIMAL + "mqtt: {host: filehost, port: 1884, username: fileuser}\n",
    )
    monkeypatch.setenv("SIO_MQTT_MQTT__PORT", "2883")
    monkeypatch.setenv("SIO_MQTT_MQTT__PASSWORD", "envpw")
    monkeypatch.setenv("SIO_MQTT_MQTT__TLS__ENABLED", "true")
    monkeypatch.setenv("SIO_MQTT_MQTT__USERNAME", "null")
    monkeypatch.setenv("SIO_MQTT_SOCKETIO__URL", "http://envhost:1")
    monkeypatch.setenv("SIO_MQTT_SOCKETIO__NAMESPACES", '["/", "/x"]')
    monkeypatch.setenv("SIO_MQTT_SOCKETIO__AUTH__TOKEN", "tok")
    monkeypatch.setenv("SIO_MQTT_MQTT__PROTOCOL", "3.1.1")
    monkeypatch.setenv("SIO_MQTT_LOGGING__LEVEL", "warning")
    cfg = load_config(p)
    assert cfg.mqtt.host == "filehost"  # file value kept where env is silent
    assert cfg.mqtt.port == 2883 and cfg.mqtt.tls.enabled is True
    assert cfg.mqtt.username is None
    assert cfg.mqtt.password is not None and cfg.mqtt.password.get_secret_value() == "envpw"
    assert cfg.socketio.url == "http://envhost:1" and cfg.socketio.namespaces == ["/", "/x"]
    assert cfg.socketio.auth_payload() == {"token": "tok"}
    assert cfg.mqtt.protocol == "3.1.1" and cfg.logging.level == "WARNING"


def test_env_routes_as_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIO_MQTT_MQTT_TO_SOCKETIO", json.dumps([{"topic": "a/{event}"}]))
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.mqtt_to_socketio[0].topic == "a/{event}"


def test_env_error_names_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write(tmp_path, MINIMAL)
    monkeypatch.setenv("SIO_MQTT_MQTT__PORT", "nope")
    monkeypatch.setenv("SIO_MQTT_MQTT__PASWORD", "typo")
    errs = errors_of(p)
    assert any(e.startswith(f"{p}: mqtt.port: ") and "SIO_MQTT_MQTT__PORT" in e for e in errs), errs
    assert any(
        e.startswith(f"{p}: mqtt.pasword: ") and "SIO_MQTT_MQTT__PASWORD" in e for e in errs
    ), errs


def test_env_var_name() -> None:
    assert env_var_name(("mqtt", "password")) == "SIO_MQTT_MQTT__PASSWORD"
    assert env_var_name(("socketio_to_mqtt", 0, "topic")) == "SIO_MQTT_SOCKETIO_TO_MQTT"


# ---------------------------------------------------------------------------------- secrets


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    cfg = load_config(write(tmp_path, MINIMAL + f"mqtt: {{password_file: {secret}}}\n"))
    assert cfg.mqtt.password is not None
    assert cfg.mqtt.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(cfg) and "s3cret" not in str(cfg)


def test_password_file_unreadable(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    p = write(tmp_path, MINIMAL + f"mqtt: {{password_file: {missing}}}\n")
    (err,) = errors_of(p)
    assert err.startswith(f"{p}: mqtt.password_file: ")
    assert str(missing) in err


def test_password_and_password_file_conflict(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("a")
    p = write(tmp_path, MINIMAL + f"mqtt: {{password: b, password_file: {secret}}}\n")
    (err,) = errors_of(p)
    assert err.startswith(f"{p}: mqtt: ") and "password_file" in err


def test_auth_file(tmp_path: Path) -> None:
    af = tmp_path / "auth.json"
    af.write_text('{"token": "from-file", "user": "u"}\n')
    cfg = load_config(
        write(tmp_path, f"socketio: {{url: 'http://h', auth_file: {af}, auth: {{user: x}}}}\n")
    )
    assert cfg.socketio.auth_payload() == {"token": "from-file", "user": "x"}
    assert "from-file" not in repr(cfg)


def test_auth_file_bad(tmp_path: Path) -> None:
    af = tmp_path / "auth.json"
    af.write_text("[1, 2]")
    p = write(tmp_path, f"socketio: {{url: 'http://h', auth_file: {af}}}\n")
    (err,) = errors_of(p)
    assert err.startswith(f"{p}: socketio.auth_file: ") and "mapping" in err


def test_secrets_redacted(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """
        socketio:
          url: "http://user:urlpw@h:1/?token=qtok&x=1"
          auth: {token: authtok, nested: {deep: deepval}}
          headers: {Authorization: "Bearer hdrtok", X-Plain: visible}
        mqtt: {username: bob, password: hunter2}
        """,
    )
    cfg = load_config(p)
    for text in (repr(cfg), str(cfg), repr(cfg.mqtt), repr(cfg.socketio)):
        for secret in ("hunter2", "authtok", "deepval", "hdrtok"):
            assert secret not in text
    dump = redacted_dump(cfg)
    blob = json.dumps(dump)
    for secret in ("hunter2", "authtok", "deepval", "hdrtok", "urlpw", "qtok"):
        assert secret not in blob
    assert dump["mqtt"]["password"] == "***" and dump["mqtt"]["username"] == "bob"
    assert dump["socketio"]["auth"] == {"token": "***", "nested": "***"}
    assert dump["socketio"]["headers"] == {"Authorization": "***", "X-Plain": "visible"}
    assert "x=1" in dump["socketio"]["url"]
    # the real values stay available to the gateway
    assert cfg.socketio.auth_payload()["nested"] == {"deep": "deepval"}


def test_redacted_dump_is_plain_data(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("x")
    cfg = load_config(write(tmp_path, MINIMAL + f"mqtt: {{password_file: {secret}}}\n"))
    dump = redacted_dump(cfg)
    json.dumps(dump)  # JSON-serialisable (paths as str)
    assert dump["mqtt"]["password_file"] == str(secret)
    assert dump["mqtt"]["password"] == "***"


def test_no_password_dumps_none(tmp_path: Path) -> None:
    assert redacted_dump(load_config(write(tmp_path, MINIMAL)))["mqtt"]["password"] is None


# ---------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "missing.yaml"
    (err,) = errors_of(p)
    assert err.startswith(f"{p}: ") and "cannot read" in err


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    p = write(tmp_path, "socketio:\n  url: [unclosed\nmqtt: {}\n")
    (err,) = errors_of(p)
    assert err.startswith(f"{p}: invalid YAML at line ")
    assert "column" in err


def test_top_level_not_mapping(tmp_path: Path) -> None:
    p = write(tmp_path, "- a\n- b\n")
    (err,) = errors_of(p)
    assert err.startswith(f"{p}: ") and "mapping" in err


@pytest.mark.parametrize(
    ("yaml_text", "key", "needle"),
    [
        ("bogus: 1\n", "bogus", "Extra inputs"),
        ("mqtt: {hots: x}\n", "mqtt.hots", "Extra inputs"),
        ("mqtt: {port: 0}\n", "mqtt.port", "greater than or equal"),
        ("mqtt: {port: abc}\n", "mqtt.port", "integer"),
        ("mqtt: {protocol: 4.0}\n", "mqtt.protocol", "3.1.1"),
        ("mqtt: {shared_group: 'a/b'}\n", "mqtt.shared_group", "'/'"),
        ("mqtt: {base_topic: 'a/#'}\n", "mqtt.base_topic", "'#'"),
        ("mqtt: {tls: {ca_file: /nonexistent/ca.pem}}\n", "mqtt.tls.ca_file", "does not exist"),
        ("mqtt: {tls: {key_file: " + __file__ + "}}\n", "mqtt.tls", "cert_file"),
        ("outbox: {overflow: explode}\n", "outbox.overflow", "drop-oldest"),
        ("logging: {level: loud}\n", "logging.level", "INFO"),
        ("queues: {mqtt_to_socketio: 0}\n", "queues.mqtt_to_socketio", "greater"),
        ("socketio_to_mqtt: [{event: a}]\n", "socketio_to_mqtt[0].topic", "Field required"),
        (
            "socketio_to_mqtt: [{event: a, topic: 'x/{arg0', qos: 1}]\n",
            "socketio_to_mqtt[0].topic",
            "unbalanced",
        ),
        (
            "socketio_to_mqtt: [{event: a, topic: 'x/}'}]\n",
            "socketio_to_mqtt[0].topic",
            "unbalanced",
        ),
        (
            "socketio_to_mqtt: [{event: a, topic: 'x/+/{event}'}]\n",
            "socketio_to_mqtt[0].topic",
            "'+'",
        ),
        (
            "socketio_to_mqtt: [{event: a, topic: 'x/{device}'}]\n",
            "socketio_to_mqtt[0].topic",
            "{device}",
        ),
        (
            "socketio_to_mqtt: [{event: a, topic: t, namespace: admin}]\n",
            "socketio_to_mqtt[0].namespace",
            "'/'",
        ),
        ("socketio_to_mqtt: [{event: a, topic: t, qos: 3}]\n", "socketio_to_mqtt[0].qos", "2"),
        (
            "mqtt_to_socketio: [{topic: 'a/#/b'}]\n",
            "mqtt_to_socketio[0].topic",
            "'#' must be the last level",
        ),
        (
            "mqtt_to_socketio: [{topic: 'a/dev-{d}/{event}'}]\n",
            "mqtt_to_socketio[0].topic",
            "whole level",
        ),
        (
            "mqtt_to_socketio: [{topic: 'a/{x}/{x}'}]\n",
            "mqtt_to_socketio[0].topic",
            "twice",
        ),
        (
            "mqtt_to_socketio: [{topic: 'a/{device}'}]\n",
            "mqtt_to_socketio[0].event",
            "{event} is not a capture",
        ),
        (
            "mqtt_to_socketio: [{topic: 'a/{event}', event: '{arg0}'}]\n",
            "mqtt_to_socketio[0].event",
            "argN",
        ),
        (
            "mqtt_to_socketio: [{topic: 'a/+', event: connect}]\n",
            "mqtt_to_socketio[0].event",
            "reserved",
        ),
        (
            "mqtt_to_socketio: [{topic: 'a/{event}', ack: true, reply_topic: 'r/{x}'}]\n",
            "mqtt_to_socketio[0].reply_topic",
            "{x} is not a capture",
        ),
        (
            "mqtt_to_socketio: [{topic: 'a/{event}', ack: true, reply_topic: 'r/{arg0.id}'}]\n",
            "mqtt_to_socketio[0].reply_topic",
            "argN",
        ),
        (
            "mqtt_to_socketio: [{topic: 'a/{event}', ack: true, reply_topic: 'r/#'}]\n",
            "mqtt_to_socketio[0].reply_topic",
            "'#'",
        ),
        (
            "mqtt_to_socketio: [{topic: 'a/{event}', reply_topic: 'r/{event}'}]\n",
            "mqtt_to_socketio[0]",
            "ack: true",
        ),
        (
            "mqtt_to_socketio: [{topic: 'a/{event}', payload: text, spread: true}]\n",
            "mqtt_to_socketio[0]",
            "spread",
        ),
        (
            "mqtt_to_socketio: [{topic: 'a/{event}', payload: xml}]\n",
            "mqtt_to_socketio[0].payload",
            "json",
        ),
        (
            "mqtt_to_socketio: [{topic: 'a/{event}', allow_events: [disconnect]}]\n",
            "mqtt_to_socketio[0].allow_events",
            "reserved",
        ),
        (
            "mqtt_to_socketio: [{topic: 'a/{event}', allow_events: []}]\n",
            "mqtt_to_socketio[0].allow_events",
            "omit",
        ),
        (
            "mqtt_to_socketio: [{topic: 'a/{event}', ack_timeout: 0}]\n",
            "mqtt_to_socketio[0].ack_timeout",
            "greater than 0",
        ),
        (
            "mqtt_to_socketio: [{topic: 'a/{event}', name: n}, {topic: 'b/{event}', name: n}]\n",
            "mqtt_to_socketio[1].name",
            "already used",
        ),
        (
            "mqtt_to_socketio: [{topic: 'a/{event}', retained: keep}]\n",
            "mqtt_to_socketio[0].retained",
            "'deliver' or 'ignore'",
        ),
        ("mqtt: {topic_safe: loose}\n", "mqtt.topic_safe", "'standard' or 'strict'"),
        (
            "socketio_to_mqtt: [{event: a, topic: t, reply_envelope: sometimes}]\n",
            "socketio_to_mqtt[0].reply_envelope",
            "'auto', 'always' or 'never'",
        ),
        (
            "socketio_to_mqtt: [{event: a, topic: t, reply: false, reply_envelope: always}]\n",
            "socketio_to_mqtt[0]",
            "reply_envelope needs reply: true",
        ),
        (
            "mqtt: {protocol: '3.1.1'}\n"
            "socketio_to_mqtt: [{event: a, topic: t}, {event: b, topic: u, "
            "reply_envelope: never}]\n",
            "socketio_to_mqtt[1].reply_envelope",
            "'never' needs mqtt.protocol 5",
        ),
    ],
)
def test_error_names_file_and_key(tmp_path: Path, yaml_text: str, key: str, needle: str) -> None:
    p = write(tmp_path, MINIMAL + yaml_text)
    errs = errors_of(p)
    prefix = f"{p}: {key}: "
    hits = [e for e in errs if e.startswith(prefix)]
    assert hits, errs
    assert any(needle in e for e in hits), errs


@pytest.mark.parametrize(
    ("sio", "key", "needle"),
    [
        ("{url: 'ftp://x'}", "socketio.url", "http"),
        ("{url: 'http://h', path: 'socket.io'}", "socketio.path", "'/'"),
        ("{url: 'http://h', namespaces: [admin]}", "socketio.namespaces", "'/'"),
        ("{url: 'http://h', transports: [carrier-pigeon]}", "socketio.transports[0]", "polling"),
        ("{url: 'http://h', transports: []}", "socketio.transports", "at least 1"),
        ("{url: 'http://h', verify: /no/such/ca.pem}", "socketio.verify", "does not exist"),
        ("{url: 'http://h', parser: pickle}", "socketio.parser", "msgpack"),
        (
            "{url: 'http://h', reconnect: {delay: 5, delay_max: 1}}",
            "socketio.reconnect",
            "delay_max",
        ),
        (
            "{url: 'http://h', reconnect: {randomization_factor: 2}}",
            "socketio.reconnect.randomization_factor",
            "1",
        ),
    ],
)
def test_socketio_errors(tmp_path: Path, sio: str, key: str, needle: str) -> None:
    p = write(tmp_path, f"socketio: {sio}\n")
    errs = errors_of(p)
    assert any(e.startswith(f"{p}: {key}: ") and needle in e for e in errs), errs


def test_every_error_is_listed(tmp_path: Path) -> None:
    p = write(tmp_path, "socketio: {url: 'http://h', bad1: 1}\nmqtt: {port: -1, bad2: 2}\n")
    errs = errors_of(p)
    keys = {e.split(": ")[1] for e in errs}
    assert {"socketio.bad1", "mqtt.port", "mqtt.bad2"} <= keys
    assert all(e.startswith(f"{p}: ") for e in errs)


def test_verify_bool_strings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIO_MQTT_SOCKETIO__VERIFY", "false")
    assert load_config(write(tmp_path, MINIMAL)).socketio.verify is False


def test_direct_construction() -> None:
    cfg = GatewayConfig(socketio={"url": "http://h"})  # type: ignore[arg-type]
    assert cfg.mqtt.port == 1883
