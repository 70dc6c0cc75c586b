"""The pure plans of both directions: an MQTT message -> Emit/Refusal per route, a server event
-> Publish/AskDevice/TopicRefusal per route."""

from __future__ import annotations

from types import SimpleNamespace

from sio_mqtt.gateway.inbound import MESSAGE_ID, Emit, Refusal, plan_message
from sio_mqtt.gateway.outbound import AskDevice, Publish, TopicRefusal, plan_event
from sio_mqtt.gateway.routes import MqttToSocketioRoute, SocketioToMqttRoute


def inbound(**kw: object) -> MqttToSocketioRoute:
    return MqttToSocketioRoute(name=str(kw.pop("name", "r")), **kw)  # type: ignore[arg-type]


def test_emit_with_reply_address_and_device() -> None:
    route = inbound(
        pattern="dev/{device}/cmd/{event}",
        ack=True,
        reply_topic="dev/{device}/reply/{event}",
        session="device",
    )
    captures = route.match("dev/d1/cmd/reboot")
    assert captures is not None
    (step,) = plan_message([(route, captures)], b'{"a": 1}', None)
    assert step == Emit(route, "reboot", [{"a": 1}], "dev/d1/reply/reboot", None, "d1")


def test_v5_response_topic_wins_and_message_id_is_appended() -> None:
    route = inbound(pattern="x/{event}", ack=True, reply_topic="r/{event}")
    props = SimpleNamespace(
        ResponseTopic="inbox/1", CorrelationData=b"c1", UserProperty=[(MESSAGE_ID, "m-7")]
    )
    from sio_mqtt.gateway.inbound import publisher_message_id

    (step,) = plan_message(
        [(route, {"event": "go"})], b"1", props, lambda p: publisher_message_id(p) or "new", {"r"}
    )
    assert isinstance(step, Emit)
    assert (step.reply_topic, step.correlation) == ("inbox/1", b"c1")
    assert step.args == [1, {MESSAGE_ID: "m-7"}]
    assert step.device is None


def test_refusals_carry_their_reason_and_reply_address() -> None:
    allowed = inbound(pattern="x/{event}", ack=True, reply_topic="r/{event}", allow_events=["ok"])
    binary_only = inbound(name="j", pattern="j/{event}", payload="json", ack=True,
                          reply_topic="rj/{event}")  # fmt: skip
    refused, bad = plan_message(
        [(allowed, {"event": "nope"}), (binary_only, {"event": "e"})], b"\xff", None
    )
    assert isinstance(refused, Refusal) and refused.kind == "refused"
    assert "allow_events" in refused.reason and refused.reply_topic == "r/nope"
    assert isinstance(bad, Refusal) and bad.kind == "payload" and bad.reply_topic == "rj/e"


def test_outbound_first_reply_route_asks_the_rest_publish() -> None:
    ask = SocketioToMqttRoute(name="a", event="*", topic="d/{device}/ask/{event}",
                              session="device")  # fmt: skip
    tele = SocketioToMqttRoute(name="t", event="*", topic="t/{arg0.id}", reply=True)
    plain = SocketioToMqttRoute(name="p", event="*", topic="p/{event}")
    steps = plan_event([ask, tele, plain], "/devices", "hi", ({"x": 1},), True, "d1")
    assert steps[0] == AskDevice(ask, "d/d1/ask/hi")
    assert isinstance(steps[1], TopicRefusal) and steps[1].route is tele
    assert steps[2] == Publish(plain, "p/hi")
    # without an ack request every route publishes
    steps = plan_event([ask, plain], "/devices", "hi", (), False, "d1")
    assert steps == [Publish(ask, "d/d1/ask/hi"), Publish(plain, "p/hi")]
