"""Volume fuzz: over 100,000 hypothesis-generated packets at one long-lived client per transport.

A websocket-only client, then a polling-only one, each against tests/servers/hostile.py:

1. a sweep, which is also the warm-up: every case of the protocol notes' hostile-input list
   (servers/hostile_cases.py, oversize ones included) scripting a fresh connection, every
   malformed handshake met by a reconnect, and the well-formed packets that end a connection;
2. a hypothesis run: each example is a batch of 480-560 well-formed but random packets
   (servers/fuzz_strategies.py: events with random names, JSON and attachments in any
   placeholder order, some asking for acks; acks for unknown ids; pings, noops; packets for
   namespaces never joined) followed by up to four attacks: random garbage messages (sentinel
   events between them), or a hostile case sent mid-connection, maybe with a malformed handshake
   waiting for the reconnect.

Checked throughout: each benign batch is handled completely and correctly without ending the
connection (its sentinel arrives; every event for "/" reaches the catch-all handler; checked
events carry exactly the arguments and bytes sent; every ping gets its pong and every ack
request its ack, with the id). Each connection that garbage ends ends with "parse error" (or, for
a well-formed DISCONNECT / CONNECT_ERROR / engine CLOSE, the reason that packet means), then the
client reconnects exactly once (after a malformed handshake: one failed attempt first), or is
connected again after a DISCONNECT or refusal, which are final by design. Every example ends
with an echo round trip. No exception escapes a thread, the library logs nothing at WARNING or
above, the server's handlers never fail, ``disconnect()`` ends every client thread, and memory
does not grow (see MAX_OBJECT_GROWTH, MAX_GROWTH_IDLE).

Packets are counted once the client is known to have read them: a batch when its sentinel came;
garbage up to the last sentinel that came, plus one for the packet that ended the connection.
"""

from __future__ import annotations

import collections
import gc
import logging
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from servers.fuzz_strategies import (
    CHECK_EVENT,
    SENTINEL_ACK_BASE,
    SENTINEL_EVENT,
    BulkPlan,
    bulk_plans,
    expand,
    messages,
    same,
)
from servers.hostile import Connection, HostileCase, HostileServer
from servers.hostile_cases import HANDSHAKE_CASES, PARSE_ERROR_CASES
from support import client_threads, wait_until

from sio_mqtt import Client
from sio_mqtt.engineio.loop import shared_loop
from sio_mqtt.socketio.client import RECONNECTABLE
from sio_mqtt.socketio.dispatcher import shared_pool

TRANSPORTS = ("websocket", "polling")
TARGET = 100_000  # hypothesis-generated packets the client read, both transports together
MIN_SHARE = 0.4  # of them, at least this share over each transport
EXAMPLES = 110  # per transport; 110 x 480 benign packets alone make 52,800
BATCH = (480, 560)  # benign packets per example
# Memory, two ways. (1) Over the whole run, from the end of the warm-up (the sweep) to the end,
# both after disconnect(): the live objects of the client's classes (the library's and those of
# the packages it runs on), counted with gc; ~150 connections and 55,000 packets per transport
# make any per-connection or per-packet leak of an object show. (2) Bytes, with tracemalloc (by
# the file that allocated them), over the last WINDOW examples only (tracing everything makes
# the run ~4x slower): ~12,000 packets and ~30 connections per transport, so a leak of 25 bytes
# per packet or 9 KiB per connection goes over MAX_GROWTH_IDLE.
CLIENT_PACKAGES = ("sio_mqtt", "websocket", "requests", "urllib3")
CLIENT_CODE = ("*/sio_mqtt/*", "*/site-packages/websocket/*", "*/requests/*", "*/urllib3/*")
WINDOW = 24
MAX_OBJECT_GROWTH = 25  # e.g. the last reconnect thread, a stored ConnectError
MAX_GROWTH_IDLE = 256 * 1024  # after disconnect(): nothing of the window may stay
MAX_GROWTH_CONNECTED = 4 * 1024 * 1024  # while connected (a websocket read buffer is ~1 MiB)
# per process, not per connection: the I/O loop, the dispatcher pool, the handshake pool, plus
# a polling session's reader, writer and upgrader
MAX_CLIENT_THREADS = 1 + shared_pool().workers + shared_loop().blocking.workers + 3
KILL = "a123"  # an Engine.IO packet of unknown type: "parse error" over either transport
OPTIONS: dict[str, Any] = {
    "reconnect_delay": 0.001,
    "reconnect_delay_max": 0.005,
    "randomization_factor": 0.0,
    "connect_timeout": 5.0,
}
LIFECYCLE = ("connect", "connect_error", "reconnect_attempt", "reconnect", "reconnect_error")
# well-formed packets that end the connection, and the reason they give
WELL_FORMED_ENDS = [
    ("1", "transport close"),
    ("41", "io server disconnect"),  # final: no reconnect
    ('44{"message":"go away"}', "connect_error"),  # final: no reconnect
]
# what a well-formed packet that ends the connection starts with, by the reason it gives
LEGIT_ENDS = {
    "transport close": ("1",),  # engine CLOSE
    "io server disconnect": ("41",),  # DISCONNECT of "/"
    "connect_error": ("40", "44"),  # CONNECT without a sid / CONNECT_ERROR for "/"
}


# ----------------------------------------------------------------------------------------------
# what hypothesis draws
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Garbage:
    """Random messages, a sentinel event after each segment (see _segments) that may or may
    not arrive."""

    messages: tuple[str | bytes, ...]


@dataclass(frozen=True)
class Case:
    """A hostile case sent mid-connection (always a parse error); ``handshake``: a malformed
    handshake the reconnect meets first."""

    case: HostileCase
    handshake: HostileCase | None


def _segments(messages: tuple[str | bytes, ...]) -> list[list[str | bytes]]:
    """Each text message with the binary ones after it: a sentinel (text) goes after each
    segment, so a binary header drawn by hypothesis still meets the attachments drawn after it."""
    segments: list[list[str | bytes]] = []
    for message in messages:
        if isinstance(message, bytes) and segments:
            segments[-1].append(message)
        else:
            segments.append([message])
    return segments


def _scripted_only(case: HostileCase) -> bool:
    """Oversize cases need their connection's handshake (its maxPayload): sweep only."""
    return bool(case.big_message) or case.max_payload is not None


def _attacks(transport: str) -> st.SearchStrategy[list[Garbage | Case]]:
    cases = [c for c in PARSE_ERROR_CASES if c.applies_to(transport) and not _scripted_only(c)]
    garbage = st.lists(messages, min_size=1, max_size=6).map(lambda m: Garbage(tuple(m)))
    case = st.builds(Case, st.sampled_from(cases), st.none() | st.sampled_from(HANDSHAKE_CASES))
    return st.lists(garbage | case, max_size=4)


# ----------------------------------------------------------------------------------------------
# what the client's handlers saw (O(1) memory: the memory check counts what handlers keep)
# ----------------------------------------------------------------------------------------------


class Tally:
    def __init__(self, checks: dict[str, list[Any]]) -> None:
        self.checks = checks  # token -> expected arguments, consumed by the CHECK_EVENT handler
        self.counts: collections.Counter[str] = collections.Counter()
        self.reasons: collections.Counter[str] = collections.Counter()
        self.last_end = ""  # the reason of the latest disconnect, or "connect_error"
        self.sentinel: tuple[int, int, int] | None = None
        self.echoed: Any = None
        self.events = 0  # events for "/" dispatched (the catch-all handler sees them all)
        self.checked = 0
        self.mismatches: list[str] = []
        self._cond = threading.Condition()

    def attach(self, client: Client) -> None:
        for name in LIFECYCLE:
            client.on(name, self._lifecycle(name))
        client.on("disconnect", self._disconnect)
        client.on(SENTINEL_EVENT, self._sentinel)
        client.on(CHECK_EVENT, self._check)
        client.on_any(self._any)

    def _lifecycle(self, name: str) -> Callable[..., None]:
        def handler(*args: Any) -> None:
            with self._cond:
                self.counts[name] += 1
                if name == "connect_error":
                    self.last_end = name
                self._cond.notify_all()

        return handler

    def _disconnect(self, reason: str) -> None:
        with self._cond:
            self.counts["disconnect"] += 1
            self.reasons[reason] += 1
            self.last_end = reason
            self._cond.notify_all()

    def _sentinel(self, n: int, attack: int, step: int) -> None:
        with self._cond:
            self.sentinel = (n, attack, step)
            self._cond.notify_all()

    def _check(self, token: str, *args: Any) -> None:
        expected = self.checks.pop(token, None)
        if expected is not None and same(list(args), expected):
            self.checked += 1
        elif len(self.mismatches) < 10:
            self.mismatches.append(f"{token}: got {args!r:.300} expected {expected!r:.300}")

    def _any(self, event: str, *args: Any) -> None:
        self.events += 1  # the dispatcher thread only

    def echo(self, value: Any) -> None:
        with self._cond:
            self.echoed = value
            self._cond.notify_all()

    def ends(self) -> int:
        # a failed reconnection handshake emits connect_error too (as in JS), with its
        # reconnect_error: that one ends no connection
        counts = self.counts
        return counts["disconnect"] + counts["connect_error"] - counts["reconnect_error"]

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out waiting for {what}: counts {dict(self.counts)}, "
                        f"sentinel {self.sentinel}, last end {self.last_end!r}"
                    )
                self._cond.wait(left)


# ----------------------------------------------------------------------------------------------
# one transport
# ----------------------------------------------------------------------------------------------


@dataclass
class Result:
    transport: str
    benign: int = 0  # hypothesis-generated packets the client read, by kind
    garbage: int = 0
    examples: int = 0
    attacks: collections.Counter[str] = field(default_factory=collections.Counter)
    sweep_cases: int = 0
    window_packets: int = 0
    object_growth: dict[str, int] = field(default_factory=dict)
    growth_idle: int = 0
    growth_connected: int = 0
    top_allocations: str = ""
    seconds: float = 0.0

    @property
    def packets(self) -> int:
        return self.benign + self.garbage


class FuzzRun:
    """A server, a client, and the bookkeeping of what happened between them."""

    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.result = Result(transport)
        self.server = HostileServer([], ping_interval=5_000, ping_timeout=600_000).start()
        self.checks: dict[str, list[Any]] = {}
        self.tally = Tally(self.checks)
        self.client = Client(self.server.url, transports=(transport,), **OPTIONS)
        self.tally.attach(self.client)
        self.ends = 0  # connections that ended, as the tally must have seen them
        self.failed_handshakes = 0
        self.echoes = 0
        self.window: tuple[bool, int, int] | None = None  # started tracing, bytes, packets

    def close(self) -> None:
        self.client.disconnect()
        self.server.stop()

    # -- helpers -----------------------------------------------------------------------------
    def conn(self) -> Connection:
        engine = self.client.manager.engine
        assert engine is not None and self.client.connected
        conn = self.server.by_sid(engine.sid)
        assert conn is not None and conn.transport == self.transport
        return conn

    def disconnect(self) -> None:
        self.client.disconnect()
        wait_until(lambda: not client_threads(), 10, "client threads to end")
        self.ends += 1  # "io client disconnect"
        assert self.tally.ends() == self.ends

    def connect(self) -> None:
        """connect() returns before the "connect" handler ran: the barrier waits for it."""
        self.client.connect()
        self.barrier()

    def barrier(self) -> None:
        """An echo round trip; its callback runs on the dispatcher after every lifecycle event
        submitted before it, so the counts are complete afterwards."""
        n = self.echoes
        self.echoes += 1
        future = self.client.emit_with_ack("echo", n, callback=self.tally.echo)
        assert future.result(10) == n
        self.tally.wait_for(lambda: self.tally.echoed == n, f"the callback of echo {n}")
        assert self.tally.ends() == self.ends, "a connection ended unexpectedly"
        wait_until(
            lambda: len(client_threads()) <= MAX_CLIENT_THREADS,
            10,
            "old connections' threads to end",
        )

    def wait_reconnected(self, connects: int, reconnects: int, failed_handshakes: int) -> None:
        tally = self.tally
        tally.wait_for(lambda: tally.counts["connect"] > connects, "the reconnect")
        assert tally.counts["reconnect"] == reconnects + 1
        assert tally.counts["reconnect_error"] == self.failed_handshakes + failed_handshakes
        self.failed_handshakes += failed_handshakes

    def recover(self, reason: str, connects: int, reconnects: int) -> None:
        """The connection ended for ``reason``: wait for the reconnect, or (after a server
        DISCONNECT or a refusal, which are final by design) connect again."""
        self.ends += 1
        if reason in RECONNECTABLE:
            self.wait_reconnected(connects, reconnects, 0)
        else:
            wait_until(lambda: not client_threads(), 10, "the client to wind down")
            self.connect()
        assert self.client.connected

    # -- the sweep -----------------------------------------------------------------------------
    def sweep(self) -> None:
        for case in PARSE_ERROR_CASES:
            if case.applies_to(self.transport):
                self.sweep_case(case)
        for handshake in HANDSHAKE_CASES:
            self.sweep_handshake(handshake)
        for packet, reason in WELL_FORMED_ENDS:
            self.sweep_end(packet, reason)

    def sweep_case(self, case: HostileCase) -> None:
        """``case`` scripts the next connection (its handshake, its CONNECT reply, then the
        hostile payload): ending the current one with KILL makes it come."""
        tally = self.tally
        connects, reconnects = tally.counts["connect"], tally.counts["reconnect"]
        parse_errors = tally.reasons["parse error"]
        self.server.push_case(case)
        self.conn().send([KILL])
        tally.wait_for(lambda: tally.counts["connect"] >= connects + 2, f"{case}: two reconnects")
        self.ends += 2
        self.barrier()
        assert tally.reasons["parse error"] == parse_errors + 2, case.name
        assert tally.counts["reconnect"] == reconnects + 2, case.name
        assert tally.counts["connect"] == connects + 2, case.name
        self.result.sweep_cases += 1

    def sweep_handshake(self, handshake: HostileCase) -> None:
        tally = self.tally
        connects, reconnects = tally.counts["connect"], tally.counts["reconnect"]
        ends = tally.ends()
        self.server.push_case(handshake)
        self.conn().send([KILL])
        tally.wait_for(lambda: tally.ends() > ends, f"{handshake}: the KILL")
        assert tally.last_end == "parse error"
        self.ends += 1
        self.wait_reconnected(connects, reconnects, 1)
        self.barrier()
        self.result.sweep_cases += 1

    def sweep_end(self, packet: str, reason: str) -> None:
        tally = self.tally
        connects, reconnects = tally.counts["connect"], tally.counts["reconnect"]
        ends = tally.ends()
        self.conn().send([packet])
        tally.wait_for(lambda: tally.ends() > ends, f"{packet!r} to end the connection")
        assert tally.last_end == reason, packet
        self.recover(reason, connects, reconnects)
        self.result.sweep_cases += 1

    # -- one hypothesis example ----------------------------------------------------------------
    def example(self, plan: BulkPlan, attacks: list[Garbage | Case]) -> None:
        n = self.result.examples
        self.result.examples += 1
        if n == EXAMPLES - WINDOW:
            started = not tracemalloc.is_tracing()
            if started:
                tracemalloc.start(1)
            self.window = (started, client_memory()[0], self.result.packets)
        self.benign(n, plan)
        for a, attack in enumerate(attacks, 1):
            if isinstance(attack, Garbage):
                self.garbage(n, a, attack)
            else:
                self.case(attack)
        self.barrier()

    def benign(self, n: int, plan: BulkPlan) -> None:
        tally = self.tally
        batch = expand(plan, str(n))
        self.checks.update(batch.checks)
        conn = self.conn()
        start = len(conn.received)
        ends, events, checked = tally.ends(), tally.events, tally.checked
        ack = f"43{SENTINEL_ACK_BASE + n}[]"
        conn.send([*batch.messages, f'42{SENTINEL_ACK_BASE + n}["{SENTINEL_EVENT}",{n},0,0]'])
        tally.wait_for(
            lambda: tally.sentinel == (n, 0, 0) or tally.ends() > ends, f"batch {n}'s sentinel"
        )
        assert tally.ends() == ends, f"benign traffic ended the connection: {tally.last_end}"
        conn.wait_received(ack, start=start)  # every reply before it is in, too
        replies = collections.Counter(conn.received[start:])
        assert replies == batch.replies + collections.Counter([ack])
        assert tally.events - events == batch.root_events + 1  # + the sentinel
        assert tally.mismatches == []
        assert tally.checked - checked == len(batch.checks)
        assert not self.checks
        self.result.benign += len(batch.messages)

    def garbage(self, n: int, a: int, attack: Garbage) -> None:
        tally = self.tally
        connects, reconnects = tally.counts["connect"], tally.counts["reconnect"]
        ends = tally.ends()
        segments = _segments(attack.messages)
        out: list[str | bytes] = []
        for step, segment in enumerate(segments, 1):
            out += [*segment, f'42["{SENTINEL_EVENT}",{n},{a},{step}]']
        self.conn().send(out)
        last = (n, a, len(segments))
        tally.wait_for(
            lambda: tally.sentinel == last or tally.ends() > ends, f"example {n} attack {a}"
        )
        if tally.ends() == ends:
            self.result.garbage += len(attack.messages)
            self.result.attacks["garbage survived"] += 1
            event("garbage: survived")
            return
        seen = tally.sentinel
        read = seen[2] if seen is not None and seen[:2] == (n, a) else 0
        fatal = segments[read]  # the first segment whose sentinel did not come
        reason = tally.last_end
        self.result.garbage += sum(len(segment) for segment in segments[:read]) + 1
        self.result.attacks[f"garbage: {reason}"] += 1
        event(f"garbage: {reason}")
        if reason != "parse error":
            # Well-formed but final: a packet of the segment must be one that means it. Over
            # polling a raw record separator in a message splits it in several packets.
            parts = [p for m in fatal if isinstance(m, str) for p in m.split("\x1e")]
            prefixes = LEGIT_ENDS.get(reason, ())
            assert any(p.startswith(prefixes) for p in parts), (reason, fatal)
        assert tally.ends() == ends + 1
        self.recover(reason, connects, reconnects)

    def case(self, attack: Case) -> None:
        tally = self.tally
        connects, reconnects = tally.counts["connect"], tally.counts["reconnect"]
        ends = tally.ends()
        if attack.handshake is not None:
            self.server.push_case(attack.handshake)
        self.conn().send_case(attack.case)
        tally.wait_for(lambda: tally.ends() > ends, f"{attack.case} to end the connection")
        assert tally.last_end == "parse error", attack.case.name
        self.result.garbage += 1
        self.result.attacks["case"] += 1
        self.ends += 1
        self.wait_reconnected(connects, reconnects, 0 if attack.handshake is None else 1)

    # -- the whole phase -----------------------------------------------------------------------
    def run(self) -> Result:
        started = time.monotonic()
        self.connect()
        self.sweep()
        self.disconnect()
        objects_before = client_objects()
        self.connect()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=False,
            # a live, stateful client: a shrunk example would not replay the same state, and
            # shrinking against it would outlast the timeout; the failing example is reported
            phases=(Phase.explicit, Phase.reuse, Phase.generate),
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(plan=bulk_plans(*BATCH), attacks=_attacks(self.transport))
        def fuzz(plan: BulkPlan, attacks: list[Garbage | Case]) -> None:
            self.example(plan, attacks)

        try:
            fuzz()
            self.barrier()
            assert self.client.call("echo", "the end", timeout=10) == "the end"
            assert self.window is not None, "the measured window never started"
            _, base, packets = self.window
            self.result.window_packets = self.result.packets - packets
            self.result.growth_connected = client_memory()[0] - base
            self.disconnect()
            idle, self.result.top_allocations = client_memory()
            self.result.growth_idle = idle - base
        finally:
            if self.window is not None and self.window[0]:
                tracemalloc.stop()
        objects = client_objects()
        objects.subtract(objects_before)
        self.result.object_growth = {k: v for k, v in objects.items() if v}
        # every connection that ended but the last was followed by exactly one new one, after
        # the failed attempts of the malformed handshakes
        assert len(self.server.connections) == self.ends + self.failed_handshakes
        assert self.server.errors == []
        self.result.seconds = time.monotonic() - started
        return self.result


def client_memory() -> tuple[int, str]:
    """Bytes allocated by the client's code (by the file that allocated them) still alive,
    and the top allocation sites."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, pattern) for pattern in CLIENT_CODE]
    )
    stats = snapshot.statistics("lineno")
    return sum(stat.size for stat in stats), "\n".join(str(stat) for stat in stats[:8])


def client_objects() -> collections.Counter[str]:
    """Live objects of the client's classes (and its threads), by class."""
    gc.collect()
    counts: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        module = getattr(kind, "__module__", None)
        if not isinstance(module, str):
            continue
        if module.partition(".")[0] in CLIENT_PACKAGES:
            counts[f"{module}.{kind.__qualname__}"] += 1
        elif isinstance(obj, threading.Thread) and obj.name.startswith("sio-mqtt"):
            counts[f"thread {obj.name.rsplit('-', 1)[0]}"] += 1
    return counts


# ----------------------------------------------------------------------------------------------
# the test
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def thread_errors() -> Iterator[list[str]]:
    """Exceptions escaping any thread during the test."""
    errors: list[str] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        errors.append(f"{name}: {args.exc_type.__name__}: {args.exc_value}")

    threading.excepthook = hook
    try:
        yield errors
    finally:
        threading.excepthook = previous


def test_100k_garbage_packets_over_both_transports(
    thread_errors: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    threads_before = threading.active_count()
    results: dict[str, Result] = {}
    for transport in TRANSPORTS:
        run = FuzzRun(transport)
        try:
            results[transport] = run.run()
        finally:
            run.close()
        assert thread_errors == []
    summary = {
        t: {
            "packets": r.packets,
            "benign": r.benign,
            "garbage": r.garbage,
            "examples": r.examples,
            "sweep cases": r.sweep_cases,
            "attacks": dict(r.attacks),
            "objects": r.object_growth,
            "window packets": r.window_packets,
            "growth idle": r.growth_idle,
            "growth connected": r.growth_connected,
            "seconds": round(r.seconds, 1),
        }
        for t, r in results.items()
    }
    print(summary)

    total = sum(r.packets for r in results.values())
    assert total >= TARGET, summary
    for result in results.values():
        assert result.packets >= MIN_SHARE * total, summary
        assert result.attacks["case"] > 0 and result.attacks["garbage: parse error"] > 0, summary
        assert sum(max(0, n) for n in result.object_growth.values()) <= MAX_OBJECT_GROWTH, summary
        assert result.growth_idle < MAX_GROWTH_IDLE, (summary, result.top_allocations)
        assert result.growth_connected < MAX_GROWTH_CONNECTED, summary
    assert thread_errors == []
    records = [
        f"{r.name}: {r.levelname}: {r.getMessage()}"
        for r in caplog.records
        if r.name.startswith("sio_mqtt") and (r.levelno >= logging.WARNING or r.exc_info)
    ]
    assert records == []
    wait_until(lambda: threading.active_count() <= threads_before, 10, "every thread to end")
