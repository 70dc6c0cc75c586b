"""The ``devices`` configuration and ``session: device`` routes: keys, validation errors that
name the key, environment overrides, secrets, and what ``sio-mqtt check`` prints."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from sio_mqtt.gateway.config import (
    ConfigError,
    GatewayConfig,
    all_namespaces,
    config_from_mapping,
    device_auth,
    redacted_dump,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.upper().startswith("SIO_MQTT_"):
            monkeypatch.delenv(key)
    yield


def cfg(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "socketio": {"url": "http://localhost:3000", "auth": {"token": "s3cret"}},
        "devices": {"enabled": True, "topic": "devices/{device}/#"},
    }
    base.update(extra)
    return base


def errors(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        config_from_mapping(data)
    return ei.value.errors


def test_defaults_are_off_and_as_documented() -> None:
    c = config_from_mapping({"socketio": {"url": "http://x"}})
    d = c.devices
    assert not d.enabled and d.topic is None and d.namespace == "/devices"
    assert d.presence.topic == "devices/{device}/status"
    assert (d.presence.online, d.presence.offline) == ("online", "offline")
    assert (d.open_on, d.idle_timeout, d.max_sessions, d.connect_rate) == (
        "presence",
        0.0,
        10_000,
        500.0,
    )
    assert (d.partition.index, d.partition.count) == (0, 1)


def test_enabled_needs_topic() -> None:
    (err,) = errors({"socketio": {"url": "http://x"}, "devices": {"enabled": True}})
    assert "devices.topic" in err and "devices.enabled" in err


@pytest.mark.parametrize(
    ("devices", "key", "text"),
    [
        ({"topic": "devices/+/#"}, "devices.topic", "exactly one name, {device}"),
        ({"topic": "d/{id}/#"}, "devices.topic", "{device}"),
        ({"presence": {"topic": "status"}}, "devices.presence.topic", "{device}"),
        ({"presence": {"online": "x", "offline": "x"}}, "devices.presence", "differ"),
        ({"partition": {"index": 3, "count": 3}}, "devices.partition", "below count"),
        ({"connect_rate": 0}, "devices.connect_rate", "greater than 0"),
        ({"max_sessions": 0}, "devices.max_sessions", ""),
        ({"open_on": "always"}, "devices.open_on", "presence"),
        ({"auth": {"k": "{arg0}"}}, "devices.auth", "only {device}"),
        ({"namespace": "devices"}, "devices.namespace", ""),
    ],
)
def test_bad_device_settings_name_the_key(devices: dict[str, Any], key: str, text: str) -> None:
    data = cfg()
    data["devices"].update(devices)
    (err,) = errors(data)
    assert f": {key}:" in err and text in err, err


def test_device_route_topic_must_capture_device() -> None:
    (err,) = errors(
        cfg(mqtt_to_socketio=[{"topic": "cmd/{event}", "session": "device"}]),
    )
    assert "mqtt_to_socketio[0].topic" in err and "{device}" in err


def test_device_route_needs_devices_enabled() -> None:
    (err,) = errors(
        {
            "socketio": {"url": "http://x"},
            "socketio_to_mqtt": [{"event": "*", "topic": "d/{device}/x", "session": "device"}],
        }
    )
    assert "socketio_to_mqtt[0].session" in err and "devices.enabled" in err


def test_device_placeholder_needs_a_device_route() -> None:
    (err,) = errors(cfg(socketio_to_mqtt=[{"event": "*", "topic": "d/{device}/x"}]))
    assert "socketio_to_mqtt[0].topic" in err and "session: device" in err


def test_device_route_namespace_is_the_devices_namespace() -> None:
    c = config_from_mapping(
        cfg(
            mqtt_to_socketio=[
                {"topic": "devices/{device}/cmd/{event}", "session": "device"},
                {"topic": "shared/{event}"},
            ],
            socketio_to_mqtt=[{"event": "*", "topic": "d/{device}/{event}", "session": "device"}],
        )
    )
    assert c.mqtt_to_socketio[0].namespace == "/devices"
    assert c.socketio_to_mqtt[0].namespace == "/devices"
    assert all_namespaces(c) == ["/"]  # the shared session does not join /devices
    (err,) = errors(
        cfg(
            mqtt_to_socketio=[
                {"topic": "devices/{device}/{event}", "session": "device", "namespace": "/o"}
            ]
        )
    )
    assert "mqtt_to_socketio[0].namespace" in err and "'/devices'" in err, err


def test_auth_templates_merged_over_socketio_auth_and_secret() -> None:
    c = config_from_mapping(
        cfg(devices={**cfg()["devices"], "auth": {"device": "{device}", "sig": "k-{device}"}})
    )
    assert device_auth(c, "d1") == {"token": "s3cret", "device": "d1", "sig": "k-d1"}
    assert "k-{device}" not in repr(c) and "s3cret" not in repr(c)
    dumped = redacted_dump(c)["devices"]["auth"]
    assert dumped == {"device": "***", "sig": "***"}


def test_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIO_MQTT_DEVICES__ENABLED", "true")
    monkeypatch.setenv("SIO_MQTT_DEVICES__TOPIC", "fleet/{device}/#")
    monkeypatch.setenv("SIO_MQTT_DEVICES__PARTITION__INDEX", "2")
    monkeypatch.setenv("SIO_MQTT_DEVICES__PARTITION__COUNT", "3")
    monkeypatch.setenv("SIO_MQTT_DEVICES__PRESENCE__ONLINE", "up")
    c = GatewayConfig(socketio={"url": "http://x"})  # type: ignore[arg-type]
    d = c.devices
    assert d.enabled and d.topic == "fleet/{device}/#" and d.presence.online == "up"
    assert (d.partition.index, d.partition.count) == (2, 3)
    monkeypatch.setenv("SIO_MQTT_DEVICES__PARTITION__INDEX", "5")
    (err,) = errors({"socketio": {"url": "http://x"}})
    assert "devices.partition" in err and "SIO_MQTT_DEVICES__PARTITION__" in err


def test_check_shows_device_settings_and_device_bound_routes(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from sio_mqtt.cli import main

    data = cfg(
        mqtt_to_socketio=[
            {"name": "dev-cmd", "topic": "devices/{device}/cmd/{event}", "session": "device"},
            {"name": "shared-cmd", "topic": "shared/{event}"},
        ],
        socketio_to_mqtt=[
            {"name": "dev-out", "event": "*", "topic": "d/{device}/{event}", "session": "device"}
        ],
    )
    data["devices"]["auth"] = {"device": "{device}", "sig": "very-secret-{device}"}
    path = tmp_path / "gw.yaml"
    path.write_text(json.dumps(data))
    assert main(["check", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "device sessions: on, devices under devices/{device}/# on namespace /devices" in out
    assert "device-bound routes: dev-cmd, dev-out" in out
    assert "dev-cmd: devices/{device}/cmd/{event} -> /devices" in out and "session device" in out
    assert "very-secret" not in out and "s3cret" not in out


def test_partition_and_shared_group_exclude_each_other() -> None:
    data = cfg(mqtt={"shared_group": "gw"})
    data["devices"]["partition"] = {"index": 0, "count": 2}
    (err,) = errors(data)
    assert "devices.partition" in err and "mqtt.shared_group" in err
