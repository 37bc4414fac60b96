"""Added cost per non-streaming call of trodo_trace's instrumentation of Amazon Bedrock (boto3
``converse``), Gemini (google-genai ``generate_content``), Cohere (``ClientV2.chat``), Mistral
(``chat.complete``) and LiteLLM (``litellm.completion`` to an OpenAI-compatible server), each
beside the same call uninstrumented. Target: at most 50 µs added per call.

Each SDK calls its fake server from ``trodo_trace.testing`` (started here, in this process, on
127.0.0.1) from one worker process with tracing on (``trodo.init``, OTLP/HTTP to a loopback sink
started here, message content captured). The worker alternates blocks of calls with the SDK
patched (``instrument``) and restored (``uninstrument``), in ABBA order, so that both sides see
the same process, connection pool and machine load; a call to a fake server costs 1-9 ms of its
own, and only such a paired, in-process comparison leaves the added tens of microseconds above
the noise. Reported per call, median over the block pairs:

- ``added calling thread cpu``: ``time.thread_time`` of the thread making the calls, patched
  block minus the restored block next to it. This is what the application waits for and what the
  target is judged on;
- ``added process cpu``: ``time.process_time`` of the worker (every thread: the export thread
  too, a flush ends each patched block inside its timing); the fake server is in another process;
- ``added in-wrapper thread cpu``: the precise measure. The SDK method trodo_trace patches is
  first replaced by a timing shim (so the patch wraps the shim), which adds up the calling thread's
  CPU spent inside the SDK method; thread CPU outside it, patched block minus the restored block
  next to it, is the work of the instrumentation alone (span, request and response reading, the
  context plumbing), without the SDK call's own 1-9 ms and their noise;
- ``≤ 50 µs``: judged on the calling-thread figure when three pairs in four agree; when its spread
  straddles 50 µs it does not resolve the question, and the in-wrapper figure decides (the verdict
  then says ``(in-wrapper)``);
- ``spans / calls``: spans the sink received / patched calls made (every one must arrive).

Run: ``.venv/bin/python bench/provider_sdks.py [--blocks 16] [--calls 200] [--sdk cohere ...]``;
``--quick`` is a short run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sink import OTLPSink

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
MESSAGES = (
    "MESSAGES = [{'role': 'system', 'content': 'You answer geography questions.'},"
    " {'role': 'user', 'content': 'What is the capital of France?'}]"
)
#: SDK -> (fake server in trodo_trace.testing, client setup, one non-streaming call).
CALLS: dict[str, tuple[str, str, str]] = {
    "bedrock": (
        "FakeBedrock",
        textwrap.dedent(
            """
            import boto3
            from botocore.config import Config
            client = boto3.client(
                "bedrock-runtime", region_name="us-east-1", endpoint_url=BASE, aws_access_key_id="bench",
                aws_secret_access_key="bench", config=Config(retries={"total_max_attempts": 1}),
            )
            KWARGS = dict(
                modelId="us.amazon.nova-lite-v1:0", system=[{"text": "You answer geography questions."}],
                messages=[{"role": "user", "content": [{"text": "What is the capital of France?"}]}],
                inferenceConfig={"temperature": 0.2},
            )
            """
        ),
        "client.converse(**KWARGS)",
    ),
    "gemini": (
        "FakeGemini",
        textwrap.dedent(
            """
            from google import genai
            client = genai.Client(api_key="bench", http_options={"base_url": BASE})
            CONFIG = {"system_instruction": "You answer geography questions.", "temperature": 0.2}
            """
        ),
        "client.models.generate_content(model='gemini-2.5-flash', contents='What is the capital of France?',"
        " config=CONFIG)",
    ),
    "cohere": (
        "FakeCohere",
        "import cohere\nclient = cohere.ClientV2(api_key='bench', base_url=BASE)\n" + MESSAGES,
        "client.chat(model='command-a-03-2025', messages=MESSAGES, temperature=0.2)",
    ),
    "mistral": (
        "FakeMistral",
        "from mistralai.client import Mistral\nclient = Mistral(api_key='bench', server_url=BASE)\n"
        + MESSAGES,
        "client.chat.complete(model='mistral-small-latest', messages=MESSAGES, temperature=0.2)",
    ),
    "litellm": (
        "FakeOpenAI",
        "import litellm\n" + MESSAGES,
        "litellm.completion(model='openai/gpt-4o-mini', messages=MESSAGES, temperature=0.2, api_base=BASE,"
        " api_key='bench', max_retries=0)",
    ),
}

#: SDK -> (module, class or "" for a module function, method): what trodo_trace patches for the call.
PATCHED: dict[str, tuple[str, str, str]] = {
    "bedrock": ("botocore.client", "BaseClient", "_make_api_call"),
    "gemini": ("google.genai.models", "Models", "generate_content"),
    "cohere": ("cohere.v2.raw_client", "RawV2Client", "chat"),
    "mistral": ("mistralai.client.chat", "Chat", "complete"),
    "litellm": ("litellm", "", "completion"),
}

WORKER = textwrap.dedent(
    """
    import importlib, json, sys, time
    BASE, SINK, SDK = sys.argv[1], sys.argv[2], sys.argv[3]
    BLOCKS, CALLS, WARMUP = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    MODULE, OWNER, METHOD = sys.argv[7], sys.argv[8], sys.argv[9]
    # A timing shim in place of the SDK method trodo_trace patches, installed first so that the patch
    # wraps it: calling-thread CPU spent inside the SDK method, patched or not.
    owner = importlib.import_module(MODULE)
    owner = getattr(owner, OWNER) if OWNER else owner
    sdk_method = owner.__dict__[METHOD]
    inside = [0.0]

    def shim(*args, **kwargs):
        start = time.thread_time()
        try:
            return sdk_method(*args, **kwargs)
        finally:
            inside[0] += time.thread_time() - start

    setattr(owner, METHOD, shim)
    import trodo_trace as trodo
    from trodo_trace.integrations import providers
    MODE = sys.argv[10]
    if MODE == "trodo":  # trodo_trace's instrumentation of the SDK
        trodo.init(endpoint=SINK, service_name="bench", instrument=[SDK])
        flush = trodo.flush

        def patch(on):
            (providers.instrument if on else providers.uninstrument)(SDK)
    else:  # a floor: one bare span around the same method, nothing read
        import wrapt
        if MODE == "span":  # trodo_trace's span of a provider call, with nothing read or written
            trodo.init(endpoint=SINK, service_name="bench", instrument=False)
            from trodo_trace.integrations.providers import _common as C
            flush = trodo.flush

            def bare(wrapped, instance, args, kwargs):
                call = C.Call.start("bench.call", "llm", {"gen_ai.operation.name": "chat"})
                try:
                    with C.use_call(call):
                        return wrapped(*args, **kwargs)
                finally:
                    call.end()
        else:  # the OpenTelemetry SDK's span, exported by its BatchSpanProcessor over OTLP/HTTP
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=SINK + "/v1/traces")))
            tracer = provider.get_tracer("bench")

            def flush(timeout):
                return provider.force_flush(int(timeout * 1000))

            def bare(wrapped, instance, args, kwargs):
                with tracer.start_as_current_span("bench.call", attributes={"gen_ai.operation.name": "chat"}):
                    return wrapped(*args, **kwargs)
        wrapped_shim = wrapt.FunctionWrapper(shim, bare)

        def patch(on):
            setattr(owner, METHOD, wrapped_shim if on else shim)
    __SETUP__

    def call():
        __CALL__

    def block(patched):
        patch(patched)
        inside[0] = 0.0
        thread0, process0 = time.thread_time(), time.process_time()
        for _ in range(CALLS):
            call()
        thread = time.thread_time() - thread0
        outside = thread - inside[0]
        flushed = flush(60.0) if patched else True  # the export of these spans counts too
        process = time.process_time() - process0
        return thread / CALLS * 1e6, process / CALLS * 1e6, outside / CALLS * 1e6, bool(flushed)

    for patched in (True, False):
        patch(patched)
        for _ in range(WARMUP):
            call()
    flush(60.0)
    pairs, flushed = [], True
    for index in range(BLOCKS):
        order = (True, False) if index % 2 == 0 else (False, True)
        result = {patched: block(patched) for patched in order}
        flushed &= result[True][3]
        pairs.append({"patched": result[True][:3], "restored": result[False][:3]})
    print(json.dumps({"pairs": pairs, "flushed": flushed, "calls": WARMUP + BLOCKS * CALLS}))
    """
)


def measure(sdk: str, blocks: int, calls: int, warmup: int, mode: str = "trodo") -> dict[str, Any]:
    """One worker process for one SDK: per-call figures, median and spread over the block pairs.
    ``mode``: ``trodo`` (its instrumentation of the SDK) or a floor, one bare span around the same
    method with nothing read: ``span`` (trodo_trace's) or ``otel`` (the OpenTelemetry SDK's)."""
    import trodo_trace.testing as kit

    fake_name, setup_code, call_code = CALLS[sdk]
    code = WORKER.replace("__SETUP__", textwrap.indent(setup_code, "").strip()).replace("__CALL__", call_code)
    env = {"PATH": "/usr/bin:/bin", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env["TRODO_STORE"] = str(ROOT / "bench" / "results" / "bench.db")
    with OTLPSink() as sink, getattr(kit, fake_name)() as fake:
        args = [fake.base_url, sink.url, sdk, str(blocks), str(calls), str(warmup), *PATCHED[sdk], mode]
        done = subprocess.run(
            [str(PYTHON), "-c", code, *args], capture_output=True, text=True, timeout=1800, cwd=ROOT, env=env
        )
        if done.returncode != 0:
            return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
        result = json.loads(done.stdout.strip().splitlines()[-1])
        spans = sink.take()
    pairs = result["pairs"]
    out: dict[str, Any] = {"spans": spans, "calls": result["calls"], "flushed": result["flushed"]}
    for index, key in enumerate(("thread_us", "process_us", "wrapper_us")):
        restored = [pair["restored"][index] for pair in pairs]
        added = [pair["patched"][index] - pair["restored"][index] for pair in pairs]
        out[key] = statistics.median(restored)
        out["added_" + key] = statistics.median(added)
        out["added_" + key + "_quartiles"] = (
            statistics.quantiles(added, n=4)[::2] if len(added) > 1 else added
        )
    return out


def render(results: dict[str, dict[str, Any]]) -> str:
    headers = ["SDK (call)", "calling thread cpu µs/call, uninstrumented", "added calling thread cpu µs (IQR)",
               "process cpu µs/call, uninstrumented", "added process cpu µs (IQR)",
               "added in-wrapper thread cpu µs (IQR)", "≤ 50 µs", "spans / calls"]  # fmt: skip
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for sdk, r in results.items():
        label = f"{sdk} (`{CALLS[sdk][2].split('(')[0]}`)"
        if "error" in r:
            lines.append(f"| {label} | failed: {r['error'][:100]} |" + " |" * (len(headers) - 2))
            continue
        spread = {
            key: " to ".join(f"{v:.0f}" for v in r[f"added_{key}_quartiles"])
            for key in ("thread_us", "process_us", "wrapper_us")
        }
        lines.append(
            f"| {label} | {r['thread_us']:.0f} | {r['added_thread_us']:.0f} ({spread['thread_us']}) | "
            f"{r['process_us']:.0f} | {r['added_process_us']:.0f} ({spread['process_us']}) | "
            f"{r['added_wrapper_us']:.0f} ({spread['wrapper_us']}) | "
            f"{_verdict(r['added_thread_us_quartiles'], r['added_wrapper_us_quartiles'])} | "
            f"{r['spans']:,} / {r['calls']:,} |"
        )
    return "\n".join(lines)


FLOORS = {"span": "a bare trodo_trace span", "otel": "a bare OpenTelemetry SDK span"}


def render_floors(results: dict[str, dict[str, Any]], floors: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The floor table: in-wrapper cost of one bare span around the same SDK method, beside trodo's."""
    headers = ["SDK", "trodo_trace instrumentation, in-wrapper µs (IQR)"]
    headers += [f"{label}, in-wrapper µs (IQR)" for label in FLOORS.values()]
    headers += [f"{label}, added process cpu µs" for label in FLOORS.values()] + ["floor spans / calls"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]

    def wrapper(r: dict[str, Any]) -> str:
        if "error" in r:
            return f"failed: {r['error'][:80]}"
        spread = " to ".join(f"{v:.0f}" for v in r["added_wrapper_us_quartiles"])
        return f"{r['added_wrapper_us']:.0f} ({spread})"

    for sdk, by_mode in floors.items():
        cells = [sdk, wrapper(results.get(sdk, {"error": "not measured"}))]
        cells += [wrapper(by_mode[mode]) for mode in FLOORS]
        cells += [
            f"{by_mode[mode]['added_process_us']:.0f}" if "error" not in by_mode[mode] else "-"
            for mode in FLOORS
        ]
        cells.append(
            ", ".join(f"{r['spans']:,} / {r['calls']:,}" for r in by_mode.values() if "error" not in r)
        )
        lines.append("| " + " | ".join(cells) + " |")
    otel = [
        r["added_wrapper_us"] for by_mode in floors.values() for r in [by_mode["otel"]] if "error" not in r
    ]
    if otel:
        lines.append(
            f"\nA bare OpenTelemetry SDK span around the call, with nothing read, costs "
            f"{min(otel):.0f}-{max(otel):.0f} µs in-wrapper here: "
            + ("above" if min(otel) > 50 else "not above")
            + " the 50 µs target, which every tracer that opens a span per call pays at least."
        )
    return "\n".join(lines)


def _verdict(quartiles: list[float], wrapper_quartiles: list[float]) -> str:
    """Met when three pairs in four are within 50 µs, missed when three in four are above; when the
    calling-thread spread straddles 50 µs, the in-wrapper measure decides (said in the answer)."""
    if quartiles[-1] <= 50:
        return "yes"
    if quartiles[0] > 50:
        return "no"
    if wrapper_quartiles[-1] <= 50:
        return "yes (in-wrapper)"
    return "no (in-wrapper)" if wrapper_quartiles[0] > 50 else "not resolved (spread)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdk", nargs="+", choices=list(CALLS), default=list(CALLS))
    parser.add_argument("--blocks", type=int, default=16, help="patched/restored block pairs per SDK")
    parser.add_argument("--calls", type=int, default=200, help="calls per block")
    parser.add_argument("--warmup", type=int, default=50, help="untimed calls first, each way")
    parser.add_argument("--quick", action="store_true", help="4 block pairs of 50 calls, 20 warm-up")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure one bare span (trodo_trace's, OpenTelemetry's) per SDK",
    )
    parser.add_argument("--floor-blocks", type=int, default=8, help="block pairs per floor measure")
    parser.add_argument("--floor-calls", type=int, default=100, help="calls per block of a floor measure")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.blocks, args.calls, args.warmup = 4, 50, 20
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    if args.quick:
        args.floor_blocks, args.floor_calls = 4, 50
    results = {sdk: measure(sdk, args.blocks, args.calls, args.warmup) for sdk in args.sdk}
    floors = {
        sdk: {mode: measure(sdk, args.floor_blocks, args.floor_calls, args.warmup, mode) for mode in FLOORS}
        for sdk in (args.sdk if args.floor else ())
    }
    if args.json:
        print(json.dumps({"results": results, "floors": floors}, indent=2))
        return 0
    print(
        f"one non-streaming call per SDK against its fake server on 127.0.0.1, trodo_trace patched beside "
        f"uninstrumented in one process: {args.blocks} block pairs (ABBA) x {args.calls} calls, median of "
        f"the pairs; OTLP/HTTP to a loopback sink; load average {os.getloadavg()[0]:.1f}"
    )
    print(render(results))
    if floors:
        print(
            f"\nFloors: the same method wrapped by one bare span and nothing else, same worker and ABBA "
            f"blocks ({args.floor_blocks} pairs x {args.floor_calls} calls)\n"
        )
        print(render_floors(results, floors))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
