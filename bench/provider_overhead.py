"""Added cost per OpenAI SDK call: trodo_trace's provider instrumentation beside no tracing, the
OpenInference OpenAI instrumentor and OpenLLMetry's (traceloop's opentelemetry-instrumentation-openai).

The workload is the real ``openai`` SDK calling ``chat.completions.create`` (a system and a user
message, ``temperature``) against ``trodo_trace.testing.FakeOpenAI`` on 127.0.0.1, started here in
this process: non-streaming, and streaming with ``stream_options.include_usage`` (the stream is read
to its end). The fake server's time is the same for every contender and cancels in the difference.
Each contender runs in its own process: trodo_trace and the untraced baseline in the project's
``.venv``, each peer in its own virtualenv under ``bench/.envs/provider-<name>`` (made by
``--setup`` with the ``openai`` version of ``.venv``). Every tracer captures message content and
exports over OTLP/HTTP with a batching processor to one loopback sink started here. Reported per call:

- ``wall``: wall time of the loop;
- ``app thread cpu``: ``time.thread_time`` of the loop, the calling thread only (the SDK's work and
  the tracer's work on that thread; a batching export thread is not in it);
- ``process cpu``: ``time.process_time`` of the loop, all threads (the export thread too);
- ``added``: the same minus the untraced baseline of the same mode, and trodo's as a ratio of each
  peer's (the target is at most 0.5 of the faster peer);
- ``spans``: spans the sink received after the final flush;
- non-streaming only, the **exact** figures: ``in-wrapper``, the calling thread's CPU inside the
  tracer's own patch minus that inside the SDK method it wraps (a timing shim sits right under the
  patch and one right over it: ``Completions.create`` for trodo_trace and OpenLLMetry,
  ``OpenAI.request`` for OpenInference), and ``export``, the process's CPU over the loop and a flush
  after it minus the calling thread's over the loop (OpenTelemetry's batching processor exports
  on the calling thread when flushed, trodo_trace's on its export thread: both are counted). Their sum, minus the untraced baseline's, is the tracer's own
  added work per call. The full-call figures above are a difference of two ~2,300 µs figures from
  different processes and move by ±300 µs between runs; the exact ones do not carry the SDK's or the
  machine's noise, and the verdict is taken on them: at most 0.5 of the faster peer's at the medians
  of all loops, and in every round on its own (each round runs the contenders back to back). What
  they leave out is what a tracer costs the SDK's own code indirectly (CPU caches, garbage
  collection), which the full-call figures hold.

Rounds alternate the contenders (each round a fresh process per contender); per contender the best
timed repeat of all rounds is kept.

Run: ``.venv/bin/python bench/provider_overhead.py --setup`` once, then
``.venv/bin/python bench/provider_overhead.py [--runs 500]``.

``--quick`` is a short run (100 calls x 2 repeats x 1 round). Amazon Bedrock, Gemini, Cohere,
Mistral and LiteLLM calls are measured by ``bench/provider_sdks.py``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sink import OTLPSink

ROOT = Path(__file__).resolve().parent.parent
ENVS = ROOT / "bench" / ".envs"
MAIN_PYTHON = ROOT / ".venv" / "bin" / "python"
OTLP_HTTP = ("opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http")
PEER_PACKAGES = {
    "openinference": ("openinference-instrumentation-openai", *OTLP_HTTP),
    "openllmetry": ("opentelemetry-instrumentation-openai", *OTLP_HTTP),
}
MODES = ("create", "stream")
KEYS = ("wall_us", "thread_us", "proc_us")

WORKLOAD = textwrap.dedent(
    """
    import json, sys, time
    import openai

    BASE, SINK, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
    RUNS, REPEAT, WARMUP = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    INNER, OUTER = sys.argv[7].split(":"), sys.argv[8].split(":")
    MESSAGES = [
        {"role": "system", "content": "You answer geography questions."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    inside, wrapped, iterating = [0.0], [0.0], [0.0]

    def owner_of(point):
        import importlib
        return getattr(importlib.import_module(point[0]), point[1])

    def timed(function, total):
        def shim(*args, **kwargs):
            start = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                total[0] += time.thread_time() - start
        return shim

    def timed_steps(function, total):  # a generator method, each step timed
        def shim(self):
            steps = function(self)
            while True:
                start = time.thread_time()
                try:
                    item = next(steps)
                except StopIteration:
                    total[0] += time.thread_time() - start
                    return
                total[0] += time.thread_time() - start
                yield item
        return shim

    # The inner timing shims: the SDK method under the tracer's patch, and the SDK's stream steps
    # (each tracer's stream wrapper calls Stream.__next__; a bare loop, Stream.__iter__).
    setattr(owner_of(INNER), INNER[2], timed(getattr(owner_of(INNER), INNER[2]), inside))
    openai.Stream.__next__ = timed(openai.Stream.__next__, inside)
    openai.Stream.__iter__ = timed_steps(openai.Stream.__iter__, inside)
    """
)

OTEL_PROVIDER = textwrap.dedent(
    """
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=SINK + "/v1/traces")))

    def finish():
        return provider.force_flush(60_000)
    """
)

SETUP = {
    "none": "def finish():\n    return True\n",
    "trodo_trace": textwrap.dedent(
        """
        import trodo_trace as trodo
        trodo.init(endpoint=SINK, service_name="bench")  # instruments the openai SDK

        def finish():
            return trodo.flush(60.0)
        """
    ),
    "openinference": OTEL_PROVIDER
    + textwrap.dedent(
        """
        from openinference.instrumentation.openai import OpenAIInstrumentor
        OpenAIInstrumentor().instrument(tracer_provider=provider)
        """
    ),
    "openllmetry": OTEL_PROVIDER
    + textwrap.dedent(
        """
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
        OpenAIInstrumentor().instrument(tracer_provider=provider)
        """
    ),
}

MEASURE = textwrap.dedent(
    """
    patched = owner_of(OUTER).__dict__[OUTER[2]]

    def outer(self, *args, **kwargs):  # the outer timing shim: over the tracer's patch, bound as the SDK binds it
        start = time.thread_time()
        try:
            return patched.__get__(self, type(self))(*args, **kwargs)
        finally:
            wrapped[0] += time.thread_time() - start

    setattr(owner_of(OUTER), OUTER[2], outer)
    client = openai.OpenAI(base_url=BASE, api_key="bench", max_retries=0)

    def call():
        if MODE == "stream":
            stream = client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, temperature=0.2,
                stream=True, stream_options={"include_usage": True},
            )
            start = time.thread_time()
            for _ in stream:
                pass
            iterating[0] += time.thread_time() - start
        else:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.2)

    for _ in range(WARMUP):
        call()
    flushed = finish()
    loops = []
    for _ in range(REPEAT):
        inside[0] = wrapped[0] = iterating[0] = 0.0
        wall0, thread0, proc0 = time.perf_counter(), time.thread_time(), time.process_time()
        for _ in range(RUNS):
            call()
        wall1, thread1, proc1 = time.perf_counter(), time.thread_time(), time.process_time()
        loop = {
            "wall_us": (wall1 - wall0) / RUNS * 1e6,
            "thread_us": (thread1 - thread0) / RUNS * 1e6,
            "proc_us": (proc1 - proc0) / RUNS * 1e6,
        }
        # The export of this loop's spans, on whichever thread does it (a batching thread, or the
        # calling thread in a flush): the process's CPU over the loop and the flush, minus the
        # calling thread's over the loop.
        flushed = finish() and flushed
        loop["wrapper_us"] = (wrapped[0] + iterating[0] - inside[0]) / RUNS * 1e6
        loop["export_us"] = ((time.process_time() - proc0) - (thread1 - thread0)) / RUNS * 1e6
        loops.append(loop)
    flushed = finish() and flushed
    print(json.dumps({"loops": loops, "flushed": bool(flushed), "openai": openai.__version__}))
    """
)

PYTHONS = {
    "none": MAIN_PYTHON,
    "trodo_trace": MAIN_PYTHON,
    "openinference": ENVS / "provider-openinference" / "bin" / "python",
    "openllmetry": ENVS / "provider-openllmetry" / "bin" / "python",
}
LABELS = {
    "none": "no tracing",
    "trodo_trace": "trodo_trace (instrument_openai)",
    "openinference": "OpenInference OpenAIInstrumentor",
    "openllmetry": "OpenLLMetry OpenAIInstrumentor",
}
PEERS = ("openinference", "openllmetry")
#: Where each contender's patch sits (module:class:method): the exact figures' timing shims go right
#: under it (``INNER``, before the tracer patches) and right over it (``OUTER``, after).
CREATE = "openai.resources.chat.completions:Completions:create"
INNER = {"none": CREATE, "trodo_trace": CREATE, "openllmetry": CREATE,
         "openinference": "openai._base_client:SyncAPIClient:request"}  # fmt: skip
OUTER = {**INNER, "openinference": "openai:OpenAI:request"}
EXACT = ("wrapper_us", "export_us")


def setup(names: tuple[str, ...] = PEERS) -> None:
    """Create each peer's virtualenv with the ``openai`` version of ``.venv`` (pip, from PyPI)."""
    version = importlib.metadata.version("openai")
    for name in names:
        env = ENVS / f"provider-{name}"
        python = env / "bin" / "python"
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
            subprocess.run([str(python), "-m", "ensurepip", "--upgrade"], check=True, capture_output=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", f"openai=={version}", *PEER_PACKAGES[name]]
        subprocess.run(pip, check=True)
        frozen = subprocess.run(
            [str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        wanted = ("openai==", *(f"{package}==" for package in PEER_PACKAGES[name][:2]))
        print(f"provider-{name}:", " ".join(line for line in frozen if line.startswith(wanted)))


def run_one(
    name: str, mode: str, base_url: str, sink: OTLPSink, runs: int, repeat: int, warmup: int
) -> dict[str, Any]:
    """One process of one contender in one mode: its timed loops and the spans the sink got from it."""
    code = WORKLOAD + SETUP[name] + MEASURE
    done = subprocess.run(
        [
            str(PYTHONS[name]),
            "-c",
            code,
            base_url,
            sink.url,
            mode,
            str(runs),
            str(repeat),
            str(warmup),
            INNER[name],
            OUTER[name],
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=str(ROOT),
        env={"PATH": "/usr/bin:/bin", "TRODO_STORE": str(ROOT / "bench" / "results" / "bench.db")},
    )
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["spans"] = sink.take()
    return result


def measure(names: list[str], runs: int, repeat: int, warmup: int, rounds: int) -> dict[str, Any]:
    """Per mode and contender: best and median loop, added over the baseline, spans at the sink."""
    from trodo_trace.testing import FakeOpenAI

    results: dict[str, Any] = {
        mode: {name: {"loops": [], "spans": 0, "flushed": True} for name in names} for mode in MODES
    }
    with OTLPSink() as sink, FakeOpenAI() as fake:
        for _ in range(rounds):
            for mode in MODES:
                for name in names:
                    one = run_one(name, mode, fake.base_url, sink, runs, repeat, warmup)
                    fake.requests.clear()
                    entry = results[mode][name]
                    if "error" in one:
                        entry["error"] = one["error"]
                        continue
                    entry["loops"] += one["loops"]
                    # this process's median loop: the rounds pair contenders run back to back
                    exact = [loop["wrapper_us"] + loop["export_us"] for loop in one["loops"]]
                    entry.setdefault("exact_rounds", []).append(statistics.median(exact))
                    entry["spans"] += one["spans"]
                    entry["flushed"] &= one["flushed"]
                    entry["openai"] = one["openai"]
    for mode in MODES:
        for entry in results[mode].values():
            loops = entry.pop("loops")
            entry["calls"] = (warmup + runs * repeat) * rounds
            for key in KEYS:
                values = [loop[key] for loop in loops]
                if values:
                    entry[key] = min(values)
                    entry[key.replace("_us", "_median_us")] = statistics.median(values)
            exact = [loop["wrapper_us"] + loop["export_us"] for loop in loops if "wrapper_us" in loop]
            if exact:  # the median loop, and the quartiles over all loops of all rounds
                for key in EXACT:
                    entry[key] = statistics.median(loop[key] for loop in loops)
                entry["exact_us"] = statistics.median(exact)
                entry["exact_quartiles"] = (
                    statistics.quantiles(exact, n=4)[::2] if len(exact) > 1 else exact * 2
                )
        base = results[mode].get("none", {})
        for entry in results[mode].values():
            for key in (*KEYS, "exact_us"):
                if key in entry and key in base:
                    entry["added_" + key] = entry[key] - base[key]
    return results


def render(results: dict[str, Any]) -> str:
    """The markdown table: per call, absolute and added over the untraced baseline, per mode."""
    headers = ["mode", "contender", "wall µs/call", "added wall µs", "app thread cpu µs",
               "added app thread cpu µs", "process cpu µs", "added process cpu µs",
               "trodo ÷ this (added wall / thread cpu / process cpu)",
               "trodo ÷ faster peer (wall / thread cpu / process cpu)", "spans at sink / calls"]  # fmt: skip
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for mode, contenders in results.items():
        ours = contenders.get("trodo_trace", {})
        peers = [contenders[p] for p in PEERS if "added_wall_us" in contenders.get(p, {})]
        versus = ""
        if peers and "added_wall_us" in ours:
            versus = " / ".join(
                f"{ours['added_' + key] / min(p['added_' + key] for p in peers):.2f}"
                if min(p["added_" + key] for p in peers) > 0
                else "-"
                for key in KEYS
            )
        for name, r in contenders.items():
            if "wall_us" not in r:
                lines.append(
                    f"| {mode} | {LABELS[name]} | failed: {r.get('error', '?')[:90]} |"
                    + " |" * (len(headers) - 3)
                )
                continue
            ratio = ""
            if name in PEERS and "added_wall_us" in ours:
                ratio = " / ".join(
                    f"{ours['added_' + key] / r['added_' + key]:.2f}" if r.get("added_" + key, 0) > 0 else "-"
                    for key in KEYS
                )
            spans = f"{r['spans']:,} / {r['calls']:,}" if name != "none" else "-"
            lines.append(
                f"| {mode} | {LABELS[name]} | {r['wall_us']:.0f} | {r.get('added_wall_us', 0):.0f} | "
                f"{r['thread_us']:.0f} | {r.get('added_thread_us', 0):.0f} | "
                f"{r['proc_us']:.0f} | {r.get('added_proc_us', 0):.0f} | {ratio} | "
                f"{versus if name == 'trodo_trace' else ''} | {spans} |"
            )
    return "\n".join(lines)


def render_exact(results: dict[str, Any]) -> str:
    """The exact table: per mode, the tracer's own work per call, and the verdicts."""
    headers = ["mode", "contender", "in-wrapper thread cpu µs", "export cpu µs", "sum µs (IQR over loops)",
               "added over no tracing µs", "trodo ÷ this"]  # fmt: skip
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for mode, contenders in results.items():
        base = contenders.get("none", {})
        ours = contenders.get("trodo_trace", {}).get("added_exact_us")
        for name, r in contenders.items():
            if "exact_us" not in r:
                continue
            low, high = (q - base.get("exact_us", 0.0) for q in r["exact_quartiles"])
            ratio = (
                f"{ours / r['added_exact_us']:.2f}"
                if name in PEERS and ours and r["added_exact_us"] > 0
                else ""
            )
            lines.append(
                f"| {mode} | {LABELS[name]} | {r['wrapper_us']:.0f} | {r['export_us']:.0f} | "
                f"{r['exact_us']:.0f} ({low:.0f} to {high:.0f} added) | {r['added_exact_us']:.0f} | {ratio} |"
            )
    lines.append("")
    lines += [verdict(results, mode) for mode in results]
    return "\n".join(lines)


def verdict(results: dict[str, Any], mode: str) -> str:
    """Met when trodo's added work is at most half the faster peer's at the medians of all loops and
    in every round on its own (a round's processes run back to back, so the machine's drift between
    rounds does not enter a round's ratio)."""
    contenders = results.get(mode, {})
    base = contenders.get("none", {})
    ours = contenders.get("trodo_trace", {})
    peers = [name for name in PEERS if "added_exact_us" in contenders.get(name, {})]
    if "exact_us" not in base or "added_exact_us" not in ours or not peers:
        return f"- {mode}, exact: not measured"
    faster = min(peers, key=lambda name: contenders[name]["added_exact_us"])
    median = ours["added_exact_us"] / contenders[faster]["added_exact_us"]
    count = len(base["exact_rounds"])
    if any(len(contenders[name]["exact_rounds"]) != count for name in ("trodo_trace", *peers)):
        return f"- {mode}, exact: a contender failed in some round, no verdict"
    rounds = [
        (ours["exact_rounds"][index] - base_r)
        / min(contenders[name]["exact_rounds"][index] - base_r for name in peers)
        for index, base_r in enumerate(base["exact_rounds"])
    ]
    met = median <= 0.5 and all(ratio <= 0.5 for ratio in rounds)
    return (
        f"- {mode}, exact: trodo's added work ÷ the faster peer's ({LABELS[faster]}): {median:.2f} at the "
        f"medians of all loops; in each round ÷ the faster peer of that round: "
        f"{', '.join(f'{ratio:.2f}' for ratio in rounds)}; target at most 0.5 at the medians and in every "
        f"round: **{'met' if met else 'not met'}**"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true", help="create the peers' virtualenvs and exit")
    parser.add_argument("--runs", type=int, default=500, help="calls per timed repeat")
    parser.add_argument("--repeat", type=int, default=3, help="timed repeats per process")
    parser.add_argument("--warmup", type=int, default=50, help="untimed calls first")
    parser.add_argument("--rounds", type=int, default=2, help="processes per contender and mode, alternating")
    parser.add_argument("--only", nargs="+", choices=list(SETUP), help="default: all that are installed")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    parser.add_argument("--quick", action="store_true", help="100 calls x 2 repeats x 1 round, 20 warm-up")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.repeat, args.rounds, args.warmup = 100, 2, 1, 20
    if args.setup:
        setup()
        return 0
    names = args.only or list(SETUP)
    missing = [name for name in names if not PYTHONS[name].exists()]
    for name in missing:
        print(f"skipping {name}: {PYTHONS[name]} not found (run with --setup)", file=sys.stderr)
    names = [name for name in names if name not in missing]
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    results = measure(names, args.runs, args.repeat, args.warmup, args.rounds)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        version = next((r["openai"] for r in results["create"].values() if "openai" in r), "?")
        print(
            f"openai {version} chat.completions.create against FakeOpenAI on 127.0.0.1, non-streaming and "
            f"streaming: {args.runs} calls x {args.repeat} repeats x {args.rounds} rounds (best repeat), "
            f"OTLP/HTTP to a loopback sink"
        )
        print(render(results))
        print()
        print(
            "The full-call columns are differences of two figures of about 2,300 µs (non-streaming) "
            "and 3,000 µs (streaming) from different processes; the untraced baseline moves by "
            "hundreds of µs between processes, and that error enters every contender's added figure "
            "alike. The exact figures below are taken inside each process and decide the target."
        )
        if any("exact_us" in r for mode in MODES for r in results[mode].values()):
            print()
            print("Exact figures: each tracer's own work per call (median loop; see the module docstring):")
            print()
            print(render_exact(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
