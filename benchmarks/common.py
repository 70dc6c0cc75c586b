"""Shared helpers: paths, JSON result lines, statistics, and sampling a child's RSS/threads."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
RESULTS = Path(__file__).resolve().parent / "results"


def add_tests_to_path() -> None:
    """Make the test suite's ``servers`` package importable: ``servers.procs`` (the peer
    servers) and ``servers.mqtt_wire`` (hand-built MQTT packets for the raw-socket clients)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))


class BenchError(RuntimeError):
    """A measurement failed (as opposed to missing a target)."""


def print_result(data: dict[str, Any]) -> None:
    """The one JSON line a measurement subprocess prints on stdout."""
    sys.stdout.write("RESULT " + json.dumps(data) + "\n")
    sys.stdout.flush()


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


class Sampler:
    """Samples a process's RSS (MB) and OS thread count from outside, every ``interval`` s.

    ``phase`` labels the samples (e.g. "idle", "load"); samples are kept per phase."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.phase = "start"
        self.samples: dict[str, list[tuple[float, int]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def sample(self) -> tuple[float, int] | None:
        try:
            with self.proc.oneshot():
                return self.proc.memory_info().rss / 1e6, self.proc.num_threads()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            s = self.sample()
            if s is None:
                return
            self.samples.setdefault(self.phase, []).append(s)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def max_rss(self, phases: Sequence[str] | None = None) -> float | None:
        vals = [r for p, ss in self.samples.items() if phases is None or p in phases for r, _ in ss]
        return round(max(vals), 1) if vals else None

    def threads(self, phases: Sequence[str] | None = None) -> list[int]:
        return sorted(
            {t for p, ss in self.samples.items() if phases is None or p in phases for _, t in ss}
        )


def run_measurement(cmd: Sequence[str], timeout: float, *, sample: bool = True) -> dict[str, Any]:
    """Run one measurement subprocess, sample its RSS/threads, return its RESULT line as a dict
    (plus ``rss_mb``/``threads`` maxima sampled from outside when ``sample``)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        list(cmd),
        cwd=str(REPO),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sampler = Sampler(proc.pid).start() if sample else None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise BenchError(
            f"timed out after {timeout:.0f} s: {' '.join(cmd)}\n{err[-3000:]}"
        ) from None
    finally:
        if sampler is not None:
            sampler.stop()
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise BenchError(
            f"exit code {proc.returncode}: {' '.join(cmd)}\nstdout:\n{out[-2000:]}\n"
            f"stderr:\n{err[-3000:]}"
        )
    data: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    data["wall_s"] = round(time.monotonic() - t0, 2)
    if sampler is not None:
        data.setdefault("rss_mb", sampler.max_rss())
        threads = sampler.threads()
        data.setdefault("threads", max(threads) if threads else None)
    return data
