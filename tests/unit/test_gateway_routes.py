"""Tests of the gateway's pure routing layer: patterns, templates, payloads, route table."""

from __future__ import annotations

import base64
import json
import os
import string
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sio_mqtt.gateway.config import config_from_mapping
from sio_mqtt.gateway.routes import (
    RESERVED_EVENTS,
    MqttToSocketioRoute,
    PatternError,
    PayloadError,
    RouteRefused,
    RouteTable,
    SocketioToMqttRoute,
    Template,
    TemplateError,
    TopicPattern,
    encode_mqtt_payload,
    sanitize_topic_value,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.upper().startswith("SIO_MQTT_"):
            monkeypatch.delenv(key)
    yield


# ---------------------------------------------------------------------------------- patterns


def test_pattern_captures_and_subscription() -> None:
    p = TopicPattern("devices/{device}/cmd/{event}")
    assert p.subscription == "devices/+/cmd/+"
    assert p.names == ("device", "event")
    assert p.match("devices/d1/cmd/reboot") == {"device": "d1", "event": "reboot"}
    assert p.match("devices/d1/cmd") is None
    assert p.match("devices/d1/cmd/reboot/now") is None
    assert p.match("devices/d1/other/reboot") is None
    assert p.match("devices//cmd/x") == {"device": "", "event": "x"}


def test_pattern_plus_and_hash() -> None:
    p = TopicPattern("a/+/{x}/#")
    assert p.subscription == "a/+/+/#"
    assert p.names == ("x",)
    assert p.match("a/1/2") == {"x": "2"}  # '#' also matches the parent level
    assert p.match("a/1/2/3/4") == {"x": "2"}
    assert p.match("a/1") is None
    assert p.match("b/1/2") is None
    assert TopicPattern("#").match("any/thing") == {}
    assert TopicPattern("lit/eral").match("lit/eral") == {}
    assert TopicPattern("lit/eral").subscription == "lit/eral"


def test_pattern_dollar_topics() -> None:
    assert TopicPattern("#").match("$SYS/broker") is None
    assert TopicPattern("+/broker").match("$SYS/broker") is None
    assert TopicPattern("{x}/broker").match("$SYS/broker") is None
    assert TopicPattern("$SYS/#").match("$SYS/broker") == {}


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a/#/b",
        "a/b#",
        "a/+b",
        "a/{x",
        "a/x}",
        "a/pre{x}",
        "a/{x}/{x}",
        "a/{1x}",
        "a/{}",
        "$share/g/a",
        "a/\x00",
    ],
)
def test_pattern_errors(bad: str) -> None:
    with pytest.raises(PatternError):
        TopicPattern(bad)


_level = st.text(
    alphabet=st.characters(exclude_characters="/+#\x00", exclude_categories=["Cs"]),
    max_size=8,
)
_literal = st.text(alphabet=string.ascii_letters + string.digits + "-_.$", min_size=1, max_size=6)


@st.composite
def _pattern_and_topic(draw: st.DrawFn) -> tuple[str, str, dict[str, str]]:
    n = draw(st.integers(1, 6))
    pattern_levels: list[str] = []
    topic_levels: list[str] = []
    captures: dict[str, str] = {}
    for i in range(n):
        kind = draw(st.sampled_from(["literal", "capture", "plus"]))
        if kind == "literal":
            lit = draw(_literal)
            pattern_levels.append(lit)
            topic_levels.append(lit)
        else:
            value = draw(_level)
            if i == 0 and value.startswith("$"):
                value = "x" + value
            topic_levels.append(value)
            if kind == "capture":
                pattern_levels.append(f"{{c{i}}}")
                captures[f"c{i}"] = value
            else:
                pattern_levels.append("+")
    if draw(st.booleans()):
        pattern_levels.append("#")
        topic_levels.extend(draw(st.lists(_level, max_size=3)))
    return "/".join(pattern_levels), "/".join(topic_levels), captures


@given(_pattern_and_topic())
def test_pattern_roundtrip_property(case: tuple[str, str, dict[str, str]]) -> None:
    pattern, topic, captures = case
    p = TopicPattern(pattern)
    assert p.match(topic) == captures
    # the subscription filter is a valid MQTT filter with the same shape
    assert len(p.subscription.split("/")) == len(pattern.split("/"))
    assert "{" not in p.subscription


# ---------------------------------------------------------------------------------- templates


def test_template_basic_and_dotted_paths() -> None:
    t = Template("sio/{namespace}/{event}/{arg0.device}/{arg1.items.1.id}/{arg2}")
    args = [{"device": "d1"}, {"items": [{"id": 1}, {"id": "two"}]}, 7]
    out = t.render({"namespace": "/", "event": "telemetry"}, args=args)
    assert out == "sio///telemetry/d1/two/7"
    assert t.names == {"namespace", "event", "arg0", "arg1", "arg2"}
    assert Template("{arg0}").render({"arg0": True}) == "true"  # argN from values
    assert Template("{{lit}}-{x}").render({"x": "v"}) == "{lit}-v"


def test_topic_object_value_message_names_the_placeholder() -> None:
    t = Template("t/{arg0.meta}")
    with pytest.raises(TemplateError, match=r"\{arg0.meta\} in 't/\{arg0.meta\}' is an object"):
        t.render({}, sanitize_topic=True, args=[{"meta": {"a": 1}}])
    with pytest.raises(TemplateError, match=r"is an array of 2.*\{arg0.<key>\}"):
        Template("t/{arg0}").render({}, sanitize_topic=True, args=[[1, 2]])


def test_template_sanitize() -> None:
    t = Template("sio/{namespace}/{event}/{arg0.device}")
    out = t.render(
        {"namespace": "/admin", "event": "a+b#c"}, sanitize_topic=True, args=[{"device": "x/y\x00"}]
    )
    assert out == "sio/_admin/a_b_c/x_y_"
    assert Template("a/{x}/b").render({"x": ""}, sanitize_topic=True) == "a/_/b"
    assert Template("{x}/b").render({"x": "$SYS"}, sanitize_topic=True) == "_SYS/b"
    assert Template("a+/{x}").render({"x": "v"}, sanitize_topic=True) == "a+/v"  # literal kept


@pytest.mark.parametrize(
    ("values", "args", "needle"),
    [
        ({}, None, "no value for 'event'"),
        ({"event": "e"}, [], "only 0 argument"),
        ({"event": "e"}, [{"other": 1}], "arg0 has no key 'device'"),
        ({"event": "e"}, ["str"], "arg0 has no key 'device'"),
        ({"event": "e"}, [{"device": None}], "arg0.device is null"),
    ],
)
def test_template_missing_values(
    values: dict[str, Any], args: list[Any] | None, needle: str
) -> None:
    t = Template("{event}/{arg0.device}")
    with pytest.raises(TemplateError) as ei:
        t.render(values, sanitize_topic=True, args=args)
    assert needle in str(ei.value)


def test_template_list_index_out_of_range() -> None:
    with pytest.raises(TemplateError):
        Template("{arg0.5}").render({}, args=[[1, 2]])


@pytest.mark.parametrize("bad", ["{", "}", "a{b", "a}b", "{}", "{a.b}", "{arg0.}", "{a b}", "{{x}"])
def test_template_syntax_errors(bad: str) -> None:
    with pytest.raises(TemplateError):
        Template(bad)


_values = st.one_of(
    st.text(max_size=12),
    st.integers(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.binary(max_size=8),
)
_containers = st.one_of(
    st.lists(st.text(max_size=3), max_size=3),
    st.tuples(st.integers()),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
)
# what brokers read as structure: MQTT itself, plus RabbitMQ's AMQP-style rewrite of '.' and '*'
_STRUCTURE = {"/", "+", "#", "\x00"}
_STRUCTURE_STRICT = _STRUCTURE | {".", "*"}


@settings(max_examples=300)
@given(
    st.lists(_values, min_size=3, max_size=3),
    st.text(max_size=10),
    st.text(max_size=10),
    st.booleans(),
)
def test_sanitized_topic_property(args: list[Any], event: str, ns: str, strict: bool) -> None:
    t = Template("{event}/x/{namespace}/{arg0}{arg1}/{arg2}")
    out = t.render({"event": event, "namespace": ns}, sanitize_topic=True, args=args, strict=strict)
    levels = out.split("/")
    assert len(levels) == 5  # values never create new levels
    assert all(levels), out  # never empty levels
    assert "+" not in out and "#" not in out and "\x00" not in out
    assert not out.startswith("$")
    if strict:  # a broker that maps '.' to '/' sees the same 5 levels (x is the only literal)
        assert "." not in out and "*" not in out
    out.encode("utf-8")  # always encodable


@given(st.text())
def test_sanitize_value_property(value: str) -> None:
    s = sanitize_topic_value(value)
    assert s and not (set(s) & _STRUCTURE)
    assert s == sanitize_topic_value(s)  # idempotent


@given(st.text())
def test_sanitize_value_strict_property(value: str) -> None:
    strict = sanitize_topic_value(value, strict=True)
    assert strict and not (set(strict) & _STRUCTURE_STRICT)
    assert len(strict) == len(sanitize_topic_value(value))  # one character for one
    # strict only differs where the value has '.' or '*'
    assert strict == sanitize_topic_value(value).replace(".", "_").replace("*", "_")


def test_sanitize_strict_examples() -> None:
    assert sanitize_topic_value("fw.v1.2*") == "fw.v1.2*"
    assert sanitize_topic_value("fw.v1.2*", strict=True) == "fw_v1_2_"
    t = Template("lit.x/{arg0}")
    assert t.render({}, sanitize_topic=True, args=["a.b"], strict=True) == "lit.x/a_b"  # literal


@settings(max_examples=100)
@given(_containers, st.sampled_from(["{arg0}", "a/{arg0}/b", "a/{arg1.k}"]), st.booleans())
def test_object_and_array_values_refused_in_topics(value: Any, tpl: str, strict: bool) -> None:
    args = [value, {"k": value}]
    with pytest.raises(TemplateError) as err:
        Template(tpl).render({}, sanitize_topic=True, args=args, strict=strict)
    assert tpl in str(err.value) and "must be a string, a number or a boolean" in str(err.value)
    # outside topics (no sanitising) the JSON text is still what a value renders as
    Template(tpl).render({}, args=args)


# ---------------------------------------------------------------------------------- mqtt -> sio


def _route(**kw: Any) -> MqttToSocketioRoute:
    kw.setdefault("name", "r")
    kw.setdefault("pattern", "devices/{device}/cmd/{event}")
    return MqttToSocketioRoute(**kw)


def test_event_for_and_reply_topic() -> None:
    r = _route(reply_topic="devices/{device}/reply/{event}", ack=True)
    caps = r.match("devices/d1/cmd/reboot")
    assert caps == {"device": "d1", "event": "reboot"}
    assert r.event_for(caps) == "reboot"
    assert r.reply_topic_for(caps) == "devices/d1/reply/reboot"
    assert _route().reply_topic_for(caps) is None


def test_reply_topic_event_is_emitted_name() -> None:
    r = _route(pattern="dev/{device}/{verb}", event="cmd_{verb}", reply_topic="r/{device}/{event}")
    caps = r.match("dev/d/go")
    assert caps is not None
    ev = r.event_for(caps)
    assert ev == "cmd_go"
    assert r.reply_topic_for(caps, ev) == "r/d/cmd_go"


def test_reply_topic_sanitised() -> None:
    r = _route(reply_topic="devices/{device}/reply")
    assert r.reply_topic_for({"device": "", "event": "x"}) == "devices/_/reply"


@pytest.mark.parametrize("name", sorted(RESERVED_EVENTS))
def test_reserved_events_refused(name: str) -> None:
    with pytest.raises(RouteRefused) as ei:
        _route().event_for({"device": "d", "event": name})
    assert "reserved" in ei.value.reason


def test_allow_events() -> None:
    r = _route(allow_events=["reboot", "config.*"])
    assert r.event_for({"device": "d", "event": "reboot"}) == "reboot"
    assert r.event_for({"device": "d", "event": "config.set"}) == "config.set"
    with pytest.raises(RouteRefused, match="allow_events"):
        r.event_for({"device": "d", "event": "format_disk"})
    with pytest.raises(RouteRefused, match="allow_events"):
        r.event_for({"device": "d", "event": "Reboot"})  # case-sensitive


def test_empty_event_refused() -> None:
    with pytest.raises(RouteRefused, match="empty"):
        _route().event_for({"device": "d", "event": ""})


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"a": 1}', [{"a": 1}]),
        (b"[1, 2]", [[1, 2]]),
        (b"42", [42]),
        (b'"quoted"', ["quoted"]),
        (b"null", [None]),
        (b"hello world", ["hello world"]),
        ("h\u00e9".encode(), ["h\u00e9"]),
        (b"NaN", ["NaN"]),  # not strict JSON -> text
        (b"\xff\xfe\x00", [b"\xff\xfe\x00"]),
        (b"", []),
    ],
)
def test_payload_auto(payload: bytes, expected: list[Any]) -> None:
    assert _route().args_for(payload) == expected


def test_payload_json() -> None:
    r = _route(payload="json")
    assert r.args_for(b'{"a": [1]}') == [{"a": [1]}]
    assert r.args_for(b"") == []
    with pytest.raises(PayloadError, match="not valid JSON"):
        r.args_for(b"hello")
    with pytest.raises(PayloadError, match="UTF-8"):
        r.args_for(b"\xff")
    with pytest.raises(PayloadError):
        r.args_for(b"Infinity")


def test_payload_text() -> None:
    r = _route(payload="text")
    assert r.args_for(b'{"a": 1}') == ['{"a": 1}']
    assert r.args_for(b"") == [""]
    with pytest.raises(PayloadError, match="UTF-8"):
        r.args_for(b"ok\xc3")


def test_payload_binary() -> None:
    r = _route(payload="binary")
    assert r.args_for(b"{}") == [b"{}"]
    assert r.args_for(b"") == [b""]
    assert type(r.args_for(bytearray(b"x"))[0]) is bytes  # type: ignore[arg-type]


def test_payload_spread() -> None:
    r = _route(spread=True)
    assert r.args_for(b'[1, "a", {"b": 2}]') == [1, "a", {"b": 2}]
    assert r.args_for(b"[]") == []
    assert r.args_for(b'{"a": 1}') == [{"a": 1}]  # not an array: one argument
    assert r.args_for(b"text") == ["text"]
    assert _route(spread=True, payload="json").args_for(b"[[1], 2]") == [[1], 2]


def test_deeply_nested_json_falls_back() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert _route().args_for(deep) == [deep.decode()]
    with pytest.raises(PayloadError):
        _route(payload="json").args_for(deep)


# ---------------------------------------------------------------------------------- sio -> mqtt


def test_outbound_route() -> None:
    r = SocketioToMqttRoute(name="t", event="sensor.*", topic="sio/{event}/{arg0.device}")
    assert r.matches("/", "sensor.temp")
    assert not r.matches("/", "sensor")
    assert not r.matches("/other", "sensor.temp")
    assert r.topic_for("/", "sensor.temp", [{"device": "a/b"}]) == "sio/sensor.temp/a_b"
    with pytest.raises(TemplateError):
        r.topic_for("/", "sensor.temp", [])
    exact = SocketioToMqttRoute(name="e", event="a[1]", topic="t")
    assert exact.matches("/", "a1") and not exact.matches("/", "a[1]")  # fnmatch semantics
    star = SocketioToMqttRoute(name="s", event="*", topic="t", namespace="/x")
    assert star.matches("/x", "") and star.matches("/x", "anything")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], b""),
        ([b"\x00\xff"], b"\x00\xff"),
        ([bytearray(b"ab")], b"ab"),
        (["hi"], b'"hi"'),
        ([42], b"42"),
        ([None], b"null"),
        ([{"a": [1, True]}], b'{"a":[1,true]}'),
        (["\u00e9"], '"\u00e9"'.encode()),
        ([1, "a"], b'[1,"a"]'),
        ([1, b"\x01\x02"], b'[1,{"_binary_b64":"AQI="}]'),
        ([{"blob": b"\xff"}], b'{"blob":{"_binary_b64":"/w=="}}'),
    ],
)
def test_encode_mqtt_payload(args: list[Any], expected: bytes) -> None:
    assert encode_mqtt_payload(args) == expected


def test_encode_mqtt_payload_errors() -> None:
    with pytest.raises(PayloadError):
        encode_mqtt_payload([float("nan")])
    with pytest.raises(PayloadError):
        encode_mqtt_payload([object()])


@given(
    st.lists(
        st.one_of(st.binary(max_size=6), st.integers(), st.text(max_size=6)), min_size=2, max_size=4
    )
)
def test_encode_several_with_bytes_roundtrip(args: list[Any]) -> None:
    decoded = json.loads(encode_mqtt_payload(args))
    restored = [base64.b64decode(v["_binary_b64"]) if isinstance(v, dict) else v for v in decoded]
    assert restored == args


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
    max_leaves=8,
)


@given(_json)
def test_one_json_arg_roundtrip(value: Any) -> None:
    assert _route().args_for(encode_mqtt_payload([value])) == [value]


# ---------------------------------------------------------------------------------- table


def _cfg(**extra: Any) -> Any:
    data: dict[str, Any] = {
        "socketio": {"url": "http://h", "namespaces": ["/"]},
        "mqtt_to_socketio": [
            {"topic": "devices/{device}/cmd/{event}", "qos": 0},
            {"topic": "devices/+/cmd/+", "event": "any_cmd", "qos": 2, "namespace": "/admin"},
            {"topic": "other/#", "event": "other", "name": "o"},
        ],
        "socketio_to_mqtt": [
            {"event": "telemetry", "topic": "t/{arg0.device}"},
            {"event": "*", "topic": "all/{event}"},
            {"event": "*", "namespace": "/admin", "topic": "admin/{event}"},
        ],
    }
    data.update(extra)
    return config_from_mapping(data)


def test_route_table() -> None:
    table = RouteTable.from_config(_cfg())
    assert [r.name for r in table.inbound] == ["mqtt_to_socketio[0]", "mqtt_to_socketio[1]", "o"]
    assert table.subscriptions == [("devices/+/cmd/+", 2), ("other/#", 1)]
    hits = table.inbound_for("devices/d1/cmd/reboot")
    assert [(r.name, c) for r, c in hits] == [
        ("mqtt_to_socketio[0]", {"device": "d1", "event": "reboot"}),
        ("mqtt_to_socketio[1]", {}),
    ]
    assert table.inbound_for("nothing/here") == []
    assert [r.name for r in table.outbound_for("/", "telemetry")] == [
        "socketio_to_mqtt[0]",
        "socketio_to_mqtt[1]",
    ]
    assert [r.name for r in table.outbound_for("/admin", "x")] == ["socketio_to_mqtt[2]"]
    assert table.outbound_for("/nope", "x") == ()
    # cached results are the same
    assert table.outbound_for("/", "telemetry") is table.outbound_for("/", "telemetry")
    assert table.namespaces() == ["/", "/admin"]


def test_retained_default_ignore_and_deliver() -> None:
    cfg = _cfg()
    table = RouteTable.from_config(cfg)
    assert all(r.ignore_retained for r in table.inbound)  # the default: ignore
    r = table.inbound[0]
    assert r.takes(retained=False) and not r.takes(retained=True)
    cfg = config_from_mapping(
        {
            "socketio": {"url": "http://h"},
            "mqtt_to_socketio": [{"topic": "s/{event}", "retained": "deliver"}],
        }
    )
    (d,) = RouteTable.from_config(cfg).inbound
    assert d.takes(retained=True) and d.takes(retained=False)


def test_topic_safe_strict_reaches_every_topic() -> None:
    data = {
        "socketio": {"url": "http://h"},
        "mqtt": {"topic_safe": "strict"},
        "mqtt_to_socketio": [
            {"topic": "d/{device}/{event}", "ack": True, "reply_topic": "d/{device}/r/{event}"}
        ],
        "socketio_to_mqtt": [{"event": "*", "topic": "t/{event}/{arg0}"}],
    }
    table = RouteTable.from_config(config_from_mapping(data))
    (inb,), (out,) = table.inbound, table.outbound
    assert out.topic_for("/", "sensor.temp", ["a*b"]) == "t/sensor_temp/a_b"
    assert inb.reply_topic_for({"device": "x.y", "event": "e*"}) == "d/x_y/r/e_"
    data["mqtt"] = {}
    table = RouteTable.from_config(config_from_mapping(data))
    assert table.outbound[0].topic_for("/", "sensor.temp", ["a*b"]) == "t/sensor.temp/a*b"


@pytest.mark.parametrize(
    ("envelope", "v5", "wrapped"),
    [
        ("auto", True, False),
        ("auto", False, True),
        ("always", True, True),
        ("always", False, True),
        ("never", True, False),
    ],
)
def test_reply_envelope(envelope: Any, v5: bool, wrapped: bool) -> None:
    r = SocketioToMqttRoute(name="a", event="ask", topic="t", reply_envelope=envelope)
    assert r.uses_envelope(v5) is wrapped
    payload = json.loads(r.request_payload([{"q": 1}, b"\x01"], "gw/reply/i/7", "7", v5))
    if wrapped:
        assert payload == {
            "reply_to": "gw/reply/i/7",
            "correlation": "7",
            "args": [{"q": 1}, {"_binary_b64": "AQ=="}],
        }
    else:
        assert payload == [{"q": 1}, {"_binary_b64": "AQ=="}]


def test_route_table_shared_group() -> None:
    cfg = _cfg(mqtt={"shared_group": "gw"})
    table = RouteTable.from_config(cfg)
    assert table.subscriptions == [("$share/gw/devices/+/cmd/+", 2), ("$share/gw/other/#", 1)]


def test_route_from_config_fields() -> None:
    cfg = config_from_mapping(
        {
            "socketio": {"url": "http://h"},
            "mqtt_to_socketio": [
                {
                    "topic": "d/{device}/{event}",
                    "ack": True,
                    "ack_timeout": 2.5,
                    "reply_topic": "d/{device}/r",
                    "payload": "json",
                    "spread": True,
                    "allow_events": ["a"],
                    "retries": 3,
                    "qos": 2,
                    "namespace": "/n",
                }
            ],
        }
    )
    (r,) = RouteTable.from_config(cfg).inbound
    assert (r.ack, r.ack_timeout, r.payload_mode, r.spread, r.retries, r.qos, r.namespace) == (
        True,
        2.5,
        "json",
        True,
        3,
        2,
        "/n",
    )
    assert r.allow_events is not None and r.allow_events("a") and not r.allow_events("b")
    assert r.reply_topic_for({"device": "x", "event": "a"}) == "d/x/r"
