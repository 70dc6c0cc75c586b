"""Run every benchmark on the same servers, print the table and the targets, save JSON and a plot.

    python -m benchmarks.run [--smoke] [--only client|gateway|many|devices]

One Node socket.io 4.8 server (``tests/servers/node/server.js``, maxHttpBufferSize 5e6 for the
1 MiB binary echoes) and one private mosquitto (``set_tcp_nodelay true``, ``max_queued_messages 0``
so a slow consumer is measured instead of dropped) serve every measurement. Each measurement runs
in its own subprocess (``benchmarks.client_bench`` / ``benchmarks.gateway_bench``), so RSS and
thread counts are clean and the clients do not disturb each other.

Results: ``benchmarks/results/<timestamp>.json``, ``latest.json`` and ``latest.png`` (a smoke run
writes under ``benchmarks/results/smoke/`` instead, which git ignores).
Exit code: 1 if a measurement failed (an error), or -- full mode only -- a target was missed;
``--smoke`` (tiny N, a few seconds per metric) only checks that everything runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from typing import Any

from benchmarks import many_run
from benchmarks.common import (
    RESULTS,
    BenchError,
    add_tests_to_path,
    median,
    percentile,
    run_measurement,
)

PY = sys.executable

# metric -> (n, reps, warmup) for full and smoke runs
CLIENT_PLAN: dict[str, dict[str, tuple[int, int, int]]] = {
    "full": {
        "emits": (50_000, 2, 5_000),
        "acks": (3_000, 3, 300),
        "recv": (30_000, 2, 2_000),
        "binary_ws": (20, 2, 2),
        "binary_polling": (10, 2, 1),
        "polling_emits": (30_000, 2, 2_000),
        "connect": (20, 1, 3),
    },
    "smoke": {
        "emits": (500, 1, 50),
        "acks": (100, 1, 10),
        "recv": (500, 1, 50),
        "binary_ws": (2, 1, 0),
        "binary_polling": (1, 1, 0),
        "polling_emits": (500, 1, 50),
        "connect": (3, 1, 0),
    },
}
CLIENT_IMPLS = {
    "emits": ("ours", "pysio", "raw"),
    "acks": ("ours", "pysio", "raw"),
    "recv": ("ours", "pysio", "raw"),
    "binary_ws": ("ours", "pysio", "raw"),
    "binary_polling": ("ours", "pysio"),
    "polling_emits": ("ours", "pysio"),
    "connect": ("ours", "pysio", "raw"),
}
CLIENT_LABELS = {
    "emits": "emits (websocket)",
    "acks": "sequential acks",
    "recv": "received events (flood)",
    "binary_ws": "1 MiB binary echo, websocket",
    "binary_polling": "1 MiB binary echo, polling",
    "polling_emits": "emits (polling only)",
    "connect": "connect time (websocket)",
}

# metric -> (n, reps, warmup)  (req: n is a cap, with --max-seconds)
GATEWAY_PLAN: dict[str, dict[str, tuple[int, int, int]]] = {
    "full": {"m2s": (20_000, 1, 1_000), "req": (3_000, 1, 200), "s2m": (15_000, 1, 1_000)},
    "smoke": {"m2s": (300, 1, 20), "req": (50, 1, 5), "s2m": (300, 1, 20)},
}
GATEWAY_IMPLS = ("ours", "bridge")

LOWER_IS_BETTER = {"ms", "MB", "threads"}

# every (metric, impl) runs this many times, impls interleaved (ABC ABC ABC), so drift and
# noise from other load on the machine hit every implementation alike; runs are pooled
ROUNDS = {"full": 3, "smoke": 1}


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the rounds of one (metric, impl): median over every timed run, maxima of RSS/threads,
    req latencies pooled for p50/p99."""
    out = dict(results[-1])
    out["rounds"] = len(results)
    if "runs" in out:
        out["runs"] = [r for res in results for r in res["runs"]]
        out["value"] = median(out["runs"])
    if "latencies_ms" in out:
        lat = [x for res in results for x in res["latencies_ms"]]
        out["p50_ms"] = out["value"] = percentile(lat, 50)
        out["p99_ms"] = percentile(lat, 99)
        out["mean_ms"] = sum(lat) / len(lat)
        out["count"] = len(lat)
        out["rate"] = len(lat) / sum(res["total_s"] for res in results)
        out["rounds_p50_ms"] = [res["p50_ms"] for res in results]
        out["rounds_p99_ms"] = [res["p99_ms"] for res in results]
        del out["latencies_ms"]
    for key in ("rss_mb", "threads", "rss_idle_mb", "rss_load_mb"):
        vals = [res[key] for res in results if res.get(key) is not None]
        if vals:
            out[key] = max(vals)
    for key in ("threads_idle", "threads_load"):
        if key in out:
            out[key] = sorted({t for res in results for t in res.get(key) or []})
    out["wall_s"] = round(sum(res.get("wall_s", 0) for res in results), 2)
    return out


# ------------------------------------------------------------------------------------------
# running
# ------------------------------------------------------------------------------------------


def pooled_measurement(
    what: str,
    impl: str,
    cmd: list[str],
    rounds: dict[str, list[dict[str, Any]]],
    errors: list[str],
    *,
    timeout: float,
    sample: bool = True,
) -> dict[str, Any] | None:
    """Run one round of ``what`` (e.g. "client emits") for ``impl`` and pool it with its earlier
    rounds. A failed round is printed, added to ``errors`` and gives None: the others go on."""
    try:
        res = run_measurement(cmd, timeout=timeout, sample=sample)
    except BenchError as exc:
        errors.append(f"{what} {impl}: {exc}")
        print(f"  ERROR {what} {impl}:\n{exc}", file=sys.stderr)
        return None
    rounds.setdefault(impl, []).append(res)
    return merge(rounds[impl])


def run_client(url: str, mode: str, errors: list[str]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for metric, (n, reps, warmup) in CLIENT_PLAN[mode].items():
        results[metric] = {}
        rounds: dict[str, list[dict[str, Any]]] = {}
        for impl in [i for _ in range(ROUNDS[mode]) for i in CLIENT_IMPLS[metric]]:
            cmd = [
                PY, "-m", "benchmarks.client_bench", "--impl", impl, "--metric", metric,
                "--url", url, "--n", str(n), "--reps", str(reps), "--warmup", str(warmup),
            ]  # fmt: skip
            res = pooled_measurement(f"client {metric}", impl, cmd, rounds, errors, timeout=180)
            if res is None:
                continue
            results[metric][impl] = res
            print(
                f"  client {metric:15s} {impl:6s} {fmt(res['value'])} {res['unit']}"
                f"  (runs {', '.join(fmt(r) for r in res['runs'][:5])};"
                f" rss {res.get('rss_mb')} MB, threads {res.get('threads')}, {res['wall_s']} s)",
                flush=True,
            )
    return results


def run_gateway(url: str, mqtt_port: int, mode: str, errors: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for metric, (n, reps, warmup) in GATEWAY_PLAN[mode].items():
        results[metric] = {}
        impls: tuple[str, ...] = GATEWAY_IMPLS + (("direct",) if metric == "s2m" else ())
        rounds: dict[str, list[dict[str, Any]]] = {}
        for impl in [i for _ in range(ROUNDS[mode]) for i in impls]:
            cmd = [
                PY, "-m", "benchmarks.gateway_bench", "--impl", impl, "--metric", metric,
                "--url", url, "--mqtt-port", str(mqtt_port), "--n", str(n),
                "--reps", str(reps), "--warmup", str(warmup),
                "--max-seconds", "3" if mode == "full" else "1",
            ]  # fmt: skip
            res = pooled_measurement(
                f"gateway {metric}", impl, cmd, rounds, errors, timeout=300, sample=False
            )
            if res is None:
                continue
            results[metric][impl] = res
            extra = ""
            if metric == "req":
                extra = f" p99 {fmt(res['p99_ms'])} ms, {fmt(res['rate'])} req/s,"
            print(
                f"  gateway {metric:4s} {impl:6s} {fmt(res['value'])} {res['unit']},{extra}"
                f" rss idle {res.get('rss_idle_mb')} / load {res.get('rss_load_mb')} MB,"
                f" threads idle {res.get('threads_idle')} / load {res.get('threads_load')}"
                f" ({res['wall_s']} s)",
                flush=True,
            )
    return results


# ------------------------------------------------------------------------------------------
# table, targets
# ------------------------------------------------------------------------------------------


def fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, list):
        return f"{min(x)}" if len(set(x)) == 1 else f"{min(x)}-{max(x)}"
    if isinstance(x, str):
        return x
    if isinstance(x, int):
        return f"{x:,}"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def ratio(a: Any, b: Any) -> float | None:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return None
    return a / b


def fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def client_rows(client: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for metric, label in CLIENT_LABELS.items():
        by = client.get(metric, {})
        if not by:
            continue
        unit = next(iter(by.values()))["unit"]
        rows.append({"label": label, "unit": unit, **{i: r["value"] for i, r in by.items()}})
    flood = client.get("recv", {})
    if flood:
        rows.append(
            {"label": "RSS under load (flood)", "unit": "MB"}
            | {i: r.get("rss_mb") for i, r in flood.items()}
        )
        rows.append(
            {"label": "threads under load (flood)", "unit": "threads"}
            | {i: r.get("threads") for i, r in flood.items()}
        )
    return rows


def gateway_rows(gw: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if not gw:
        return rows

    def get(metric: str, impl: str, key: str) -> Any:
        return gw.get(metric, {}).get(impl, {}).get(key)

    def row(label: str, unit: str, metric: str, key: str) -> None:
        vals = {i: get(metric, i, key) for i in GATEWAY_IMPLS}
        if any(v is not None for v in vals.values()):
            rows.append({"label": label, "unit": unit, **vals})

    row("MQTT -> Socket.IO", "msgs/s", "m2s", "value")
    row("request -> ack -> reply p50", "ms", "req", "p50_ms")
    row("request -> ack -> reply p99", "ms", "req", "p99_ms")
    row("request round trips", "req/s", "req", "rate")
    row("Socket.IO -> MQTT", "msgs/s", "s2m", "value")
    for impl_key, label, unit, agg in (
        ("rss_idle_mb", "RSS idle", "MB", min),
        ("rss_load_mb", "RSS under load (max)", "MB", max),
    ):
        vals: dict[str, Any] = {}
        for impl in GATEWAY_IMPLS:
            xs = [get(m, impl, impl_key) for m in ("m2s", "req", "s2m")]
            xs = [x for x in xs if x is not None]
            vals[impl] = agg(xs) if xs else None
        rows.append({"label": label, "unit": unit, **vals})
    threads: dict[str, Any] = {}
    for impl in GATEWAY_IMPLS:
        seen: set[int] = set()
        for m in ("m2s", "req", "s2m"):
            for key in ("threads_idle", "threads_load"):
                seen.update(get(m, impl, key) or [])
        threads[impl] = sorted(seen) or None
    rows.append({"label": "threads (idle .. any load)", "unit": "threads", **threads})
    return rows


def print_table(title: str, rows: list[dict[str, Any]], peers: list[str], ours: str = "ours"):
    head = ["metric", "unit", ours]
    for p in peers:
        head += [p, f"{ours}/{p}"]
    lines = [head]
    for r in rows:
        line = [r["label"], r["unit"], fmt(r.get(ours))]
        for p in peers:
            a, b = r.get(ours), r.get(p)
            line += [fmt(b), fmt_ratio(ratio(a, b))]
        lines.append(line)
    widths = [max(len(str(ln[i])) for ln in lines) for i in range(len(head))]
    print(f"\n{title}")
    for k, ln in enumerate(lines):
        print(
            "  "
            + "  ".join(
                str(c).rjust(w) if i else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(ln, widths, strict=True))
            )
        )
        if k == 0:
            print("  " + "  ".join("-" * w for w in widths))
    return lines


def markdown_table(rows: list[dict[str, Any]], peers: list[str], ours: str = "ours") -> str:
    head = ["metric", "unit", ours]
    for p in peers:
        head += [p, f"{ours}/{p}"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        line = [r["label"], r["unit"], fmt(r.get(ours))]
        for p in peers:
            line += [fmt(r.get(p)), fmt_ratio(ratio(r.get(ours), r.get(p)))]
        out.append("| " + " | ".join(line) + " |")
    return "\n".join(out)


# speed targets: (target, metric, peer, goal): ours must reach ``goal`` x the peer's value
CLIENT_RATIO_TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("client emits vs python-socketio", "emits", "pysio", 2.0),
    ("client emits vs raw websocket-client", "emits", "raw", 0.85),
    ("client sequential acks vs python-socketio", "acks", "pysio", 2.5),
    ("client received events vs python-socketio", "recv", "pysio", 7.0),
    ("client received events vs raw websocket-client", "recv", "raw", 0.7),
)
GATEWAY_RATIO_TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("gateway MQTT->Socket.IO vs bridge", "m2s", "bridge", 1.2),
    ("gateway Socket.IO->MQTT vs bridge", "s2m", "bridge", 4.0),
)


def evaluate_targets(client: dict[str, Any], gw: dict[str, Any]) -> list[dict[str, Any]]:
    def gval(metric: str, impl: str, key: str = "value") -> Any:
        return gw.get(metric, {}).get(impl, {}).get(key)

    targets: list[dict[str, Any]] = []

    def ratios(results: dict[str, Any], specs: tuple[tuple[str, str, str, float], ...]) -> None:
        """One ``>= goal x`` target per spec, from the ours/peer ratio of the metric's values."""
        for name, metric, peer, goal in specs:
            by_impl = results.get(metric, {})
            value = ratio(by_impl.get("ours", {}).get("value"), by_impl.get(peer, {}).get("value"))
            ok = value is not None and value >= goal
            targets.append({"target": name, "value": value, "goal": f">= {goal}x", "pass": ok})

    def below(name: str, value: float | None, goal: float, unit: str) -> None:
        ok = value is not None and value < goal
        targets.append({"target": name, "value": value, "goal": f"< {goal} {unit}", "pass": ok})

    if client:
        ratios(client, CLIENT_RATIO_TARGETS)
    if gw:
        ratios(gw, GATEWAY_RATIO_TARGETS)
        below("gateway request p50", gval("req", "ours", "p50_ms"), 1.0, "ms")
        below("gateway request p99", gval("req", "ours", "p99_ms"), 3.0, "ms")
        idle = [gval(m, "ours", "rss_idle_mb") for m in ("m2s", "req", "s2m")]
        idle = [x for x in idle if x is not None]
        # idle = connected, warmed up, nothing flowing; the cleanest of the three starts (a
        # flood warm-up leaves allocator high-water marks behind that are not idle footprint)
        below("gateway RSS idle", min(idle) if idle else None, 60.0, "MB")
        seen: set[int] = set()
        for m in ("m2s", "req", "s2m"):
            for key in ("threads_idle", "threads_load"):
                seen.update(gval(m, "ours", key) or [])
        targets.append(
            {
                "target": "gateway thread count independent of message rate",
                "value": sorted(seen),
                "goal": "one value from idle to full load",
                "pass": len(seen) == 1,
            }
        )
    return targets  # fmt: skip


# ------------------------------------------------------------------------------------------
# machine notes, plot
# ------------------------------------------------------------------------------------------


def _cmd_version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else None


def machine_notes() -> dict[str, Any]:
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None
            )
    except OSError:
        pass
    add_tests_to_path()
    from servers.procs import MOSQUITTO_BIN

    def ver(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "node": _cmd_version([shutil.which("node") or "node", "--version"]),
        "mosquitto": _cmd_version([MOSQUITTO_BIN, "-h"]),
        "python-socketio": ver("python-socketio"),
        "python-engineio": ver("python-engineio"),
        "websocket-client": ver("websocket-client"),
        "paho-mqtt": ver("paho-mqtt"),
        "sio-mqtt": ver("sio-mqtt"),
    }


COLORS = {"ours": "#2b8a3e", "pysio": "#868e96", "raw": "#1c7ed6", "bridge": "#e8590c"}


def plot(path: str, client_r: list[dict[str, Any]], gw_r: list[dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(r, ("ours", "pysio", "raw"), "client") for r in client_r]
    panels += [(r, ("ours", "bridge"), "gateway") for r in gw_r if r["unit"] != "threads"]
    cols = 4
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.9 * rows))
    for ax, (r, impls, group) in zip(axes.flat, panels, strict=False):
        names = [i for i in impls if isinstance(r.get(i), int | float)]
        vals = [float(r[i]) for i in names]
        bars = ax.bar(names, vals, color=[COLORS[i] for i in names])
        for b, v, raw in zip(bars, vals, [r[i] for i in names], strict=True):
            ax.annotate(fmt(raw), (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                        fontsize=8)  # fmt: skip
        better = "lower is better" if r["unit"] in LOWER_IS_BETTER else "higher is better"
        ax.set_title(f"{group}: {r['label']}\n{r['unit']} ({better})", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.margins(y=0.2)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------------------------------


DEVICES_PLAN = {"full": (10_000, 1000), "smoke": (20, 20)}  # (devices, requests)


def run_devices(mode: str, errors: list[str]) -> dict[str, Any]:
    """Device sessions (``benchmarks.devices_bench``): N devices through one gateway."""
    from benchmarks.many_sessions import raise_nofile

    raise_nofile()
    n, requests = DEVICES_PLAN[mode]
    cmd = [sys.executable, "-m", "benchmarks.devices_bench", "--n", str(n),
           "--requests", str(requests)]  # fmt: skip
    try:
        res = run_measurement(cmd, timeout=1800, sample=False)
    except BenchError as exc:
        errors.append(f"device sessions {n}: {exc}")
        print(f"  ERROR device sessions {n}:\n{exc}", file=sys.stderr)
        return {}
    print(
        f"  devices {n}: {res['connect_s']:.2f} s to {n} device sockets (socket.io-client"
        f" {res['js_connect_s']} s for {n} sessions), broadcast -> {n} MQTT messages"
        f" {res['broadcast_s']} s, gateway RSS {res['rss_mb']:.0f} MB, threads"
        f" {res['threads_10']} (10 devices) -> {res['threads']}, request->ack->reply p50"
        f" {res['req_p50_ms']} ms",
        flush=True,
    )
    return res


def devices_targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    if not res:
        return []
    n = res["n"]
    out: list[dict[str, Any]] = []

    def add(name: str, value: Any, goal: str, ok: bool) -> None:
        out.append({"target": f"device sessions N={n}: {name}", "value": value, "goal": goal,
                    "pass": bool(ok)})  # fmt: skip

    js = res.get("js_connect_s")
    rel = res["connect_s"] / js if js else None
    add("connect vs socket.io-client", rel, "<= 2.0x", rel is not None and rel <= 2.0)
    add("gateway RSS (MB)", res["rss_mb"], "<= 400", res["rss_mb"] <= 400)
    add("threads 10 -> N", [res["threads_10"], res["threads"]], "not more",
        res["threads"] <= res["threads_10"])  # fmt: skip
    p50 = res.get("req_p50_ms")
    add("request->ack->reply p50 (ms)", p50, "< 2", p50 is not None and p50 < 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny N: check that everything runs")
    ap.add_argument("--only", choices=("client", "gateway", "many", "devices"))
    args = ap.parse_args()
    mode = "smoke" if args.smoke else "full"
    add_tests_to_path()
    from servers.procs import Mosquitto, NodeServer

    started = time.monotonic()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    errors: list[str] = []
    client: dict[str, Any] = {}
    gw: dict[str, Any] = {}
    node = NodeServer(max_http_buffer_size=5_000_000)
    broker = Mosquitto(config_extra="max_queued_messages 0")
    with node, broker:
        print(f"node socket.io server {node.url}, mosquitto {broker.url} ({mode} run)", flush=True)
        if args.only in (None, "client"):
            client = run_client(node.url, mode, errors)
        if args.only in (None, "gateway"):
            gw = run_gateway(node.url, broker.port, mode, errors)
    many: dict[str, Any] = {}
    if args.only in (None, "many"):  # after the others: its own servers, the most descriptors
        many = many_run.run_many(mode, errors)
    devices: dict[str, Any] = {}
    if args.only in (None, "devices"):
        devices = run_devices(mode, errors)
    elapsed = time.monotonic() - started

    crows, grows = client_rows(client), gateway_rows(gw)
    if crows:
        print_table("Client (ours = sio_mqtt.Client)", crows, ["pysio", "raw"])
    if grows:
        print_table("Gateway (ours = sio-mqtt run)", grows, ["bridge"])
    direct = gw.get("s2m", {}).get("direct")
    if direct:
        print(f"  load-generator ceiling (paho publisher -> lean subscriber, no gateway):"
              f" {fmt(direct['value'])} msgs/s")  # fmt: skip
    if many.get("runs"):
        print("\nMany sessions in one process (websocket)\n" + many_run.markdown(many))
    targets = evaluate_targets(client, gw) + many_run.targets(many) + devices_targets(devices)
    if targets:
        print("\nTargets" + (" (smoke run: informational only)" if args.smoke else ""))
        for t in targets:
            v = t["value"]
            shown = fmt_ratio(v) if str(t["goal"]).endswith("x") and v is not None else fmt(v)
            print(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {shown} ({t['goal']})")
    print(f"\ntotal {elapsed:.0f} s; errors: {len(errors)}")

    # a smoke run never replaces the real results (BENCHMARKS.md embeds latest.png)
    out_dir = RESULTS / "smoke" if args.smoke else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.run" + (" --smoke" if args.smoke else "")
    command += f" --only {args.only}" if args.only else ""
    doc = {
        "timestamp": stamp,
        "command": command,
        "mode": mode,
        "duration_s": round(elapsed, 1),
        "machine": machine_notes(),
        "servers": {
            "node": "tests/servers/node/server.js, maxHttpBufferSize 5e6",
            "mosquitto": "set_tcp_nodelay true, max_queued_messages 0",
        },
        "plan": {"client": CLIENT_PLAN[mode], "gateway": GATEWAY_PLAN[mode]},
        "client": client,
        "gateway": gw,
        "many_sessions": many,
        "device_sessions": devices,
        "many_sessions_markdown": many_run.markdown(many) if many.get("runs") else "",
        "client_table": crows,
        "gateway_table": grows,
        "client_markdown": markdown_table(crows, ["pysio", "raw"]) if crows else "",
        "gateway_markdown": markdown_table(grows, ["bridge"]) if grows else "",
        "targets": targets,
        "errors": errors,
    }
    text = json.dumps(doc, indent=2, default=str)
    (out_dir / f"{stamp}.json").write_text(text)
    # a many-sessions- or devices-only run keeps the full run's latest.json (BENCHMARKS.md
    # cites them all)
    latest = {"many": "many_latest.json", "devices": "devices_latest.json"}.get(
        args.only or "", "latest.json"
    )
    (out_dir / latest).write_text(text)
    try:
        if crows or grows:
            plot(str(out_dir / "latest.png"), crows, grows,
                 f"sio_mqtt vs peers ({mode} run {stamp}, {os.cpu_count()} CPUs)")  # fmt: skip
        if many.get("runs"):
            many_run.plot(str(out_dir / "many_sessions.png"), many,
                          f"many sessions in one process ({mode} run {stamp})")  # fmt: skip
    except Exception as exc:  # a plot failure is an error, but keep the JSON
        errors.append(f"plot: {exc}")
        print(f"ERROR plot: {exc}", file=sys.stderr)
    print(f"wrote {out_dir / (stamp + '.json')}, latest.json, latest.png")
    if errors:
        return 1
    if not args.smoke and not all(t["pass"] for t in targets):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
