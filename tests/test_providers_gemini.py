"""google-genai, instrumented: generate_content (plain, streamed), embed_content, sync and client.aio,
Gemini API and Vertex AI clients, function calls, thinking and cached tokens, errors, streams cut or
abandoned, content capture and counting once — against the fake Gemini server."""

from __future__ import annotations

import asyncio
import gc
import json

import google.oauth2.credentials
import pytest
from google import genai
from google.genai import errors, types
from provider_fakes import LLM_KEYS, RUN_KEYS, cost, messages_of

import trodo_trace as trodo
from trodo_trace.testing import FakeGemini, capture

MODEL = "gemini-2.5-flash"
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Weather of a city",
    parameters=types.Schema(type="OBJECT", properties={"city": types.Schema(type="STRING")}),
)


@pytest.fixture
def fake_gemini():
    """A fake Gemini / Vertex AI server for one test."""
    with FakeGemini() as fake:
        yield fake


@pytest.fixture
def gemini(fake_gemini):
    """A Gemini API client pointed at the fake."""
    return genai.Client(api_key="test-key", http_options={"base_url": fake_gemini.base_url})


def _vertex(fake: FakeGemini) -> genai.Client:
    """A Vertex AI client pointed at the fake: project, location and a ready token, no ADC lookup."""
    credentials = google.oauth2.credentials.Credentials(token="test-token")
    return genai.Client(
        vertexai=True,
        project="test-project",
        location="us-central1",
        credentials=credentials,
        http_options={"base_url": fake.base_url},
    )


def _llm(attributes: dict) -> dict:
    return {k: attributes[k] for k in LLM_KEYS if k in attributes and k != "trodo.run.id"}


def test_generate_content_is_an_llm_span_with_thinking_and_cached_tokens(gemini, fake_gemini):
    """generate_content in an agent: one LLM child; cached prompt and thinking tokens counted and priced."""
    fake_gemini.reply("Sunny.", usage=(1200, 40), cached_tokens=1000, reasoning_tokens=30)

    @trodo.agent("weather-bot")
    def bot():
        reply = gemini.models.generate_content(
            model=MODEL,
            contents="Weather in Paris?",
            config=types.GenerateContentConfig(
                system_instruction="Be terse.",
                temperature=0.3,
                max_output_tokens=200,
                tools=[types.Tool(function_declarations=[WEATHER])],
            ),
        )
        return reply.text

    with capture(deterministic=True) as traces:
        assert bot() == "Sunny."
    expected = cost(MODEL, 1200, 40, cache_read=1000)
    assert traces.tree(RUN_KEYS) == [
        {
            "name": "weather-bot",
            "kind": "run",
            "status": "OK",
            "attributes": {
                "trodo.run.total_tokens_in": 1200,
                "trodo.run.total_tokens_out": 40,
                "trodo.run.total_cost": pytest.approx(expected),
            },
            "children": [
                {
                    "name": "gemini.generate_content",
                    "kind": "llm",
                    "status": "OK",
                    "attributes": {},
                    "children": [],
                }
            ],
        }
    ]
    span = traces.by_name("gemini.generate_content")
    assert _llm(span.attributes) == {
        "openinference.span.kind": "LLM",
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "gcp.gemini",
        "llm.provider": "google",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.model": MODEL,
        "gen_ai.request.temperature": 0.3,
        "gen_ai.request.max_tokens": 200,
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 40,
        "llm.token_count.total": 1240,
        "llm.token_count.prompt_details.cache_read": 1000,
        "llm.token_count.completion_details.reasoning": 30,
        "gen_ai.response.finish_reasons": ("STOP",),
        "gen_ai.response.id": "resp-fake",
        "trodo.llm.cost": pytest.approx(expected),
    }
    assert messages_of(span.attributes) == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    assert messages_of(span.attributes, "output") == [{"role": "assistant", "content": "Sunny."}]
    schema = json.loads(span.attributes["llm.tools.0.tool.json_schema"])
    assert (schema["name"], schema["parameters"]["properties"]) == (
        "get_weather",
        {"city": {"type": "STRING"}},
    )
    assert json.loads(span.attributes["llm.invocation_parameters"]) == {
        "model": MODEL,
        "temperature": 0.3,
        "max_output_tokens": 200,
    }


def test_function_call_round_trip(gemini, fake_gemini):
    """A functionCall reply is an output tool call; the follow-up keeps the call and the function response."""
    fake_gemini.reply(None, tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "fc1"}])
    fake_gemini.reply("18C in Paris.")
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])])
    with capture() as traces:
        first = gemini.models.generate_content(model=MODEL, contents="Weather in Paris?", config=config)
        call = first.function_calls[0]
        gemini.models.generate_content(
            model=MODEL,
            config=config,
            contents=[
                types.Content(role="user", parts=[types.Part(text="Weather in Paris?")]),
                first.candidates[0].content,
                types.Content(
                    role="user",
                    parts=[types.Part.from_function_response(name=call.name, response={"result": "18C"})],
                ),
            ],
        )
    asked, answered = traces.spans
    assert messages_of(asked.attributes, "output") == [
        {
            "role": "assistant",
            "tool_calls.0.tool_call.function.name": "get_weather",
            "tool_calls.0.tool_call.function.arguments": '{"city": "Paris"}',
            "tool_calls.0.tool_call.id": "fc1",
        }
    ]
    history = messages_of(answered.attributes)
    assert [m["role"] for m in history] == ["user", "assistant", "tool"]
    assert history[1]["tool_calls.0.tool_call.function.name"] == "get_weather"
    assert json.loads(history[2]["content"])["response"] == {"result": "18C"}


def test_stream_joins_chunks_with_usage_and_ttft(gemini, fake_gemini):
    """generate_content_stream (SSE): the chunks spell the text; usage from the last chunk; TTFT recorded."""
    fake_gemini.reply("one two three four five six seven", usage=(14, 9))
    with capture() as traces:
        pieces = [
            chunk.text for chunk in gemini.models.generate_content_stream(model=MODEL, contents="Count")
        ]
    assert "".join(pieces) == "one two three four five six seven"
    span = traces.by_name("gemini.generate_content")
    assert _llm(span.attributes) == {
        "openinference.span.kind": "LLM",
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "gcp.gemini",
        "llm.provider": "google",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.model": MODEL,
        "gen_ai.usage.input_tokens": 14,
        "gen_ai.usage.output_tokens": 9,
        "llm.token_count.total": 23,
        "gen_ai.response.finish_reasons": ("STOP",),
        "gen_ai.response.id": "resp-fake",
        "trodo.llm.cost": pytest.approx(cost(MODEL, 14, 9)),
    }
    assert span.attributes["trodo.llm.time_to_first_token_ms"] > 0
    assert messages_of(span.attributes, "output")[0]["content"] == "one two three four five six seven"


# google-genai's aiohttp session subclasses aiohttp's ClientSession, which aiohttp warns about
@pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")
def test_async_calls_in_parallel_under_one_agent(gemini, fake_gemini):
    """client.aio: generate_content and a stream run concurrently in one run, each its own child span."""

    @trodo.agent("async-bot")
    async def bot():
        async def streamed():
            return "".join(
                [
                    c.text
                    async for c in await gemini.aio.models.generate_content_stream(model=MODEL, contents="b")
                ]
            )

        plain, text = await asyncio.gather(
            gemini.aio.models.generate_content(model=MODEL, contents="a"), streamed()
        )
        return plain.text, text

    with capture(deterministic=True) as traces:
        assert asyncio.run(bot()) == ("Hello from the fake server.", "Hello from the fake server.")
    tree = traces.tree(RUN_KEYS)
    assert tree[0]["attributes"] == {
        "trodo.run.total_tokens_in": 20,
        "trodo.run.total_tokens_out": 10,
        "trodo.run.total_cost": pytest.approx(2 * cost(MODEL, 10, 5)),
    }
    assert [(c["name"], c["kind"], c["status"]) for c in tree[0]["children"]] == [
        ("gemini.generate_content", "llm", "OK")
    ] * 2
    streamed = [s for s in traces.spans if "trodo.llm.time_to_first_token_ms" in s.attributes]
    assert len(streamed) == 1


def test_vertex_client_generate_and_embed(fake_gemini):
    """A vertexai=True client is provider gcp.vertex_ai for chat and embeddings (the :predict path);
    the embedding model, billed per character by Google, is priced here by an override."""
    trodo.init(pricing={"text-embedding-005": {"input": 0.1, "output": 0.0}})
    client = _vertex(fake_gemini)
    fake_gemini.reply(usage=(12, 0))
    with capture() as traces:
        client.models.embed_content(model="text-embedding-005", contents=["alpha", "beta"])
        client.models.generate_content(model=MODEL, contents="hi")
    embedded, generated = traces.spans
    assert "/projects/test-project/locations/us-central1/" in fake_gemini.requests[0].path
    assert (embedded.name, embedded.kind, embedded.attributes["openinference.span.kind"]) == (
        "gemini.embed_content",
        "function",
        "EMBEDDING",
    )
    assert embedded.attributes["gen_ai.provider.name"] == "gcp.vertex_ai"
    assert embedded.attributes["gen_ai.usage.input_tokens"] == 12
    assert embedded.attributes["embedding.embeddings.1.embedding.text"] == "beta"
    assert embedded.attributes["trodo.llm.cost"] == pytest.approx(12 * 0.1 / 1e6)
    assert generated.attributes["gen_ai.provider.name"] == "gcp.vertex_ai"
    assert generated.attributes["trodo.llm.cost"] == pytest.approx(cost(MODEL, 10, 5))


def test_embed_content_gemini_api(gemini, fake_gemini):
    """embed_content on the Gemini API: an EMBEDDING span with the texts, usage when the reply has it, cost."""
    fake_gemini.reply(usage=(7, 0))
    with capture() as traces:
        result = gemini.models.embed_content(model="gemini-embedding-001", contents=["a", "b"])
    assert len(result.embeddings) == 2
    span = traces.by_name("gemini.embed_content")
    assert span.attributes["gen_ai.operation.name"] == "embeddings"
    assert json.loads(span.attributes["output.value"]) == {"embeddings": 2, "dimensions": 3}
    tokens = span.attributes.get("gen_ai.usage.input_tokens")
    if tokens is not None:  # google-genai 3.x reads usageMetadata; 2.x drops it
        assert span.attributes["trodo.llm.cost"] == pytest.approx(cost("gemini-embedding-001", 7, 0))


@pytest.mark.parametrize(("status", "error"), [(429, errors.ClientError), (500, errors.ServerError)])
def test_errors_reach_the_caller_unchanged(gemini, fake_gemini, status, error):
    """A 429 or 500: google-genai's own error reaches the caller; the span is ERROR with type and status."""
    fake_gemini.fail(status, "try later")
    with capture() as traces, pytest.raises(error) as caught:
        gemini.models.generate_content(model=MODEL, contents="hi")
    assert caught.value.code == status
    span = traces.by_name("gemini.generate_content")
    assert span.status == "ERROR"
    assert span.attributes["error.type"] == f"google.genai.errors.{error.__name__}"
    assert span.attributes["http.response.status_code"] == status


def test_connection_dropped_mid_stream(gemini, fake_gemini):
    """A connection cut mid-stream: the transport error reaches the caller; the span is ERROR with the text seen."""
    fake_gemini.reply("one two three four five six seven", drop_after=1)
    received = []
    with capture() as traces, pytest.raises(Exception) as caught:
        for chunk in gemini.models.generate_content_stream(model=MODEL, contents="Count"):
            received.append(chunk.text)
    span = traces.by_name("gemini.generate_content")
    assert span.status == "ERROR"
    assert span.attributes["error.type"].endswith(type(caught.value).__name__)
    assert received == ["one two three "]
    assert messages_of(span.attributes, "output")[0]["content"] == "one two three "


def test_stream_left_early_or_abandoned_ends_the_span(gemini, fake_gemini):
    """Closing a stream after its first chunk, or dropping it, ends the span marked closed early."""
    fake_gemini.reply("one two three four five six seven eight nine")
    with capture() as traces:
        stream = gemini.models.generate_content_stream(model=MODEL, contents="Count")
        next(stream)
        stream.close()
        abandoned = gemini.models.generate_content_stream(model=MODEL, contents="Count")
        next(abandoned)
        del abandoned
        gc.collect()
    left, dropped = traces.spans
    assert (left.status, left.attributes["trodo.llm.stream.closed_early"]) == ("OK", True)
    assert messages_of(left.attributes, "output")[0]["content"] == "one two three "
    assert dropped.attributes["trodo.llm.stream.closed_early"] is True


def test_capture_content_off_keeps_counts_drops_messages(fake_gemini):
    """capture_content=False: model, tokens and cost stay; no message, tool schema, text or input/output value."""
    trodo.init(capture_content=False)
    client = genai.Client(api_key="k", http_options={"base_url": fake_gemini.base_url})
    config = types.GenerateContentConfig(
        system_instruction="secret", tools=[types.Tool(function_declarations=[WEATHER])]
    )
    with capture() as traces:
        client.models.generate_content(model=MODEL, contents="secret", config=config)
        list(client.models.generate_content_stream(model=MODEL, contents="secret"))
        client.models.embed_content(model="gemini-embedding-001", contents="secret")
    assert len(traces.spans) == 3
    for span in traces.spans:
        leaked = [
            k
            for k in span.attributes
            if k.startswith(
                ("llm.input_messages", "llm.output_messages", "llm.tools", "embedding.embeddings")
            )
        ]
        assert leaked == []
        assert "input.value" not in span.attributes and "output.value" not in span.attributes
        assert span.attributes["gen_ai.request.model"]
    assert traces.spans[0].attributes["gen_ai.usage.input_tokens"] == 10


def test_counted_once_inside_an_llm_span_and_chats(gemini, fake_gemini):
    """A chat turn inside @trodo.llm merges into the decorator's span: one LLM row, tokens and cost once."""
    fake_gemini.reply("hi", usage=(100, 20))

    @trodo.llm(model=MODEL, provider="gcp.gemini")
    def complete(prompt):
        return gemini.chats.create(model=MODEL).send_message(prompt).text

    @trodo.agent("bot")
    def bot():
        return complete("hello")

    with capture(deterministic=True) as traces:
        assert bot() == "hi"
    merged = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "trodo.llm.provider_calls")
    assert traces.tree(merged + RUN_KEYS) == [
        {
            "name": "bot",
            "kind": "run",
            "status": "OK",
            "attributes": {
                "trodo.run.total_tokens_in": 100,
                "trodo.run.total_tokens_out": 20,
                "trodo.run.total_cost": pytest.approx(cost(MODEL, 100, 20)),
            },
            "children": [
                {
                    "name": "complete",
                    "kind": "llm",
                    "status": "OK",
                    "attributes": {
                        "gen_ai.usage.input_tokens": 100,
                        "gen_ai.usage.output_tokens": 20,
                        "trodo.llm.provider_calls": 1,
                    },
                    "children": [],
                }
            ],
        }
    ]


def test_uninstrument_and_instrument_again(gemini, fake_gemini):
    """After uninstrument the client's calls are not traced; instrument_gemini() covers the same client again."""
    from trodo_trace.integrations import providers

    with capture() as traces:
        providers.uninstrument("gemini")  # (the runtime started by capture() instrumented it)
        gemini.models.generate_content(model=MODEL, contents="untraced")
        trodo.instrument_gemini()
        gemini.models.generate_content(model=MODEL, contents="traced")
    assert [messages_of(span.attributes)[0]["content"] for span in traces.spans] == ["traced"]


def test_import_and_init_import_neither_boto3_nor_genai(tmp_path):
    """import trodo_trace, its test kit and init() import neither botocore nor google-genai; each is
    patched when the app imports it."""
    import subprocess
    import sys

    code = (
        "import sys, trodo_trace as trodo, trodo_trace.testing\n"
        "trodo.init(store_path=sys.argv[1])\n"
        "assert 'botocore' not in sys.modules and 'google.genai' not in sys.modules, 'imported early'\n"
        "from trodo_trace.integrations import providers\n"
        "import boto3\n"
        "assert 'bedrock' in providers.instrumented(), providers.instrumented()\n"
        "from google import genai\n"
        "assert {'bedrock', 'gemini'} <= providers.instrumented(), providers.instrumented()\n"
        "trodo.shutdown()\n"
        "assert not {'bedrock', 'gemini'} & providers.instrumented()\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "t.db")], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_connection_refused_is_an_error_span(fake_gemini):
    """No server listening: the transport's connection error reaches the caller; the span is ERROR."""
    client = genai.Client(api_key="k", http_options={"base_url": fake_gemini.base_url})
    fake_gemini.stop()  # its port is now closed
    with capture() as traces, pytest.raises(Exception) as caught:
        client.models.generate_content(model=MODEL, contents="hi")
    span = traces.by_name("gemini.generate_content")
    assert span.status == "ERROR"
    assert span.attributes["error.type"].endswith(type(caught.value).__name__)
    assert "Connect" in type(caught.value).__name__
