"""Pure, precompiled routing for the gateway: topic patterns, templates, payload conversion.

Nothing here touches sockets or threads; the bridge calls these functions once per message, so
everything that can be parsed ahead of time (patterns, templates, globs) is parsed when the route
table is built, and the per-message work is a split, a few comparisons and a join.

Conventions (also documented in ``config/gateway.yaml``):

* **MQTT -> Socket.IO payloads** (:meth:`MqttToSocketioRoute.args_for`): in ``auto`` mode the
  payload becomes one argument: its JSON value when it parses as (strict) JSON, else its UTF-8
  text, else the raw bytes. An *empty* payload gives *no* argument (in ``auto`` and ``json``
  mode), mirroring the other direction where an emit without arguments is published as an empty
  payload. ``json`` / ``text`` / ``binary`` force a mode; a payload that does not fit raises
  :class:`PayloadError`. ``spread: true`` turns a JSON array into several arguments (any other
  JSON value stays one argument).
* **Socket.IO -> MQTT payloads** (:func:`encode_mqtt_payload`): no argument -> empty payload; one
  ``bytes`` argument -> the raw bytes; one other argument -> its compact JSON; several arguments ->
  a JSON array. ``bytes`` found anywhere inside a JSON document (one of several arguments, or nested
  in a dict/list) are encoded as ``{"_binary_b64": "<standard base64 with padding>"}``.
* **Topic sanitising** (``Template.render(..., sanitize_topic=True)``): in every *substituted*
  value, ``/``, ``+``, ``#``, NUL and other control characters (and unencodable lone surrogates) are
  replaced by ``_``; an empty value becomes ``_``; a value that would start the topic with ``$``
  gets its ``$`` replaced by ``_``. Literal parts of the template are kept as written.
  ``strict`` (``mqtt.topic_safe: strict``) also replaces ``.`` and ``*``: RabbitMQ's MQTT plugin
  maps ``.`` to ``/`` and ``*`` to ``+`` (its AMQP topic syntax), so a value with a dot would
  change the topic's levels there. An object or array value is refused (:class:`TemplateError`):
  JSON text in a topic level is never what a subscriber filters on.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from sio_mqtt.gateway.config import (
        GatewayConfig,
        MqttToSocketioRouteConfig,
        SocketioToMqttRouteConfig,
    )

__all__ = [
    "RESERVED_EVENTS",
    "EventMatcher",
    "MqttToSocketioRoute",
    "PatternError",
    "PayloadError",
    "PayloadMode",
    "ReplyEnvelope",
    "RouteRefused",
    "RouteTable",
    "SocketioToMqttRoute",
    "Template",
    "TemplateError",
    "TopicPattern",
    "decode_mqtt_payload",
    "encode_mqtt_payload",
    "sanitize_topic_value",
]

#: Event names Socket.IO reserves; never emitted from data coming from MQTT.
RESERVED_EVENTS: frozenset[str] = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)

PayloadMode = Literal["auto", "json", "text", "binary"]
#: ``socketio_to_mqtt[].reply_envelope``: when a server ack request carries its reply address
#: in a JSON envelope (``auto``: on MQTT 3.1.1 only)
ReplyEnvelope = Literal["auto", "always", "never"]

#: Key of the object that stands for binary data inside a JSON payload.
BINARY_KEY = "_binary_b64"

_MAX_TOPIC_BYTES = 65535
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ARG_RE = re.compile(r"arg([0-9]+)\Z")
# Characters replaced in substituted topic values: level separator, wildcards, NUL, C0/C1
# controls and DEL (MQTT forbids NUL; brokers such as Mosquitto reject the controls too).
_UNSAFE_TOPIC_CHARS = re.compile(r"[/+#\x00-\x1f\x7f-\x9f]")
# ``strict``: also what brokers with an AMQP-style topic syntax rewrite (RabbitMQ: ``.`` -> ``/``,
# ``*`` -> ``+``)
_UNSAFE_TOPIC_CHARS_STRICT = re.compile(r"[/+#.*\x00-\x1f\x7f-\x9f]")


class PatternError(ValueError):
    """A topic pattern is malformed (raised while compiling, i.e. at config load time)."""


class TemplateError(ValueError):
    """A template is malformed (at compile time) or cannot be rendered (a value is missing)."""


class RouteRefused(Exception):
    """The route refuses the message (reserved / not allowed / empty event name)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PayloadError(ValueError):
    """A payload does not fit the route's payload mode (or cannot be encoded)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Topic patterns
# --------------------------------------------------------------------------------------------

_LITERAL, _PLUS, _CAPTURE, _HASH = 0, 1, 2, 3


class TopicPattern:
    """An MQTT subscription pattern with named one-level captures.

    ``"devices/{device}/cmd/{event}"``: ``{name}`` matches exactly one level and captures it,
    ``+`` matches one level, ``#`` (last level only) matches any number of levels, including
    none (``a/#`` matches ``a``). As in MQTT, a wildcard first level does not match topics that
    start with ``$``. A ``{name}`` must be a whole level.
    """

    __slots__ = ("_first_is_wild", "_has_hash", "_levels", "_nfixed", "names", "pattern")

    def __init__(self, pattern: str) -> None:
        if not isinstance(pattern, str) or pattern == "":
            raise PatternError("topic pattern must be a non-empty string")
        if "\x00" in pattern:
            raise PatternError("topic pattern must not contain NUL")
        if pattern.startswith("$share/"):
            raise PatternError("use mqtt.shared_group instead of a '$share/...' pattern")
        self.pattern = pattern
        levels: list[tuple[int, str]] = []
        names: list[str] = []
        parts = pattern.split("/")
        for i, level in enumerate(parts):
            if level == "#":
                if i != len(parts) - 1:
                    raise PatternError(f"'#' must be the last level in {pattern!r}")
                levels.append((_HASH, ""))
            elif level == "+":
                levels.append((_PLUS, ""))
            elif level.startswith("{") and level.endswith("}") and level.count("{") == 1:
                name = level[1:-1]
                if not _NAME_RE.match(name):
                    raise PatternError(f"invalid capture name {level!r} in {pattern!r}")
                if name in names:
                    raise PatternError(f"capture {level!r} is used twice in {pattern!r}")
                names.append(name)
                levels.append((_CAPTURE, name))
            else:
                if "{" in level or "}" in level:
                    raise PatternError(
                        f"a capture must be a whole level like '{{name}}', got {level!r} "
                        f"in {pattern!r}"
                    )
                if "+" in level or "#" in level:
                    raise PatternError(
                        f"wildcards '+' and '#' must be a whole level, got {level!r} in {pattern!r}"
                    )
                levels.append((_LITERAL, level))
        self._levels: tuple[tuple[int, str], ...] = tuple(levels)
        self._has_hash = bool(levels) and levels[-1][0] == _HASH
        self._nfixed = len(levels) - 1 if self._has_hash else len(levels)
        self._first_is_wild = levels[0][0] != _LITERAL
        self.names: tuple[str, ...] = tuple(names)

    @property
    def subscription(self) -> str:
        """The MQTT topic filter (captures replaced by ``+``)."""
        return "/".join(
            "+" if kind == _CAPTURE else ("#" if kind == _HASH else ("+" if kind == _PLUS else v))
            for kind, v in self._levels
        )

    def match(self, topic: str) -> dict[str, str] | None:
        """Captures of ``topic`` (``{}`` if the pattern has none), or ``None`` if no match."""
        if self._first_is_wild and topic.startswith("$"):
            return None
        parts = topic.split("/")
        n = len(parts)
        if self._has_hash:
            if n < self._nfixed:
                return None
        elif n != self._nfixed:
            return None
        captures: dict[str, str] = {}
        for i in range(self._nfixed):
            kind, value = self._levels[i]
            if kind == _LITERAL:
                if parts[i] != value:
                    return None
            elif kind == _CAPTURE:
                captures[value] = parts[i]
        return captures

    def __repr__(self) -> str:
        return f"TopicPattern({self.pattern!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TopicPattern) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)


# --------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placeholder:
    """One ``{...}`` of a template: ``name`` (``"event"``, ``"arg0"``, a capture), the argument
    index for ``argN`` and the dotted path after it (``{arg0.a.1}`` -> ``("a", "1")``)."""

    text: str
    name: str
    arg_index: int | None
    path: tuple[str, ...]


_MISSING = object()


def sanitize_topic_value(value: str, strict: bool = False) -> str:
    """Make ``value`` safe as (part of) one topic level: see the module docstring."""
    if value == "":
        return "_"
    value = (_UNSAFE_TOPIC_CHARS_STRICT if strict else _UNSAFE_TOPIC_CHARS).sub("_", value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = "".join("_" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    return value


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError):
        return str(value)


class Template:
    """A string template: ``{event}``, ``{namespace}``, ``{argN}``, ``{argN.key.0}``, captures.

    ``{{`` and ``}}`` are literal braces. ``render`` looks names up in ``values``; ``argN`` comes
    from the ``args`` sequence when given, else from ``values["argN"]``. A dotted path walks dict
    keys, and list indices for list elements. Non-string values are rendered as compact JSON
    (``True`` -> ``true``), bytes as base64.
    """

    __slots__ = ("_parts", "literal_text", "placeholders", "template")

    def __init__(self, template: str) -> None:
        if not isinstance(template, str):
            raise TemplateError("template must be a string")
        self.template = template
        parts: list[str | Placeholder] = []
        buf: list[str] = []
        i, n = 0, len(template)
        while i < n:
            c = template[i]
            if c == "{":
                if i + 1 < n and template[i + 1] == "{":
                    buf.append("{")
                    i += 2
                    continue
                end = template.find("}", i + 1)
                if end == -1:
                    raise TemplateError(f"unbalanced '{{' at position {i} in {template!r}")
                inner = template[i + 1 : end]
                if "{" in inner:
                    raise TemplateError(f"unbalanced '{{' at position {i} in {template!r}")
                if buf:
                    parts.append("".join(buf))
                    buf = []
                parts.append(self._parse_placeholder(inner, template))
                i = end + 1
            elif c == "}":
                if i + 1 < n and template[i + 1] == "}":
                    buf.append("}")
                    i += 2
                    continue
                raise TemplateError(f"unbalanced '}}' at position {i} in {template!r}")
            else:
                buf.append(c)
                i += 1
        if buf:
            parts.append("".join(buf))
        self._parts: tuple[str | Placeholder, ...] = tuple(parts)
        self.placeholders: tuple[Placeholder, ...] = tuple(
            p for p in parts if isinstance(p, Placeholder)
        )
        #: The literal text (placeholders removed), for validation of fixed characters.
        self.literal_text = "".join(p for p in parts if isinstance(p, str))

    @staticmethod
    def _parse_placeholder(inner: str, template: str) -> Placeholder:
        text = "{" + inner + "}"
        if inner == "":
            raise TemplateError(f"empty placeholder '{{}}' in {template!r}")
        name, *path = inner.split(".")
        if not _NAME_RE.match(name):
            raise TemplateError(f"invalid placeholder {text} in {template!r}")
        if any(seg == "" for seg in path):
            raise TemplateError(f"empty key in placeholder {text} in {template!r}")
        m = _ARG_RE.match(name)
        arg_index = int(m.group(1)) if m else None
        if path and arg_index is None:
            raise TemplateError(
                f"dotted paths are only supported on argN placeholders, got {text} in {template!r}"
            )
        return Placeholder(text, name, arg_index, tuple(path))

    @property
    def names(self) -> frozenset[str]:
        """Root names used (``{arg0.x}`` -> ``"arg0"``)."""
        return frozenset(p.name for p in self.placeholders)

    @property
    def is_literal(self) -> bool:
        return not self.placeholders

    def _lookup(
        self, ph: Placeholder, values: Mapping[str, Any], args: Sequence[Any] | None
    ) -> Any:
        if ph.arg_index is not None and args is not None:
            if ph.arg_index >= len(args):
                raise TemplateError(
                    f"{ph.text} in {self.template!r}: only {len(args)} argument(s) given"
                )
            cur: Any = args[ph.arg_index]
        else:
            cur = values.get(ph.name, _MISSING)
            if cur is _MISSING:
                raise TemplateError(f"{ph.text} in {self.template!r}: no value for {ph.name!r}")
        walked = ph.name
        for seg in ph.path:
            if isinstance(cur, Mapping):
                nxt = cur.get(seg, _MISSING)
            elif isinstance(cur, (list, tuple)) and seg.isdigit() and int(seg) < len(cur):
                nxt = cur[int(seg)]
            else:
                nxt = _MISSING
            if nxt is _MISSING:
                raise TemplateError(
                    f"{ph.text} in {self.template!r}: {walked} has no key {seg!r}"
                    f" (it is {_describe(cur)})"
                )
            cur = nxt
            walked = f"{walked}.{seg}"
        if cur is None:
            raise TemplateError(f"{ph.text} in {self.template!r}: {walked} is null")
        return cur

    def render(
        self,
        values: Mapping[str, Any],
        sanitize_topic: bool = False,
        args: Sequence[Any] | None = None,
        strict: bool = False,
    ) -> str:
        """Substitute the placeholders; raises :class:`TemplateError` if a value is missing
        (or, for a topic, is an object or an array). ``strict``: see the module docstring."""
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = self._lookup(part, values, args)
            if sanitize_topic and isinstance(value, (Mapping, list, tuple)):
                raise TemplateError(
                    f"{part.text} in {self.template!r} is {_describe(value)}; a topic value "
                    f"must be a string, a number or a boolean (name one of its keys or "
                    f"indices: {part.text[:-1]}.<key>}})"
                )
            text = _to_text(value)
            if sanitize_topic:
                text = sanitize_topic_value(text, strict)
                if not out and text.startswith("$"):
                    text = "_" + text[1:]
            out.append(text)
        result = "".join(out)
        if sanitize_topic and len(result.encode("utf-8")) > _MAX_TOPIC_BYTES:
            raise TemplateError(f"rendered topic of {self.template!r} is longer than 65535 bytes")
        return result

    def __repr__(self) -> str:
        return f"Template({self.template!r})"


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return f"an array of {len(value)}"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


# --------------------------------------------------------------------------------------------
# Event globs
# --------------------------------------------------------------------------------------------

_GLOB_CHARS = frozenset("*?[")


def _compile_glob(pattern: str) -> Callable[[str], bool]:
    """``fnmatch.fnmatchcase`` semantics, compiled once; exact names compare by equality."""
    if not (_GLOB_CHARS & set(pattern)):
        return pattern.__eq__
    if pattern == "*":
        return lambda _name: True
    rx = re.compile(fnmatch.translate(pattern))
    return lambda name: rx.match(name) is not None


class EventMatcher:
    """Matches event names against exact names / globs (any of them)."""

    __slots__ = ("_exact", "_globs", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: tuple[str, ...] = tuple(patterns)
        self._exact = frozenset(p for p in self.patterns if not (_GLOB_CHARS & set(p)))
        self._globs = tuple(_compile_glob(p) for p in self.patterns if _GLOB_CHARS & set(p))

    def __call__(self, name: str) -> bool:
        return name in self._exact or any(g(name) for g in self._globs)

    def __repr__(self) -> str:
        return f"EventMatcher({list(self.patterns)!r})"


# --------------------------------------------------------------------------------------------
# Payloads
# --------------------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {BINARY_KEY: base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"a {type(obj).__name__} cannot be encoded as JSON")


def encode_mqtt_payload(args: Sequence[Any]) -> bytes:
    """Socket.IO event arguments -> MQTT payload.

    * no argument -> ``b""``;
    * one ``bytes``/``bytearray``/``memoryview`` argument -> the raw bytes;
    * one other argument -> its compact JSON (UTF-8; a string becomes a JSON string, quoted);
    * several arguments -> a JSON array of them.

    Binary data inside JSON (one of several arguments, or nested in an object/array) is encoded
    as ``{"_binary_b64": "<standard base64>"}`` so that it is unambiguous and reversible
    (a plain base64 string could not be told apart from text). Raises :class:`PayloadError` for
    values JSON cannot represent (NaN/Infinity, arbitrary objects).
    """
    if len(args) == 0:
        return b""
    if len(args) == 1:
        only = args[0]
        if isinstance(only, (bytes, bytearray, memoryview)):
            return bytes(only)
        value: Any = only
    else:
        value = list(args)
    try:
        return json.dumps(
            value,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=_json_default,
        ).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise PayloadError(f"arguments cannot be encoded as JSON: {exc}") from None


def _parse_json(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def decode_mqtt_payload(
    payload: bytes, mode: PayloadMode = "auto", spread: bool = False
) -> list[Any]:
    """MQTT payload -> Socket.IO event arguments (see the module docstring)."""
    payload = bytes(payload)
    if mode == "binary":
        return [payload]
    if mode == "text":
        try:
            return [payload.decode("utf-8")]
        except UnicodeDecodeError as exc:
            raise PayloadError(
                f"payload is not valid UTF-8 text (byte {exc.start}) but the route wants text"
            ) from None
    if payload == b"":
        return []
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        if mode == "json":
            raise PayloadError(
                f"payload is not valid UTF-8 (byte {exc.start}) but the route wants JSON"
            ) from None
        return [payload]
    try:
        value = _parse_json(text)
    except (ValueError, RecursionError) as exc:
        if mode == "json":
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise PayloadError(f"payload is not valid JSON ({reason})") from None
        return [text]
    if spread and isinstance(value, list):
        return value
    return [value]


# --------------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------------


class MqttToSocketioRoute:
    """A compiled ``mqtt_to_socketio`` route: MQTT message -> Socket.IO emit."""

    __slots__ = (
        "ack",
        "ack_timeout",
        "allow_events",
        "event_template",
        "ignore_retained",
        "name",
        "namespace",
        "pattern",
        "payload_mode",
        "qos",
        "reply_template",
        "retries",
        "spread",
        "strict_topics",
    )

    def __init__(
        self,
        *,
        name: str,
        pattern: TopicPattern | str,
        event: Template | str = "{event}",
        namespace: str = "/",
        qos: int = 1,
        ack: bool = False,
        ack_timeout: float = 5.0,
        reply_topic: Template | str | None = None,
        payload: PayloadMode = "auto",
        spread: bool = False,
        allow_events: Sequence[str] | None = None,
        retries: int = 0,
        retained: Literal["deliver", "ignore"] = "ignore",
        strict_topics: bool = False,
    ) -> None:
        self.name = name
        self.pattern = pattern if isinstance(pattern, TopicPattern) else TopicPattern(pattern)
        self.event_template = event if isinstance(event, Template) else Template(event)
        self.namespace = namespace
        self.qos = qos
        self.ack = ack
        self.ack_timeout = ack_timeout
        self.reply_template: Template | None = (
            reply_topic
            if isinstance(reply_topic, Template) or reply_topic is None
            else Template(reply_topic)
        )
        self.payload_mode: PayloadMode = payload
        self.spread = spread
        self.allow_events: EventMatcher | None = (
            None if allow_events is None else EventMatcher(allow_events)
        )
        self.retries = retries
        #: ``retained: ignore``: a message the broker flags retained (replayed because the
        #: gateway subscribed, not published live) is acknowledged and not emitted
        self.ignore_retained = retained == "ignore"
        self.strict_topics = strict_topics

    @classmethod
    def from_config(
        cls, rc: MqttToSocketioRouteConfig, name: str, strict_topics: bool = False
    ) -> MqttToSocketioRoute:
        return cls(
            name=name,
            pattern=rc.topic,
            event=rc.event,
            namespace=rc.namespace,
            qos=rc.qos,
            ack=rc.ack,
            ack_timeout=rc.ack_timeout,
            reply_topic=rc.reply_topic,
            payload=rc.payload,
            spread=rc.spread,
            allow_events=rc.allow_events,
            retries=rc.retries,
            retained=rc.retained,
            strict_topics=strict_topics,
        )

    def match(self, topic: str) -> dict[str, str] | None:
        return self.pattern.match(topic)

    def event_for(self, captures: Mapping[str, str]) -> str:
        """The Socket.IO event name; raises :class:`RouteRefused` if it may not be emitted."""
        try:
            event = self.event_template.render({"namespace": self.namespace, **captures})
        except TemplateError as exc:
            raise RouteRefused(f"route {self.name!r}: {exc}") from None
        if event == "":
            raise RouteRefused(f"route {self.name!r}: empty event name")
        if event in RESERVED_EVENTS:
            raise RouteRefused(f"route {self.name!r}: {event!r} is a reserved Socket.IO event name")
        if self.allow_events is not None and not self.allow_events(event):
            raise RouteRefused(f"route {self.name!r}: event {event!r} is not in allow_events")
        return event

    def args_for(self, payload: bytes) -> list[Any]:
        """Socket.IO arguments for ``payload``; raises :class:`PayloadError` if it does not fit."""
        return decode_mqtt_payload(payload, self.payload_mode, self.spread)

    def reply_topic_for(self, captures: Mapping[str, str], event: str | None = None) -> str | None:
        """The sanitised reply topic, or ``None`` if the route has no ``reply_topic``.

        Names available: the captures, ``{namespace}`` and, unless a capture is called so,
        ``{event}`` = the emitted event name (pass it as ``event``).
        """
        if self.reply_template is None:
            return None
        values: dict[str, Any] = {"namespace": self.namespace}
        if event is not None:
            values["event"] = event
        values.update(captures)
        return self.reply_template.render(values, sanitize_topic=True, strict=self.strict_topics)

    def takes(self, retained: bool) -> bool:
        """Whether a message with the broker's retain flag ``retained`` is emitted."""
        return not (retained and self.ignore_retained)

    def __repr__(self) -> str:
        return f"MqttToSocketioRoute(name={self.name!r}, topic={self.pattern.pattern!r})"


class SocketioToMqttRoute:
    """A compiled ``socketio_to_mqtt`` route: Socket.IO event -> MQTT publish."""

    __slots__ = (
        "_event_matches",
        "ack_timeout",
        "event",
        "name",
        "namespace",
        "qos",
        "reply",
        "reply_envelope",
        "retain",
        "strict_topics",
        "topic_template",
    )

    def __init__(
        self,
        *,
        name: str,
        event: str,
        topic: Template | str,
        namespace: str = "/",
        qos: int = 1,
        retain: bool = False,
        ack_timeout: float = 5.0,
        reply: bool = True,
        reply_envelope: ReplyEnvelope = "auto",
        strict_topics: bool = False,
    ) -> None:
        self.name = name
        self.event = event
        self._event_matches = _compile_glob(event)
        self.namespace = namespace
        self.topic_template = topic if isinstance(topic, Template) else Template(topic)
        self.qos = qos
        self.retain = retain
        self.ack_timeout = ack_timeout
        self.reply = reply
        self.reply_envelope: ReplyEnvelope = reply_envelope
        self.strict_topics = strict_topics

    @classmethod
    def from_config(
        cls, rc: SocketioToMqttRouteConfig, name: str, strict_topics: bool = False
    ) -> SocketioToMqttRoute:
        return cls(
            name=name,
            event=rc.event,
            topic=rc.topic,
            namespace=rc.namespace,
            qos=rc.qos,
            retain=rc.retain,
            ack_timeout=rc.ack_timeout,
            reply=rc.reply,
            reply_envelope=rc.reply_envelope,
            strict_topics=strict_topics,
        )

    def matches(self, namespace: str, event: str) -> bool:
        return namespace == self.namespace and self._event_matches(event)

    def topic_for(self, namespace: str, event: str, args: Sequence[Any]) -> str:
        """The sanitised MQTT topic; raises :class:`TemplateError` if a value is missing."""
        return self.topic_template.render(
            {"namespace": namespace, "event": event},
            sanitize_topic=True,
            args=args,
            strict=self.strict_topics,
        )

    def uses_envelope(self, v5: bool) -> bool:
        """Whether a server ack request goes out as the JSON envelope carrying its reply
        address (``auto``: only on MQTT 3.1.1, where there are no properties to carry it)."""
        if self.reply_envelope == "auto":
            return not v5
        return self.reply_envelope == "always"

    def request_payload(
        self, args: Sequence[Any], reply_to: str, correlation: str, v5: bool
    ) -> bytes:
        """The payload of a server ack request: the envelope
        ``{"reply_to", "correlation", "args"}`` (see :meth:`uses_envelope`), else the plain
        payload (the reply address then travels as MQTT 5 Response Topic + Correlation Data).
        Raises :class:`PayloadError` like :func:`encode_mqtt_payload`."""
        if self.uses_envelope(v5):
            envelope = {"reply_to": reply_to, "correlation": correlation, "args": list(args)}
            return encode_mqtt_payload([envelope])
        return encode_mqtt_payload(args)

    def __repr__(self) -> str:
        return (
            f"SocketioToMqttRoute(name={self.name!r}, namespace={self.namespace!r}, "
            f"event={self.event!r})"
        )


class RouteTable:
    """All compiled routes, plus the MQTT subscriptions they need."""

    _CACHE_MAX = 4096

    def __init__(
        self,
        inbound: Sequence[MqttToSocketioRoute],
        outbound: Sequence[SocketioToMqttRoute],
        shared_group: str | None = None,
    ) -> None:
        self.inbound: tuple[MqttToSocketioRoute, ...] = tuple(inbound)
        self.outbound: tuple[SocketioToMqttRoute, ...] = tuple(outbound)
        self.shared_group = shared_group
        self._outbound_cache: dict[tuple[str, str], tuple[SocketioToMqttRoute, ...]] = {}

    @classmethod
    def from_config(cls, cfg: GatewayConfig) -> RouteTable:
        strict = cfg.mqtt.topic_safe == "strict"
        inbound = [
            MqttToSocketioRoute.from_config(rc, rc.name or f"mqtt_to_socketio[{i}]", strict)
            for i, rc in enumerate(cfg.mqtt_to_socketio)
        ]
        outbound = [
            SocketioToMqttRoute.from_config(rc, rc.name or f"socketio_to_mqtt[{i}]", strict)
            for i, rc in enumerate(cfg.socketio_to_mqtt)
        ]
        return cls(inbound, outbound, cfg.mqtt.shared_group)

    def inbound_for(self, topic: str) -> list[tuple[MqttToSocketioRoute, dict[str, str]]]:
        """Every ``mqtt_to_socketio`` route matching ``topic``, with its captures, in order."""
        out: list[tuple[MqttToSocketioRoute, dict[str, str]]] = []
        for route in self.inbound:
            captures = route.pattern.match(topic)
            if captures is not None:
                out.append((route, captures))
        return out

    def outbound_for(self, namespace: str, event: str) -> tuple[SocketioToMqttRoute, ...]:
        """Every ``socketio_to_mqtt`` route matching (namespace, event), in order (cached)."""
        key = (namespace, event)
        hit = self._outbound_cache.get(key)
        if hit is not None:
            return hit
        found = tuple(r for r in self.outbound if r.matches(namespace, event))
        if len(self._outbound_cache) >= self._CACHE_MAX:
            self._outbound_cache.clear()
        self._outbound_cache[key] = found
        return found

    @property
    def subscriptions(self) -> list[tuple[str, int]]:
        """``(filter, qos)`` pairs, one per distinct filter (highest qos wins), in route order.

        With ``mqtt.shared_group`` each filter is ``$share/<group>/<filter>``.
        """
        best: dict[str, int] = {}
        for route in self.inbound:
            f = route.pattern.subscription
            best[f] = max(best.get(f, 0), route.qos)
        prefix = f"$share/{self.shared_group}/" if self.shared_group else ""
        return [(prefix + f, q) for f, q in best.items()]

    def namespaces(self) -> list[str]:
        """Namespaces used by routes (deduplicated, in order)."""
        seen: dict[str, None] = {}
        for r in self.inbound:
            seen.setdefault(r.namespace, None)
        for o in self.outbound:
            seen.setdefault(o.namespace, None)
        return list(seen)
