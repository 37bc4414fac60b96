"""Added cost per LlamaIndex query: trodo's LlamaIndex handler beside no tracing and the OpenInference
LlamaIndex instrumentor.

The workload is a ``VectorStoreIndex`` query over 20 nodes (query embedding, top-2 retrieval,
compact-and-refine synthesis, one LLM completion) with an in-process keyword embedding and an LLM
that answers at once, so what is measured is the tracing, not a model. LlamaIndex reports about
14 spans per query; trodo keeps 5 (query, retriever, embedding, synthesizer, LLM), OpenInference
exports all of them. Each contender runs in its own process: the untraced baseline and trodo in
the project's ``.venv``, OpenInference in ``bench/.envs/openinference-llamaindex`` (made by
``--setup``, with the same llama-index-core). Both tracers export over OTLP/HTTP with a batching
processor to one loopback sink started here, so export work is real and nothing leaves the
machine. Reported per query:

- ``wall``: wall time of the loop (includes waiting for the GIL while an export thread works);
- ``cpu``: CPU time of the application thread (``time.thread_time``);
- ``process cpu``: CPU time of the whole process, export threads included (``time.process_time``);
- ``added``: each minus the untraced baseline, and trodo's added cost ÷ OpenInference's;
- ``spans``: spans the sink received after the final flush.

Rounds alternate the contenders (a fresh process each); per contender the best timed repeat of
all rounds is kept, the median is shown beside it.

Run: ``.venv/bin/python bench/llamaindex_overhead.py --setup`` once, then
``.venv/bin/python bench/llamaindex_overhead.py [--runs 1000]``.
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

    SINK, RUNS, REPEAT, WARMUP = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
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

SETUP = {
    "none": "def finish():\n    return True\n",
    "trodo_trace": textwrap.dedent(
        """
        import trodo_trace as trodo
        trodo.init(endpoint=SINK, service_name="bench")
        trodo.instrument_llamaindex()

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
        LlamaIndexInstrumentor().instrument(tracer_provider=provider)

        def finish():
            return provider.force_flush(60_000)
        """
    ),
}

MEASURE = textwrap.dedent(
    """
    # built after the tracer is set up, as an application would (so its embeddings are traced too)
    nodes = [TextNode(id_=f"n{i}", text=f"{WORDS[i % 8]} {WORDS[(i * 3) % 8]} note {i}") for i in range(20)]
    engine = VectorStoreIndex(nodes=nodes).as_query_engine(similarity_top_k=2)
    for _ in range(WARMUP):
        engine.query("what is alpha?")
    loops = []
    for _ in range(REPEAT):
        wall0, cpu0, proc0 = time.perf_counter(), time.thread_time(), time.process_time()
        for _ in range(RUNS):
            engine.query("what is alpha?")
        loops.append(
            {
                "wall_us": (time.perf_counter() - wall0) / RUNS * 1e6,
                "cpu_us": (time.thread_time() - cpu0) / RUNS * 1e6,
                "proc_us": (time.process_time() - proc0) / RUNS * 1e6,
            }
        )
    flushed = finish()
    print(json.dumps({"loops": loops, "flushed": bool(flushed)}))
    """
)

PYTHONS = {"none": MAIN_PYTHON, "trodo_trace": MAIN_PYTHON, "openinference": PEER_ENV / "bin" / "python"}
LABELS = {
    "none": "no tracing",
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
    results: dict[str, Any] = {name: {"loops": [], "spans": 0, "flushed": True} for name in names}
    with OTLPSink() as sink:
        for _ in range(rounds):
            for name in names:
                one = run_one(name, sink, runs, repeat, warmup)
                if "error" in one:
                    results[name]["error"] = one["error"]
                    continue
                results[name]["loops"] += one["loops"]
                results[name]["spans"] += one["spans"]
                results[name]["flushed"] &= one["flushed"]
    for result in results.values():
        loops = result.pop("loops")
        if not loops:
            continue
        for key in ("wall_us", "cpu_us", "proc_us"):
            values = [loop[key] for loop in loops]
            result[key] = min(values)
            result[key.replace("_us", "_median_us")] = statistics.median(values)
        result["queries"] = (warmup + runs * repeat) * rounds
    base = results.get("none", {})
    for result in results.values():
        for key in ("wall_us", "cpu_us", "proc_us", "wall_median_us"):
            if key in result and key in base:
                result["added_" + key] = result[key] - base[key]
    return results


def render(results: dict[str, Any]) -> str:
    ours = results.get("trodo_trace", {})
    headers = ["contender", "wall µs/query", "added wall µs", "app-thread cpu µs", "added cpu µs",
               "process cpu µs", "added process cpu µs", "trodo ÷ this (added wall / cpu / process cpu)",
               "spans at sink (per query)"]  # fmt: skip
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for name, r in results.items():
        if "wall_us" not in r:
            lines.append(
                f"| {LABELS[name]} | failed: {r.get('error', '?')[:90]} |" + " |" * (len(headers) - 2)
            )
            continue
        ratio = ""
        if name == "openinference" and "added_wall_us" in ours:
            ratio = " / ".join(
                f"{ours['added_' + key] / r['added_' + key]:.2f}" if r.get("added_" + key) else "-"
                for key in ("wall_us", "cpu_us", "proc_us")
            )
        spans = f"{r['spans']:,} ({r['spans'] / r['queries']:.1f})" if name != "none" else "-"
        lines.append(
            f"| {LABELS[name]} | {r['wall_us']:.0f} | {r.get('added_wall_us', 0):.0f} | {r['cpu_us']:.0f} | "
            f"{r.get('added_cpu_us', 0):.0f} | {r['proc_us']:.0f} | {r.get('added_proc_us', 0):.0f} | "
            f"{ratio} | {spans} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true", help="create the OpenInference virtualenv and exit")
    parser.add_argument("--runs", type=int, default=1000, help="queries per timed repeat")
    parser.add_argument("--repeat", type=int, default=3, help="timed repeats per process")
    parser.add_argument("--warmup", type=int, default=100, help="untimed queries first")
    parser.add_argument("--rounds", type=int, default=3, help="processes per contender, alternating")
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
    results = measure(names, args.runs, args.repeat, args.warmup, args.rounds)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(
            f"VectorStoreIndex query (20 nodes, top-2, one LLM call): {args.runs} queries x {args.repeat} "
            f"repeats x {args.rounds} rounds (best repeat), OTLP/HTTP to a loopback sink"
        )
        print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
