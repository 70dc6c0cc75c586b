"""The "many sessions" section of ``make bench``: N websocket sessions in one process, ours
(``sio_mqtt.Client`` on the shared I/O loop) beside socket.io-client in one Node process and
python-socketio's ``AsyncClient``, against a fresh Node test server per N.

Each (N, implementation) runs in its own process (``benchmarks.many_sessions``); this process
raises its soft RLIMIT_NOFILE to the hard limit first, so the server and the clients it starts
inherit it (every session is a descriptor on both sides).
"""

from __future__ import annotations

import sys
from typing import Any

from benchmarks.common import BenchError, run_measurement
from benchmarks.many_sessions import raise_nofile

PY = sys.executable
IMPLS = ("ours", "js", "pysio_async")
# N -> hold seconds (how long everyone stays connected before the "still connected" count)
PLAN: dict[str, dict[int, float]] = {
    "full": {1_000: 60.0, 5_000: 60.0, 10_000: 60.0},
    "smoke": {20: 1.0},
}
FIGURES = (
    ("connect_s", "connect all", "s"),
    ("rss_mb", "RSS", "MB"),
    ("threads", "threads", "threads"),
    ("broadcast_s", "broadcast to all", "s"),
    ("connected_after_hold", "connected after hold", "sessions"),
)


def run_many(mode: str, errors: list[str]) -> dict[str, Any]:
    """{"nofile": [soft, hard], "runs": {N: {impl: result}}}."""
    from servers.procs import NodeServer

    soft, hard = raise_nofile()
    print(f"  many sessions: RLIMIT_NOFILE soft raised to {soft} (hard {hard})", flush=True)
    runs: dict[str, dict[str, Any]] = {}
    for n, hold in PLAN[mode].items():
        runs[str(n)] = {}
        for impl in IMPLS:
            cmd = [PY, "-m", "benchmarks.many_sessions", "--impl", impl, "--n", str(n),
                   "--hold", str(hold)]  # fmt: skip
            try:
                with NodeServer() as node:  # a fresh server: no leftovers of the last run
                    res = run_measurement([*cmd, "--url", node.url], timeout=900, sample=False)
            except BenchError as exc:
                errors.append(f"many sessions {n} {impl}: {exc}")
                print(f"  ERROR many sessions {n} {impl}:\n{exc}", file=sys.stderr)
                continue
            runs[str(n)][impl] = res
            print(
                f"  many {n:6d} {impl:12s} connect {res['connect_s']:.2f} s, rss"
                f" {res['rss_mb']:.0f} MB, threads {res['threads']}, broadcast"
                f" {res['broadcast_s']:.3f} s, connected after {hold:g} s:"
                f" {res['connected_after_hold']}/{n} ({res['disconnects']} disconnects)",
                flush=True,
            )
    return {"nofile": [soft, hard], "runs": runs}


def markdown(many: dict[str, Any]) -> str:
    lines = ["| N | figure | ours | socket.io-client (JS) | AsyncClient | ours / JS |",
             "|---:|---|---:|---:|---:|---:|"]  # fmt: skip
    for n, by_impl in many.get("runs", {}).items():
        for key, label, unit in FIGURES:
            vals = [by_impl.get(i, {}).get(key) for i in IMPLS]
            cells = ["-" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))
                     for v in vals]  # fmt: skip
            ours, js = vals[0], vals[1]
            rel = f"{ours / js:.2f}x" if ours is not None and js else "-"
            lines.append(f"| {n} | {label} ({unit}) | {' | '.join(cells)} | {rel} |")
    return "\n".join(lines)


def targets(many: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets at the largest N of the run (10,000 in a full run)."""
    runs = many.get("runs", {})
    if not runs:
        return []
    top = max(runs, key=int)
    at = runs[top]
    ours, js, pysio = (at.get(i, {}) for i in IMPLS)
    out: list[dict[str, Any]] = []

    def add(name: str, value: Any, goal: str, ok: bool) -> None:
        out.append({"target": f"many sessions N={top}: {name}", "value": value, "goal": goal,
                    "pass": bool(ok)})  # fmt: skip

    def rel(key: str) -> float | None:
        a, b = ours.get(key), js.get(key)
        return a / b if a is not None and b else None

    threads = ours.get("threads")
    add("threads at steady state", threads, "<= 16", threads is not None and threads <= 16)
    per_n = sorted({r.get("ours", {}).get("threads") for r in runs.values()} - {None})
    add("threads the same for every N", per_n, "one value", len(per_n) == 1)
    for key, goal in (("rss_mb", 1.2), ("connect_s", 1.5), ("broadcast_s", 2.0)):
        r = rel(key)
        add(f"{key} vs socket.io-client", r, f"<= {goal}x", r is not None and r <= goal)
    for key, _, _ in FIGURES:
        a, b = ours.get(key), pysio.get(key)
        better = (a >= b) if key == "connected_after_hold" else (a < b if a is not None else False)
        add(f"{key} better than AsyncClient", [a, b], "better", a is not None and b is not None
            and better)  # fmt: skip
    alive = ours.get("connected_after_hold")
    add("all connected after the hold", alive, f"== {top}", alive == int(top))
    return out


def plot(path: str, many: dict[str, Any], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = many.get("runs", {})
    ns = sorted(runs, key=int)
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    colors = {"ours": "#1f77b4", "js": "#2ca02c", "pysio_async": "#ff7f0e"}
    for ax, (key, label, unit) in zip(axes, FIGURES[:4], strict=True):
        for impl in IMPLS:
            xs = [int(n) for n in ns if runs[n].get(impl, {}).get(key) is not None]
            ys = [runs[str(x)][impl][key] for x in xs]
            ax.plot(xs, ys, marker="o", label=impl, color=colors[impl])
        ax.set_title(f"{label} ({unit}, lower is better)", fontsize=9)
        ax.set_xlabel("sessions in one process", fontsize=8)
        ax.tick_params(labelsize=8)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
