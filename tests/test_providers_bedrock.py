"""Amazon Bedrock through boto3, instrumented: converse, converse_stream, invoke_model and
invoke_model_with_response_stream (Anthropic, Nova, Llama, Mistral bodies), errors, streams cut or
abandoned, content capture and counting once — against the fake Bedrock Runtime."""

from __future__ import annotations

import gc
import json

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config
from provider_fakes import LLM_KEYS, RUN_KEYS, cost, messages_of

import trodo_trace as trodo
from trodo_trace.integrations import providers
from trodo_trace.testing import FakeBedrock, capture

MODEL = "us.anthropic.claude-sonnet-4-6-v1:0"
NOVA = "amazon.nova-lite-v1:0"
MESSAGES = [{"role": "user", "content": [{"text": "Weather in Paris?"}]}]
TOOL_SPEC = {
    "name": "get_weather",
    "description": "Weather of a city",
    "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


@pytest.fixture
def fake_bedrock():
    """A fake Bedrock Runtime for one test."""
    with FakeBedrock() as fake:
        yield fake


def _client(fake: FakeBedrock, service: str = "bedrock-runtime"):
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=fake.url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture
def bedrock(fake_bedrock):
    """A boto3 bedrock-runtime client pointed at the fake, without retries."""
    client = _client(fake_bedrock)
    yield client
    client.close()


def _llm(attributes: dict) -> dict:
    return {k: attributes[k] for k in LLM_KEYS if k in attributes and k != "trodo.run.id"}


def test_converse_is_an_llm_span_with_cache_usage_and_cost(bedrock, fake_bedrock):
    """converse in an agent: one LLM child with the cross-region model priced as its family, cache reads counted."""
    fake_bedrock.reply("Sunny.", usage=(1300, 10), cached_tokens=1000)

    @trodo.agent("weather-bot")
    def bot():
        reply = bedrock.converse(
            modelId=MODEL,
            system=[{"text": "Be terse."}],
            messages=MESSAGES,
            inferenceConfig={"maxTokens": 100, "temperature": 0.2},
            toolConfig={"tools": [{"toolSpec": TOOL_SPEC}]},
        )
        return reply["output"]["message"]["content"][0]["text"]

    with capture(deterministic=True) as traces:
        assert bot() == "Sunny."
    expected = cost(MODEL, 1300, 10, cache_read=1000)
    assert traces.tree(RUN_KEYS) == [
        {
            "name": "weather-bot",
            "kind": "run",
            "status": "OK",
            "attributes": {
                "trodo.run.total_tokens_in": 1300,
                "trodo.run.total_tokens_out": 10,
                "trodo.run.total_cost": pytest.approx(expected),
            },
            "children": [
                {"name": "bedrock.converse", "kind": "llm", "status": "OK", "attributes": {}, "children": []}
            ],
        }
    ]
    span = traces.by_name("bedrock.converse")
    assert _llm(span.attributes) == {
        "openinference.span.kind": "LLM",
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "aws.bedrock",
        "llm.provider": "aws",
        "gen_ai.request.model": MODEL,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 100,
        "gen_ai.usage.input_tokens": 1300,
        "gen_ai.usage.output_tokens": 10,
        "llm.token_count.total": 1310,
        "llm.token_count.prompt_details.cache_read": 1000,
        "gen_ai.response.finish_reasons": ("end_turn",),
        "gen_ai.response.id": "req-fake",
        "trodo.llm.cost": pytest.approx(expected),
    }
    assert messages_of(span.attributes) == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    assert messages_of(span.attributes, "output") == [{"role": "assistant", "content": "Sunny."}]
    assert json.loads(span.attributes["llm.tools.0.tool.json_schema"]) == TOOL_SPEC
    assert json.loads(span.attributes["llm.invocation_parameters"]) == {
        "modelId": MODEL,
        "inferenceConfig": {"maxTokens": 100, "temperature": 0.2},
    }
    assert json.loads(span.attributes["output.value"]) == {"role": "assistant", "content": "Sunny."}


def test_converse_tool_use_round_trip(bedrock, fake_bedrock):
    """A toolUse reply is an output tool call; the follow-up prompt keeps the assistant's toolUse."""
    fake_bedrock.reply(
        "Checking.", tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "t1"}]
    )
    with capture() as traces:
        first = bedrock.converse(
            modelId=NOVA, messages=MESSAGES, toolConfig={"tools": [{"toolSpec": TOOL_SPEC}]}
        )
        bedrock.converse(
            modelId=NOVA,
            messages=[
                *MESSAGES,
                first["output"]["message"],
                {
                    "role": "user",
                    "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "18C"}]}}],
                },
            ],
        )
    asked, answered = traces.spans
    assert messages_of(asked.attributes, "output") == [
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls.0.tool_call.function.name": "get_weather",
            "tool_calls.0.tool_call.function.arguments": '{"city": "Paris"}',
            "tool_calls.0.tool_call.id": "t1",
        }
    ]
    assert asked.attributes["gen_ai.response.finish_reasons"] == ("tool_use",)
    assert asked.attributes["trodo.llm.cost"] == pytest.approx(cost(NOVA, 10, 5))
    history = messages_of(answered.attributes)
    assert history[1]["tool_calls.0.tool_call.function.name"] == "get_weather"
    assert json.loads(history[2]["content"])["toolResult"]["toolUseId"] == "t1"


def test_converse_stream_text_tool_call_usage_and_ttft(bedrock, fake_bedrock):
    """converse_stream: the events (real event-stream frames) spell the text and tool call; usage from metadata."""
    fake_bedrock.reply(
        "Let me look that up.",
        tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}],
        usage=(30, 12),
    )
    with capture() as traces:
        response = bedrock.converse_stream(modelId=NOVA, messages=MESSAGES)
        events = list(response["stream"])
    assert [next(iter(e)) for e in events][:2] == ["messageStart", "contentBlockDelta"]
    span = traces.by_name("bedrock.converse")
    assert (span.kind, span.status) == ("llm", "OK")
    assert _llm(span.attributes) == {
        "openinference.span.kind": "LLM",
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "aws.bedrock",
        "llm.provider": "aws",
        "gen_ai.request.model": NOVA,
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 12,
        "llm.token_count.total": 42,
        "gen_ai.response.finish_reasons": ("tool_use",),
        "gen_ai.response.id": "req-fake",
        "trodo.llm.cost": pytest.approx(cost(NOVA, 30, 12)),
    }
    assert span.attributes["trodo.llm.time_to_first_token_ms"] > 0
    assert messages_of(span.attributes, "output") == [
        {
            "role": "assistant",
            "content": "Let me look that up.",
            "tool_calls.0.tool_call.function.name": "get_weather",
            "tool_calls.0.tool_call.function.arguments": '{"city": "Paris"}',
            "tool_calls.0.tool_call.id": "tooluse_0",
        }
    ]


BODIES = [
    (
        "anthropic.claude-haiku-4-5-20251001-v1:0",
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "Hi"}],
        },
        "end_turn",
    ),
    (
        "us.amazon.nova-pro-v1:0",
        {"messages": [{"role": "user", "content": [{"text": "Hi"}]}], "inferenceConfig": {"maxTokens": 50}},
        "end_turn",
    ),
    ("meta.llama3-1-70b-instruct-v1:0", {"prompt": "Hi", "max_gen_len": 50, "temperature": 0.5}, "stop"),
    ("mistral.mistral-large-2407-v1:0", {"prompt": "Hi", "max_tokens": 50}, "stop"),
    (
        "mistral.mistral-large-2407-v1:0",
        {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 50},
        "stop",
    ),
]


@pytest.mark.parametrize(("model", "body", "reason"), BODIES)
def test_invoke_model_each_body_format(bedrock, fake_bedrock, model, body, reason):
    """invoke_model: each family's body gives the prompt, the completion, usage, finish reason and cost;
    the caller still reads the whole body."""
    fake_bedrock.reply("Hello there.", usage=(21, 6))
    with capture() as traces:
        response = bedrock.invoke_model(modelId=model, body=json.dumps(body))
        payload = json.loads(response["body"].read())
    assert payload  # the body was put back unread
    span = traces.by_name("bedrock.invoke_model")
    attributes = span.attributes
    assert (span.kind, span.status, attributes["gen_ai.provider.name"]) == ("llm", "OK", "aws.bedrock")
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (21, 6)
    assert attributes["gen_ai.request.max_tokens"] == 50
    assert attributes["gen_ai.response.finish_reasons"] == (reason,)
    assert attributes["trodo.llm.cost"] == pytest.approx(cost(model, 21, 6))
    assert messages_of(attributes)[-1] == {"role": "user", "content": "Hi"}
    assert messages_of(attributes, "output") == [{"role": "assistant", "content": "Hello there."}]
    assert json.loads(attributes["llm.invocation_parameters"])["modelId"] == model


@pytest.mark.parametrize(("model", "body", "reason"), BODIES)
def test_invoke_model_with_response_stream_each_format(bedrock, fake_bedrock, model, body, reason):
    """invoke_model_with_response_stream: chunks of each family are joined; usage from the invocation metrics."""
    fake_bedrock.reply("one two three four five", usage=(17, 5))
    with capture() as traces:
        response = bedrock.invoke_model_with_response_stream(modelId=model, body=json.dumps(body))
        chunks = [json.loads(event["chunk"]["bytes"]) for event in response["body"]]
    assert chunks[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 5
    span = traces.by_name("bedrock.invoke_model")
    attributes = span.attributes
    assert span.status == "OK"
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (17, 5)
    assert attributes["gen_ai.response.finish_reasons"] == (reason,)
    assert attributes["trodo.llm.time_to_first_token_ms"] > 0
    assert messages_of(attributes, "output") == [{"role": "assistant", "content": "one two three four five"}]
    assert attributes["trodo.llm.cost"] == pytest.approx(cost(model, 17, 5))


def test_invoke_model_embedding(bedrock, fake_bedrock):
    """A Titan embedding through invoke_model is an EMBEDDING function span with its input tokens priced."""
    fake_bedrock.reply(usage=(8, 0))
    model = "amazon.titan-embed-text-v2:0"
    with capture() as traces:
        bedrock.invoke_model(modelId=model, body=json.dumps({"inputText": "hello world"}))
    span = traces.by_name("bedrock.invoke_model")
    attributes = span.attributes
    assert (span.kind, attributes["openinference.span.kind"], attributes["gen_ai.operation.name"]) == (
        "function",
        "EMBEDDING",
        "embeddings",
    )
    assert attributes["gen_ai.usage.input_tokens"] == 8
    assert attributes["embedding.embeddings.0.embedding.text"] == "hello world"
    assert attributes["trodo.llm.cost"] == pytest.approx(cost(model, 8, 0))
    assert json.loads(attributes["output.value"]) == {"embeddings": 1, "dimensions": 3}


@pytest.mark.parametrize(
    ("status", "code"),
    [(429, "ThrottlingException"), (400, "ThrottlingException"), (500, "InternalServerException")],
)
def test_errors_reach_the_caller_unchanged(bedrock, fake_bedrock, status, code):
    """A throttled or failed call: boto3's ClientError reaches the caller; the span is ERROR with type and status."""
    fake_bedrock.fail(status, "slow down", code=code)
    with capture() as traces, pytest.raises(botocore.exceptions.ClientError) as caught:
        bedrock.converse(modelId=NOVA, messages=MESSAGES)
    assert caught.value.response["Error"]["Code"] == code
    span = traces.by_name("bedrock.converse")
    assert span.status == "ERROR"
    assert span.attributes["error.type"] == f"botocore.errorfactory.{code}"
    assert span.attributes["http.response.status_code"] == status
    assert "gen_ai.usage.input_tokens" not in span.attributes


def test_connection_dropped_mid_stream(bedrock, fake_bedrock):
    """A connection cut mid-stream: urllib3's error reaches the caller; the span is ERROR with the text seen."""
    fake_bedrock.reply("one two three four five six seven", drop_after=2)
    received = []
    with capture() as traces:
        response = bedrock.converse_stream(modelId=NOVA, messages=MESSAGES)
        with pytest.raises(Exception) as caught:
            for event in response["stream"]:
                received.append(event)
    span = traces.by_name("bedrock.converse")
    assert span.status == "ERROR"
    assert span.attributes["error.type"].endswith(type(caught.value).__name__)
    assert len(received) == 2
    assert messages_of(span.attributes, "output")[0]["content"] == "one two three "


def test_stream_left_early_or_abandoned_ends_the_span(bedrock, fake_bedrock):
    """Breaking out of the event loop, or dropping the stream unread, ends the span marked closed early."""
    fake_bedrock.reply("one two three four five six seven eight nine")
    with capture() as traces:
        stream = bedrock.converse_stream(modelId=NOVA, messages=MESSAGES)["stream"]
        for event in stream:
            if "contentBlockDelta" in event:
                break
        stream.close()
        abandoned = bedrock.invoke_model_with_response_stream(
            modelId="meta.llama3-1-70b-instruct-v1:0", body=json.dumps({"prompt": "Hi"})
        )
        del abandoned
        gc.collect()
    left, dropped = traces.spans
    assert (left.status, left.attributes["trodo.llm.stream.closed_early"]) == ("OK", True)
    assert messages_of(left.attributes, "output")[0]["content"] == "one two three "
    assert dropped.attributes["trodo.llm.stream.closed_early"] is True


def test_capture_content_off_keeps_counts_drops_messages(fake_bedrock):
    """capture_content=False: model, tokens and cost stay; no message, tool schema or input/output value."""
    trodo.init(capture_content=False)
    client = _client(fake_bedrock)
    with capture() as traces:
        client.converse(modelId=NOVA, messages=MESSAGES, toolConfig={"tools": [{"toolSpec": TOOL_SPEC}]})
        list(client.converse_stream(modelId=NOVA, messages=MESSAGES)["stream"])
        client.invoke_model(modelId="meta.llama3-1-70b-instruct-v1:0", body=json.dumps({"prompt": "secret"}))
    for span in traces.spans:
        leaked = [
            k
            for k in span.attributes
            if k.startswith(("llm.input_messages", "llm.output_messages", "llm.tools"))
        ]
        assert leaked == []
        assert "input.value" not in span.attributes and "output.value" not in span.attributes
        assert span.attributes["gen_ai.usage.input_tokens"] == 10
    assert len(traces.spans) == 3


def test_counted_once_inside_an_llm_span(bedrock, fake_bedrock):
    """converse inside @trodo.llm merges into the decorator's span: one LLM row, tokens and cost once."""
    fake_bedrock.reply("hi", usage=(100, 20))

    @trodo.llm(model=NOVA, provider="aws.bedrock")
    def complete(prompt):
        reply = bedrock.converse(modelId=NOVA, messages=[{"role": "user", "content": [{"text": prompt}]}])
        return reply["output"]["message"]["content"][0]["text"]

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
                "trodo.run.total_cost": pytest.approx(cost(NOVA, 100, 20)),
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


def test_clients_made_before_instrumenting_and_other_services(fake_bedrock):
    """A client made before instrument_bedrock() is traced; after uninstrument it is not; an S3 call never is."""
    with capture() as traces:
        providers.uninstrument("bedrock")  # (the runtime started by capture() instrumented it)
        early = _client(fake_bedrock)
        early.converse(modelId=NOVA, messages=MESSAGES)
        trodo.instrument_bedrock()
        early.converse(modelId=NOVA, messages=MESSAGES)
        s3 = _client(fake_bedrock, "s3")
        with pytest.raises(botocore.exceptions.ClientError):
            s3.list_buckets()
        providers.uninstrument("bedrock")
        early.converse(modelId=NOVA, messages=MESSAGES)
    assert [span.name for span in traces.spans] == ["bedrock.converse"]
    trodo.instrument_bedrock()
    assert "bedrock" in providers.instrumented()


def test_connection_refused_is_an_error_span(fake_bedrock):
    """No server listening: botocore's EndpointConnectionError reaches the caller; the span is ERROR."""
    client = _client(fake_bedrock)
    fake_bedrock.stop()  # its port is now closed
    with capture() as traces, pytest.raises(botocore.exceptions.EndpointConnectionError):
        client.converse(modelId=NOVA, messages=MESSAGES)
    span = traces.by_name("bedrock.converse")
    assert (span.status, span.attributes["error.type"]) == (
        "ERROR",
        "botocore.exceptions.EndpointConnectionError",
    )
