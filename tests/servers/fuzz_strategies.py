"""Hypothesis strategies for fuzzing the client through tests/servers/hostile.py.

Two kinds of input:

* ``messages``: random Engine.IO messages, mostly garbage (random text and bytes, packet-type
  prefixes followed by random text or JSON, events with odd names and placeholders). Some are
  harmless by chance; most must end the connection with "parse error".
* benign traffic the session must survive: ``benign`` (one message) and ``batches``; and, for
  volume, :func:`expand` which turns a hypothesis-drawn :class:`BulkPlan` (a few rich
  templates plus a seed) into hundreds of well-formed packets: events with random JSON
  arguments and binary attachments in any placeholder order, acks for ids nobody waits for,
  pings, noops, packets for namespaces the client never joined. It also says what the client
  must do with them (which events reach its handlers, with which arguments, and what it sends
  back), so the test checks the traffic was handled, not only survived.

Drawing each of 100,000 packets as its own hypothesis example element costs about 2 ms
(recursive JSON) and at best ~0.1 ms per element: the plan draws the rich material (names,
JSON values, blobs) with hypothesis and a seeded ``random.Random`` combines it cheaply.
"""

from __future__ import annotations

import collections
import json
import random
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from sio_mqtt.socketio.packet import RESERVED_EVENTS

__all__ = [
    "CHECK_EVENT",
    "PREFIXES",
    "SENTINEL_ACK_BASE",
    "SENTINEL_EVENT",
    "BenignBatch",
    "BulkPlan",
    "Template",
    "batches",
    "benign",
    "benign_binary",
    "benign_event",
    "bulk_plans",
    "expand",
    "json_values",
    "messages",
    "placeholders",
    "same",
    "templates",
]

PREFIXES = [
    "0", "1", "2", "3", "4", "5", "6", "a", "40", "41", "42", "43", "44", "45", "46",
    "451-", "452-", "450-", "461-", "4610-", "421", "4299", "430", "42/x,", "44/x,", "40/",
]  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
placeholders = st.fixed_dictionaries(
    {
        "_placeholder": st.sampled_from([True, False, 1, "true", None]),
        "num": st.one_of(st.integers(-2, 3), st.text(max_size=2), st.none(), st.booleans()),
    }
)
messages = st.one_of(
    st.binary(max_size=32),
    st.text(max_size=32),
    st.builds(str.__add__, st.sampled_from(PREFIXES), st.text(max_size=16)),
    st.builds(
        lambda prefix, data: prefix + json.dumps(data),
        st.sampled_from(PREFIXES),
        st.one_of(json_values, st.lists(st.one_of(json_values, placeholders), max_size=4)),
    ),
    st.builds(
        lambda prefix, name, args: prefix + json.dumps([name, *args]),
        st.sampled_from(["42", "421", "451-", "452-"]),
        st.one_of(st.text(max_size=6), st.sampled_from(["connect", "disconnect", "message"])),
        st.lists(st.one_of(json_values, placeholders), max_size=3),
    ),
)
# Well-formed traffic the session must survive: pings, noops, events (some asking for an ack),
# acks nobody waits for, packets for namespaces the client never joined, binary events.
benign_event = st.builds(
    lambda ack, name, args: "42" + ack + json.dumps([name, *args]),
    st.sampled_from(["", "7"]),
    st.text(min_size=1, max_size=6).filter(lambda name: name not in RESERVED_EVENTS),
    st.lists(json_values, max_size=3),
)
benign_binary = st.lists(st.binary(max_size=16), min_size=1, max_size=3).map(
    lambda blobs: [
        f"45{len(blobs)}-"
        + json.dumps(["bin", *({"_placeholder": True, "num": i} for i in range(len(blobs)))]),
        *blobs,
    ]
)
benign = st.one_of(
    st.sampled_from(["2", "3", "6", "43999[]", '40/other,{"sid":"a"}', '42/other,["x"]', "41/x"]),
    benign_event,
)
batches = st.lists(
    st.one_of(messages.map(lambda m: [m]), benign.map(lambda m: [m]), benign_binary),
    min_size=1,
    max_size=5,
).map(lambda groups: [m for group in groups for m in group])


# ----------------------------------------------------------------------------------------------
# bulk benign traffic
# ----------------------------------------------------------------------------------------------

CHECK_EVENT = "__fuzz_check__"
"""Events whose arguments the test compares with what was sent (first argument: a token)."""
SENTINEL_EVENT = "__fuzz_sentinel__"
"""Marks the end of a batch: once its handler ran, everything before it was handled."""
SENTINEL_ACK_BASE = 2**52
"""Sentinels ask for acks from here up; benign events use ack ids below (no confusion)."""

_MAX_BENIGN_ACK_ID = SENTINEL_ACK_BASE - 1
_TRICKY_NAMES = ["message", "error", "echo", "", " ", "__proto__", "toString", "constructor"]
_NAMESPACES = ["/other", "/x", "/admin", "/é", "/a/b", "/1", "/🙂", "/" + "n" * 40]
_SEPARATORS = [(",", ":"), (", ", ": ")]


@dataclass(frozen=True)
class Template:
    """Material for many packets: an event name, JSON arguments and binary blobs."""

    name: str
    args: tuple[Any, ...]
    blobs: tuple[bytes, ...]


def _plain_name(name: str) -> bool:
    # "reconnect..." would reach the client's lifecycle handlers (a documented caveat)
    return name not in RESERVED_EVENTS and not name.startswith("reconnect")


templates = st.builds(
    Template,
    name=st.text(min_size=1, max_size=12).filter(_plain_name),
    args=st.lists(json_values, max_size=3).map(tuple),
    blobs=st.lists(st.binary(max_size=64), max_size=3).map(tuple),
)


@dataclass(frozen=True)
class BulkPlan:
    """One batch of benign traffic: at least ``size`` packets made from ``templates``."""

    templates: tuple[Template, ...]
    seed: int
    size: int


def bulk_plans(min_size: int, max_size: int) -> st.SearchStrategy[BulkPlan]:
    return st.builds(
        BulkPlan,
        templates=st.lists(templates, min_size=2, max_size=6).map(tuple),
        seed=st.integers(0, 2**64 - 1),
        size=st.integers(min_size, max_size),
    )


@dataclass
class BenignBatch:
    """Well-formed packets and what the client must do with them."""

    #: Engine.IO messages, in order (a binary packet's attachments right after its header)
    messages: list[str | bytes] = field(default_factory=list)
    #: EVENT/BINARY_EVENT packets for "/" (each reaches the client's catch-all handler)
    root_events: int = 0
    #: what the client must send back: "3" per ping, "43<id>[]" per root event asking an ack
    replies: collections.Counter[str] = field(default_factory=collections.Counter)
    #: token -> the arguments (after the token) the CHECK_EVENT with that token must carry
    checks: dict[str, list[Any]] = field(default_factory=dict)


class _Expander:
    """Builds one :class:`BenignBatch` from a plan (all randomness from the plan's seed)."""

    def __init__(self, plan: BulkPlan, token_prefix: str) -> None:
        self.plan = plan
        self.rnd = random.Random(plan.seed)
        self.token_prefix = token_prefix
        self.batch = BenignBatch()
        self.names = [t.name for t in plan.templates] + _TRICKY_NAMES
        self.values = [v for t in plan.templates for v in t.args] or [None]
        self.blobs = [b for t in plan.templates for b in t.blobs] or [b""]

    # -- pieces --------------------------------------------------------------------------------
    def dumps(self, data: Any) -> str:
        rnd = self.rnd
        return json.dumps(data, ensure_ascii=rnd.random() < 0.5, separators=rnd.choice(_SEPARATORS))

    def ack_id(self) -> int:
        rnd = self.rnd
        return rnd.randrange(16) if rnd.random() < 0.5 else rnd.randrange(_MAX_BENIGN_ACK_ID)

    def args(self) -> list[Any]:
        rnd = self.rnd
        template = rnd.choice(self.plan.templates)
        if rnd.random() < 0.5:
            return list(template.args)
        return [rnd.choice(self.values) for _ in range(rnd.randrange(5))]

    def blob(self) -> bytes:
        rnd = self.rnd
        if rnd.random() < 0.7:
            return rnd.choice(self.blobs)
        return rnd.randbytes(rnd.choice([0, 1, 7, 100, 1000]))

    def with_blobs(self, args: list[Any], count: int) -> tuple[list[Any], list[Any], list[bytes]]:
        """``args`` plus ``count`` blobs at random places (bare or nested in new containers):
        the expected arguments, the same with placeholders, and the attachments in num order.
        Nums are a random permutation, not the order in which the placeholders appear."""
        rnd = self.rnd
        expected = list(args)
        wire = list(args)
        nums = list(range(count))
        rnd.shuffle(nums)
        attachments: list[bytes] = [b""] * count
        for num in nums:
            blob = self.blob()
            attachments[num] = blob
            holder = {"_placeholder": True, "num": num}
            shape = rnd.randrange(4)
            if shape == 0:
                pair: tuple[Any, Any] = (blob, holder)
            elif shape == 1:
                pair = ([blob], [holder])
            elif shape == 2:
                value = rnd.choice(self.values)
                pair = ({"v": value, "b": blob}, {"v": value, "b": holder})
            else:
                value = rnd.choice(self.values)
                pair = ([[value, {"k": [blob]}]], [[value, {"k": [holder]}]])
            at = rnd.randrange(len(expected) + 1)
            expected.insert(at, pair[0])
            wire.insert(at, pair[1])
        return expected, wire, attachments

    # -- packets -------------------------------------------------------------------------------
    def root_event(self, check: bool) -> None:
        rnd = self.rnd
        batch = self.batch
        args = self.args()
        blobs = rnd.choice([0, 0, 1, 2, 3]) if check else rnd.choice([0, 0, 0, 1])
        expected, wire, attachments = self.with_blobs(args, blobs)
        if check:
            token = f"{self.token_prefix}.{len(batch.checks)}"
            batch.checks[token] = expected
            data = [CHECK_EVENT, token, *wire]
        else:
            data = [rnd.choice(self.names), *wire]
        ack = ""
        if rnd.random() < 0.3:
            ack_id = self.ack_id()
            ack = str(ack_id)
            batch.replies[f"43{ack_id}[]"] += 1
        head = f"45{blobs}-{ack}" if blobs else f"42{ack}"
        batch.messages.append(head + self.dumps(data))
        batch.messages.extend(attachments)
        batch.root_events += 1

    def elsewhere(self) -> None:
        """Packets the client must ignore: other namespaces, acks for unknown ids."""
        rnd = self.rnd
        batch = self.batch
        nsp = rnd.choice(_NAMESPACES) + ","
        kind = rnd.randrange(9)
        if kind == 0:
            batch.messages.append(f"42{nsp}" + self.dumps([rnd.choice(self.names), *self.args()]))
        elif kind == 1:
            ack_id = self.ack_id()
            batch.messages.append(f"42{nsp}{ack_id}" + self.dumps(["e", *self.args()]))
        elif kind == 2:
            _, wire, attachments = self.with_blobs(self.args(), rnd.randrange(1, 3))
            batch.messages.append(f"45{len(attachments)}-{nsp}" + self.dumps(["b", *wire]))
            batch.messages.extend(attachments)
        elif kind == 3:  # an ack for an id nobody waits for, in "/" or elsewhere
            where = rnd.choice(["", nsp])
            batch.messages.append(f"43{where}{self.ack_id()}" + self.dumps(self.args()))
        elif kind == 4:
            where = rnd.choice(["", nsp])
            _, wire, attachments = self.with_blobs(self.args(), rnd.randrange(1, 4))
            head = f"46{len(attachments)}-{where}{self.ack_id()}"
            batch.messages.append(head + self.dumps(wire))
            batch.messages.extend(attachments)
        elif kind == 5:
            batch.messages.append(f"40{nsp}" + self.dumps({"sid": "elsewhere"}))
        elif kind == 6:
            batch.messages.append(f"44{nsp}" + self.dumps({"message": "no", "data": self.args()}))
        elif kind == 7:
            batch.messages.append("41" + nsp[:-1])
        else:  # a CONNECT reply for "/" while already connected: ignored
            batch.messages.append("40" + self.dumps({"sid": "again"}))

    def engine(self) -> None:
        kind = self.rnd.choice("2236")
        self.batch.messages.append(kind)
        if kind == "2":
            self.batch.replies["3"] += 1

    def build(self) -> BenignBatch:
        rnd = self.rnd
        messages = self.batch.messages
        while len(messages) < self.plan.size:
            roll = rnd.random()
            if roll < 0.4:
                self.root_event(check=False)
            elif roll < 0.7:
                self.root_event(check=True)
            elif roll < 0.9:
                self.elsewhere()
            else:
                self.engine()
        return self.batch


def expand(plan: BulkPlan, token_prefix: str) -> BenignBatch:
    """The packets of ``plan`` (CHECK_EVENT tokens start with ``token_prefix``)."""
    return _Expander(plan, token_prefix).build()


def same(a: Any, b: Any) -> bool:
    """Equal with equal types all the way down (``True == 1`` and ``0 == 0.0`` do not count)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, float):
        return repr(a) == repr(b)
    return bool(a == b)
