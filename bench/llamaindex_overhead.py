"""Added cost per LlamaIndex query: trodo's LlamaIndex handler beside span and event handlers that
do nothing and the OpenInference LlamaIndex instrumentor.

The workload is a ``VectorStoreIndex`` query over 20 nodes (query embedding, top-2 retrieval,
compact-and-refine synthesis, one LLM completion) with an in-process keyword embedding and an LLM
that answers at once, so what is measured is the tracing, not a model. LlamaIndex reports about
14 spans per query; trodo keeps 5 (query, retriever, embedding, synthesizer, LLM), OpenInference
exports all of them. Each contender runs in its own process: the no-op handlers and trodo in the
project's ``.venv``, OpenInference in ``bench/.envs/openinference-llamaindex`` (made by
``--setup``, with the same llama-index-core). Both tracers export over OTLP/HTTP with a batching
processor to one loopback sink started here, so export work is real and nothing leaves the
machine.

Inside its process each contender alternates blocks of queries traced and untraced, in ABBA order
(trodo's handler attached and detached, OpenInference's instrumentor instrumented and not, the
no-op handlers added and removed), so both sides of a pair see the same process, heap and machine
load; a traced block ends with a flush, inside its timing (see ``paired.py``). Reported per query,
median over all pairs of all its processes, with the quartiles of the pairs:

- ``untraced app-thread cpu``: the untraced blocks' ``time.thread_time``, for scale;
- ``added wall``: wall time, traced block minus the untraced block next to it;
- ``added app-thread cpu``: the same for the querying thread; the issue's target (at most
  1,170 µs) is judged on it;
- ``added process cpu``: the same for the whole process, export threads included;
- ``trodo ÷ this``: trodo's added median over OpenInference's;
- ``spans``: spans the sink received, per traced query (each process also traces the index build).

The no-op row is LlamaIndex's own cost of dispatching to a span and an event handler: no handler
can cost less.

Run: ``.venv/bin/python bench/llamaindex_overhead.py --setup`` once, then
``.venv/bin/python bench/llamaindex_overhead.py [--runs 100] [--blocks 8] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
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
MAIN_PYTHON = ROOT / ".venv" / "bin" / "python"
PEER_ENV = ROOT / "bench" / ".envs" / "openinference-llamaindex"
PEER_PACKAGES = (
    "openinference-instrumentation-llama-index",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
)

WORKLOAD = textwrap.dedent(
    """
    import json, sys, time
    from typing import Any
    from llama_index.core import Settings, VectorStoreIndex
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback
    from llama_index.core.schema import TextNode
    from llama_index.core.utils import set_global_tokenizer

    SINK, RUNS, BLOCKS, WARMUP = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")

    class KeywordEmbedding(BaseEmbedding):
        model_name: str = "text-embedding-3-small"

        def _vector(self, text: str) -> list:
            return [float(text.count(word)) for word in WORDS] + [0.5]

        def _get_query_embedding(self, query: str) -> list:
            return self._vector(query)

        async def _aget_query_embedding(self, query: str) -> list:
            return self._vector(query)

        def _get_text_embedding(self, text: str) -> list:
            return self._vector(text)

    class InstantLLM(CustomLLM):
        model: str = "gpt-4o-mini"

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name=self.model)

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            usage = {"prompt_tokens": len(prompt) // 4, "completion_tokens": 8}
            return CompletionResponse(text="Alpha is the first letter.", raw={"usage": usage})

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            raise NotImplementedError

    set_global_tokenizer(str.split)
    Settings.llm = InstantLLM()
    Settings.embed_model = KeywordEmbedding()
    """
)

#: Per contender: its tracer set up once; ``on()`` / ``off()`` switch it between blocks and
#: ``finish()`` flushes its export.
SETUP = {
    "noop": textwrap.dedent(
        """
        from llama_index.core.instrumentation import get_dispatcher
        from llama_index.core.instrumentation.event_handlers import BaseEventHandler
        from llama_index.core.instrumentation.span_handlers import BaseSpanHandler

        class NoOpSpans(BaseSpanHandler):
            def new_span(self, id_, bound_args, instance=None, parent_span_id=None, tags=None, **kwargs):
                return None

            def prepare_to_exit_span(self, id_, bound_args, instance=None, result=None, **kwargs):
                return None

            def prepare_to_drop_span(self, id_, bound_args, instance=None, err=None, **kwargs):
                return None

        class NoOpEvents(BaseEventHandler):
            def handle(self, event, **kwargs):
                return None

        DISPATCHER, HANDLERS = get_dispatcher(), (NoOpSpans(), NoOpEvents())

        def on():
            DISPATCHER.span_handlers = [*DISPATCHER.span_handlers, HANDLERS[0]]
            DISPATCHER.event_handlers = [*DISPATCHER.event_handlers, HANDLERS[1]]

        def off():
            DISPATCHER.span_handlers = [h for h in DISPATCHER.span_handlers if h is not HANDLERS[0]]
            DISPATCHER.event_handlers = [h for h in DISPATCHER.event_handlers if h is not HANDLERS[1]]

        def finish():
            return True
        """
    ),
    "trodo_trace": textwrap.dedent(
        """
        import trodo_trace as trodo
        trodo.init(endpoint=SINK, service_name="bench")
        HANDLER = trodo.instrument_llamaindex()

        def on():
            HANDLER.attach()

        def off():
            HANDLER.detach()

        def finish():
            return trodo.flush(60.0)
        """
    ),
    "openinference": textwrap.dedent(
        """
        from openinference.instrumentation.llama_index import LlamaIndexInstrumentor
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=SINK + "/v1/traces")))
        INSTRUMENTOR = LlamaIndexInstrumentor()
        INSTRUMENTOR.instrument(tracer_provider=provider)

        def on():
            INSTRUMENTOR.instrument(tracer_provider=provider)

        def off():
            INSTRUMENTOR.uninstrument()

        def finish():
            return provider.force_flush(60_000)
        """
    ),
}

#: The index is built once, traced (after the tracer is set up, as an application would), then the
#: query blocks alternate.
MEASURE = (
    "\nnodes = [TextNode(id_=f'n{i}', text=f'{WORDS[i % 8]} {WORDS[(i * 3) % 8]} note {i}') for i in range(20)]"
    "\nengine = VectorStoreIndex(nodes=nodes).as_query_engine(similarity_top_k=2)\n"
    + paired.worker("engine.query('what is alpha?')")
)

PYTHONS = {"noop": MAIN_PYTHON, "trodo_trace": MAIN_PYTHON, "openinference": PEER_ENV / "bin" / "python"}
LABELS = {
    "noop": "no-op span and event handlers (LlamaIndex's floor)",
    "trodo_trace": "trodo_trace (instrument_llamaindex)",
    "openinference": "OpenInference LlamaIndexInstrumentor",
}


def setup() -> None:
    """Create the OpenInference virtualenv with the llama-index-core version of ``.venv``."""
    core = importlib.metadata.version("llama-index-core")
    if not PEER_ENV.joinpath("bin", "python").exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(PEER_ENV)], check=True)
        subprocess.run([str(PEER_ENV / "bin" / "python"), "-m", "ensurepip", "--upgrade"], check=True)
    pip = [str(PEER_ENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, f"llama-index-core=={core}", *PEER_PACKAGES], check=True)
    frozen = subprocess.run(
        [str(PEER_ENV / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    wanted = ("llama-index-core==", "openinference-instrumentation-llama-index==", "opentelemetry-sdk==")
    print("openinference-llamaindex:", " ".join(line for line in frozen if line.startswith(wanted)))


#: Issue target: trodo's added app-thread CPU per query at most half of the 2,340 µs measured before.
TARGET_US = 1170.0


def run_one(name: str, sink: OTLPSink, runs: int, blocks: int, warmup: int) -> dict[str, Any]:
    """One process of one contender: its paired blocks and the spans the sink got from it."""
    code = WORKLOAD + SETUP[name] + MEASURE
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
    results: dict[str, Any] = {
        name: {"pairs": [], "spans": 0, "calls": 0, "processes": 0, "flushed": True} for name in names
    }
    with OTLPSink() as sink:
        for _ in range(rounds):
            for name in names:
                one = run_one(name, sink, runs, blocks, warmup)
                if "error" in one:
                    results[name]["error"] = one["error"]
                    continue
                for key in ("pairs", "spans", "calls"):
                    results[name][key] += one[key]
                results[name]["processes"] += 1
                results[name]["flushed"] &= one["flushed"]
    for result in results.values():
        pairs = result.pop("pairs")
        if pairs:
            result.update(paired.summarize(pairs))
    return results


def render(results: dict[str, Any]) -> str:
    ours = results.get("trodo_trace", {})
    headers = ["contender", "untraced app-thread cpu µs/query", "added wall µs (IQR)", "added app-thread cpu µs (IQR)",
               "added process cpu µs, export incl. (IQR)", "trodo ÷ this (added wall / cpu / process cpu)",
               "spans at sink (per traced query)"]  # fmt: skip
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += paired.rows(
        results,
        LABELS,
        len(headers),
        lambda name, r: paired.ratios(ours, r) if name == "openinference" and "added_cpu_us" in ours else "",
        # each process also traces the index build (one embedding span for trodo_trace)
        lambda name, r: f"{r['spans']:,} ({r['spans'] / r['calls']:.1f})" if name != "noop" else "-",
    )
    lines += paired.verdict(ours, results.get("noop", {}), TARGET_US, "query")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true", help="create the OpenInference virtualenv and exit")
    parser.add_argument("--runs", type=int, default=100, help="queries per block")
    parser.add_argument("--blocks", type=int, default=8, help="traced/untraced block pairs per process")
    parser.add_argument("--warmup", type=int, default=50, help="untimed queries first, each way")
    parser.add_argument("--rounds", type=int, default=2, help="processes per contender, alternating")
    parser.add_argument("--only", nargs="+", choices=list(SETUP), help="default: all that are installed")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    args = parser.parse_args(argv)
    if args.setup:
        setup()
        return 0
    names = args.only or list(SETUP)
    missing = [name for name in names if not PYTHONS[name].exists()]
    for name in missing:
        print(f"skipping {name}: {PYTHONS[name]} not found (run with --setup)", file=sys.stderr)
    names = [name for name in names if name not in missing]
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    results = measure(names, args.runs, args.blocks, args.warmup, args.rounds)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(
            f"VectorStoreIndex query (20 nodes, top-2, one LLM call): per contender {args.rounds} processes x "
            f"{args.blocks} traced/untraced block pairs (ABBA) x {args.runs} queries, median of the pairs; "
            f"OTLP/HTTP to a loopback sink"
        )
        print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
