"""OTLP export benchmark: delivery throughput of one worker, and what the application thread pays
with the collector up, slow and down.

1. **Throughput** — N finished spans (runs of one agent and nine tools, inputs and outputs
   captured) are handed to the export pipeline at once; the time until ``flush()`` confirms the
   loopback receiver (another process) accepted all of them gives spans/second for the single
   export worker: scrub, encode (OTLP protobuf written directly), gzip, HTTP.
2. **Application-thread cost** — the same runs, timed on the application thread (CPU time of the
   thread, and wall time) while the collector is up, slow (each request answered after a delay)
   and down (connection refused: batches go to the disk spool). Best of the repeats, per span.

Each measurement runs in its own process. Targets: at least 60,000 spans/s delivered; the
application thread's cost with the collector down within 10% of collector up.

Run: ``.venv/bin/python bench/export.py [--spans 100000] [--repeat 5] [--slow-delay 0.1]``
(``make bench-export``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from otlp_receiver import free_port  # noqa: E402
from otlp_receiver_process import ReceiverProcess  # noqa: E402

SPANS_PER_RUN = 10
#: The same settings for every mode: a 2 s export deadline (so "down" reaches its steady state fast).
COST_ENV = {"OTEL_BSP_EXPORT_TIMEOUT": "2000"}


def _workload() -> Any:
    import trodo_trace as trodo

    @trodo.tool
    def lookup(item: int) -> dict[str, int]:
        return {"item": item, "stock": 3}

    @trodo.agent("bench-agent")
    def agent(question: str) -> str:
        for i in range(SPANS_PER_RUN - 1):
            lookup(i)
        return "done"

    return agent


def child_throughput(spans: int) -> dict[str, Any]:
    """Make the spans first, then time one worker exporting all of them."""
    import trodo_trace as trodo
    from trodo_trace._internal import runtime as runtime_mod

    # Count-bound only: all N spans wait in the queue for the worker. Under the default byte bound
    # (max_queue_bytes) most of them would overflow to the disk spool first, and the figure would be
    # that of the spill path (encode, write, read back, send), not of one worker delivering.
    trodo.init(max_queue_size=spans + 1, max_queue_bytes=0)
    runtime = runtime_mod.get()
    pipeline = runtime.pipeline
    held: list[Any] = []
    real_submit = pipeline.submit
    pipeline.submit = held.append  # type: ignore[method-assign]
    agent = _workload()
    for _ in range(spans // SPANS_PER_RUN):
        agent("q")
    pipeline.submit = real_submit  # type: ignore[method-assign]
    started, cpu_started = time.perf_counter(), time.process_time()
    for span in held:
        real_submit(span)
    ok = trodo.flush(600.0)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    stats = trodo.stats()
    return {"spans": len(held), "seconds": elapsed, "cpu_s": cpu, "ok": ok, "exported": stats["exported"]}


def child_cost(runs: int, repeat: int) -> dict[str, Any]:
    """Application-thread cost per span, best of ``repeat`` loops of ``runs`` runs."""
    import trodo_trace as trodo

    trodo.init()
    agent = _workload()
    for _ in range(100):
        agent("warm-up")
    # Collector down: the first batch spends the export deadline retrying, then the exporter treats
    # the collector as down and spools at once. Measure that steady state.
    trodo.flush(10.0)
    cpu, wall = [], []
    for _ in range(repeat):
        cpu_start, wall_start = time.thread_time(), time.perf_counter()
        for _ in range(runs):
            agent("q")
        cpu.append((time.thread_time() - cpu_start) / (runs * SPANS_PER_RUN))
        wall.append((time.perf_counter() - wall_start) / (runs * SPANS_PER_RUN))
    trodo.flush(1.0)
    stats = trodo.stats()
    return {
        "cpu_us": min(cpu) * 1e6,
        "wall_us": min(wall) * 1e6,
        "exported": stats["exported"],
        "spooled": stats["spooled"],
        "dropped": stats["dropped"],
    }


def _child(mode: str, endpoint: str, env: dict[str, str], argv: list[str]) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TRODO_", "OTEL_"))}
    result = subprocess.run(
        [sys.executable, __file__, "--child", mode, *argv],
        env={**clean, "TRODO_ENDPOINT": endpoint, **env},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=100_000, help="spans for the throughput run")
    parser.add_argument("--runs", type=int, default=1000, help="runs per timed loop (10 spans each)")
    parser.add_argument("--repeat", type=int, default=5, help="timed loops per mode (best is kept)")
    parser.add_argument("--slow-delay", type=float, default=0.1, help="seconds the slow collector waits")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "throughput":
        print(json.dumps(child_throughput(args.spans)))
        return
    if args.child == "cost":
        print(json.dumps(child_cost(args.runs, args.repeat)))
        return

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.2f}, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as spool, ReceiverProcess("http") as receiver:
        env = {"TRODO_SPOOL_DIR": spool, **COST_ENV}
        result = _child("throughput", receiver.url, env, ["--spans", str(args.spans)])
        rate = result["spans"] / result["seconds"]
        print(
            f"throughput: {result['spans']} spans delivered in {result['seconds']:.2f} s by one worker = "
            f"{rate:,.0f} spans/s (target >= 60,000) [flush ok={result['ok']}, exported={result['exported']}]"
        )
        cpu_us = result["cpu_s"] / result["spans"] * 1e6
        print(
            f"process CPU while exporting: {cpu_us:.1f} us/span = {1e6 / cpu_us:,.0f} spans/s per busy core"
            " (the rate one worker reaches when the receiver and other work leave it a core)"
        )
        costs = {
            "up": _child("cost", receiver.url, env, ["--runs", str(args.runs), "--repeat", str(args.repeat)])
        }
    with tempfile.TemporaryDirectory() as spool, ReceiverProcess("http") as receiver:
        receiver.set_behaviour(delay=args.slow_delay)
        env = {"TRODO_SPOOL_DIR": spool, **COST_ENV}
        costs["slow"] = _child(
            "cost", receiver.url, env, ["--runs", str(args.runs), "--repeat", str(args.repeat)]
        )
    with tempfile.TemporaryDirectory() as spool:
        env = {"TRODO_SPOOL_DIR": spool, **COST_ENV}
        down = f"http://127.0.0.1:{free_port()}"
        costs["down"] = _child("cost", down, env, ["--runs", str(args.runs), "--repeat", str(args.repeat)])

    up = costs["up"]
    print(f"application-thread cost per span (best of {args.repeat} x {args.runs * SPANS_PER_RUN} spans):")
    print(
        f"  {'collector':<10} {'cpu us':>8} {'wall us':>8} {'cpu/up':>7} {'wall/up':>8}   exported  spooled  dropped"
    )
    for mode, cost in costs.items():
        print(
            f"  {mode:<10} {cost['cpu_us']:>8.2f} {cost['wall_us']:>8.2f} {cost['cpu_us'] / up['cpu_us']:>7.3f}"
            f" {cost['wall_us'] / up['wall_us']:>8.3f}   {cost['exported']:>8} {cost['spooled']:>8} {cost['dropped']:>8}"
        )
    print("target: down within 10% of up (cpu/up and wall/up <= 1.10)")


if __name__ == "__main__":
    main()
