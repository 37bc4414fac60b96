"""Decorator overhead: application-thread cost per span of trodo_trace beside raw OpenTelemetry and the peers.

The workload is a 4-span agent run (one agent, two tools, one llm) with inputs and outputs
captured, written in each SDK's own idiom (``bench/workloads/``). Each SDK runs in its own
process and virtualenv and exports to the same loopback sink started here, so background export
work is real for every one. Reported per span:

- ``cpu``: CPU time of the application thread (``time.thread_time``), the cost the SDK adds to
  the caller itself (best of the repeats);
- ``wall``: wall time of the loop (includes waiting for the GIL while export threads work);
- ``total``: loop wall time plus the flush that follows it;
- ``delivered``: spans the sink received, of the spans produced (a tool that drops spans is
  lossy, not fast).

Run: ``.venv/bin/python bench/overhead.py [--runs 1000] [--repeat 5] [--sdks trodo_trace opentelemetry ...]``
(``make bench`` runs it as part of the whole suite).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ChildError, log, num, ratio, run_child, selected, table
from setup_envs import SDKS
from sink import OTLPSink

PEERS = ("langfuse", "langsmith", "traceloop", "phoenix", "mlflow")


def measure(names: list[str] | None, runs: int, repeat: int, warmup: int, deadline: float) -> dict[str, Any]:
    """``{sdk: result}``; a result is ``{"error": ...}`` when that SDK could not be measured."""
    results: dict[str, Any] = {}
    for sdk in selected(names):
        log(f"overhead: {sdk.name}")
        with OTLPSink() as sink:
            try:
                result = run_child(
                    sdk,
                    "overhead",
                    sink.url,
                    "--runs",
                    runs,
                    "--repeat",
                    repeat,
                    "--warmup",
                    warmup,
                    "--deadline",
                    deadline,
                    timeout=deadline * (repeat + 2) + 300,
                )
            except ChildError as exc:
                results[sdk.name] = {"error": str(exc)}
                continue
            result["delivered"] = sink.settle(quiet_s=0.5, timeout=5.0)
            result["sink"] = sink.stats()
        results[sdk.name] = result
    return results


def fastest_peer(results: dict[str, Any], key: str = "cpu_us") -> tuple[str | None, float | None]:
    """The peer (not trodo_trace, not raw OpenTelemetry) with the lowest ``key``."""
    peers = [(r[key], name) for name, r in results.items() if name in PEERS and key in r]
    if not peers:
        return None, None
    value, name = min(peers)
    return name, value


def render(results: dict[str, Any]) -> str:
    """The markdown table."""
    base = results.get("opentelemetry", {}).get("cpu_us")
    peer, peer_cpu = fastest_peer(results)
    rows = []
    for name, r in results.items():
        label = SDKS[name].label
        if "error" in r:
            rows.append([label, "failed: " + r["error"].splitlines()[0][:80], *[""] * 7])
            continue
        rows.append(
            [
                label,
                num(r["cpu_us"]),
                ratio(r["cpu_us"], base),
                ratio(r["cpu_us"], peer_cpu),
                num(r["wall_us"]),
                num(r["total_us"]),
                num(r.get("process_us")),
                f"{r['delivered']:,} / {r['expected']:,}",
                "yes" if r["delivered"] >= r["expected"] else "**no**",
            ]
        )
    headers = [
        "SDK",
        "app-thread CPU µs/span",
        "÷ raw OTel",
        f"÷ fastest peer ({SDKS[peer].label if peer else 'n/a'})",
        "wall µs/span",
        "wall incl. flush µs/span",
        "process CPU incl. flush µs/span",
        "spans at sink",
        "all delivered",
    ]
    return table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="agent runs per timed repeat (4 spans each)")
    parser.add_argument("--repeat", type=int, default=5, help="timed repeats; the best is kept")
    parser.add_argument("--warmup", type=int, default=200, help="untimed agent runs first")
    parser.add_argument("--deadline", type=float, default=60.0, help="bound on each flush, seconds")
    parser.add_argument("--sdks", nargs="+", choices=list(SDKS), help="default: all")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    args = parser.parse_args(argv)
    results = measure(args.sdks, args.runs, args.repeat, args.warmup, args.deadline)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"4-span agent run, {args.runs} runs x {args.repeat} repeats (best), loopback sink")
        print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
