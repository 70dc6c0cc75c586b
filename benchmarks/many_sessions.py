"""Many websocket sessions in one process; prints one ``RESULT {json}`` line.

    python -m benchmarks.many_sessions --impl ours|pysio_async|js --n 10000 --hold 60 --url URL

* ``ours``        -- N ``sio_mqtt.Client`` (websocket only), ``connect(wait=False)`` each;
* ``pysio_async`` -- N python-socketio ``AsyncClient`` on one asyncio loop, connected together
  with ``asyncio.gather``;
* ``js``          -- N socket.io-client sockets (``forceNew``) in one Node process
  (``benchmarks/many_sessions.js``, run from here).

Figures: ``connect_s`` (the first connect started -> the last ``connect`` event), ``rss_mb`` and
``threads`` at steady state (after everyone connected, the larger of before and after the hold),
``broadcast_s`` (one server broadcast, asked for by one client, until every client got it),
``connected_after_hold`` and ``disconnects`` during ``--hold`` seconds (heartbeats answered).
The open-file limit's soft value is raised to the hard one (each session is one descriptor).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import print_result

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE.parent / "tests" / "servers" / "node"
TIMEOUT = 600.0
STEADY = 3.0  # seconds after the last connect before RSS and threads are read (all impls)


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard one; returns the new (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def proc_status() -> tuple[float, int]:
    """(RSS in MB, thread count) of this process, from /proc."""
    rss = 0.0
    threads = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads


class Counter:
    """Counts handler calls; the waiter is woken once, at the target (a wake-up per event
    would cost the measured process a thread switch per event: not the client's cost)."""

    def __init__(self) -> None:
        self.value = 0
        self.target = 1 << 62
        self._cond = threading.Condition()

    def add(self, *_: Any) -> None:
        with self._cond:
            self.value += 1
            if self.value >= self.target:
                self._cond.notify_all()

    def wait_for(self, n: int, timeout: float) -> bool:
        with self._cond:
            self.target = n
            return self._cond.wait_for(lambda: self.value >= n, timeout)


def run_ours(url: str, n: int, hold: float) -> dict[str, Any]:
    from sio_mqtt import Client

    connected, got, disconnects, errors = Counter(), Counter(), Counter(), Counter()
    clients = []
    for _ in range(n):
        c = Client(url, transports=["websocket"], reconnect=True)
        c.on("connect", connected.add)
        c.on("bcast", got.add)
        c.on("disconnect", disconnects.add)
        c.on("connect_error", errors.add)
        clients.append(c)
    t0 = time.monotonic()
    for c in clients:
        c.connect(wait=False)
    if not connected.wait_for(n, TIMEOUT):
        raise SystemExit(f"only {connected.value} of {n} connected ({errors.value} errors)")
    connect_s = time.monotonic() - t0
    time.sleep(STEADY)  # the handshake pool's idle workers end: steady state
    rss1, threads1 = proc_status()
    t1 = time.monotonic()
    clients[0].emit("broadcast", {"event": "bcast", "args": [1]})
    if not got.wait_for(n, TIMEOUT):
        raise SystemExit(f"broadcast reached {got.value} of {n}")
    broadcast_s = time.monotonic() - t1
    time.sleep(hold)
    rss2, threads2 = proc_status()
    alive = sum(1 for c in clients if c.connected)
    lost = disconnects.value
    t2 = time.monotonic()
    for c in clients:
        c.disconnect()
    return {
        "connect_s": connect_s,
        "rss_mb": max(rss1, rss2),
        "threads": max(threads1, threads2),
        "broadcast_s": broadcast_s,
        "connected_after_hold": alive,
        "disconnects": lost,
        "disconnect_all_s": time.monotonic() - t2,
        "threads_after_disconnect": proc_status()[1],
    }


def run_pysio_async(url: str, n: int, hold: float) -> dict[str, Any]:
    import socketio

    async def main() -> dict[str, Any]:
        connected = 0
        got = 0
        disconnects = 0
        all_connected = asyncio.Event()
        all_got = asyncio.Event()
        clients = [socketio.AsyncClient(reconnection=True) for _ in range(n)]
        for c in clients:

            async def on_connect() -> None:
                nonlocal connected
                connected += 1
                if connected >= n:
                    all_connected.set()

            async def on_bcast(*_: Any) -> None:
                nonlocal got
                got += 1
                if got >= n:
                    all_got.set()

            async def on_disconnect(*_: Any) -> None:
                nonlocal disconnects
                disconnects += 1

            c.on("connect", on_connect)
            c.on("bcast", on_bcast)
            c.on("disconnect", on_disconnect)
        t0 = time.monotonic()
        await asyncio.gather(
            *(c.connect(url, transports=["websocket"], wait_timeout=TIMEOUT) for c in clients)
        )
        await asyncio.wait_for(all_connected.wait(), TIMEOUT)
        connect_s = time.monotonic() - t0
        await asyncio.sleep(STEADY)
        rss1, threads1 = proc_status()
        t1 = time.monotonic()
        await clients[0].emit("broadcast", {"event": "bcast", "args": [1]})
        await asyncio.wait_for(all_got.wait(), TIMEOUT)
        broadcast_s = time.monotonic() - t1
        await asyncio.sleep(hold)
        rss2, threads2 = proc_status()
        alive = sum(1 for c in clients if c.connected)
        lost = disconnects
        t2 = time.monotonic()
        await asyncio.gather(*(c.disconnect() for c in clients))
        return {
            "connect_s": connect_s,
            "rss_mb": max(rss1, rss2),
            "threads": max(threads1, threads2),
            "broadcast_s": broadcast_s,
            "connected_after_hold": alive,
            "disconnects": lost,
            "disconnect_all_s": time.monotonic() - t2,
            "threads_after_disconnect": proc_status()[1],
        }

    return asyncio.run(main())


def run_js(url: str, n: int, hold: float) -> dict[str, Any]:
    env = dict(os.environ, NODE_PATH=str(NODE_DIR / "node_modules"))
    out = subprocess.run(
        ["node", str(HERE / "many_sessions.js"), url, str(n), str(hold)],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT + hold + 60,
        check=False,
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            data: dict[str, Any] = json.loads(line[7:])
            return data
    raise SystemExit(f"node client failed ({out.returncode}): {out.stderr[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=("ours", "pysio_async", "js"), required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--hold", type=float, default=60.0)
    args = ap.parse_args()
    soft, hard = raise_nofile()
    if soft < args.n + 100:
        raise SystemExit(f"open-file limit {soft} (hard {hard}) is too low for {args.n} sessions")
    runner = {"ours": run_ours, "pysio_async": run_pysio_async, "js": run_js}[args.impl]
    started = time.monotonic()
    res = runner(args.url, args.n, args.hold)
    res.update(
        impl=args.impl,
        n=args.n,
        hold_s=args.hold,
        nofile=[soft, hard],
        wall_s=round(time.monotonic() - started, 1),
    )
    print_result(res)
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown of thousands of objects


if __name__ == "__main__":
    main()
