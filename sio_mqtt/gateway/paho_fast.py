"""``FastClient``: paho-mqtt 2.x ``Client`` with a cheaper network thread (drop-in subclass).

paho's receive path costs a ``select()`` plus at least three ``recv()`` system calls per incoming
packet (1 byte command, 1 byte per length digit, then the body) and handles one packet per
``loop_read`` for a subscriber; every packet it queues from its own thread still writes a wake-up
byte to its socketpair; and an MQTT 5 PUBLISH builds a ``Properties`` object from scratch (about
8 us, plus 4 us to "unpack" an empty property list). ``FastClient`` keeps paho's public behaviour
(callbacks, ``manual_ack`` + ``ack()``, ``loop_start``/``loop_forever``/``loop()``, external event
loops, reconnects, MQTT 5 properties, TLS, unix sockets) and changes only the internals:

* **reads** -- ``loop_read`` does one large ``recv`` (64 KiB, or what the pending packet needs)
  into a user-space buffer and handles *every* complete packet in it before returning, so no
  complete packet ever waits for ``select()``. paho's ``_sock_recv`` serves from that buffer
  first, so paho's own byte-by-byte ``_packet_read`` stays consistent if it is ever used.
  TLS: paho's ``_loop`` already skips ``select()`` while the ``SSLSocket`` has ``pending()``
  bytes; the buffer never holds a complete packet after ``loop_read`` (and ``_loop`` drains it
  first if it ever does).
* **PUBLISH decoding** -- topic/mid/payload sliced directly; MQTT 5 properties created from a
  shared template instead of ``Properties.__init__``, not unpacked when the property length is
  0, and decoded by our own code when well formed (Response Topic, Correlation Data, User
  Properties...: 5 us instead of paho's ``Properties.unpack`` at 57 us on a slow machine; anything
  unusual goes to paho's decoder, so errors are paho's own); debug logging formatted only when
  a logger/``on_log`` would receive it; the topic-filter matcher is skipped when no
  ``message_callback_add`` filter exists. Malformed packets raise ``MalformedPacket`` in the same
  cases as paho's ``_packet.decode_publish``.
* **writes** -- packets queued *inside* the network loop (auto-acks, acks from ``on_message``)
  do not write paho's wake-up byte (the loop flushes them right after the read batch); packets
  queued from other threads (manual ``ack()``, ``publish()``) write one wake-up byte per
  wake-up, not one per packet; consecutive queued packets without completion side effects
  (PUBACK/PUBREC/PUBREL/PUBCOMP, QoS>0 PUBLISH, SUBSCRIBE...) are joined into one ``send``.
  A QoS 0 PUBLISH or DISCONNECT at the head of the queue is written by paho's own code.
  Inside :meth:`FastClient.writing_now` a thread writes its own packets at once, when nothing is
  queued ahead (a request's reply: no wake-up and thread switch, see there).

paho internals are private API: everything relied on is checked at import (:data:`FAST_OK`,
:data:`FAST_PROBLEMS`) and again per instance; if anything is missing or changed, ``FastClient``
behaves exactly like ``paho.mqtt.client.Client``. ``transport="websockets"`` keeps paho's own
socket reads and writes (its wrapper does its own framing and buffering).
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

import paho.mqtt
import paho.mqtt.client as _mc
from paho.mqtt import enums as _enums
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

if TYPE_CHECKING:
    from paho.mqtt.client import MQTTMessageInfo, _InPacket, _OutPacket

__all__ = ["FAST_OK", "FAST_PROBLEMS", "FastClient"]

# The one import of the paho modules that not every allowed paho has (``_packet`` and
# ``exception`` came with 2.2): without them (paho 2.0/2.1) the check below fails and
# ``FastClient`` is plain paho.
try:
    from paho.mqtt import _packet
    from paho.mqtt.exception import MalformedPacket
except ImportError:  # pragma: no cover - depends on the installed paho
    _packet = None  # type: ignore[assignment]

    class MalformedPacket(ValueError):  # type: ignore[no-redef]
        """Stand-in (never raised by paho < 2.2, whose FastClient runs paho's own code)."""


log = logging.getLogger(__name__)

_RECV_SIZE = 65536  # one recv per loop_read (more when one pending packet needs more)
_RECV_MAX = 1 << 22  # never ask the kernel for more than this at once
_JOIN_LIMIT = 65536  # join queued packets into one send up to this many bytes

_SUCCESS = MQTTErrorCode.MQTT_ERR_SUCCESS
_AGAIN = MQTTErrorCode.MQTT_ERR_AGAIN
_NO_CONN = MQTTErrorCode.MQTT_ERR_NO_CONN
_CONN_LOST = MQTTErrorCode.MQTT_ERR_CONN_LOST
_PROTOCOL = MQTTErrorCode.MQTT_ERR_PROTOCOL
_MQTTv5 = MQTTProtocolVersion.MQTTv5
_PUBLISH = 0x30
_PUBACK = 0x40
_DISCONNECT = 0xE0
_PUBLISH_PT = PacketTypes.PUBLISH
#: what paho's ``decode_puback`` gives for a plain-success PUBACK (shared, never mutated)
_PUBACK_SUCCESS = ReasonCode(PacketTypes.PUBACK)
_PUBACK_NO_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]
_DEBUG = logging.DEBUG


def _fresh_in_packet() -> _InPacket:
    return {
        "command": 0,
        "have_remaining": 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": 0,
        "packet": bytearray(b""),
        "to_process": 0,
        "pos": 0,
    }


# --- what we rely on in paho 2.x (checked once at import) --------------------------------------
_OVERRIDDEN: dict[str, tuple[str, ...]] = {
    # method -> its parameters (self first), as in paho 2.1/2.2
    "_sock_recv": ("self", "bufsize"),
    "_sock_close": ("self",),
    "_loop": ("self", "timeout"),
    "loop_read": ("self", "max_packets"),
    "_packet_write": ("self",),
    "_packet_queue": ("self", "command", "packet", "mid", "qos", "info"),
    "_handle_publish": ("self",),
}
_USED_METHODS = (
    "_sock_send",
    "_packet_read",
    "_packet_handle",
    "_handle_on_message",
    "_loop_rc_handle",
    "_easy_log",
    "_send_pubrec",
    "_do_on_publish",
    "_call_socket_register_write",
    "loop_write",
    "want_write",
)
_USED_INSTANCE_ATTRS = (
    "_state",
    "_sock",
    "_sockpairW",
    "_thread",
    "_transport",
    "_protocol",
    "_manual_ack",
    "_userdata",
    "_in_packet",
    "_out_packet",
    "_in_messages",
    "_in_message_mutex",
    "_out_messages",
    "_out_message_mutex",
    "_in_callback_mutex",
    "_msgtime_mutex",
    "_last_bytes_received",
    "_on_message",
    "_on_message_filtered",
    "_on_log",
    "_logger",
    "_on_socket_register_write",
    "_ssl",
    "_last_msg_out",
    "suppress_exceptions",
)
_PROPERTIES_ATTRS = frozenset({"packetType", "types", "names", "properties"})


def _check_paho() -> list[str]:
    problems: list[str] = []
    version = getattr(paho.mqtt, "__version__", "")
    if not version.startswith("2."):
        problems.append(f"paho-mqtt {version!r} is not 2.x")
    for name, params in _OVERRIDDEN.items():
        meth = getattr(_mc.Client, name, None)
        if meth is None:
            problems.append(f"Client.{name} is missing")
            continue
        try:
            got = tuple(inspect.signature(meth).parameters)
        except (TypeError, ValueError):
            got = ()
        if got != params:
            problems.append(f"Client.{name}{got} is not {params}")
    problems += [f"Client.{m} is missing" for m in _USED_METHODS if not hasattr(_mc.Client, m)]
    for name in ("sockpair_data", "time_func", "MQTT_LOG_DEBUG", "MQTT_LOG_ERR", "MQTTMessage"):
        if not hasattr(_mc, name):
            problems.append(f"paho.mqtt.client.{name} is missing")
    if not hasattr(_mc, "mqtt_ms_wait_for_pubrel"):
        problems.append("paho.mqtt.client.mqtt_ms_wait_for_pubrel is missing")
    if not hasattr(getattr(_enums, "_ConnectionState", None), "MQTT_CS_DISCONNECTED"):
        problems.append("paho.mqtt.enums._ConnectionState.MQTT_CS_DISCONNECTED is missing")
    if _packet is None:
        problems.append("paho.mqtt._packet is missing (paho < 2.2)")
    elif not isinstance(getattr(_packet, "DECODE_ERRORS", None), tuple):
        problems.append("paho.mqtt._packet.DECODE_ERRORS is missing")
    if not hasattr(Properties, "unpack"):
        problems.append("Properties.unpack is missing")
    return problems


FAST_PROBLEMS: list[str] = _check_paho()
#: paho is as expected: ``FastClient`` uses its fast paths (else it is plain paho)
FAST_OK: bool = not FAST_PROBLEMS

if FAST_OK:
    _time_func = _mc.time_func
    _sockpair_data = _mc.sockpair_data
    _LOG_DEBUG = _mc.MQTT_LOG_DEBUG
    _LOG_ERR = _mc.MQTT_LOG_ERR
    _WAIT_FOR_PUBREL = _mc.mqtt_ms_wait_for_pubrel
    #: the state after a disconnect() was carried out
    _DISCONNECTED = _enums._ConnectionState.MQTT_CS_DISCONNECTED
    _DECODE_ERRORS: tuple[type[BaseException], ...] = _packet.DECODE_ERRORS
    _Message = _mc.MQTTMessage


def _properties_template() -> dict[str, Any] | None:
    """The attributes of an empty PUBLISH ``Properties`` (shared, never mutated by paho)."""
    try:
        tmpl = Properties(_PUBLISH_PT)  # type: ignore[no-untyped-call]
    except Exception:  # pragma: no cover
        return None
    attrs = dict(vars(tmpl))
    if set(attrs) != _PROPERTIES_ATTRS:  # pragma: no cover - a different paho
        return None
    return attrs


_PROPS_TEMPLATE = _properties_template()
_new_object = object.__new__


def _publish_properties() -> Properties:
    """An empty PUBLISH ``Properties``, about 20x cheaper than ``Properties(PUBLISH)``."""
    if _PROPS_TEMPLATE is None:  # pragma: no cover
        return Properties(_PUBLISH_PT)  # type: ignore[no-untyped-call]
    props: Properties = _new_object(Properties)
    props.__dict__.update(_PROPS_TEMPLATE)
    return props


def _decode_publish(
    header: int, data: bytes, start: int, stop: int, v5: bool
) -> tuple[bytes, int, Properties | None, bytes]:
    """``(topic, mid, properties, payload)`` of the PUBLISH body ``data[start:stop]``; raises
    ``MalformedPacket`` exactly where ``paho.mqtt._packet.decode_publish`` does."""
    if stop - start < 2:
        raise MalformedPacket("PUBLISH packet is too short")
    pos = start + 2 + ((data[start] << 8) | data[start + 1])
    if pos > stop:
        raise MalformedPacket("PUBLISH topic is longer than the packet")
    topic = data[start + 2 : pos]
    if not v5 and pos == start + 2:
        raise MalformedPacket("topic can't be empty in MQTTv3")
    mid = 0
    if header & 0x06:
        if pos + 2 > stop:
            raise MalformedPacket("PUBLISH packet has no packet identifier")
        mid = (data[pos] << 8) | data[pos + 1]
        pos += 2
    props: Properties | None = None
    if v5:
        if pos < stop and data[pos] == 0:
            props = _publish_properties()
            pos += 1
        elif (fast := _unpack_publish_properties(data, pos, stop)) is not None:
            props, pos = fast
        else:  # paho's own decoder: it raises (or not) exactly as paho would
            props = _publish_properties()
            try:
                _unused, used = props.unpack(data[pos:stop])  # type: ignore[no-untyped-call]
            except MalformedPacket:
                raise
            except _DECODE_ERRORS as err:
                raise MalformedPacket(str(err)) from err
            pos += used
    return topic, mid, props, data[pos:stop]


#: PUBLISH property identifier -> attribute name (paho's compressed names)
_UTF8_PROPS = {3: "ContentType", 8: "ResponseTopic"}
_USER_PROPERTY = 38
_CORRELATION_DATA = 9
_PAYLOAD_FORMAT = 1
_MESSAGE_EXPIRY = 2
_TOPIC_ALIAS = 35
_SUBSCRIPTION_ID = 11


def _utf8(data: bytes, pos: int, end: int) -> tuple[str, int] | None:
    """An MQTT UTF-8 string at ``data[pos:]`` within ``end``; None where paho's ``readUTF``
    might raise (it then decides)."""
    if end - pos < 2:
        return None
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        return None
    try:
        text = data[pos + 2 : stop].decode()
    except UnicodeDecodeError:
        return None
    # the strict decoder refuses surrogates (D800-DFFF); paho also refuses these two
    if "\x00" in text or "\ufeff" in text:
        return None
    return text, stop


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """An MQTT variable byte integer (at most 4 bytes) at ``data[pos:end]`` and the position
    after it; None when it runs past ``end`` or is longer than 4 bytes."""
    value = 0
    shift = 0
    i = pos
    while True:
        if i >= end or shift == 28:
            return None
        digit = data[i]
        i += 1
        value |= (digit & 0x7F) << shift
        if not digit & 0x80:
            return value, i
        shift += 7


def _unpack_publish_properties(data: bytes, pos: int, stop: int) -> tuple[Properties, int] | None:
    """The PUBLISH properties at ``data[pos:stop]`` and the position after them -- what paho's
    ``Properties.unpack`` gives (about 20x cheaper), or None for anything that is not plainly
    well formed (duplicates, out-of-range values, a property running past the property length,
    an identifier not allowed in PUBLISH...): paho's own decoder then handles it, errors and all.
    """
    varint = _varint(data, pos, stop)  # the property length
    if varint is None:
        return None
    length, i = varint
    end = i + length
    if end > stop:
        return None
    attrs: dict[str, Any] = {}
    while i < end:
        ident = data[i]  # every PUBLISH identifier is < 128: one byte
        i += 1
        if ident == _USER_PROPERTY:
            name = _utf8(data, i, end)
            if name is None:
                return None
            value = _utf8(data, name[1], end)
            if value is None:
                return None
            attrs.setdefault("UserProperty", []).append((name[0], value[0]))
            i = value[1]
        elif ident in _UTF8_PROPS:
            key = _UTF8_PROPS[ident]
            text = _utf8(data, i, end)
            if text is None or key in attrs:
                return None
            attrs[key], i = text
        elif ident == _CORRELATION_DATA:
            if end - i < 2 or "CorrelationData" in attrs:
                return None
            value_end = i + 2 + ((data[i] << 8) | data[i + 1])
            if value_end > end:
                return None
            attrs["CorrelationData"] = data[i + 2 : value_end]
            i = value_end
        elif ident == _PAYLOAD_FORMAT:
            if i >= end or data[i] > 1 or "PayloadFormatIndicator" in attrs:
                return None
            attrs["PayloadFormatIndicator"] = data[i]
            i += 1
        elif ident == _MESSAGE_EXPIRY:
            if end - i < 4 or "MessageExpiryInterval" in attrs:
                return None
            attrs["MessageExpiryInterval"] = int.from_bytes(data[i : i + 4], "big")
            i += 4
        elif ident == _TOPIC_ALIAS:
            if end - i < 2 or "TopicAlias" in attrs:
                return None
            alias = (data[i] << 8) | data[i + 1]
            if not alias:
                return None
            attrs["TopicAlias"] = alias
            i += 2
        elif ident == _SUBSCRIPTION_ID:
            varint = _varint(data, i, end)
            if varint is None or not varint[0]:
                return None
            sub_id, i = varint
            attrs.setdefault("SubscriptionIdentifier", []).append(sub_id)
        else:
            return None
    props = _publish_properties()
    props.__dict__.update(attrs)
    return props, end


class FastClient(_mc.Client):
    """``paho.mqtt.client.Client`` with a cheaper receive/ack path; same constructor and API."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: the fast paths are on (paho as expected); else every override is paho's own code
        self._fast = FAST_OK and all(hasattr(self, a) for a in _USED_INSTANCE_ATTRS)
        if self._fast and not (
            isinstance(self._in_packet, dict)
            and isinstance(self._out_packet, deque)
            and hasattr(self._on_message_filtered, "_root")
            and hasattr(self._on_message_filtered._root, "_children")
        ):  # pragma: no cover - a different paho
            self._fast = False
        #: received bytes not handled yet (the start of an incomplete packet) and their socket
        self._fast_buf: bytes | bytearray = b""
        self._fast_buf_sock: Any = None
        #: the thread running ``_loop`` right now (packets it queues need no wake-up byte)
        self._fast_loop_ident: int | None = None
        #: a wake-up byte was written since the loop last started an iteration
        self._fast_wake_pending = False
        #: held while bytes go to the socket: by the network thread of ``loop_start`` in
        #: ``_packet_write``, and by a thread writing its own packet (:meth:`writing_now`)
        self._fast_write_lock = threading.RLock()
        #: the threads inside :meth:`writing_now` (empty nearly always: a cheap test)
        self._fast_now_threads: set[int] = set()

    # -- reads -----------------------------------------------------------------------------------
    def _fast_io(self) -> bool:
        return self._fast and self._transport != "websockets"

    def _sock_recv(self, bufsize: int) -> bytes:
        """paho's reader (``_packet_read``) is not used by ``loop_read``; should anything call it,
        it first gets what ``loop_read`` buffered, then the socket."""
        buf = self._fast_buf
        if buf and self._fast and self._fast_buf_sock is self._sock:
            chunk = bytes(buf[:bufsize])
            self._fast_buf = buf[bufsize:]
            return chunk
        return super()._sock_recv(bufsize)

    def _sock_close(self) -> None:
        self._fast_buf = b""
        self._fast_buf_sock = None
        super()._sock_close()

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """One ``recv`` (into the buffer), then handle every complete packet buffered."""
        if not self._fast_io() or self._in_packet["command"] != 0:
            # websockets; or paho's reader is half-way through a packet
            return super().loop_read(max_packets)
        sock = self._sock
        if sock is None:
            return _NO_CONN
        buf = self._fast_buf
        if self._fast_buf_sock is not sock:
            buf = self._fast_buf = b""
            self._fast_buf_sock = sock
        size = _RECV_SIZE
        if len(buf) >= 2:  # a big pending packet: ask for the rest of it at once
            need = _packet_need(buf) - len(buf)
            if need > size:
                size = min(need, _RECV_MAX)
        try:
            data = super()._sock_recv(size)
        except BlockingIOError:
            data = None
        except OSError as err:  # TimeoutError, ConnectionError, ssl.SSLError...
            if isinstance(err, TimeoutError):
                self._easy_log(_LOG_ERR, "timeout on socket: %s", err)
            else:
                self._easy_log(_LOG_ERR, "failed to receive on socket: %s", err)
            return self._loop_rc_handle(_CONN_LOST)
        if data is not None:
            if not data:
                return self._loop_rc_handle(_CONN_LOST)
            if not buf:
                self._fast_buf = data
            elif len(buf) < _RECV_SIZE and isinstance(buf, bytes):
                self._fast_buf = buf + data
            else:  # accumulating a big packet: amortised appends
                if isinstance(buf, bytes):
                    buf = bytearray(buf)
                buf += data
                self._fast_buf = buf
            with self._msgtime_mutex:
                self._last_bytes_received = _time_func()
        return self._fast_handle_buffered(sock)

    def _fast_handle_buffered(self, sock: Any) -> MQTTErrorCode:
        """Handle every complete packet in the buffer (it keeps the incomplete rest)."""
        data = self._fast_buf
        end = len(data)
        pos = 0
        v5 = self._protocol == _MQTTv5
        handled = False
        try:
            while end - pos >= 2:
                begin = pos
                header = data[pos]
                # remaining length: 1..4 bytes, 7 bits each, least significant first
                i = pos + 1
                length = 0
                shift = 0
                while True:
                    if i >= end:
                        return _SUCCESS  # incomplete (finally keeps data[pos:])
                    if shift == 28:  # a 5th length byte (paho: MQTT_ERR_PROTOCOL)
                        pos = end
                        return self._loop_rc_handle(_PROTOCOL)
                    digit = data[i]
                    i += 1
                    length |= (digit & 0x7F) << shift
                    if not digit & 0x80:
                        break
                    shift += 7
                stop = i + length
                if stop > end:
                    return _SUCCESS
                pos = stop  # consumed even if a callback raises
                handled = True
                try:
                    if header & 0xF0 == _PUBLISH:
                        chunk = data[i:stop]
                        if not isinstance(chunk, bytes):
                            chunk = bytes(chunk)
                        rc = self._fast_publish(header, chunk, 0, len(chunk), v5)
                    elif header == _PUBACK and (
                        length == 2
                        or (
                            v5
                            and 3 <= length <= 4
                            and data[i + 2] == 0  # reason: success
                            and (length == 3 or data[i + 3] == 0)  # no properties
                        )
                    ):
                        rc = self._fast_puback((data[i] << 8) | data[i + 1])
                    else:
                        self._in_packet = {
                            "command": header,
                            "have_remaining": 1,
                            "remaining_count": list(data[begin + 1 : i]),
                            "remaining_mult": 1,
                            "remaining_length": length,
                            "packet": bytearray(data[i:stop]),
                            "to_process": 0,
                            "pos": 0,
                        }
                        try:
                            rc = self._packet_handle()
                        finally:
                            self._in_packet = _fresh_in_packet()
                except MalformedPacket as exc:
                    self._easy_log(_LOG_DEBUG, "Received malformed packet: %s", exc)
                    rc = _PROTOCOL
                if rc > 0:
                    return self._loop_rc_handle(rc)
                if self._sock is not sock:  # closed (e.g. DISCONNECT from the broker)
                    pos = end
                    return _NO_CONN if self._sock is None else _SUCCESS
            return _SUCCESS
        finally:
            if self._fast_buf is data:  # not reset by a close/reconnect meanwhile
                rest = data[pos:] if pos < end else b""
                if len(rest) < _RECV_SIZE and not isinstance(rest, bytes):
                    rest = bytes(rest)  # back to cheap bytes slicing after a big packet
                self._fast_buf = rest
            if handled:
                with self._msgtime_mutex:
                    self._last_bytes_received = _time_func()

    def _fast_puback(self, mid: int) -> MQTTErrorCode:
        """paho's ``_handle_pubackcomp`` for a PUBACK saying plain success (no reason string,
        no properties: what a broker sends nearly always). paho builds a ReasonCode and a
        Properties object for every one (a fifth of the Socket.IO -> MQTT path's CPU); here
        ``on_publish`` gets shared ones, equal to what paho would build (never mutate them)."""
        if self._on_log is not None or (
            self._logger is not None and self._logger.isEnabledFor(_DEBUG)
        ):
            self._easy_log(_LOG_DEBUG, "Received %s (Mid: %d)", "PUBACK", mid)
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, _PUBACK_SUCCESS, _PUBACK_NO_PROPERTIES)
        return _SUCCESS

    def _fast_publish(
        self, header: int, data: bytes, start: int, stop: int, v5: bool
    ) -> MQTTErrorCode:
        """paho's ``_handle_publish`` for the PUBLISH body ``data[start:stop]``."""
        topic, mid, props, payload = _decode_publish(header, data, start, stop, v5)
        message = _Message(mid, topic)
        qos = (header & 0x06) >> 1
        message.dup = bool(header & 0x08)
        message.qos = qos
        message.retain = bool(header & 0x01)
        message.properties = props
        message.payload = payload
        if self._on_log is not None or (
            self._logger is not None and self._logger.isEnabledFor(_DEBUG)
        ):
            self._fast_log_publish(message, topic)
        message.timestamp = _time_func()
        if qos == 0:
            self._fast_on_message(message)
            return _SUCCESS
        if qos == 1:
            self._fast_on_message(message)
            if self._manual_ack:
                return _SUCCESS
            return self._send_puback(mid)
        if qos == 2:
            rc = self._send_pubrec(mid)
            message.state = _WAIT_FOR_PUBREL
            with self._in_message_mutex:
                self._in_messages[mid] = message
            return rc
        return _PROTOCOL

    def _fast_log_publish(self, message: Any, topic: bytes) -> None:
        try:
            print_topic = topic.decode("utf-8")
        except UnicodeDecodeError:
            print_topic = f"TOPIC WITH INVALID UTF-8: {topic!r}"
        if self._protocol == _MQTTv5:
            self._easy_log(
                _LOG_DEBUG,
                "Received PUBLISH (d%d, q%d, r%d, m%d), '%s', properties=%s, ...  (%d bytes)",
                message.dup,
                message.qos,
                message.retain,
                message.mid,
                print_topic,
                message.properties,
                len(message.payload),
            )
        else:
            self._easy_log(
                _LOG_DEBUG,
                "Received PUBLISH (d%d, q%d, r%d, m%d), '%s', ...  (%d bytes)",
                message.dup,
                message.qos,
                message.retain,
                message.mid,
                print_topic,
                len(message.payload),
            )

    def _fast_on_message(self, message: Any) -> None:
        """paho's ``_handle_on_message`` when no ``message_callback_add`` filter exists."""
        if self._on_message_filtered._root._children:
            self._handle_on_message(message)
            return
        on_message = self._on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise

    def _handle_publish(self) -> MQTTErrorCode:
        """Used when paho's own reader handled the packet (e.g. websockets)."""
        if not self._fast:
            return super()._handle_publish()
        packet = bytes(self._in_packet["packet"])
        return self._fast_publish(
            self._in_packet["command"], packet, 0, len(packet), self._protocol == _MQTTv5
        )

    # -- the loop --------------------------------------------------------------------------------
    def _loop(self, timeout: float = 1.0) -> MQTTErrorCode:
        if not self._fast:
            return super()._loop(timeout)
        if self._sock is None and self._state == _DISCONNECTED:
            # the DISCONNECT we asked for is written and the socket closed; paho's loop_forever
            # may still come round once more before loop_stop() takes effect, and stock paho
            # logs that round as an error ("Client is not connected"): same result, no log
            return _NO_CONN
        # wake-up bytes written from now on wake *this* iteration's select (or the next one)
        self._fast_wake_pending = False
        self._fast_loop_ident = threading.get_ident()
        try:
            sock = self._sock
            if (
                self._fast_buf
                and sock is not None
                and self._fast_buf_sock is sock
                and _packet_need(self._fast_buf) <= len(self._fast_buf)
            ):  # a complete packet left in the buffer (a callback raised): no select first
                rc = self._fast_handle_buffered(sock)
                if rc or self._sock is None:
                    return rc
            rc = super()._loop(timeout)
            if rc == _SUCCESS and self._out_packet and self._sock is not None:
                # queued by this thread during the read (acks): write them now, not after the
                # next select
                rc = self.loop_write()
            return rc
        finally:
            self._fast_loop_ident = None

    # -- writes ----------------------------------------------------------------------------------
    def _packet_queue(
        self,
        command: int,
        packet: bytes | bytearray,
        mid: int,
        qos: int,
        info: MQTTMessageInfo | None = None,
    ) -> MQTTErrorCode:
        if not self._fast:
            return super()._packet_queue(command, packet, mid, qos, info)
        mpkt: _OutPacket = {
            "command": command,
            "mid": mid,
            "qos": qos,
            "pos": 0,
            "to_process": len(packet),
            "packet": packet,
            "info": info,
        }
        now = self._fast_now_threads
        if now and threading.get_ident() in now:
            sent = self._fast_send_now(mpkt)
            if sent:
                return _SUCCESS
            if sent is None:
                self._out_packet.append(mpkt)
            # else: partly written, the rest is first in the queue: wake the loop to write it
        else:
            self._out_packet.append(mpkt)
        # Wake the loop's select() -- unless this *is* the loop (it writes after reading), or a
        # wake-up byte is already on its way (the loop clears the flag before it looks at
        # want_write(), so a packet queued after that look always finds the flag clear or a
        # byte written after that look).
        if (
            self._sockpairW is not None
            and not self._fast_wake_pending
            and threading.get_ident() != self._fast_loop_ident
        ):
            self._fast_wake_pending = True
            try:
                self._sockpairW.send(_sockpair_data)
            except BlockingIOError:
                pass
        if (
            self._thread is None
            and self._on_socket_register_write is None
            and self._in_callback_mutex.acquire(False)
        ):
            self._in_callback_mutex.release()
            return self.loop_write()
        self._call_socket_register_write()
        return _SUCCESS

    def writing_now(self) -> _WritingNow:
        """``with client.writing_now(): client.publish(...)``: under ``loop_start``, packets
        queued inside the block are written to the socket at once by the thread queueing them,
        instead of being queued for the network thread (from another thread: a wake-up byte,
        then a thread switch; from the network thread, e.g. in ``on_message``: after its whole
        read batch). Only where that keeps the byte stream and paho's bookkeeping exactly as
        queuing would: nothing queued or being written, a plain TCP/unix socket (not TLS, not
        websockets), a packet whose completion runs no callback (not a QoS 0 PUBLISH, not a
        DISCONNECT), and a send that does not block; otherwise -- and for the rest of a partial
        send -- paho's queue, as usual. Meant for latency-sensitive packets (a reply and its
        PUBACK): each costs its own system call, where the network thread joins queued ones.

        The network thread takes ``_fast_write_lock`` around its writes; a thread writing its
        own packet only *tries* to take it (and queues when it cannot) and never waits for
        anything while holding it, so no lock order can deadlock. Writers other than those two
        (``loop_write()`` called by hand next to ``loop_start``) are as unsynchronised as in paho.
        """
        return _WritingNow(self._fast_now_threads)

    def _fast_send_now(self, mpkt: _OutPacket) -> bool | None:
        """Write ``mpkt`` from this thread (see :meth:`writing_now`): True when done with (written,
        or dropped with a connection closed meanwhile), False when partly written (the rest is
        now first in the queue), None when not written (queue it as usual)."""
        if (
            self._thread is None  # no loop_start: no network thread taking the lock
            or _completes_with_side_effect(mpkt)
            or not self._fast_io()
            or self._ssl
        ):
            return None
        lock = self._fast_write_lock
        # the network thread is writing: queue behind it (on that thread itself, e.g. from
        # on_publish inside its own write, the reentrant lock is taken: it is then between two
        # packets, and writes only if nothing is queued)
        if not lock.acquire(False):
            return None
        try:
            sock = self._sock
            if sock is None or self._out_packet:  # keep the order: queued packets go first
                return None
            try:
                written = sock.send(mpkt["packet"])
            except BlockingIOError:  # the socket buffer is full: the network thread waits
                return None
            except OSError:
                if self._sock is not sock:
                    # closed (reconnecting) meanwhile: paho clears its queue then and re-sends
                    # QoS>0 PUBLISHes from its message store (we are inside publish(), which
                    # holds that store's lock, so its reset runs after this); acks for a closed
                    # connection are void
                    return True
                return None  # broken: queued, the network thread finds out and reconnects
            if written < mpkt["to_process"]:
                mpkt["pos"] = written
                mpkt["to_process"] -= written
                self._out_packet.appendleft(mpkt)  # still under the lock: nothing overtakes it
                return False
        finally:
            lock.release()
        with self._msgtime_mutex:
            self._last_msg_out = _time_func()
        return True

    def _packet_write(self) -> MQTTErrorCode:
        if self._thread is not None and self._thread is threading.current_thread():
            with self._fast_write_lock:  # the network thread of loop_start (see writing_now)
                return self._fast_packet_write()
        return self._fast_packet_write()

    def _fast_packet_write(self) -> MQTTErrorCode:
        """Join consecutive queued packets whose completion needs no callback into one send;
        a QoS 0 PUBLISH or a DISCONNECT at the head (and what follows) goes to paho's code."""
        if not self._fast_io():
            return super()._packet_write()
        out = self._out_packet
        while True:
            try:
                first = out.popleft()
            except IndexError:
                return _SUCCESS
            if _completes_with_side_effect(first):
                out.appendleft(first)
                return super()._packet_write()
            batch = [first]
            size = first["to_process"]
            while size < _JOIN_LIMIT:
                try:
                    nxt = out.popleft()
                except IndexError:
                    break
                if _completes_with_side_effect(nxt) or size + nxt["to_process"] > _JOIN_LIMIT:
                    out.appendleft(nxt)
                    break
                batch.append(nxt)
                size += nxt["to_process"]
            if len(batch) == 1:
                buf = first["packet"][first["pos"] :] if first["pos"] else first["packet"]
            else:
                buf = b"".join(p["packet"][p["pos"] :] if p["pos"] else p["packet"] for p in batch)
            try:
                written = self._sock_send(buf)
            except (AttributeError, ValueError):
                out.extendleft(reversed(batch))
                return _SUCCESS
            except BlockingIOError:
                out.extendleft(reversed(batch))
                return _AGAIN
            except OSError as err:
                out.extendleft(reversed(batch))
                self._easy_log(_LOG_ERR, "failed to receive on socket: %s", err)
                return _CONN_LOST
            if written <= 0:
                out.extendleft(reversed(batch))
                with self._msgtime_mutex:
                    self._last_msg_out = _time_func()
                return _SUCCESS
            rest: list[_OutPacket] = []
            for pkt in batch:
                if written >= pkt["to_process"]:
                    written -= pkt["to_process"]
                    pkt["pos"] += pkt["to_process"]
                    pkt["to_process"] = 0
                else:
                    pkt["pos"] += written
                    pkt["to_process"] -= written
                    written = 0
                    rest.append(pkt)
            if rest:  # partial write: the rest goes first next time (paho: try again now)
                out.extendleft(reversed(rest))


class _WritingNow:
    """The context manager of :meth:`FastClient.writing_now` (nests)."""

    __slots__ = ("_added", "_threads")

    def __init__(self, threads: set[int]) -> None:
        self._threads = threads
        self._added = False

    def __enter__(self) -> None:
        ident = threading.get_ident()
        if ident not in self._threads:
            self._threads.add(ident)
            self._added = True

    def __exit__(self, *exc: object) -> None:
        if self._added:
            self._threads.discard(threading.get_ident())


def _completes_with_side_effect(pkt: _OutPacket) -> bool:
    """paho runs code when these are completely written (on_publish / on_disconnect)."""
    cmd = pkt["command"] & 0xF0
    return (cmd == _PUBLISH and pkt["qos"] == 0) or cmd == _DISCONNECT


def _packet_need(buf: bytes | bytearray) -> int:
    """Bytes needed for the complete first packet of ``buf`` (at least ``len(buf) + 1`` while
    its remaining length is incomplete)."""
    end = len(buf)
    i = 1
    length = 0
    shift = 0
    while i < end and i <= 4:
        digit = buf[i]
        i += 1
        length |= (digit & 0x7F) << shift
        if not digit & 0x80:
            return i + length
        shift += 7
    return end + 1
