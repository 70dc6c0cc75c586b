"""Pure parts of the broker-limit handling: the PUBLISH size the Maximum Packet Size is checked
against, and the config keys. (Against real brokers: tests/gateway/test_broker_limits.py.)"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sio_mqtt.gateway.config import ConfigError, config_from_mapping
from sio_mqtt.gateway.mqtt import publish_packet_size, reply_properties


def _paho_packet(topic: str, payload: bytes, qos: int, props: Any, v5: bool) -> bytes:
    """The bytes paho writes for this PUBLISH (its queue captured instead of a socket)."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    )
    captured: list[bytes] = []
    client._sock = object()  # type: ignore[assignment]  # paho builds a packet only "connected"
    client._packet_queue = lambda command, packet, mid, qos, info=None: captured.append(  # type: ignore[method-assign]
        bytes(packet)
    )
    client._send_publish(1 if qos else 0, topic.encode(), payload, qos, False, False, None, props)
    client._sock = None
    (packet,) = captured
    return packet


@settings(max_examples=150, deadline=None)
@given(
    topic=st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t),
    size=st.sampled_from([0, 1, 100, 127, 128, 16_000, 16_383, 16_384, 20_000, 70_000]),
    qos=st.sampled_from([0, 1, 2]),
    v5=st.booleans(),
    with_props=st.booleans(),
)
def test_publish_packet_size_is_what_paho_writes(
    topic: str, size: int, qos: int, v5: bool, with_props: bool
) -> None:
    payload = b"x" * size
    props = reply_properties("r/t", b"c", (("sio-mqtt-id", "abc-1"),)) if with_props else None
    if not v5:
        props = None
    expected = len(_paho_packet(topic, payload, qos, props, v5))
    assert publish_packet_size(topic, payload, qos, props, v5) == expected


def _cfg(**mqtt_keys: Any) -> dict[str, Any]:
    return {"socketio": {"url": "http://127.0.0.1:1"}, "mqtt": mqtt_keys}


def test_limit_keys_default_and_validate() -> None:
    cfg = config_from_mapping(_cfg())
    assert cfg.mqtt.max_packet_size is None
    assert (cfg.mqtt.quota_retry_delay, cfg.mqtt.quota_retries) == (1.0, 3)
    assert config_from_mapping(_cfg(max_packet_size=20000)).mqtt.max_packet_size == 20000
    for bad in ({"max_packet_size": 10}, {"quota_retry_delay": 0}, {"quota_retries": -1}):
        with pytest.raises(ConfigError) as err:
            config_from_mapping(_cfg(**bad))
        assert f"mqtt.{next(iter(bad))}" in "\n".join(err.value.errors)


def _connection(**mqtt_keys: Any) -> tuple[Any, list[str]]:
    """An MqttConnection that never connects (its paho callbacks are called by hand)."""
    from sio_mqtt.gateway.mqtt import MqttConnection

    cfg = config_from_mapping(_cfg(**mqtt_keys)).mqtt
    unavailable: list[str] = []
    conn = MqttConnection(cfg, on_message=lambda m: None, on_shared_unavailable=unavailable.append)
    return conn, unavailable


def _connack(conn: Any, **props: Any) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    properties = Properties(PacketTypes.CONNACK)
    for name, value in props.items():
        setattr(properties, name, value)
    flags = mqtt.ConnectFlags(session_present=False)
    conn._on_connect(conn.client, None, flags, ReasonCode(PacketTypes.CONNACK), properties)


def test_v5_connack_without_shared_subscriptions_is_reported() -> None:
    """No MQTT 5 broker in the tests says Shared Subscription Available = 0 (mosquitto has
    them; the 3.1.1 probe is tested against amqtt): the CONNACK is fed by hand."""
    conn, unavailable = _connection(shared_group="g")
    _connack(conn, SharedSubscriptionAvailable=0, MaximumPacketSize=5000)
    assert conn.shared_available is False
    assert unavailable and "Shared Subscription Available = 0" in unavailable[0]
    assert conn.max_packet_size == 5000


def test_the_smaller_packet_size_limit_applies() -> None:
    conn, unavailable = _connection(max_packet_size=3000)
    _connack(conn, MaximumPacketSize=5000)
    assert conn.max_packet_size == 3000 and unavailable == []
    assert conn.shared_available is None  # no shared_group: not checked
    assert conn.publish("t", b"x" * 4000, qos=1).value == "too_large"
    assert conn.publish_mid("t", b"x" * 4000, 1, False, None) == "too_large"


def test_a_refused_v5_connect_hints_at_311_once(caplog: pytest.LogCaptureFixture) -> None:
    """aedes and RabbitMQ 3.x answer an MQTT 5 CONNECT with a CONNACK refusal (no broker in
    the tests does: amqtt never answers ours, see test_broker_limits): the CONNACK is fed by
    hand. One WARNING for the refusal, one hint, then DEBUG for every further attempt."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    conn, _ = _connection()
    flags = mqtt.ConnectFlags(session_present=False)
    with caplog.at_level("DEBUG", logger="sio_mqtt.gateway.mqtt"):
        for _ in range(3):
            refusal = ReasonCode(PacketTypes.CONNACK, "Unsupported protocol version")
            conn._on_connect(conn.client, None, flags, refusal, None)
            conn._on_disconnect(conn.client, None, None, ReasonCode(PacketTypes.DISCONNECT), None)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2, warnings
    assert "refused the connection: Unsupported protocol version (0x84)" in warnings[0]
    assert 'may speak only MQTT 3.1.1; if so, set mqtt.protocol: "3.1.1"' in warnings[1]
    assert not [r for r in caplog.records if "lost" in r.getMessage()]
    assert conn.connects == 0
