"""Next to OpenTelemetry's own OpenAI instrumentation (opentelemetry-instrumentation-openai-v2): a
call shows once in each backend (the app's provider and trodo's) and counts once in the run's rollups,
whichever of the two patched the SDK first."""

from __future__ import annotations

import openai
import pytest
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_receiver import OtlpReceiver
from provider_fakes import fake_openai  # noqa: F401  (fixture)

import trodo_trace as trodo
from trodo_trace.testing import _captured, capture

KEYS = ("gen_ai.request.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")
ROLLUP = ("trodo.run.total_tokens_in", "trodo.run.total_tokens_out", "trodo.run.span_count")


@pytest.fixture
def app_provider():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def receiver():
    with OtlpReceiver("http") as server:
        yield server


@pytest.fixture(params=["otel-first", "trodo-first"])
def both_on(request, app_provider, receiver):
    """Trodo in dual export with the app's provider, and OpenAIInstrumentor on that provider, patched
    in either order; yields the app's exporter and trodo's OTLP receiver."""
    provider, exporter = app_provider
    instrumentor = OpenAIInstrumentor()
    if request.param == "otel-first":
        instrumentor.instrument(tracer_provider=provider)
    trodo.init(endpoint=receiver.url, schedule_delay_ms=20, tracer_provider=provider)
    trodo.instrument_openai()
    if request.param == "trodo-first":
        instrumentor.instrument(tracer_provider=provider)
    yield exporter, receiver
    if request.param == "otel-first":  # undo in reverse order of patching
        trodo.shutdown()
    instrumentor.uninstrument()


def _client(fake) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key="test", max_retries=0)


def _backends(traces, exporter, receiver):
    assert trodo.flush(5.0)
    app = [_captured(span) for span in exporter.get_finished_spans()]
    return app, receiver.spans()


def _call_ids(spans, name_prefix):
    return sorted(s.span_id for s in spans if s.name.startswith(name_prefix))


def test_dual_export_shows_each_call_once_per_backend(both_on, fake_openai):
    """Dual export + OpenAIInstrumentor: the app's backend has the instrumentation's span, trodo's its own, same ids."""
    exporter, receiver = both_on
    client = _client(fake_openai)
    fake_openai.reply("Paris.", usage=(30, 2))
    fake_openai.reply("It is sunny.", usage=(40, 6))

    @trodo.agent("geo-bot")
    def bot() -> str:
        first = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Q?"}]
        )
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Weather?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        second = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        return f"{first.choices[0].message.content} {second}"

    with capture() as traces:
        assert bot() == "Paris. It is sunny."
    app, trodo_backend = _backends(traces, exporter, receiver)

    llm = {"gen_ai.request.model": "gpt-4o-mini"}
    assert traces.tree(("gen_ai.request.model",), spans=app) == [
        {
            "name": "geo-bot",
            "kind": "run",
            "status": "OK",
            "attributes": {},
            "children": [
                {
                    "name": "chat gpt-4o-mini",
                    "kind": "function",
                    "status": "UNSET",
                    "attributes": llm,
                    "children": [],
                },
                {
                    "name": "chat gpt-4o-mini",
                    "kind": "function",
                    "status": "UNSET",
                    "attributes": llm,
                    "children": [],
                },
            ],
        }
    ]
    assert traces.tree(KEYS, spans=trodo_backend) == [
        {
            "name": "geo-bot",
            "kind": "run",
            "status": "OK",
            "attributes": {},
            "children": [
                {
                    "name": "openai.chat.completions",
                    "kind": "llm",
                    "status": "OK",
                    "attributes": {**llm, "gen_ai.usage.input_tokens": 30, "gen_ai.usage.output_tokens": 2},
                    "children": [],
                },
                {
                    "name": "openai.chat.completions",
                    "kind": "llm",
                    "status": "OK",
                    "attributes": {**llm, "gen_ai.usage.input_tokens": 40, "gen_ai.usage.output_tokens": 6},
                    "children": [],
                },
            ],
        }
    ]
    assert (
        _call_ids(app, "chat ") == _call_ids(trodo_backend, "openai.") == _call_ids(traces.spans, "openai.")
    )
    assert traces.tree(spans=traces.spans) == traces.tree(spans=trodo_backend)
    root = traces.runs()[0]
    assert {k: root.attributes[k] for k in ROLLUP} == {
        "trodo.run.total_tokens_in": 70,
        "trodo.run.total_tokens_out": 8,
        "trodo.run.span_count": 3,
    }


def test_dual_export_inside_llm_decorator_counts_once(both_on, fake_openai):
    """Inside @trodo.llm the call merges into it; trodo's backend has that one LLM span, rollups count once."""
    exporter, receiver = both_on
    client = _client(fake_openai)
    fake_openai.reply("Paris.", usage=(30, 2))

    @trodo.llm
    def ask(question: str) -> str:
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
        )
        return reply.choices[0].message.content

    @trodo.agent("geo-bot")
    def bot() -> str:
        return ask("Capital of France?")

    with capture() as traces:
        assert bot() == "Paris."
    app, trodo_backend = _backends(traces, exporter, receiver)

    assert traces.tree(spans=trodo_backend) == [
        {
            "name": "geo-bot",
            "kind": "run",
            "status": "OK",
            "children": [{"name": "ask", "kind": "llm", "status": "OK", "children": []}],
        }
    ]
    assert traces.tree(spans=app) == [
        {
            "name": "geo-bot",
            "kind": "run",
            "status": "OK",
            "children": [
                {
                    "name": "ask",
                    "kind": "llm",
                    "status": "OK",
                    "children": [
                        {"name": "chat gpt-4o-mini", "kind": "function", "status": "UNSET", "children": []}
                    ],
                }
            ],
        }
    ]
    root = traces.runs()[0]
    assert (root.attributes["trodo.run.total_tokens_in"], root.attributes["trodo.run.total_tokens_out"]) == (
        30,
        2,
    )


def test_without_dual_export_each_backend_has_its_own_span(app_provider, fake_openai):
    """OpenAIInstrumentor on the app's provider, trodo not attached: one span per backend, the run keeps its call."""
    provider, exporter = app_provider
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        trodo.init(instrument=["openai"])
        client = _client(fake_openai)
        fake_openai.reply("Paris.", usage=(30, 2))

        @trodo.agent("geo-bot")
        def bot() -> str:
            reply = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Q?"}]
            )
            return reply.choices[0].message.content

        with capture() as traces:
            assert bot() == "Paris."
        trodo.shutdown()
    finally:
        instrumentor.uninstrument()

    assert traces.tree() == [
        {
            "name": "geo-bot",
            "kind": "run",
            "status": "OK",
            "children": [{"name": "openai.chat.completions", "kind": "llm", "status": "OK", "children": []}],
        }
    ]
    assert [(s.name, s.run_id) for s in map(_captured, exporter.get_finished_spans())] == [
        ("chat gpt-4o-mini", None)
    ]
    assert traces.runs()[0].attributes["trodo.run.total_tokens_in"] == 30


async def test_dual_export_async_and_embeddings_show_once_per_backend(both_on, fake_openai):
    """Async chat and an embeddings call beside OpenAIInstrumentor: one span each per backend, same ids."""
    exporter, receiver = both_on
    client = openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="test", max_retries=0)
    fake_openai.reply(None, usage=(8, 0))  # the embeddings call
    fake_openai.reply("Paris.", usage=(30, 2))

    @trodo.agent("geo-bot")
    async def bot() -> str:
        await client.embeddings.create(model="text-embedding-3-small", input=["Capital of France?"])
        reply = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Capital of France?"}]
        )
        return reply.choices[0].message.content

    with capture() as traces:
        assert await bot() == "Paris."
    app, trodo_backend = _backends(traces, exporter, receiver)
    await client.close()

    assert traces.tree(spans=app) == [
        {
            "name": "geo-bot",
            "kind": "run",
            "status": "OK",
            "children": [
                {
                    "name": "embeddings text-embedding-3-small",
                    "kind": "function",
                    "status": "UNSET",
                    "children": [],
                },
                {"name": "chat gpt-4o-mini", "kind": "function", "status": "UNSET", "children": []},
            ],
        }
    ]
    assert traces.tree(spans=trodo_backend) == [
        {
            "name": "geo-bot",
            "kind": "run",
            "status": "OK",
            "children": [
                {"name": "openai.embeddings", "kind": "function", "status": "OK", "children": []},
                {"name": "openai.chat.completions", "kind": "llm", "status": "OK", "children": []},
            ],
        }
    ]
    assert _call_ids(app, ("chat ", "embeddings ")) == _call_ids(trodo_backend, "openai.")
    assert traces.runs()[0].attributes["trodo.run.total_tokens_in"] == 30 + 8
