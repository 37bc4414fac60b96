"""One measurement of one SDK, run inside that SDK's virtualenv (standard library only).

``<env>/bin/python bench/child.py WORKLOAD MODE --endpoint URL [options]`` loads
``bench/workloads/WORKLOAD.py`` by path (so nothing in ``bench/`` can shadow an SDK's own
modules), runs MODE and prints one line ``RESULT {json}``. It leaves with ``os._exit`` once the
result is printed, so no SDK's exit-time flush runs past the deadline it was given.

Modes:
- ``overhead``: warm up, then ``--repeat`` x (``--runs`` agent runs, then a flush); application-
  thread CPU (``time.thread_time``), loop wall time and flush time per repeat.
- ``burst``: one run exported (exporters loaded), then ``--spans`` spans as fast as possible,
  then one flush bounded by ``--deadline``; peak RSS.
- ``memory``: stall the sink, queue ``--spans`` spans, RSS before and after; then release the
  sink and flush (bounded by ``--deadline``).
- ``scaling``: application-thread CPU per span for runs of ``--sizes`` spans, and for agent runs
  from ``--threads`` threads at once.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import resource
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# Nothing in bench/ may shadow a module an SDK imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
SPANS_PER_RUN = 4
QUESTION = "what is the weather?"


def load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"bench_workload_{name}", HERE / "workloads" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rss_bytes() -> int:
    """Current resident set size (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def bounded(fn: Any, timeout: float) -> tuple[bool, float, Any]:
    """Call ``fn(timeout)`` in a daemon thread; ``(finished, seconds, result or error)``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn(timeout)
        except BaseException as exc:
            box["result"] = f"error: {type(exc).__name__}: {exc}"

    t0 = time.perf_counter()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive(), time.perf_counter() - t0, box.get("result")


def set_sink_delay(endpoint: str, seconds: float) -> None:
    request = urllib.request.Request(f"{endpoint}/__bench__/delay", data=str(seconds).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def sdk_stats(workload: dict[str, Any]) -> dict[str, Any]:
    stats = workload.get("stats")
    if stats is None:
        return {}
    try:
        return {k: v for k, v in stats().items() if isinstance(v, (int, float, str, type(None)))}
    except Exception as exc:
        return {"error": repr(exc)}


def run_agents(agent: Any, runs: int) -> None:
    for _ in range(runs):
        agent(QUESTION)


def mode_overhead(workload: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    agent, flush = workload["agent"], workload["flush"]
    run_agents(agent, args.warmup)
    bounded(flush, args.deadline)
    repeats = []
    for _ in range(args.repeat):
        c0, w0, p0 = time.thread_time(), time.perf_counter(), time.process_time()
        run_agents(agent, args.runs)
        cpu, wall = time.thread_time() - c0, time.perf_counter() - w0
        finished, flush_s, _ = bounded(flush, args.deadline)
        process = time.process_time() - p0
        repeats.append({"cpu": cpu, "wall": wall, "flush": flush_s, "flushed": finished, "process": process})
    spans = SPANS_PER_RUN * args.runs

    def per_span(key: str) -> float:
        return min(r[key] for r in repeats) / spans * 1e6

    return {
        "cpu_us": per_span("cpu"),
        "wall_us": per_span("wall"),
        "total_us": min(r["wall"] + r["flush"] for r in repeats) / spans * 1e6,
        "process_us": per_span("process"),
        "cpu_us_median": statistics.median(r["cpu"] for r in repeats) / spans * 1e6,
        "flush_s_max": max(r["flush"] for r in repeats),
        "all_flushed": all(r["flushed"] for r in repeats),
        "expected": SPANS_PER_RUN * (args.warmup + args.runs * args.repeat),
        "sdk_stats": sdk_stats(workload),
    }


def mode_burst(workload: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    agent, flush = workload["agent"], workload["flush"]
    runs = args.spans // SPANS_PER_RUN
    # One run exported first, so every SDK's exporter is loaded (an SDK that imports its HTTP stack
    # on the first export would otherwise count those modules as burst memory).
    run_agents(agent, 1)
    bounded(flush, args.deadline)
    base_rss = rss_bytes()
    w0 = time.perf_counter()
    run_agents(agent, runs)
    produce_s = time.perf_counter() - w0
    finished, flush_s, result = bounded(flush, args.deadline)
    return {
        "expected": runs * SPANS_PER_RUN,
        "warmup_spans": SPANS_PER_RUN,
        "produce_s": produce_s,
        "flush_s": flush_s,
        "flush_finished": finished,
        "flush_result": repr(result),
        "base_rss": base_rss,
        "peak_rss": peak_rss_bytes(),
        "sdk_stats": sdk_stats(workload),
    }


def mode_memory(workload: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    agent, flush = workload["agent"], workload["flush"]
    run_agents(agent, args.warmup)
    bounded(flush, args.deadline)
    set_sink_delay(args.endpoint, args.stall)
    gc.collect()
    before = rss_bytes()
    run_agents(agent, args.spans // SPANS_PER_RUN)
    gc.collect()
    after = rss_bytes()
    set_sink_delay(args.endpoint, 0)
    finished, _, _ = bounded(flush, args.deadline)
    return {
        "rss_before": before,
        "rss_after": after,
        "delta_bytes": after - before,
        "queued": args.spans,
        "warmup_spans": SPANS_PER_RUN * args.warmup,
        "flush_finished": finished,
        "sdk_stats": sdk_stats(workload),
    }


def mode_scaling(workload: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    wide, agent, flush = workload["wide"], workload["agent"], workload["flush"]
    wide(10)
    run_agents(agent, 100)
    bounded(flush, args.deadline)
    sizes = {}
    for size in args.sizes:
        runs = max(1, args.total // size)
        best = None
        best_process = None
        for _ in range(args.repeat):
            c0, p0 = time.thread_time(), time.process_time()
            for _ in range(runs):
                wide(size)
            cpu = time.thread_time() - c0
            best = cpu if best is None else min(best, cpu)
            bounded(flush, args.deadline)
            process = time.process_time() - p0  # the export thread's work too, up to the flush
            best_process = process if best_process is None else min(best_process, process)
        sizes[str(size)] = {
            "spans": runs * size,
            "cpu_us": best / (runs * size) * 1e6,
            "process_us": best_process / (runs * size) * 1e6,
        }
    threads = {}
    for count in args.threads:
        runs_each = max(1, args.total // SPANS_PER_RUN // count)
        best: dict[str, float] | None = None
        for _ in range(args.repeat):
            cpu = [0.0] * count
            barrier = threading.Barrier(count + 1)

            def work(
                index: int, cpu: list[float] = cpu, barrier: threading.Barrier = barrier, n: int = runs_each
            ) -> None:
                barrier.wait()
                c0 = time.thread_time()
                run_agents(agent, n)
                cpu[index] = time.thread_time() - c0

            workers = [threading.Thread(target=work, args=(i,)) for i in range(count)]
            for worker in workers:
                worker.start()
            barrier.wait()
            w0, p0 = time.perf_counter(), time.process_time()
            for worker in workers:
                worker.join()
            wall = time.perf_counter() - w0
            bounded(flush, args.deadline)
            process = time.process_time() - p0
            spans = runs_each * count * SPANS_PER_RUN
            sample = {
                "spans": spans,
                "cpu_us": sum(cpu) / spans * 1e6,
                "wall_us": wall / spans * 1e6,
                "process_us": process / spans * 1e6,
            }
            if best is None or sample["process_us"] < best["process_us"]:
                best = sample
        threads[str(count)] = best
    return {"sizes": sizes, "threads": threads}


MODES = {"overhead": mode_overhead, "burst": mode_burst, "memory": mode_memory, "scaling": mode_scaling}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload")
    parser.add_argument("mode", choices=list(MODES))
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--deadline", type=float, default=60.0)
    parser.add_argument("--stall", type=float, default=60.0)
    parser.add_argument("--total", type=int, default=20_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10_000])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()
    workload = load(args.workload).setup(args.endpoint)
    result = MODES[args.mode](workload, args)
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
