"""Scaling: trodo_trace's cost per span as a run grows, and across threads.

- **Run size**: one run of N spans (an agent calling N - 1 tools) for N = 10 ... 10,000, repeated
  until about ``--total`` spans; application-thread CPU per span and process CPU per span (every
  thread, export included, up to the flush that follows), best of ``--repeat``. Both must stay
  flat: no per-run structure may grow with the run.
- **Threads**: 1, 2, 4, 8 and 16 threads each running 4-span agent runs at once (``--total`` spans
  in all); application-thread CPU per span summed over the threads, process CPU per span (export
  and flush included) and wall time per span.

Raw OpenTelemetry is measured the same way beside it, for reference. Both export to the loopback
sink. Run: ``.venv/bin/python bench/scaling.py [--total 20000]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ChildError, log, num, ratio, run_child, table
from setup_envs import SDKS
from sink import OTLPSink

CONTENDERS = ("trodo_trace", "opentelemetry")
SIZES = (10, 100, 1000, 10_000)
THREADS = (1, 2, 4, 8, 16)


def measure(total: int, repeat: int, deadline: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in CONTENDERS:
        log(f"scaling: {name}")
        with OTLPSink() as sink:
            try:
                results[name] = run_child(
                    SDKS[name],
                    "scaling",
                    sink.url,
                    "--total",
                    total,
                    "--repeat",
                    repeat,
                    "--deadline",
                    deadline,
                    "--sizes",
                    *SIZES,
                    "--threads",
                    *THREADS,
                    timeout=1200,
                )
            except ChildError as exc:
                results[name] = {"error": str(exc)}
    return results


def flatness(result: dict[str, Any], part: str = "sizes", key: str = "cpu_us") -> float | None:
    """Largest / smallest cost per span over the run sizes (or ``part="threads"``): 1.0 is flat."""
    costs = [r[key] for r in (result.get(part) or {}).values() if r and r.get(key)]
    return max(costs) / min(costs) if costs else None


def render_sizes(results: dict[str, Any]) -> str:
    ours, base = results.get("trodo_trace", {}), results.get("opentelemetry", {})
    rows = []
    for size in SIZES:
        a = ours.get("sizes", {}).get(str(size), {})
        b = base.get("sizes", {}).get(str(size), {})
        rows.append(
            [
                f"{size:,}",
                num(a.get("cpu_us")),
                num(b.get("cpu_us")),
                ratio(a.get("cpu_us"), b.get("cpu_us")),
                num(a.get("process_us")),
                num(b.get("process_us")),
                ratio(a.get("process_us"), b.get("process_us")),
                f"{a.get('spans', 0):,}",
            ]
        )
    return table(
        [
            "spans per run",
            "trodo_trace app-thread CPU µs/span",
            "raw OTel app-thread CPU µs/span",
            "trodo ÷ OTel (app thread)",
            "trodo_trace process CPU µs/span",
            "raw OTel process CPU µs/span",
            "trodo ÷ OTel (process)",
            "spans timed",
        ],
        rows,
    )


def render_threads(results: dict[str, Any]) -> str:
    ours, base = results.get("trodo_trace", {}), results.get("opentelemetry", {})
    rows = []
    for count in THREADS:
        a = ours.get("threads", {}).get(str(count)) or {}
        b = base.get("threads", {}).get(str(count)) or {}
        rows.append(
            [
                str(count),
                num(a.get("cpu_us")),
                num(a.get("process_us")),
                num(a.get("wall_us")),
                num(b.get("cpu_us")),
                num(b.get("process_us")),
                num(b.get("wall_us")),
                ratio(a.get("process_us"), b.get("process_us")),
            ]
        )
    return table(
        [
            "threads",
            "trodo_trace app-thread CPU µs/span",
            "trodo_trace process CPU µs/span",
            "trodo_trace wall µs/span",
            "raw OTel app-thread CPU µs/span",
            "raw OTel process CPU µs/span",
            "raw OTel wall µs/span",
            "trodo ÷ OTel (process CPU)",
        ],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=20_000, help="spans per configuration")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--deadline", type=float, default=60.0, help="bound on each flush, seconds")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = measure(args.total, args.repeat, args.deadline)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(render_sizes(results))
    print()
    print(render_threads(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
