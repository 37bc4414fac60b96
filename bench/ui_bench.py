"""Dashboard response times on a large store: 100,000 runs / 1,000,000 spans, generated.

The store is written straight into the local store's schema with ``executemany`` (the SDK's own
schema, created by ``LocalStore``), then ``trodo-trace ui`` is started as a subprocess and measured
over HTTP on loopback:

* start-up: from launching the command to the first runs page answered (target < 1 s after the
  Python start-up; no full scans when it starts);
* the runs list with each single filter, p50/p95 of 20 requests (target p95 <= 200 ms);
* the page of a run with 1,000 spans, p50/p95 of 20 requests (target p95 <= 300 ms).

Run: ``.venv/bin/python bench/ui_bench.py`` (part of ``make bench``); ``--runs`` / ``--spans`` for
other sizes. The generated store is kept under bench/.ui-store/ (``--dir``) between runs (same sizes: reused).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trodo_trace._internal.store.local import LocalStore  # noqa: E402

AGENTS = [f"agent-{i:02d}" for i in range(50)]
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-3-5-haiku", "mistral-small"]
BIG_RUN = "f" * 32
DAY_NS = 86_400 * 10**9


def generate(path: Path, runs: int, spans: int, seed: int = 7) -> None:
    """Write ``runs`` runs and about ``spans`` spans (one run has 1,000 of them)."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    LocalStore(path).open()
    store = LocalStore(path)
    conn = store.open()
    now = time.time_ns()
    per_run = max((spans - 1000) // max(runs - 1, 1), 1)
    run_rows, span_rows, event_rows = [], [], []
    conn.execute("PRAGMA synchronous=OFF")

    def flush() -> None:
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO runs VALUES ({', '.join('?' * 22)})", run_rows)
        conn.executemany(f"INSERT INTO spans VALUES ({', '.join('?' * 15)})", span_rows)
        conn.executemany(
            "INSERT INTO events (dedup_key, ts_ns, name, distinct_id, category, run_id, trace_id, span_id,"
            " properties) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            event_rows,
        )
        conn.execute("COMMIT")
        run_rows.clear(), span_rows.clear(), event_rows.clear()

    for index in range(runs):
        run_id = BIG_RUN if index == runs - 1 else f"{rng.getrandbits(128):032x}"
        trace_id = f"{rng.getrandbits(128):032x}"
        count = 1000 if run_id == BIG_RUN else per_run
        start = now - rng.randrange(30 * DAY_NS) if run_id != BIG_RUN else now - 10**9
        duration = rng.lognormvariate(7, 1) * 10**6
        status = "error" if rng.random() < 0.05 else "ok"
        user = f"user-{rng.randrange(5000)}"
        conversation = f"conv-{rng.randrange(20000)}"
        agent = rng.choice(AGENTS)
        tokens_in, tokens_out = rng.randrange(50, 4000), rng.randrange(10, 800)
        cost = round(tokens_in * 1.5e-7 + tokens_out * 6e-7, 10)
        root = f"{rng.getrandbits(64):016x}"
        question = (
            f"question {index} about {rng.choice(['paris', 'tokyo', 'refunds', 'invoices', 'shipping'])}"
        )
        model = rng.choice(MODELS)
        for n in range(count):
            span_id = root if n == 0 else f"{rng.getrandbits(64):016x}"
            kind = "run" if n == 0 else ("llm" if n % 3 == 1 else "tool")
            attributes = {"trodo.span.kind": kind, "trodo.run.id": run_id}
            if n == 0:
                attributes.update({"input.value": json.dumps({"question": question}), "output.value": '"ok"'})
                attributes["trodo.run.span_count"] = count
            elif kind == "llm":
                attributes.update(
                    {
                        "gen_ai.request.model": model,
                        "gen_ai.usage.input_tokens": 100,
                        "trodo.llm.cost": 0.0001,
                    }
                )
            s0 = start + n * 1000
            span_rows.append(
                (trace_id, span_id, None if n == 0 else root, run_id, agent if n == 0 else f"step-{n}", kind,
                 s0, s0 + int(duration) // (1 if n == 0 else 4), "ok", None, None, json.dumps(attributes), "[]", None, None)
            )  # fmt: skip
        run_rows.append(
            (run_id, trace_id, root, agent, "run", user, conversation, None, status,
             "ValueError: bad" if status == "error" else None, start, start + int(duration), duration / 1e6,
             tokens_in, tokens_out, cost, count, count // 3, int(status == "error"), None, "bench", None)
        )  # fmt: skip
        if index % 2 == 0:
            event_rows.append(
                (f"{rng.getrandbits(128):032x}", start + 10, "page_viewed", user, "custom", run_id, trace_id,
                 root, '{"page": 1}')
            )  # fmt: skip
        if len(span_rows) >= 50_000:
            flush()
    flush()
    conn.execute("ANALYZE")
    store.close()


def _get(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
        assert response.status == 200
    return (time.perf_counter() - started) * 1000


def _measure(url: str, repeat: int) -> tuple[float, float]:
    _get(url)  # warm-up (page cache, template compile)
    times = sorted(_get(url) for _ in range(repeat))
    p95 = times[min(len(times) - 1, max(0, round(0.95 * len(times)) - 1))]
    return statistics.median(times), p95


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--rebuild", action="store_true", help="generate the store again")
    parser.add_argument(
        "--dir", type=Path, default=REPO / "bench" / ".ui-store", help="where the store is kept"
    )
    args = parser.parse_args(argv)
    store = args.dir / f"ui-{args.runs}-{args.spans}.db"
    if args.rebuild or not store.exists():
        started = time.monotonic()
        generate(store, args.runs, args.spans)
        print(f"generated {args.runs:,} runs / ~{args.spans:,} spans in {time.monotonic() - started:.1f} s")
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "trodo_trace.cli", "ui", "--store", str(store), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    results: dict[str, tuple[float, float]] = {}
    try:
        assert process.stdout is not None
        match = re.search(r"(http://\S+?)/? ", process.stdout.readline())
        assert match, "the dashboard did not start"
        listening_ms = (time.perf_counter() - started) * 1000
        url = match.group(1)
        _get(url + "/")
        startup_ms = (time.perf_counter() - started) * 1000
        filters = {
            "no filter": "",
            "agent": "name=agent-07",
            "user": "user=user-42",
            "conversation": "conversation=conv-77",
            "status": "status=error",
            "model": "model=gpt-4o",
            "time range": "since=" + time.strftime("%Y-%m-%d", time.gmtime(time.time() - 3 * 86400)),
            "min cost": "min_cost=0.001",
            "min cost, no match": "min_cost=1",
            "min duration": "min_duration=5000",
            "text": "q=" + quote("tokyo"),
            "text, no match (reads every run)": "q=" + quote("no-such-text"),
            "model, no match (reads every span)": "model=no-such-model",
            "sort by cost": "sort=cost",
            "page 20": "page=20",
        }
        for label, query in filters.items():
            results[f"runs list, {label}"] = _measure(f"{url}/?{query}", args.repeat)
        results["run page, 1,000 spans"] = _measure(f"{url}/runs/{BIG_RUN}", args.repeat)
        results["overview (30 days, all runs)"] = _measure(f"{url}/overview", max(args.repeat // 4, 3))
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
    print(
        f"\ntrodo-trace ui on {args.runs:,} runs / {args.spans:,} spans ({store.stat().st_size / 1e6:.0f} MB)"
    )
    print(
        f"start-up: listening after {listening_ms:.0f} ms, first runs page after {startup_ms:.0f} ms"
        " (from launching the command: Python start-up and imports included)"
    )
    print(f"{'page':<36} {'p50 ms':>8} {'p95 ms':>8}  target")
    failed = []
    for label, (p50, p95) in results.items():
        target = 300 if label.startswith("run page") else (200 if label.startswith("runs list") else None)
        if "no match" in label:
            target = None  # no index can serve these: bounded by the list's time budget instead
        verdict = "" if target is None else (f"<= {target}" + (" ok" if p95 <= target else " MISSED"))
        if target is not None and p95 > target:
            failed.append(label)
        print(f"{label:<36} {p50:>8.1f} {p95:>8.1f}  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
