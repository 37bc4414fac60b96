"""Added cost per LangChain run: TrodoCallbackHandler beside no tracing, a handler that does nothing,
the OpenInference LangChain instrumentor and the Langfuse callback handler.

The workload is a 3-step chain, ``prompt | fake chat model | parser`` (4 LangChain runs per
invocation: the sequence and its steps), with inputs and outputs captured. Each contender runs in
its own process: trodo_trace and the untraced baseline in the project's ``.venv``, each peer in its
own virtualenv under ``bench/.envs/<name>`` (made by ``bench/setup_peers.sh`` with the same
langchain-core). Every tracer exports over OTLP/HTTP to one loopback sink started here, so
background export work is real for all of them and nothing leaves the machine. Reported per
invocation:

- ``wall``: wall time of the loop (includes waiting for the GIL while an export thread works);
- ``cpu``: CPU time of the application thread (``time.thread_time``);
- ``added``: the same minus the untraced baseline, and that as a ratio of each peer's;
- ``spans``: spans the sink received after the final flush.

The no-op row passes a ``BaseCallbackHandler`` subclass that overrides nothing: what LangChain's own
callback machinery costs once any handler is attached (run managers, run ids, serialized
arguments). No callback handler can cost less; the line under the table gives trodo's added
app-thread CPU above that floor.

Rounds alternate the contenders (each round a fresh process per contender); per contender the best
timed repeat of all rounds is kept, the median is shown beside it.

Run: ``bash bench/setup_peers.sh && .venv/bin/python bench/langchain_overhead.py [--runs 2000]``.
"""

from __future__ import annotations

import argparse
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

WORKLOAD = textwrap.dedent(
    """
    import itertools, json, sys, time
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    SINK, RUNS, REPEAT, WARMUP = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    model = GenericFakeChatModel(messages=itertools.cycle(["The capital of France is Paris."]))
    chain = ChatPromptTemplate.from_messages(
        [("system", "You answer geography questions."), ("human", "{question}")]
    ) | model | StrOutputParser()
    CONFIG = {}
    """
)

SETUP = {
    "none": "def finish():\n    return True\n",
    "noop": textwrap.dedent(
        """
        from langchain_core.callbacks import BaseCallbackHandler

        class NoOpHandler(BaseCallbackHandler):
            pass

        CONFIG = {"callbacks": [NoOpHandler()]}

        def finish():
            return True
        """
    ),
    "trodo_trace": textwrap.dedent(
        """
        import trodo_trace as trodo
        from trodo_trace.callbacks.langchain import TrodoCallbackHandler
        trodo.init(endpoint=SINK, service_name="bench")
        CONFIG = {"callbacks": [TrodoCallbackHandler()]}

        def finish():
            return trodo.flush(60.0)
        """
    ),
    "openinference": textwrap.dedent(
        """
        from openinference.instrumentation.langchain import LangChainInstrumentor
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=SINK + "/v1/traces")))
        LangChainInstrumentor().instrument(tracer_provider=provider)

        def finish():
            return provider.force_flush(60_000)
        """
    ),
    "langfuse": textwrap.dedent(
        """
        from langfuse import Langfuse
        from langfuse.langchain import CallbackHandler
        client = Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", base_url=SINK)
        CONFIG = {"callbacks": [CallbackHandler()]}

        def finish():
            client.flush()
            return True
        """
    ),
}

MEASURE = textwrap.dedent(
    """
    question = {"question": "What is the capital of France?"}
    for _ in range(WARMUP):
        chain.invoke(question, CONFIG)
    loops = []
    process0 = time.process_time()
    for _ in range(REPEAT):
        wall0, cpu0, proc0 = time.perf_counter(), time.thread_time(), time.process_time()
        for _ in range(RUNS):
            chain.invoke(question, CONFIG)
        loops.append(
            {
                "wall_us": (time.perf_counter() - wall0) / RUNS * 1e6,
                "cpu_us": (time.thread_time() - cpu0) / RUNS * 1e6,
                "process_cpu_us": (time.process_time() - proc0) / RUNS * 1e6,
            }
        )
    flushed = finish()
    total = (time.process_time() - process0) / (RUNS * REPEAT) * 1e6
    print(json.dumps({"loops": loops, "flushed": bool(flushed), "total_cpu_us": total}))
    """
)

PYTHONS = {
    "none": MAIN_PYTHON,
    "noop": MAIN_PYTHON,
    "trodo_trace": MAIN_PYTHON,
    "openinference": ENVS / "openinference" / "bin" / "python",
    "langfuse": ENVS / "langfuse" / "bin" / "python",
}
LABELS = {
    "none": "no tracing",
    "noop": "no-op BaseCallbackHandler (LangChain's floor)",
    "trodo_trace": "trodo_trace (TrodoCallbackHandler)",
    "openinference": "OpenInference LangChainInstrumentor",
    "langfuse": "Langfuse CallbackHandler",
}
PEERS = ("openinference", "langfuse")


def run_one(name: str, sink: OTLPSink, runs: int, repeat: int, warmup: int) -> dict[str, Any]:
    """One process of one contender: its timed loops and the spans the sink got from it."""
    code = WORKLOAD + SETUP[name] + MEASURE
    done = subprocess.run(
        [str(PYTHONS[name]), "-c", code, sink.url, str(runs), str(repeat), str(warmup)],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=str(ROOT),
        env={"PATH": "/usr/bin:/bin", "TRODO_STORE": str(ROOT / "bench" / "results" / "bench.db")},
    )
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["spans"] = sink.take()
    return result


def measure(names: list[str], runs: int, repeat: int, warmup: int, rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {
        name: {"loops": [], "totals": [], "spans": 0, "flushed": True} for name in names
    }
    with OTLPSink() as sink:
        for _ in range(rounds):
            for name in names:
                one = run_one(name, sink, runs, repeat, warmup)
                if "error" in one:
                    results[name]["error"] = one["error"]
                    continue
                results[name]["loops"] += one["loops"]
                results[name]["totals"].append(one["total_cpu_us"])
                results[name]["spans"] += one["spans"]
                results[name]["flushed"] &= one["flushed"]
    for result in results.values():
        loops = result.pop("loops")
        if not loops:
            continue
        for key in ("wall_us", "cpu_us", "process_cpu_us"):
            values = [loop[key] for loop in loops]
            result[key] = min(values)
            result[key.replace("_us", "_median_us")] = statistics.median(values)
        result["expected_spans"] = 4 * (warmup + runs * repeat) * rounds
        result["total_cpu_us"] = min(result.pop("totals"))
    base = results.get("none", {})
    for result in results.values():
        for key in ("wall_us", "cpu_us", "process_cpu_us", "total_cpu_us", "wall_median_us", "cpu_median_us"):
            if key in result and key in base:
                result["added_" + key] = result[key] - base[key]
    return results


def render(results: dict[str, Any]) -> str:
    """The markdown table: per chain invocation, absolute and added over the untraced baseline."""
    ours = results.get("trodo_trace", {})
    headers = [
        "contender",
        "wall µs",
        "added wall µs",
        "app-thread CPU µs",
        "added app-thread CPU µs",
        "process CPU µs (incl. flush)",
        "added process CPU µs",
        "ours ÷ this (added wall / app CPU / process CPU)",
        "spans at sink",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for name, r in results.items():
        if "wall_us" not in r:
            lines.append(
                f"| {LABELS[name]} | failed: {r.get('error', '')[:90]} |" + " |" * (len(headers) - 2)
            )
            continue
        ratios = ""
        if name in PEERS and "added_wall_us" in ours:
            ratios = " / ".join(
                f"{ours[key] / r[key]:.2f}" if r.get(key) else "-"
                for key in ("added_wall_us", "added_cpu_us", "added_total_cpu_us")
            )
        spans = f"{r['spans']:,} / {r['expected_spans']:,}" if name not in ("none", "noop") else "-"
        lines.append(
            f"| {LABELS[name]} | {r['wall_us']:.0f} | {r.get('added_wall_us', 0):.0f} | {r['cpu_us']:.0f} | "
            f"{r.get('added_cpu_us', 0):.0f} | {r['total_cpu_us']:.0f} | {r.get('added_total_cpu_us', 0):.0f} | "
            f"{ratios} | {spans} |"
        )
    floor = results.get("noop", {})
    if "added_cpu_us" in ours and "added_cpu_us" in floor:
        above, median_above = (ours[k] - floor[k] for k in ("added_cpu_us", "added_cpu_median_us"))
        lines.append(
            f"\ntrodo_trace above the no-op floor: {above:.0f} µs added app-thread CPU per invocation "
            f"(floor {floor['added_cpu_us']:.0f} µs; medians: {median_above:.0f} above "
            f"{floor['added_cpu_median_us']:.0f})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="chain invocations per timed repeat")
    parser.add_argument("--repeat", type=int, default=3, help="timed repeats per process")
    parser.add_argument("--warmup", type=int, default=200, help="untimed invocations first")
    parser.add_argument("--rounds", type=int, default=3, help="processes per contender, alternating")
    parser.add_argument("--only", nargs="+", choices=list(SETUP), help="default: all that are installed")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    args = parser.parse_args(argv)
    names = args.only or list(SETUP)
    missing = [name for name in names if not PYTHONS[name].exists()]
    for name in missing:
        print(f"skipping {name}: {PYTHONS[name]} not found (run bash bench/setup_peers.sh)", file=sys.stderr)
    names = [name for name in names if name not in missing]
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    results = measure(names, args.runs, args.repeat, args.warmup, args.rounds)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(
            f"prompt | fake chat model | parser: {args.runs} invocations x {args.repeat} repeats x "
            f"{args.rounds} rounds (best repeat), OTLP/HTTP to a loopback sink"
        )
        print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
