"""Summarise py-spy collapsed stacks (``--format raw``): share of samples per thread entry point,
per function inclusive, and per function self (leaf).

    python -m benchmarks.profile_summary profile.txt [--top 25] [--filter sio_mqtt]
"""

from __future__ import annotations

import argparse
import collections
import re

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*):\d+\)$")


def frame_name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m.group('func')} ({path})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--filter", default="", help="only functions whose name contains this")
    args = ap.parse_args()
    total = 0
    threads: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    with open(args.file) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            frames = [frame_name(x) for x in stack.split(";")]
            total += n
            entry = next((x for x in frames[3:5] if "threading" not in x), frames[-1])
            threads[entry] += n
            for name in set(frames):
                inclusive[name] += n
            leaf[frames[-1]] += n
    print(f"{total} samples")
    for title, counter in (("thread", threads), ("inclusive", inclusive), ("self", leaf)):
        print(f"\n-- by {title} --")
        shown = 0
        for name, n in counter.most_common():
            if args.filter and args.filter not in name:
                continue
            print(f"{100.0 * n / total:6.1f}%  {name}")
            shown += 1
            if shown >= args.top:
                break


if __name__ == "__main__":
    main()
