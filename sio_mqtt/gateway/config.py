"""Gateway configuration: YAML file + environment overrides, validated with pydantic v2.

The YAML shape is the public interface; ``config/gateway.yaml`` documents every key with its
default.

Environment overrides
---------------------
Every key can be overridden from the environment: ``SIO_MQTT_`` + the key path in upper case with
``__`` between levels, e.g. ``SIO_MQTT_SOCKETIO__URL``, ``SIO_MQTT_MQTT__PASSWORD``,
``SIO_MQTT_MQTT__TLS__ENABLED=true``, ``SIO_MQTT_SOCKETIO__AUTH__TOKEN=...`` (a key of the auth
mapping; env names are case-insensitive, so the key arrives in lower case). Lists and mappings
can be given whole as JSON: ``SIO_MQTT_SOCKETIO__NAMESPACES='["/", "/admin"]'``,
``SIO_MQTT_MQTT_TO_SOCKETIO='[{"topic": "a/{event}"}]'``. The value ``null`` sets a key to null.
Environment values win over the file (mappings are merged key by key).

Secrets
-------
``mqtt.password`` is a :class:`pydantic.SecretStr` and every value of ``socketio.auth`` a
:class:`pydantic.Secret`: they show as ``**********`` in ``repr``/``str`` and as ``***`` in
:func:`redacted_dump`. ``mqtt.password_file`` / ``socketio.auth_file`` read them from files (see
:class:`MqttConfig` and :class:`SocketioConfig`). Header values (``socketio.headers``) are hidden
from ``repr``; in :func:`redacted_dump` values of credential-like headers (Authorization, Cookie,
names containing token/secret/key/auth/password) are shown as ``***``.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Secret,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sio_mqtt.gateway.routes import (
    RESERVED_EVENTS,
    PatternError,
    Template,
    TemplateError,
    TopicPattern,
)

__all__ = [
    "ENV_NESTED_DELIMITER",
    "ENV_PREFIX",
    "ConfigError",
    "DevicePartitionConfig",
    "DevicePresenceConfig",
    "DevicesConfig",
    "GatewayConfig",
    "HttpConfig",
    "LoggingConfig",
    "MqttConfig",
    "MqttToSocketioRouteConfig",
    "OutboxConfig",
    "QueuesConfig",
    "ReconnectConfig",
    "SocketioConfig",
    "SocketioToMqttRouteConfig",
    "TlsConfig",
    "all_namespaces",
    "device_auth",
    "env_var_name",
    "load_config",
    "redacted_dump",
]

ENV_PREFIX = "SIO_MQTT_"
ENV_NESTED_DELIMITER = "__"
REDACTED = "***"


class ConfigError(Exception):
    """The configuration is invalid; ``errors`` holds one ``<file>: <key.path>: <message>`` each."""

    def __init__(self, errors: list[str] | str) -> None:
        self.errors: list[str] = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))


_STRICT = ConfigDict(extra="forbid", validate_default=True)


def _check_namespace(value: str) -> str:
    if not value.startswith("/") or any(c.isspace() for c in value):
        raise ValueError(f"a namespace must start with '/' and contain no spaces, got {value!r}")
    return value


def _read_secret_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"cannot read secret file '{path}': {reason}") from None
    return text.rstrip("\r\n")


def _check_file(path: Path | None) -> Path | None:
    if path is not None and not path.is_file():
        raise ValueError(f"file '{path}' does not exist or is not a regular file")
    return path


# --------------------------------------------------------------------------------------------
# socketio
# --------------------------------------------------------------------------------------------


class ReconnectConfig(BaseModel):
    """Reconnection back-off: ``delay`` doubling up to ``delay_max``, +/- randomization."""

    model_config = _STRICT

    delay: float = Field(default=1.0, ge=0)
    delay_max: float = Field(default=5.0, ge=0)
    randomization_factor: float = Field(default=0.5, ge=0, le=1)
    max_attempts: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _order(self) -> ReconnectConfig:
        if self.delay_max < self.delay:
            raise ValueError("delay_max must be >= delay")
        return self


class SocketioConfig(BaseModel):
    """The Socket.IO side; all namespaces share one connection.

    ``auth`` is the CONNECT payload; its values are secrets (use :meth:`auth_payload` to get the
    plain mapping). ``auth_file`` names a JSON or YAML file holding a mapping that is merged under
    ``auth`` (keys written in ``auth`` win). ``verify`` is ``true``/``false`` or a CA bundle path.
    """

    model_config = _STRICT

    url: str
    path: str = "/socket.io/"
    namespaces: list[str] = Field(default_factory=lambda: ["/"])
    auth: dict[str, Secret[Any]] = Field(default_factory=dict)
    auth_file: Path | None = None
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    transports: list[Literal["polling", "websocket"]] = Field(
        default_factory=lambda: ["polling", "websocket"],  # type: ignore[arg-type]
        min_length=1,
    )
    reconnect: ReconnectConfig = Field(default_factory=lambda: ReconnectConfig())
    parser: Literal["default", "msgpack"] = "default"
    connect_timeout: float = Field(default=20.0, gt=0)
    verify: bool | str = True

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urllib.parse.urlsplit(v)
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            # the URL itself is not quoted: it may carry a password or a token
            got = f"scheme {parts.scheme!r}" if parts.hostname else "no host"
            raise ValueError(f"must be an http(s):// or ws(s):// URL with a host (got {got})")
        return v

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"must start with '/', got {v!r}")
        return v

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, v: list[str]) -> list[str]:
        for ns in v:
            _check_namespace(ns)
        return list(dict.fromkeys(v))

    @field_validator("transports")
    @classmethod
    def _transports(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("transports must not repeat")
        return v

    @field_validator("verify", mode="before")
    @classmethod
    def _verify(cls, v: Any) -> Any:
        if isinstance(v, bool):
            return v
        if isinstance(v, str):
            low = v.strip().lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            if v and not Path(v).is_file():
                raise ValueError(f"CA file '{v}' does not exist or is not a regular file")
            if v:
                return v
        raise ValueError("must be true, false or the path of a CA bundle")

    @field_validator("auth_file")
    @classmethod
    def _auth_file(cls, v: Path | None) -> Path | None:
        if v is not None:
            _load_auth_file(v)
        return v

    @model_validator(mode="after")
    def _merge_auth_file(self) -> SocketioConfig:
        if self.auth_file is not None:
            from_file = _load_auth_file(self.auth_file)
            self.auth = {**{k: Secret[Any](val) for k, val in from_file.items()}, **self.auth}
        return self

    def auth_payload(self) -> dict[str, Any]:
        """The CONNECT payload with the secrets revealed (for the client, never for logs)."""
        return {k: v.get_secret_value() for k, v in self.auth.items()}


def _load_auth_file(path: Path) -> dict[str, Any]:
    text = _read_secret_file(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError(f"auth file '{path}' is not valid JSON/YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ValueError(f"auth file '{path}' must hold a mapping with string keys")
    return data


# --------------------------------------------------------------------------------------------
# mqtt
# --------------------------------------------------------------------------------------------


class TlsConfig(BaseModel):
    model_config = _STRICT

    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    verify: bool = True

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _files(cls, v: Path | None) -> Path | None:
        return _check_file(v)

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        return self


class MqttConfig(BaseModel):
    """The MQTT side.

    ``client_id`` must be unique per broker: when running several instances, give each its own,
    e.g. ``SIO_MQTT_MQTT__CLIENT_ID=sio-mqtt-$(hostname)``, and use ``shared_group`` to load
    balance the subscriptions (``$share/<group>/<filter>``). ``password_file`` is read at load
    time (trailing newline stripped) into ``password``; set at most one of the two.
    ``protocol`` is ``5`` or ``"3.1.1"`` (``clean_start`` maps to clean-session and
    ``session_expiry`` is ignored with 3.1.1).
    """

    model_config = _STRICT

    host: str = Field(default="localhost", min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    protocol: Literal[5, "3.1.1"] = 5
    client_id: str = Field(default="sio-mqtt", min_length=1, max_length=65535)
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    keepalive: int = Field(default=30, ge=0, le=65535)
    clean_start: bool = False
    session_expiry: int = Field(default=3600, ge=0, le=0xFFFFFFFF)
    tls: TlsConfig = Field(default_factory=lambda: TlsConfig())
    base_topic: str = "sio-mqtt"
    shared_group: str | None = None
    tcp_nodelay: bool = True
    #: the broker's packet size limit for brokers that cannot say it (MQTT 3.1.1); with MQTT 5
    #: the smaller of this and the broker's CONNACK Maximum Packet Size applies
    max_packet_size: int | None = Field(default=None, ge=16, le=268_435_460)
    #: a publish the broker refused with a quota-like reason (MQTT 5 PUBACK 0x97) is tried again
    #: after this many seconds, up to ``quota_retries`` times, then dropped and reported
    quota_retry_delay: float = Field(default=1.0, gt=0, le=3600)
    quota_retries: int = Field(default=3, ge=0, le=1000)
    #: how values substituted into topics are sanitised: ``standard`` replaces what MQTT itself
    #: forbids or reads as structure (``/``, ``+``, ``#``, controls); ``strict`` also ``.`` and
    #: ``*``, which RabbitMQ's MQTT plugin rewrites to ``/`` and ``+``
    topic_safe: Literal["standard", "strict"] = "standard"

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, v: Any) -> Any:
        if v in (5, "5", "5.0", "v5"):
            return 5
        if v in ("3.1.1", "311", "v3.1.1"):
            return "3.1.1"
        raise ValueError(f'must be 5 or "3.1.1", got {v!r}')

    @field_validator("password_file")
    @classmethod
    def _password_file(cls, v: Path | None) -> Path | None:
        if v is not None:
            _read_secret_file(v)
        return v

    @field_validator("base_topic")
    @classmethod
    def _base_topic(cls, v: str) -> str:
        if not v or any(c in v for c in "+#\x00") or v.startswith("/") or v.endswith("/"):
            raise ValueError(
                f"must be a non-empty topic without '+', '#', NUL or leading/trailing '/', "
                f"got {v!r}"
            )
        return v

    @field_validator("shared_group")
    @classmethod
    def _shared_group(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c in v for c in "/+#\x00")):
            raise ValueError(f"must be a non-empty name without '/', '+', '#', got {v!r}")
        return v

    @model_validator(mode="after")
    def _resolve_password_file(self) -> MqttConfig:
        if self.password_file is not None:
            if self.password is not None:
                raise ValueError("set only one of password and password_file")
            self.password = SecretStr(_read_secret_file(self.password_file))
        return self


# --------------------------------------------------------------------------------------------
# http, queues, outbox, logging
# --------------------------------------------------------------------------------------------


class HttpConfig(BaseModel):
    """The health/metrics endpoint (/healthz, /readyz, /metrics); port 0 = any free port."""

    model_config = _STRICT

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9080, ge=0, le=65535)


class QueuesConfig(BaseModel):
    """Bounded queue sizes between the two sides."""

    model_config = _STRICT

    mqtt_to_socketio: int = Field(default=10000, ge=1)
    socketio_to_mqtt: int = Field(default=10000, ge=1)


class OutboxConfig(BaseModel):
    """The Socket.IO -> MQTT outbox (see :mod:`sio_mqtt.gateway.outbox`).

    ``enabled`` makes it durable (SQLite at ``path``; also where the Socket.IO recovery state is
    kept); disabled, the same bounded, ordered queue lives in memory only. ``max_messages`` and
    ``overflow`` apply either way. ``commit_interval`` (seconds) / ``commit_batch`` (messages)
    bound a group commit; ``0`` commits every message before publishing it. ``sync`` is SQLite's
    ``synchronous`` (WAL): ``normal`` survives a process crash, ``full`` also a power loss.
    """

    model_config = _STRICT

    enabled: bool = False
    path: str = Field(default="sio-mqtt-outbox.sqlite3", min_length=1)
    max_messages: int = Field(default=100000, ge=1)
    overflow: Literal["drop-oldest", "drop-newest", "block"] = "drop-oldest"
    commit_interval: float = Field(default=0.05, ge=0, le=60)
    commit_batch: int = Field(default=1000, ge=1)
    sync: Literal["off", "normal", "full"] = "normal"
    recovery: bool = True
    recovery_interval: float = Field(default=0.2, gt=0, le=60)


class LoggingConfig(BaseModel):
    model_config = _STRICT

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["text", "json"] = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


# --------------------------------------------------------------------------------------------
# device sessions
# --------------------------------------------------------------------------------------------

_DEVICE = "device"


def _device_pattern(v: str, what: str) -> str:
    """A topic pattern with exactly one capture, ``{device}``."""
    try:
        pattern = TopicPattern(v)
    except PatternError as exc:
        raise ValueError(str(exc)) from None
    names = list(pattern.names)
    if names != [_DEVICE]:
        raise ValueError(
            f"{what} must capture exactly one name, {{device}} (got "
            f"{', '.join('{' + n + '}' for n in names) or 'no capture'})"
        )
    return v


class DevicePresenceConfig(BaseModel):
    """``devices.presence``: the birth / Last Will topic and its two payloads."""

    model_config = _STRICT

    topic: str = "devices/{device}/status"
    online: str = Field(default="online", min_length=1)
    offline: str = Field(default="offline", min_length=1)

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        return _device_pattern(v, "the presence topic")

    @model_validator(mode="after")
    def _distinct(self) -> DevicePresenceConfig:
        if self.online == self.offline:
            raise ValueError("online and offline must differ")
        return self


class DevicePartitionConfig(BaseModel):
    """``devices.partition``: this replica's share of the devices (stable hash of the id)."""

    model_config = _STRICT

    index: int = Field(default=0, ge=0)
    count: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _range(self) -> DevicePartitionConfig:
        if self.index >= self.count:
            raise ValueError(f"index must be below count ({self.count}), got {self.index}")
        return self


class DevicesConfig(BaseModel):
    """``devices``: every MQTT device its own Socket.IO session (off by default).

    ``auth`` values are templates over ``{device}``, merged over ``socketio.auth`` into the
    CONNECT payload of each device's session; like ``socketio.auth`` they are secrets (hidden
    in ``repr`` and in :func:`redacted_dump`).
    """

    model_config = _STRICT

    enabled: bool = False
    topic: str | None = None
    namespace: str = "/devices"
    auth: dict[str, Secret[Any]] = Field(default_factory=lambda: {_DEVICE: Secret("{device}")})
    presence: DevicePresenceConfig = Field(default_factory=lambda: DevicePresenceConfig())
    open_on: Literal["presence", "message"] = "presence"
    idle_timeout: float = Field(default=0.0, ge=0)
    max_sessions: int = Field(default=10_000, ge=1)
    connect_rate: float = Field(default=500.0, gt=0)
    partition: DevicePartitionConfig = Field(default_factory=lambda: DevicePartitionConfig())

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str | None) -> str | None:
        return None if v is None else _device_pattern(v, "the pattern")

    @field_validator("namespace")
    @classmethod
    def _ns(cls, v: str) -> str:
        return _check_namespace(v)

    @field_validator("auth")
    @classmethod
    def _auth(cls, v: dict[str, Secret[Any]]) -> dict[str, Secret[Any]]:
        for key, secret in v.items():
            value = secret.get_secret_value()
            if not isinstance(value, str):
                continue
            try:
                tpl = Template(value)
            except TemplateError as exc:
                raise ValueError(f"{key}: {exc}") from None
            for ph in tpl.placeholders:
                if ph.name != _DEVICE or ph.arg_index is not None:
                    raise ValueError(f"{key}: unknown placeholder {ph.text}; only {{device}}")
        return v

    @model_validator(mode="after")
    def _needs_topic(self) -> DevicesConfig:
        if self.enabled and self.topic is None:
            raise ValueError(
                "devices.topic: devices.enabled needs devices.topic (the pattern whose "
                "{device} capture names the device of a message, e.g. 'devices/{device}/#')"
            )
        return self


def device_auth(cfg: GatewayConfig, device: str) -> dict[str, Any]:
    """The CONNECT payload of ``device``'s session: ``devices.auth`` rendered for the device,
    merged over ``socketio.auth`` (plain values: never log the result)."""
    payload = cfg.socketio.auth_payload()
    for key, secret in cfg.devices.auth.items():
        value = secret.get_secret_value()
        if isinstance(value, str):
            value = Template(value).render({_DEVICE: device})
        payload[key] = value
    return payload


# --------------------------------------------------------------------------------------------
# routes
# --------------------------------------------------------------------------------------------

_SIO_TOPIC_NAMES = frozenset({"event", "namespace"})


def _check_publish_literal(tpl: Template) -> None:
    if tpl.template == "":
        raise ValueError("topic must not be empty")
    bad = [c for c in ("+", "#", "\x00") if c in tpl.literal_text]
    if bad:
        raise ValueError(f"a publish topic must not contain {', '.join(map(repr, bad))}")


class _RouteConfig(BaseModel):
    """What both kinds of route have: a name for logs and metrics, the namespace (checked the
    same way), the QoS on the MQTT side and how long an acknowledgement may take."""

    model_config = _STRICT

    name: str | None = None
    namespace: str = "/"
    qos: int = Field(default=1, ge=0, le=2)
    ack_timeout: float = Field(default=5.0, gt=0)
    #: ``device``: the route uses each device's own session (``devices``), on
    #: ``devices.namespace``; ``shared``: the gateway's one session
    session: Literal["shared", "device"] = "shared"

    @field_validator("namespace")
    @classmethod
    def _ns(cls, v: str) -> str:
        return _check_namespace(v)


class SocketioToMqttRouteConfig(_RouteConfig):
    """``socketio_to_mqtt`` route: events from the server (exact name or glob) -> MQTT topic.

    ``topic`` may use ``{event}``, ``{namespace}``, ``{argN}`` and ``{argN.key...}``.
    ``ack_timeout`` and ``reply`` concern events the server emits *with an ack request*: with
    ``reply: true`` the gateway publishes them as requests with a reply address and waits up to
    ``ack_timeout`` seconds for the device's answer. ``reply_envelope`` says how the reply
    address travels: ``auto`` as MQTT 5 Response Topic + Correlation Data (the JSON envelope
    ``{"reply_to", "correlation", "args"}`` with MQTT 3.1.1), ``always`` in the envelope (also
    with MQTT 5, for devices that speak 3.1.1 and never see properties), ``never`` only as
    properties (MQTT 5 only).
    """

    event: str = Field(min_length=1)
    topic: str
    retain: bool = False
    reply: bool = True
    reply_envelope: Literal["auto", "always", "never"] = "auto"

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        try:
            tpl = Template(v)
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
        _check_publish_literal(tpl)
        for ph in tpl.placeholders:
            if ph.arg_index is None and ph.name not in _SIO_TOPIC_NAMES | {_DEVICE}:
                raise ValueError(
                    f"unknown placeholder {ph.text}; use {{event}}, {{namespace}}, {{argN}}, "
                    f"{{argN.key}} or (session: device) {{device}}"
                )
        return v

    @model_validator(mode="after")
    def _envelope_needs_reply(self) -> SocketioToMqttRouteConfig:
        if self.reply_envelope != "auto" and not self.reply:
            raise ValueError("reply_envelope needs reply: true")
        return self


class MqttToSocketioRouteConfig(_RouteConfig):
    """``mqtt_to_socketio`` route: MQTT topic pattern -> Socket.IO event.

    ``event`` may use the pattern's captures and ``{namespace}``; ``reply_topic`` also
    ``{event}`` (the emitted name) when no capture is called ``event``. ``allow_events``
    (exact names/globs) limits the events; ``None`` allows every non-reserved name.
    ``retained: ignore`` (the default) acknowledges and skips messages the broker delivers with
    the retain flag, i.e. replayed from its store when the gateway subscribes (at every start and
    reconnect), so a retained command is not executed again and again; live messages are
    delivered whatever their publisher's retain flag. ``deliver`` emits the replayed ones too
    (state topics whose last value the server wants at start).
    """

    topic: str
    event: str = "{event}"
    ack: bool = False
    reply_topic: str | None = None
    payload: Literal["auto", "json", "text", "binary"] = "auto"
    spread: bool = False
    allow_events: list[str] | None = None
    retries: int = Field(default=0, ge=0)
    message_id: bool = False
    retained: Literal["deliver", "ignore"] = "ignore"

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        try:
            TopicPattern(v)
        except PatternError as exc:
            raise ValueError(str(exc)) from None
        return v

    @staticmethod
    def _captures(info: ValidationInfo) -> frozenset[str] | None:
        topic = info.data.get("topic")
        if topic is None:  # the topic itself is invalid; reported there
            return None
        return frozenset(TopicPattern(topic).names)

    @staticmethod
    def _check_names(tpl: Template, allowed: frozenset[str], what: str) -> None:
        for ph in tpl.placeholders:
            if ph.arg_index is not None:
                raise ValueError(
                    f"{ph.text}: argN placeholders are only available in socketio_to_mqtt "
                    f"topics, not in {what}"
                )
            if ph.name not in allowed:
                raise ValueError(
                    f"{ph.text} is not a capture of the topic pattern (available: "
                    f"{', '.join('{' + n + '}' for n in sorted(allowed))})"
                )

    @field_validator("event")
    @classmethod
    def _event(cls, v: str, info: ValidationInfo) -> str:
        try:
            tpl = Template(v)
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
        if v == "":
            raise ValueError("event must not be empty")
        captures = cls._captures(info)
        if captures is not None:
            cls._check_names(tpl, captures | {"namespace"}, "event templates")
        if tpl.is_literal and tpl.literal_text in RESERVED_EVENTS:
            raise ValueError(f"{tpl.literal_text!r} is a reserved Socket.IO event name")
        return v

    @field_validator("reply_topic")
    @classmethod
    def _reply_topic(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        try:
            tpl = Template(v)
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
        _check_publish_literal(tpl)
        captures = cls._captures(info)
        if captures is not None:
            cls._check_names(tpl, captures | {"namespace", "event"}, "reply_topic")
        return v

    @field_validator("allow_events")
    @classmethod
    def _allow_events(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("an empty list allows no event; omit the key to allow all")
        for name in v:
            if not name:
                raise ValueError("entries must not be empty")
            if name in RESERVED_EVENTS:
                raise ValueError(f"{name!r} is a reserved Socket.IO event name")
        return v

    @model_validator(mode="after")
    def _combinations(self) -> MqttToSocketioRouteConfig:
        if self.spread and self.payload not in ("auto", "json"):
            raise ValueError(f"spread needs payload auto or json, not {self.payload!r}")
        if self.reply_topic is not None and not self.ack:
            raise ValueError("reply_topic needs ack: true")
        return self


# --------------------------------------------------------------------------------------------
# root
# --------------------------------------------------------------------------------------------


class GatewayConfig(BaseSettings):
    """The whole gateway configuration (environment ``SIO_MQTT_...`` overrides init values)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        env_parse_none_str="null",
        extra="forbid",
        validate_default=True,
        case_sensitive=False,
    )

    socketio: SocketioConfig
    mqtt: MqttConfig = Field(default_factory=lambda: MqttConfig())
    http: HttpConfig = Field(default_factory=lambda: HttpConfig())
    socketio_to_mqtt: list[SocketioToMqttRouteConfig] = Field(default_factory=list)
    mqtt_to_socketio: list[MqttToSocketioRouteConfig] = Field(default_factory=list)
    queues: QueuesConfig = Field(default_factory=lambda: QueuesConfig())
    outbox: OutboxConfig = Field(default_factory=lambda: OutboxConfig())
    logging: LoggingConfig = Field(default_factory=lambda: LoggingConfig())
    devices: DevicesConfig = Field(default_factory=lambda: DevicesConfig())

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first = highest priority; no .env or secrets-dir magic.
        return (env_settings, init_settings)

    def _route_sections(
        self,
    ) -> list[tuple[str, Sequence[MqttToSocketioRouteConfig | SocketioToMqttRouteConfig]]]:
        """Both route lists with the config key they sit under (for error messages)."""
        return [
            ("mqtt_to_socketio", self.mqtt_to_socketio),
            ("socketio_to_mqtt", self.socketio_to_mqtt),
        ]

    @model_validator(mode="after")
    def _route_names(self) -> GatewayConfig:
        seen: dict[str, str] = {}
        for section, routes in self._route_sections():
            for i, route in enumerate(routes):
                key = f"{section}[{i}]"
                if route.name is None:
                    route.name = key
                if route.name in seen:
                    raise ValueError(
                        f"{key}.name: route name {route.name!r} is already used by "
                        f"{seen[route.name]}"
                    )
                seen[route.name] = key
        if self.mqtt.protocol == "3.1.1":
            for i, out in enumerate(self.socketio_to_mqtt):
                if out.reply_envelope == "never":
                    raise ValueError(
                        f"socketio_to_mqtt[{i}].reply_envelope: 'never' needs mqtt.protocol 5 "
                        f"(MQTT 3.1.1 has no properties: the device would get no reply address)"
                    )
        self._device_routes()
        return self

    def _device_routes(self) -> None:
        """``session: device`` routes need ``devices.enabled``, run on ``devices.namespace`` and
        name their device: an inbound topic captures ``{device}``; ``{device}`` in an outbound
        topic is only known on a device's session."""
        dcfg = self.devices
        if dcfg.enabled and dcfg.partition.count > 1 and self.mqtt.shared_group is not None:
            raise ValueError(
                "devices.partition: replicas split the devices by partition, each with its own "
                "MQTT session; mqtt.shared_group would hand each replica only a share of every "
                "device's messages (remove mqtt.shared_group)"
            )
        for section, routes in self._route_sections():
            for i, route in enumerate(routes):
                key = f"{section}[{i}]"
                if route.session == "shared":
                    if isinstance(route, SocketioToMqttRouteConfig) and (
                        _DEVICE in Template(route.topic).names
                    ):
                        raise ValueError(
                            f"{key}.topic: {{device}} needs session: device (a shared "
                            "session has no device)"
                        )
                    continue
                if not dcfg.enabled:
                    raise ValueError(f"{key}.session: 'device' needs devices.enabled: true")
                if "namespace" not in route.model_fields_set:
                    route.namespace = dcfg.namespace
                elif route.namespace != dcfg.namespace:
                    raise ValueError(
                        f"{key}.namespace: a session: device route runs on devices.namespace "
                        f"({dcfg.namespace!r}), not {route.namespace!r}"
                    )
                if (
                    isinstance(route, MqttToSocketioRouteConfig)
                    and _DEVICE not in TopicPattern(route.topic).names
                ):
                    raise ValueError(
                        f"{key}.topic: a session: device route's topic must capture "
                        f"{{device}} (got {route.topic!r})"
                    )


# --------------------------------------------------------------------------------------------
# loading, errors, helpers
# --------------------------------------------------------------------------------------------


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def env_var_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable overriding the key at ``loc`` (up to the first list index)."""
    names: list[str] = []
    for part in loc:
        if isinstance(part, int):
            break
        names.append(part)
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(names).upper()


def _env_source(loc: tuple[int | str, ...], environ: Mapping[str, str]) -> str | None:
    upper = {k.upper() for k in environ}
    strs: list[str] = []
    for part in loc:
        if isinstance(part, int):
            break
        strs.append(part)
    for n in range(len(strs), 0, -1):
        name = env_var_name(tuple(strs[:n]))
        if name in upper:
            return name
        if n == len(strs):  # an error of a whole section: one of its keys came from there
            below = sorted(k for k in upper if k.startswith(name + ENV_NESTED_DELIMITER))
            if below:
                return below[0]
    return None


def _format_validation_error(exc: ValidationError, source: str) -> list[str]:
    errors: list[str] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        msg = str(err["msg"])
        if err["type"] == "value_error" and msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if msg.startswith(("mqtt_to_socketio[", "socketio_to_mqtt[", "devices.")):
            # root-level messages that carry their own key path ("x[0].name: ...")
            path, _, msg = msg.partition(": ")
        else:
            path = _format_loc(loc)
        env = _env_source(loc, os.environ)
        if env is not None:
            msg += f" (from environment variable {env})"
        errors.append(f"{source}: {path}: {msg}")
    return errors


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read, validate and resolve the YAML file at ``path`` (+ environment overrides).

    Raises :class:`ConfigError` naming the file, the key path and what is wrong (for YAML syntax
    errors: the line and column).
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{source}: cannot read config file: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if mark is not None:
            where = f"line {mark.line + 1}, column {mark.column + 1}"
            raise ConfigError(f"{source}: invalid YAML at {where}: {problem}") from None
        raise ConfigError(f"{source}: invalid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: (top level): must be a mapping of keys, got {type(data).__name__}"
        )
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise ConfigError([f"{source}: {k!r}: keys must be strings" for k in bad_keys])
    return config_from_mapping(data, source)


def config_from_mapping(data: Mapping[str, Any], source: str = "<config>") -> GatewayConfig:
    """Validate an already-parsed mapping (+ environment overrides); errors name ``source``."""
    try:
        return GatewayConfig(**data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def all_namespaces(cfg: GatewayConfig) -> list[str]:
    """``socketio.namespaces`` plus every shared route's namespace, deduplicated, in that
    order (``session: device`` routes use the devices' own sessions)."""
    seen: dict[str, None] = dict.fromkeys(cfg.socketio.namespaces)
    for r in cfg.mqtt_to_socketio:
        if r.session == "shared":
            seen.setdefault(r.namespace, None)
    for o in cfg.socketio_to_mqtt:
        if o.session == "shared":
            seen.setdefault(o.namespace, None)
    return list(seen)


_SENSITIVE_HEADER_PARTS = ("authorization", "cookie", "token", "secret", "key", "auth", "password")
_SENSITIVE_QUERY_PARTS = ("token", "secret", "key", "auth", "password", "sig")


def _redact_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", f":{REDACTED}@", 1)
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{urllib.parse.quote(k)}="
            + (
                REDACTED
                if any(s in k.lower() for s in _SENSITIVE_QUERY_PARTS)
                else urllib.parse.quote(v)
            )
            for k, v in pairs
        )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _plain(value: Any) -> Any:
    if isinstance(value, (SecretStr, Secret)):
        return REDACTED
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def redacted_dump(cfg: GatewayConfig) -> dict[str, Any]:
    """The resolved configuration as plain data with every secret shown as ``"***"``."""
    data: dict[str, Any] = _plain(cfg.model_dump(mode="python"))
    sio = data["socketio"]
    sio["url"] = _redact_url(sio["url"])
    sio["headers"] = {
        k: (REDACTED if any(s in k.lower() for s in _SENSITIVE_HEADER_PARTS) else v)
        for k, v in sio["headers"].items()
    }
    return data
