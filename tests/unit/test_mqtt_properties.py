"""Our packed MQTT 5 PUBLISH properties are byte-identical to paho's generic ones."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sio_mqtt.gateway.mqtt import reply_properties

text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=80
)


@given(
    st.none() | text,
    st.none() | st.binary(max_size=300),
    st.lists(st.tuples(text, text), max_size=4),
)
def test_packed_properties_match_paho(
    response_topic: str | None, correlation: bytes | None, user: list[tuple[str, str]]
) -> None:
    reference = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if response_topic is not None:
        reference.ResponseTopic = response_topic
    if correlation is not None:
        reference.CorrelationData = correlation
    if user:
        reference.UserProperty = list(user)
    assert reply_properties(response_topic, correlation, user).pack() == reference.pack()


def test_long_properties_use_multi_byte_length() -> None:
    packed = reply_properties("t" * 300).pack()
    assert packed[0] & 0x80  # the length needs two bytes
    assert (
        packed
        == (lambda p: (setattr(p, "ResponseTopic", "t" * 300), p)[1])(
            Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        ).pack()
    )
