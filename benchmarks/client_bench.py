"""One client measurement in its own process; prints one ``RESULT {json}`` line.

    python -m benchmarks.client_bench --impl ours|pysio|raw --metric emits --url http://...

Implementations:

* ``ours``  -- ``sio_mqtt.Client``;
* ``pysio`` -- python-socketio's sync ``socketio.Client``;
* ``raw``   -- Engine.IO/Socket.IO text frames written and read by hand with ``websocket-client``
  alone (no Socket.IO library, one thread): the ceiling for a Python client on this stack.

Metrics (``value`` is the median of ``--reps`` timed runs after a warm-up):

* ``emits``          fire-and-forget ``count`` events/s, counted by the server, ended by one ack;
* ``acks``           sequential ``echo_ack`` round trips/s;
* ``recv``           events/s received while the server floods the client (``flood``);
* ``binary_ws``      1 MiB binary ``echo_ack`` round trips over websocket, MB/s (10^6 B) echoed;
* ``binary_polling`` the same over HTTP long-polling (ours and pysio);
* ``polling_emits``  ``emits`` over HTTP long-polling only (ours and pysio);
* ``connect``        connect time to a connected namespace (websocket), ms, median.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import median, print_result

# flood payload: a small, realistic telemetry object
FLOOD_PAYLOAD = {"id": "sensor-1", "t": 21.5, "ok": True}
BLOB_SIZE = 1 << 20
TIMEOUT = 120.0


# ------------------------------------------------------------------------------------------
# Socket.IO library adapters (same calls for ours and python-socketio)
# ------------------------------------------------------------------------------------------


class Ours:
    def __init__(self, url: str, transports: list[str]) -> None:
        from sio_mqtt import Client

        self.c = Client(url, transports=transports, reconnect=False)

    def connect(self) -> None:
        self.c.connect(timeout=20)

    def emit(self, event: str, *args: Any) -> None:
        self.c.emit(event, *args)

    def call(self, event: str, *args: Any) -> Any:
        return self.c.call(event, *args, timeout=TIMEOUT)

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        self.c.on(event, handler)

    def disconnect(self) -> None:
        self.c.disconnect()


class PySio:
    def __init__(self, url: str, transports: list[str]) -> None:
        import socketio

        self.url = url
        self.transports = transports
        self.c = socketio.Client(reconnection=False)

    def connect(self) -> None:
        self.c.connect(self.url, transports=self.transports, wait_timeout=20)

    def emit(self, event: str, *args: Any) -> None:
        self.c.emit(event, args[0] if len(args) == 1 else (args or None))

    def call(self, event: str, *args: Any) -> Any:
        data = args[0] if len(args) == 1 else (args or None)
        return self.c.call(event, data, timeout=TIMEOUT)

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        self.c.on(event, handler)

    def disconnect(self) -> None:
        self.c.disconnect()


ADAPTERS: dict[str, type[Ours] | type[PySio]] = {"ours": Ours, "pysio": PySio}


# ------------------------------------------------------------------------------------------
# timed runs shared by every implementation. ``c`` is an unconnected Ours, PySio or Raw (all
# three have connect/call/disconnect); where they differ, the caller passes its own loop as one
# callable per run, so each implementation's per-event loop stays its own and is not wrapped
# ------------------------------------------------------------------------------------------


def timed_emits(
    c: Any, emit_counts: Callable[[int], None], n: int, reps: int, warmup: int
) -> list[float]:
    """Events/s of ``emit_counts(n)`` (``count`` events 0..n-1, sent the implementation's way),
    timed until the server's ``get_count`` ack confirms that all n arrived."""
    c.connect()
    try:
        emit_counts(warmup)
        c.call("reset_count")
        rates = []
        for _ in range(reps):
            t0 = time.perf_counter()
            emit_counts(n)
            got = c.call("get_count")
            dt = time.perf_counter() - t0
            if got != n:
                raise RuntimeError(f"server counted {got} of {n} emits")
            c.call("reset_count")
            rates.append(n / dt)
        return rates
    finally:
        c.disconnect()


def timed_acks(c: Any, n: int, reps: int, warmup: int) -> list[float]:
    """Sequential ``echo_ack`` round trips/s."""
    c.connect()
    try:
        for i in range(warmup):
            c.call("echo_ack", i)
        rates = []
        for _ in range(reps):
            call = c.call
            t0 = time.perf_counter()
            for i in range(n):
                if call("echo_ack", i) != i:
                    raise RuntimeError("wrong ack value")
            rates.append(n / (time.perf_counter() - t0))
        return rates
    finally:
        c.disconnect()


def timed_echoes(
    c: Any, echo_blobs: Callable[[int], None], n: int, reps: int, warmup: int
) -> list[float]:
    """MB/s (10^6 B) echoed by ``echo_blobs(n)``: n sequential 1 MiB binary ``echo_ack`` round
    trips, each checked, sent the implementation's way."""
    c.connect()
    try:
        echo_blobs(warmup)
        rates = []
        for _ in range(reps):
            t0 = time.perf_counter()
            echo_blobs(n)
            rates.append(n * BLOB_SIZE / (time.perf_counter() - t0) / 1e6)
        return rates
    finally:
        c.disconnect()


def timed_connects(make: Callable[[], Any], n: int, warmup: int) -> list[float]:
    """Connect time (ms) of n fresh clients from ``make()``, after ``warmup`` untimed ones."""
    times = []
    for i in range(warmup + n):
        c = make()
        t0 = time.perf_counter()
        c.connect()
        dt = time.perf_counter() - t0
        c.disconnect()
        if i >= warmup:
            times.append(dt * 1000)
    return times


# ------------------------------------------------------------------------------------------
# the library clients' own loops
# ------------------------------------------------------------------------------------------


def lib_emits(make: Callable[[], Any], n: int, reps: int, warmup: int) -> list[float]:
    c = make()

    def emit_counts(count: int) -> None:
        emit = c.emit
        for i in range(count):
            emit("count", i)

    return timed_emits(c, emit_counts, n, reps, warmup)


def lib_recv(make: Callable[[], Any], n: int, reps: int, warmup: int) -> list[float]:
    c = make()
    state: dict[str, Any] = {}
    done = threading.Event()

    def on_flood(*args: Any) -> None:
        # itertools.count's next() is atomic: python-socketio runs handlers on many threads
        if next(state["counter"]) == state["target"]:
            done.set()

    c.on("f", on_flood)
    c.connect()
    try:

        def flood(count: int) -> float:
            state["counter"] = itertools.count(1)
            state["target"] = count
            done.clear()
            t0 = time.perf_counter()
            c.emit("flood", {"n": count, "event": "f", "payload": FLOOD_PAYLOAD})
            if not done.wait(TIMEOUT):
                raise RuntimeError("flood not received in time")
            return count / (time.perf_counter() - t0)

        flood(warmup)
        time.sleep(0.2)  # let the warm-up's stragglers (flood_done) pass
        rates = []
        for _ in range(reps):
            rates.append(flood(n))
            time.sleep(0.1)
        return rates
    finally:
        c.disconnect()


def lib_binary(make: Callable[[], Any], n: int, reps: int, warmup: int) -> list[float]:
    blob = os.urandom(BLOB_SIZE)
    c = make()

    def echo_blobs(count: int) -> None:
        for _ in range(count):
            got = c.call("echo_ack", blob)
            if len(got) != BLOB_SIZE:
                raise RuntimeError("wrong echo size")

    return timed_echoes(c, echo_blobs, n, reps, warmup)


# ------------------------------------------------------------------------------------------
# raw frames over websocket-client (no Socket.IO library, one thread)
# ------------------------------------------------------------------------------------------


class Raw:
    """Engine.IO v4 / Socket.IO v5 spoken by hand: ``40`` connect, ``42[...]`` events,
    ``42<id>[...]`` events with an ack, ``43<id>[...]`` acks; pings (``2``) answered with ``3``."""

    def __init__(self, url: str) -> None:
        self.url = url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        self.url += "/socket.io/?EIO=4&transport=websocket"
        self.ack_id = 0

    def connect(self) -> None:
        import websocket

        self.ws = websocket.create_connection(self.url, timeout=TIMEOUT)
        opening = self.ws.recv()
        if not opening.startswith("0{"):
            raise RuntimeError(f"unexpected open packet {opening!r}")
        self.ws.send("40")
        while not self.recv().startswith("40"):
            pass

    def recv(self) -> Any:
        ws = self.ws
        while True:
            msg = ws.recv()
            if msg == "2":
                ws.send("3")
                continue
            return msg

    def call(self, event: str, *args: Any) -> Any:
        ack_id = self.ack_id
        self.ack_id += 1
        self.ws.send(f"42{ack_id}" + json.dumps([event, *args]))
        prefix = f"43{ack_id}["
        while True:
            msg = self.recv()
            if msg.__class__ is str and msg.startswith(prefix):
                data = json.loads(msg[len(prefix) - 1 :])
                return data[0] if len(data) == 1 else data

    def disconnect(self) -> None:
        self.ws.send("41")
        self.ws.close()


def raw_emits(url: str, n: int, reps: int, warmup: int) -> list[float]:
    c = Raw(url)

    def emit_counts(count: int) -> None:
        send = c.ws.send
        dumps = json.dumps
        for i in range(count):
            send("42" + dumps(["count", i]))

    return timed_emits(c, emit_counts, n, reps, warmup)


def raw_recv(url: str, n: int, reps: int, warmup: int) -> list[float]:
    c = Raw(url)
    c.connect()
    loads = json.loads
    try:

        def flood(count: int) -> float:
            t0 = time.perf_counter()
            spec = {"n": count, "event": "f", "payload": FLOOD_PAYLOAD}
            c.ws.send("42" + json.dumps(["flood", spec]))
            got = 0
            recv = c.recv
            while got < count:
                msg = recv()
                if msg[:2] == "42":
                    data = loads(msg[2:])
                    if data[0] == "f":
                        got += 1
            return count / (time.perf_counter() - t0)

        flood(warmup)
        rates = [flood(n) for _ in range(reps)]
        return rates
    finally:
        c.disconnect()


def raw_binary(url: str, n: int, reps: int, warmup: int) -> list[float]:
    blob = os.urandom(BLOB_SIZE)
    c = Raw(url)
    placeholder = json.dumps({"_placeholder": True, "num": 0})

    def echo() -> None:
        ack_id = c.ack_id
        c.ack_id += 1
        c.ws.send(f'451-{ack_id}["echo_ack",{placeholder}]')
        c.ws.send_binary(blob)
        prefix = f"461-{ack_id}["
        while True:
            msg = c.recv()
            if msg.__class__ is str and msg.startswith(prefix):
                break
        data = c.recv()
        if len(data) != BLOB_SIZE:
            raise RuntimeError("wrong echo size")

    def echo_blobs(count: int) -> None:
        for _ in range(count):
            echo()

    return timed_echoes(c, echo_blobs, n, reps, warmup)


# ------------------------------------------------------------------------------------------

UNITS = {
    "emits": "emits/s",
    "acks": "acks/s",
    "recv": "events/s",
    "binary_ws": "MB/s",
    "binary_polling": "MB/s",
    "polling_emits": "emits/s",
    "connect": "ms",
}


def measure(impl: str, metric: str, url: str, n: int, reps: int, warmup: int) -> list[float]:
    if impl == "raw":
        if metric == "emits":
            return raw_emits(url, n, reps, warmup)
        if metric == "acks":
            return timed_acks(Raw(url), n, reps, warmup)
        if metric == "recv":
            return raw_recv(url, n, reps, warmup)
        if metric == "binary_ws":
            return raw_binary(url, n, reps, warmup)
        if metric == "connect":
            return timed_connects(lambda: Raw(url), n, warmup)
        raise SystemExit(f"raw does not do {metric}")
    adapter = ADAPTERS[impl]
    polling = metric in ("binary_polling", "polling_emits")
    transports = ["polling"] if polling else ["websocket"]

    def make() -> Any:
        return adapter(url, transports)

    if metric in ("emits", "polling_emits"):
        return lib_emits(make, n, reps, warmup)
    if metric == "acks":
        return timed_acks(make(), n, reps, warmup)
    if metric == "recv":
        return lib_recv(make, n, reps, warmup)
    if metric in ("binary_ws", "binary_polling"):
        return lib_binary(make, n, reps, warmup)
    if metric == "connect":
        return timed_connects(make, n, warmup)
    raise SystemExit(f"unknown metric {metric}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--impl", choices=("ours", "pysio", "raw"), required=True)
    ap.add_argument("--metric", choices=sorted(UNITS), required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--n", type=int, required=True, help="events (or connects) per timed run")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=0)
    args = ap.parse_args()
    runs = measure(args.impl, args.metric, args.url, args.n, args.reps, args.warmup)
    print_result(
        {
            "impl": args.impl,
            "metric": args.metric,
            "unit": UNITS[args.metric],
            "value": round(median(runs), 3),
            "runs": [round(r, 3) for r in runs],
            "n": args.n,
        }
    )


if __name__ == "__main__":
    main()
