"""Added cost per LangChain run: TrodoCallbackHandler beside a handler that does nothing, the
OpenInference LangChain instrumentor and the Langfuse callback handler.

The workload is a 3-step chain, ``prompt | fake chat model | parser`` (4 LangChain runs per
invocation: the sequence and its steps), with inputs and outputs captured. Each contender runs in
its own process: trodo_trace and the no-op handler in the project's ``.venv``, each peer in its own
virtualenv under ``bench/.envs/<name>`` (made by ``bench/setup_peers.sh`` with the same
langchain-core). Every tracer exports over OTLP/HTTP to one loopback sink started here, so
background export work is real for all of them and nothing leaves the machine.

Inside its process each contender alternates blocks of invocations traced and untraced, in ABBA
order (a handler in the config or none; OpenInference's instrumentor instrumented or not), so both
sides of a pair see the same process, heap and machine load. A traced block ends with a flush,
inside its timing. Reported per invocation, median over all pairs of all its processes, with the
quartiles of the pairs:

- ``untraced app-thread CPU``: the untraced blocks' ``time.thread_time``, for scale;
- ``added wall``: wall time, traced block minus the untraced block next to it (includes waiting
  for the GIL while an export thread works, and the flush);
- ``added app-thread CPU``: the same for the thread that invokes the chain; the issue's target
  (at most 164 µs) is judged on it;
- ``added process CPU``: the same for the whole process, export threads included;
- ``ours ÷ this``: trodo's added median over each peer's;
- ``spans``: spans the sink received / 4 per traced invocation.

The no-op row passes a ``BaseCallbackHandler`` subclass that overrides nothing: what LangChain's own
callback machinery costs once any handler is attached (run managers, run ids, serialized
arguments). No callback handler can cost less; the line under the table gives trodo's added
app-thread CPU above that floor. The bare-spans row is a handler that opens and ends one
trodo_trace span per LangChain run, nested as LangChain nests them, and reads nothing (no inputs,
outputs, messages, model or usage): what the 4 spans alone cost, the least a handler recording
them can add.

Comparing processes instead (each contender's loop minus an untraced process's) leaves an error of
a hundred µs and more per invocation: the untraced loop alone moves that much between processes.

Run: ``bash bench/setup_peers.sh && .venv/bin/python bench/langchain_overhead.py [--runs 200]
[--blocks 8] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import paired
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

    SINK, RUNS, BLOCKS, WARMUP = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    model = GenericFakeChatModel(messages=itertools.cycle(["The capital of France is Paris."]))
    chain = ChatPromptTemplate.from_messages(
        [("system", "You answer geography questions."), ("human", "{question}")]
    ) | model | StrOutputParser()
    """
)

#: Per contender: its tracer set up once, then ``on()`` / ``off()`` switch it between blocks
#: (``STATE["config"]`` is the config every invocation gets) and ``finish()`` flushes its export.
SETUP = {
    "noop": textwrap.dedent(
        """
        from langchain_core.callbacks import BaseCallbackHandler

        class NoOpHandler(BaseCallbackHandler):
            pass

        TRACED = {"callbacks": [NoOpHandler()]}

        def finish():
            return True
        """
    ),
    "trodo_spans": textwrap.dedent(
        """
        import trodo_trace as trodo
        from langchain_core.callbacks import BaseCallbackHandler
        from opentelemetry import trace
        from trodo_trace._internal.core.tracing import start_span
        trodo.init(endpoint=SINK, service_name="bench")

        class BareSpans(BaseCallbackHandler):
            \"\"\"One trodo_trace span per LangChain run, nested as LangChain nests them; nothing read.\"\"\"

            run_inline = True

            def __init__(self):
                self.open = {}

            def _start(self, run_id, parent_run_id, kind):
                parent = self.open.get(parent_run_id)
                ctx = trace.set_span_in_context(parent) if parent is not None else None
                self.open[run_id] = start_span(kind, kind, None, None, ctx)

            def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, **kwargs):
                self._start(run_id, parent_run_id, "chain")

            def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None, **kwargs):
                self._start(run_id, parent_run_id, "llm")

            def on_chain_end(self, outputs, *, run_id, **kwargs):
                self.open.pop(run_id).end()

            def on_llm_end(self, response, *, run_id, **kwargs):
                self.open.pop(run_id).end()

        TRACED = {"callbacks": [BareSpans()]}

        def finish():
            return trodo.flush(60.0)
        """
    ),
    "trodo_trace": textwrap.dedent(
        """
        import trodo_trace as trodo
        from trodo_trace.callbacks.langchain import TrodoCallbackHandler
        trodo.init(endpoint=SINK, service_name="bench")
        TRACED = {"callbacks": [TrodoCallbackHandler()]}

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
        INSTRUMENTOR = LangChainInstrumentor()

        def on():
            INSTRUMENTOR.instrument(tracer_provider=provider)

        def off():
            INSTRUMENTOR.uninstrument()

        def finish():
            return provider.force_flush(60_000)
        """
    ),
    "langfuse": textwrap.dedent(
        """
        from langfuse import Langfuse
        from langfuse.langchain import CallbackHandler
        client = Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", base_url=SINK)
        TRACED = {"callbacks": [CallbackHandler()]}

        def finish():
            client.flush()
            return True
        """
    ),
}

#: A contender traced through the config (not a global switch) is switched by changing the config.
SWITCH_CONFIG = textwrap.dedent(
    """
    STATE = {"config": {}}
    if "TRACED" in globals():
        def on():
            STATE["config"] = TRACED

        def off():
            STATE["config"] = {}
    """
)

MEASURE = '\nquestion = {"question": "What is the capital of France?"}\n' + paired.worker(
    'chain.invoke(question, STATE["config"])'
)

PYTHONS = {
    "noop": MAIN_PYTHON,
    "trodo_spans": MAIN_PYTHON,
    "trodo_trace": MAIN_PYTHON,
    "openinference": ENVS / "openinference" / "bin" / "python",
    "langfuse": ENVS / "langfuse" / "bin" / "python",
}
LABELS = {
    "noop": "no-op BaseCallbackHandler (LangChain's floor)",
    "trodo_spans": "bare trodo_trace spans, nothing read (trodo's floor)",
    "trodo_trace": "trodo_trace (TrodoCallbackHandler)",
    "openinference": "OpenInference LangChainInstrumentor",
    "langfuse": "Langfuse CallbackHandler",
}
PEERS = ("openinference", "langfuse")
#: Issue target: trodo's added app-thread CPU per invocation at most half of the 328 µs measured before.
TARGET_US = 164.0


def run_one(name: str, sink: OTLPSink, runs: int, blocks: int, warmup: int) -> dict[str, Any]:
    code = WORKLOAD + SETUP[name] + SWITCH_CONFIG + MEASURE
    done = subprocess.run(
        [str(PYTHONS[name]), "-c", code, sink.url, str(runs), str(blocks), str(warmup)],
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


def measure(names: list[str], runs: int, blocks: int, warmup: int, rounds: int) -> dict[str, Any]:
    """Per contender: the paired blocks of all its processes; per figure the untraced median and
    the added median and quartiles (traced block minus the untraced block next to it)."""
    results: dict[str, Any] = {name: {"pairs": [], "spans": 0, "calls": 0, "flushed": True} for name in names}
    with OTLPSink() as sink:
        for _ in range(rounds):
            for name in names:
                one = run_one(name, sink, runs, blocks, warmup)
                if "error" in one:
                    results[name]["error"] = one["error"]
                    continue
                results[name]["pairs"] += one["pairs"]
                results[name]["spans"] += one["spans"]
                results[name]["calls"] += one["calls"]
                results[name]["flushed"] &= one["flushed"]
    for result in results.values():
        pairs = result.pop("pairs")
        if pairs:
            result["expected_spans"] = 4 * result["calls"]
            result.update(paired.summarize(pairs))
    return results


def render(results: dict[str, Any]) -> str:
    """The markdown table: per chain invocation, untraced and added, median over the block pairs."""
    ours = results.get("trodo_trace", {})
    headers = [
        "contender",
        "untraced app-thread CPU µs",
        "added wall µs (IQR)",
        "added app-thread CPU µs (IQR)",
        "added process CPU µs, export incl. (IQR)",
        "ours ÷ this (added wall / app CPU / process CPU)",
        "spans at sink",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += paired.rows(
        results,
        LABELS,
        len(headers),
        lambda name, r: paired.ratios(ours, r) if name in PEERS and "added_cpu_us" in ours else "",
        lambda name, r: f"{r['spans']:,} / {r['expected_spans']:,}" if name != "noop" else "-",
    )
    lines += paired.verdict(ours, results.get("noop", {}), TARGET_US, "invocation")
    bare = results.get("trodo_spans", {})
    if "added_cpu_us" in bare:
        side = "above" if bare["added_cpu_us"] > TARGET_US else "within"
        lines.append(
            f"the same 4 spans with nothing read (bare trodo_trace spans) add {bare['added_cpu_us']:.0f} µs: "
            f"{side} the target"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="chain invocations per block")
    parser.add_argument("--blocks", type=int, default=8, help="traced/untraced block pairs per process")
    parser.add_argument("--warmup", type=int, default=100, help="untimed invocations first, each way")
    parser.add_argument("--rounds", type=int, default=2, help="processes per contender, alternating")
    parser.add_argument("--only", nargs="+", choices=list(SETUP), help="default: all that are installed")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    args = parser.parse_args(argv)
    names = args.only or list(SETUP)
    missing = [name for name in names if not PYTHONS[name].exists()]
    for name in missing:
        print(f"skipping {name}: {PYTHONS[name]} not found (run bash bench/setup_peers.sh)", file=sys.stderr)
    names = [name for name in names if name not in missing]
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    results = measure(names, args.runs, args.blocks, args.warmup, args.rounds)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(
            f"prompt | fake chat model | parser: per contender {args.rounds} processes x {args.blocks} "
            f"traced/untraced block pairs (ABBA) x {args.runs} invocations, median of the pairs; "
            f"OTLP/HTTP to a loopback sink"
        )
        print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
