"""The Socket.IO -> MQTT outbox: ordered, bounded, optionally durable (SQLite, stdlib).

Every message the gateway publishes for a ``socketio_to_mqtt`` route goes through one
:class:`Outbox` and stays there until the broker acknowledges it (PUBACK / PUBCOMP, paho's
``on_publish``); QoS 0 messages leave it as soon as they are written.

Flow (no thread per message):

* :meth:`Outbox.add` (the Socket.IO dispatcher thread) appends the message. When nothing waits
  before it, MQTT is connected and fewer than ``window`` messages are handed to paho, it is
  published at once (fast path); otherwise it waits, in order.
* paho's ``on_publish`` only appends the mid to a deque (:meth:`Outbox.acked`, lock free).
* ONE pump thread processes the acknowledgements, hands waiting messages to paho in order as the
  window allows, and writes to SQLite in *group commits*: every ``commit_interval`` seconds (or
  sooner once ``commit_batch`` messages wait) one transaction inserts the messages that are still
  unacknowledged, deletes the acknowledged ones and saves the Socket.IO recovery state. A message
  acknowledged before its group commit is never written at all, so a healthy broker costs no disk
  I/O per message. ``commit_interval: 0`` commits every message before publishing it instead.
* While MQTT is down nothing is handed to paho; after a reconnect, handing resumes once paho has
  re-sent what it had in flight (see ``MqttConnection.ready``), so order holds across reconnects.

Refusals: a publish the broker refused (MQTT 5 PUBACK >= 0x80, :meth:`Outbox.refused`) is not
delivered: a quota-like refusal puts it back at the head of the queue, handed again after
``retry_delay`` seconds (nothing behind it is handed meanwhile: order holds), at most
``retries`` times; any other refusal (or the last retry) drops it (``on_drop``). A message over
the broker's packet size limit is dropped when handed (the publish function says
``"too_large"``), so it never blocks the rest.

Overflow: at ``max_messages`` (handed + waiting) the policy applies: ``drop-oldest`` drops the
oldest message not yet handed to paho (when every message is handed, the new one), ``drop-newest``
the new one, ``block`` makes :meth:`add` wait for room (the Socket.IO dispatcher stops, its bounded
queue fills, the reader stops reading: TCP back-pressure to the server). Every drop calls
``on_drop(message, reason)`` exactly once.

Durability: with ``sync: normal`` (SQLite WAL, ``synchronous=NORMAL``) a committed message
survives a crash of the gateway process (SIGKILL); ``full`` also survives a power loss (fsync per
group commit); ``off`` leaves it to the OS. A message received less than ``commit_interval``
before a crash and not yet acknowledged can be lost (that is the price of group commit; use
``commit_interval: 0`` to close the window). After a restart the stored messages are published
again first, in order, with their original message ids.
"""

from __future__ import annotations

import collections
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from sio_mqtt.gateway.config import OutboxConfig

__all__ = ["OutMessage", "Outbox"]

log = logging.getLogger("sio_mqtt.gateway.outbox")

#: what a publish function returns: the paho mid (tracked until acked), ``0`` for a QoS 0 message
#: that was written (done), ``None`` when paho cannot take it now (retry later), or a string: a
#: permanent failure reason (the message is dropped)
PublishOutcome = int | str | None


class OutMessage:
    """One message on its way to MQTT."""

    __slots__ = (
        "attempts",
        "correlation",
        "durable",
        "event",
        "mid",
        "msg_id",
        "on_drop",
        "payload",
        "qos",
        "response_topic",
        "retain",
        "route",
        "seq",
        "stored",
        "topic",
    )

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        *,
        route: str | None = None,
        event: str | None = None,
        durable: bool = True,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        on_drop: Callable[[str], None] | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.route = route
        self.event = event
        #: written to SQLite when still unacknowledged at a group commit (QoS > 0 only)
        self.durable = durable and qos > 0
        self.response_topic = response_topic
        self.correlation = correlation
        self.on_drop = on_drop
        self.seq = 0
        self.msg_id = ""
        self.mid: int | None = None
        self.stored = False
        #: refusals tried again so far (see :meth:`Outbox.refused`)
        self.attempts = 0


PublishFn = Callable[[OutMessage], PublishOutcome]
DropFn = Callable[[OutMessage, str], None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL,
    qos INTEGER NOT NULL, retain INTEGER NOT NULL, msg_id TEXT NOT NULL,
    route TEXT, event TEXT);
CREATE TABLE IF NOT EXISTS recovery (
    namespace TEXT PRIMARY KEY, pid TEXT NOT NULL, "offset" TEXT);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Outbox:
    """See the module docstring. ``persist=False`` keeps the same queue in memory only."""

    def __init__(
        self,
        cfg: OutboxConfig,
        publish: PublishFn,
        on_drop: DropFn,
        *,
        window: int,
        persist: bool | None = None,
        on_recovery_saved: Callable[[], None] | None = None,
        retry_delay: float = 1.0,
        retries: int = 3,
    ) -> None:
        self.cfg = cfg
        self.persist = cfg.enabled if persist is None else persist
        self.max_messages = cfg.max_messages
        self.policy = cfg.overflow
        self.window = max(1, window)
        self._publish = publish
        self._on_drop = on_drop
        self._on_recovery_saved = on_recovery_saved
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        #: messages not handed to paho yet, in order
        self._waiting: collections.deque[OutMessage] = collections.deque()
        #: handed to paho, waiting for the broker's ack, by mid
        self._handed: dict[int, OutMessage] = {}
        self._acks: collections.deque[int] = collections.deque()
        #: refused publishes (mid, reason, worth a retry), from paho's thread
        self._refusals: collections.deque[tuple[int, str, bool]] = collections.deque()
        self.retry_delay = retry_delay
        self.retries = retries
        #: nothing is handed before this time (monotonic): a refused message waits to go again
        self._hold_until = 0.0
        self._to_insert: list[OutMessage] = []
        self._to_delete: list[int] = []
        self._recovery: dict[str, tuple[str, str | None]] | None = None
        self._stored = 0
        self._seq = 0
        self.origin = uuid.uuid4().hex[:12]
        self._connected = False
        self._ready = False
        self._closed = False
        self._wake = threading.Event()
        self._room = threading.Condition(threading.Lock())
        self._pump: threading.Thread | None = None
        self.commits = 0
        self.interval = cfg.commit_interval
        self.strict = self.persist and cfg.commit_interval == 0

    # -- state ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._waiting) + len(self._handed)

    @property
    def stored(self) -> int:
        """Messages currently written to SQLite (committed and not yet deleted)."""
        return self._stored

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    # -- lifecycle -----------------------------------------------------------------------------
    def open(self) -> dict[str, tuple[str, str | None]]:
        """Open the database, load the messages a previous run left (published first, in order)
        and return the saved Socket.IO recovery states by namespace."""
        recovery: dict[str, tuple[str, str | None]] = {}
        if self.persist:
            path = self.cfg.path
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.cfg.sync.upper()}")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key='origin'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta(key, value) VALUES ('origin', ?)", (self.origin,))
            else:
                self.origin = str(row[0])
            rows = db.execute(
                "SELECT seq, topic, payload, qos, retain, msg_id, route, event FROM messages "
                "ORDER BY seq"
            ).fetchall()
            for seq, topic, payload, qos, retain, msg_id, route, event in rows:
                msg = OutMessage(
                    str(topic), bytes(payload), int(qos), bool(retain), route=route, event=event
                )
                msg.seq = int(seq)
                msg.msg_id = str(msg_id)
                msg.stored = True
                self._waiting.append(msg)
            self._stored = len(rows)
            top = db.execute("SELECT MAX(seq) FROM messages").fetchone()[0]
            last = db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()
            self._seq = max(int(top or 0), int(last[0]) if last else 0)
            for ns, pid, offset in db.execute('SELECT namespace, pid, "offset" FROM recovery'):
                recovery[str(ns)] = (str(pid), None if offset is None else str(offset))
            self._db = db
            if rows:
                log.info("outbox: %d message(s) from the previous run will be published", len(rows))
        self._pump = threading.Thread(target=self._run, name="sio-mqtt-gw-outbox", daemon=True)
        self._pump.start()
        return recovery

    def close(self, timeout: float = 2.0) -> None:
        """Stop the pump, write what is still unacknowledged, close the database."""
        self._closed = True
        self._wake.set()
        with self._room:
            self._room.notify_all()
        if self._pump is not None:
            self._pump.join(timeout)
        self._commit()
        with self._db_lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def drain(self, timeout: float) -> bool:
        """Wait until every message was acknowledged (or ``timeout``); True when empty."""
        deadline = time.monotonic() + timeout
        while True:
            self._wake.set()
            if not len(self):
                return True
            left = deadline - time.monotonic()
            if left <= 0 or not self._connected:
                return False
            time.sleep(min(left, 0.01))

    # -- MQTT events (paho thread: lock free) ------------------------------------------------------
    def set_connected(self, connected: bool) -> None:
        self._connected = connected
        if not connected:
            self._ready = False

    def set_ready(self) -> None:
        """paho has re-sent what it had in flight after a (re)connect: handing may resume."""
        self._ready = True
        self._wake.set()

    def acked(self, mid: int) -> None:
        """The broker acknowledged ``mid`` (any QoS>0 publish of the connection, not only ours)."""
        self._acks.append(mid)
        if self._waiting or self.policy == "block":
            self._wake.set()

    def refused(self, mid: int, reason: str, retry: bool) -> None:
        """The broker refused ``mid`` (``reason``, e.g. ``not_authorized``); ``retry``: a
        quota-like reason, worth trying again after ``retry_delay``."""
        self._refusals.append((mid, reason, retry))
        self._wake.set()

    # -- adding (Socket.IO dispatcher thread) ---------------------------------------------------
    def add(self, msg: OutMessage) -> bool:
        """Queue ``msg`` (publishing it at once when possible); False when it was dropped."""
        dropped: list[tuple[OutMessage, str]] = []
        accepted = True
        with self._lock:
            if self._acks:
                self._process_acks()
            if self._refusals:
                self._process_refusals(dropped)
            if msg.qos == 0 and not self._connected:
                accepted = False
                dropped.append((msg, "not_connected"))
            elif len(self._waiting) + len(self._handed) >= self.max_messages:
                accepted = self._overflow(msg, dropped)
            if accepted:
                self._accept(msg, dropped)
        for m, reason in dropped:
            self._dropped(m, reason)
        return accepted

    def _overflow(self, msg: OutMessage, dropped: list[tuple[OutMessage, str]]) -> bool:
        """Caller holds the lock; True when ``msg`` may be added now."""
        policy = self.policy
        if policy == "block":
            while len(self._waiting) + len(self._handed) >= self.max_messages and not self._closed:
                self._lock.release()
                try:
                    self._wake.set()
                    with self._room:
                        self._room.wait(0.05)
                finally:
                    self._lock.acquire()
                if self._acks:
                    self._process_acks()
            if self._closed:
                dropped.append((msg, "stopping"))
                return False
            return True
        if policy == "drop-oldest" and self._waiting:
            old = self._waiting.popleft()
            self._forget(old)
            dropped.append((old, "outbox_full"))
            return True
        dropped.append((msg, "outbox_full"))
        return False

    def _accept(self, msg: OutMessage, dropped: list[tuple[OutMessage, str]]) -> None:
        """Caller holds the lock."""
        self._seq += 1
        msg.seq = self._seq
        msg.msg_id = f"{self.origin}-{self._seq}"
        if self.persist and msg.durable:
            if self.strict:
                self._store_now(msg)
            else:
                self._to_insert.append(msg)
                if len(self._to_insert) >= self.cfg.commit_batch:
                    self._wake.set()
        if (
            not self._waiting
            and self._ready
            and len(self._handed) < self.window
            and not self._hold_until
        ):
            if not self._hand(msg, dropped):
                self._waiting.append(msg)
        else:
            self._waiting.append(msg)

    def _hand(self, msg: OutMessage, dropped: list[tuple[OutMessage, str]]) -> bool:
        """Publish ``msg`` through paho (caller holds the lock); False: paho cannot take it now."""
        outcome = self._publish(msg)
        if outcome is None:
            return False
        if isinstance(outcome, str):
            self._forget(msg)
            dropped.append((msg, outcome))
        elif outcome == 0:
            self._forget(msg)
        else:
            msg.mid = outcome
            self._handed[outcome] = msg
        return True

    def _forget(self, msg: OutMessage) -> None:
        """``msg`` is done (acknowledged, written at QoS 0, dropped). Caller holds the lock."""
        if msg.stored:
            self._to_delete.append(msg.seq)
            msg.stored = False
        else:
            msg.durable = False  # not written yet: never write it

    def _process_acks(self) -> None:
        """Caller holds the lock."""
        acks = self._acks
        handed = self._handed
        while acks:
            msg = handed.pop(acks.popleft(), None)
            if msg is not None:
                self._forget(msg)

    def _process_refusals(self, dropped: list[tuple[OutMessage, str]]) -> None:
        """Refused publishes: back to the head of the queue after a delay, or dropped (caller
        holds the lock)."""
        refusals = self._refusals
        handed = self._handed
        again: list[OutMessage] = []
        reasons: set[str] = set()
        while refusals:
            mid, reason, retry = refusals.popleft()
            msg = handed.pop(mid, None)
            if msg is None:
                continue
            msg.mid = None
            if retry and msg.attempts < self.retries:
                msg.attempts += 1
                again.append(msg)
                reasons.add(reason)
            else:
                self._forget(msg)
                dropped.append((msg, f"refused_{reason}"))
        if again:
            again.sort(key=lambda m: m.seq)
            self._waiting.extendleft(reversed(again))
            self._hold_until = time.monotonic() + self.retry_delay
            log.info(
                "outbox: %d publish(es) refused for now (%s); trying again in %g s",
                len(again),
                ", ".join(sorted(reasons)),
                self.retry_delay,
            )

    def _pump_waiting(self, dropped: list[tuple[OutMessage, str]]) -> None:
        """Hand waiting messages to paho in order as the window allows (caller holds the lock)."""
        if self._hold_until:
            if time.monotonic() < self._hold_until:
                return
            self._hold_until = 0.0
        waiting = self._waiting
        while waiting and self._ready and len(self._handed) < self.window:
            msg = waiting[0]
            if not self._hand(msg, dropped):
                break
            waiting.popleft()

    def _dropped(self, msg: OutMessage, reason: str) -> None:
        try:
            self._on_drop(msg, reason)
            if msg.on_drop is not None:
                msg.on_drop(reason)
        except Exception:
            log.exception("outbox drop handler failed")

    # -- Socket.IO recovery state -----------------------------------------------------------------
    def save_recovery(self, states: dict[str, tuple[str, str | None]]) -> None:
        """Save the recovery states with the next group commit (after the messages before it)."""
        if not self.persist:
            return
        with self._lock:
            self._recovery = dict(states)
        if self.strict:
            self._wake.set()

    # -- the pump thread -------------------------------------------------------------------------
    def _run(self) -> None:
        interval = self.interval if self.interval > 0 else 0.05
        next_commit = time.monotonic() + interval
        while not self._closed:
            until = next_commit
            if self._hold_until:
                until = min(until, self._hold_until)
            self._wake.wait(max(0.0, until - time.monotonic()))
            self._wake.clear()
            dropped: list[tuple[OutMessage, str]] = []
            with self._lock:
                if self._acks:
                    self._process_acks()
                if self._refusals:
                    self._process_refusals(dropped)
                if self._waiting:
                    self._pump_waiting(dropped)
                due = (
                    time.monotonic() >= next_commit
                    or len(self._to_insert) >= self.cfg.commit_batch
                    or (self.strict and self._recovery is not None)
                )
            if self.policy == "block":
                with self._room:
                    self._room.notify_all()
            for m, reason in dropped:
                self._dropped(m, reason)
            if due:
                try:
                    self._commit()
                except Exception:
                    log.exception("outbox: commit failed")
                next_commit = time.monotonic() + interval

    def _store_now(self, msg: OutMessage) -> None:
        """Strict mode: write and commit ``msg`` before it is published (caller holds the lock)."""
        with self._db_lock:
            db = self._db
            if db is None:
                return
            db.execute(
                "INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                _row(msg),
            )
        msg.stored = True
        self._stored += 1

    def _commit(self) -> None:
        """One transaction: insert what is still unacknowledged, delete what was acknowledged,
        save the recovery state."""
        if not self.persist:
            return
        with self._lock:
            inserts = [m for m in self._to_insert if m.durable and not m.stored]
            self._to_insert = []
            for m in inserts:
                m.stored = True
            deletes = self._to_delete
            self._to_delete = []
            recovery = self._recovery
            self._recovery = None
            seq = self._seq
        if not inserts and not deletes and recovery is None:
            return
        with self._db_lock:
            db = self._db
            if db is None:
                return
            db.execute("BEGIN")
            try:
                if inserts:
                    db.executemany(
                        "INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [_row(m) for m in inserts],
                    )
                if deletes:
                    db.executemany("DELETE FROM messages WHERE seq = ?", [(s,) for s in deletes])
                if recovery is not None:
                    _write_recovery(db, recovery.items())
                db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('seq', ?)", (str(seq),))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        with self._lock:
            self._stored += len(inserts) - len(deletes)
        self.commits += 1
        if recovery is not None and self._on_recovery_saved is not None:
            self._on_recovery_saved()


def _row(m: OutMessage) -> tuple[Any, ...]:
    return (m.seq, m.topic, m.payload, m.qos, int(m.retain), m.msg_id, m.route, m.event)


def _write_recovery(
    db: sqlite3.Connection, states: Iterable[tuple[str, tuple[str, str | None]]]
) -> None:
    db.executemany(
        'INSERT OR REPLACE INTO recovery(namespace, pid, "offset") VALUES (?, ?, ?)',
        [(ns, pid, offset) for ns, (pid, offset) in states],
    )
