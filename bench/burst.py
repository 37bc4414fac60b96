"""Burst and queued memory: what each SDK does when spans come faster than the backend takes them.

- **Burst**: after one exported warm-up run (so each SDK's exporter is loaded before the start
  RSS is read), ``--spans`` spans (4-span agent runs) as fast as possible while the sink takes
  ``--delay`` seconds per request; then one flush, bounded by ``--deadline``. Reported: spans at
  the sink by then, spans not delivered (dropped or still queued at the deadline), the SDK's own
  drop count where it keeps one, production and flush time, peak RSS.
- **Memory**: the sink stalls (every request waits ``--stall`` seconds); RSS before and after
  queueing ``--queued`` spans, per 10,000 spans; then the sink is released and the SDK flushes, which
  shows whether it kept what it queued.

Run: ``.venv/bin/python bench/burst.py [--spans 100000] [--deadline 120] [--sdks ...]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ChildError, log, mib, num, run_child, selected, table
from setup_envs import SDKS
from sink import OTLPSink


def measure_burst(names: list[str] | None, spans: int, delay: float, deadline: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for sdk in selected(names):
        log(
            f"burst: {sdk.name} ({spans:,} spans, sink {delay * 1000:.0f} ms/request, {deadline:.0f} s deadline)"
        )
        with OTLPSink(delay_s=delay) as sink:
            try:
                result = run_child(
                    sdk, "burst", sink.url, "--spans", spans, "--deadline", deadline, timeout=deadline + 900
                )
            except ChildError as exc:
                results[sdk.name] = {"error": str(exc)}
                continue
            # requests already received when the child left are still counted
            delivered = sink.settle(quiet_s=0.3, timeout=2.0)
            result["delivered"] = max(0, delivered - result.get("warmup_spans", 0))
            result["sink"] = sink.stats()
        results[sdk.name] = result
    return results


def measure_memory(names: list[str] | None, queued: int, stall: float, deadline: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for sdk in selected(names):
        log(f"memory: {sdk.name} ({queued:,} spans queued behind a stalled sink)")
        with OTLPSink() as sink:
            try:
                result = run_child(
                    sdk,
                    "memory",
                    sink.url,
                    "--spans",
                    queued,
                    "--stall",
                    stall,
                    "--deadline",
                    deadline,
                    timeout=deadline * 2 + stall + 300,
                )
            except ChildError as exc:
                results[sdk.name] = {"error": str(exc)}
                continue
            delivered = sink.settle(quiet_s=0.3, timeout=2.0)
            result["kept"] = max(0, delivered - result["warmup_spans"])
        results[sdk.name] = result
    return results


def _counters(stats: dict[str, Any]) -> str:
    """The SDK's own account of the burst, where it keeps one (trodo_trace's ``stats()``)."""
    if not isinstance(stats.get("dropped"), int):
        return "none kept"
    text = f"dropped {stats['dropped']:,}"
    if isinstance(stats.get("spooled_total"), int):
        text += f", spilled to disk {stats['spooled_total']:,}"
    return text


def render_burst(results: dict[str, Any]) -> str:
    rows = []
    for name, r in results.items():
        label = SDKS[name].label
        if "error" in r:
            rows.append([label, "failed: " + r["error"].splitlines()[0][:80], *[""] * 6])
            continue
        lost = r["expected"] - min(r["delivered"], r["expected"])
        rows.append(
            [
                label,
                f"{r['delivered']:,} / {r['expected']:,}",
                f"{lost:,}" if lost else "0",
                _counters(r.get("sdk_stats", {})),
                num(r["produce_s"], 2),
                num(r["flush_s"], 2) + ("" if r["flush_finished"] else " (deadline)"),
                mib(r["peak_rss"]),
                mib(r["peak_rss"] - r["base_rss"]),
            ]
        )
    headers = [
        "SDK",
        "spans at sink",
        "not delivered",
        "SDK's own counters",
        "produce s",
        "final flush s",
        "peak RSS MiB",
        "peak RSS - start MiB",
    ]
    return table(headers, rows)


def render_memory(results: dict[str, Any]) -> str:
    rows = []
    for name, r in results.items():
        label = SDKS[name].label
        if "error" in r:
            rows.append([label, "failed: " + r["error"].splitlines()[0][:80], "", ""])
            continue
        per_10k = r["delta_bytes"] / r["queued"] * 10_000
        rows.append(
            [
                label,
                mib(per_10k),
                f"{r['kept']:,} / {r['queued']:,}",
                "yes" if r["kept"] >= r["queued"] else "**no**",
            ]
        )
    headers = ["SDK", "RSS growth per 10,000 queued spans, MiB", "delivered after release", "kept all"]
    return table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--delay", type=float, default=0.005, help="sink seconds per request in the burst")
    parser.add_argument("--deadline", type=float, default=120.0, help="bound on the final flush, seconds")
    parser.add_argument("--queued", type=int, default=10_000, help="spans queued for the memory figure")
    parser.add_argument("--stall", type=float, default=60.0, help="sink stall while queueing, seconds")
    parser.add_argument("--sdks", nargs="+", choices=list(SDKS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    burst = measure_burst(args.sdks, args.spans, args.delay, args.deadline)
    memory = measure_memory(args.sdks, args.queued, args.stall, min(args.deadline, 60.0))
    if args.json:
        print(json.dumps({"burst": burst, "memory": memory}, indent=2))
    else:
        print(render_burst(burst))
        print()
        print(render_memory(memory))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
