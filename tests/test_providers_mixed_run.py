"""One agent calling several providers (OpenAI, Anthropic, Amazon Bedrock, Gemini, Vertex AI, an
OpenAI-compatible host): one run, one child per call with its own provider, rollups adding up."""

from __future__ import annotations

import boto3
import google.oauth2.credentials
import pytest
from botocore.config import Config
from google import genai
from provider_fakes import cost

import trodo_trace as trodo
from trodo_trace.testing import FakeAnthropic, FakeBedrock, FakeGemini, FakeOpenAI, capture

QUESTION = "Capital of France?"


def test_one_agent_calls_every_provider():
    """Six provider calls from one @trodo.agent: the whole tree, each provider named, tokens and cost summed."""
    import anthropic
    import openai

    with FakeOpenAI() as fake_openai, FakeOpenAI() as fake_groq, FakeAnthropic() as fake_anthropic:
        with FakeBedrock() as fake_bedrock, FakeGemini() as fake_gemini:
            trodo.init(provider_hosts={fake_groq.url.removeprefix("http://"): "groq"})
            oai = openai.OpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=0)
            groq = openai.OpenAI(base_url=fake_groq.base_url, api_key="k", max_retries=0)
            claude = anthropic.Anthropic(base_url=fake_anthropic.base_url, api_key="k", max_retries=0)
            bedrock = boto3.client(
                "bedrock-runtime",
                region_name="eu-west-1",
                endpoint_url=fake_bedrock.url,
                aws_access_key_id="test",
                aws_secret_access_key="test",
                config=Config(retries={"total_max_attempts": 1}),
            )
            gemini = genai.Client(api_key="k", http_options={"base_url": fake_gemini.base_url})
            vertex = genai.Client(
                vertexai=True,
                project="p",
                location="europe-west4",
                credentials=google.oauth2.credentials.Credentials(token="t"),
                http_options={"base_url": fake_gemini.base_url},
            )
            fake_gemini.reply("Paris.", usage=(20, 3))
            fake_gemini.reply("Paris.", usage=(22, 3), cached_tokens=10)

            @trodo.agent("tour")
            def tour() -> list[str]:
                user = [{"role": "user", "content": QUESTION}]
                return [
                    oai.chat.completions.create(model="gpt-4o-mini", messages=user)
                    .choices[0]
                    .message.content,
                    groq.chat.completions.create(model="llama-3.1-8b-instant", messages=user)
                    .choices[0]
                    .message.content,
                    claude.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=user)
                    .content[0]
                    .text,
                    bedrock.converse(
                        modelId="eu.amazon.nova-micro-v1:0",
                        messages=[{"role": "user", "content": [{"text": QUESTION}]}],
                    )["output"]["message"]["content"][0]["text"],
                    gemini.models.generate_content(model="gemini-2.5-flash", contents=QUESTION).text,
                    vertex.models.generate_content(model="gemini-2.5-pro", contents=QUESTION).text,
                ]

            with capture(deterministic=True) as traces:
                answers = tour()
            for client in (oai, groq, claude, bedrock):
                client.close()
    assert answers[-2:] == ["Paris.", "Paris."]
    keys = ("gen_ai.provider.name", "trodo.run.total_tokens_in", "trodo.run.total_tokens_out")
    expected_calls = [
        ("openai.chat.completions", "openai"),
        ("openai.chat.completions", "groq"),
        ("anthropic.messages", "anthropic"),
        ("bedrock.converse", "aws.bedrock"),
        ("gemini.generate_content", "gcp.gemini"),
        ("gemini.generate_content", "gcp.vertex_ai"),
    ]
    assert traces.tree(keys) == [
        {
            "name": "tour",
            "kind": "run",
            "status": "OK",
            "attributes": {
                "trodo.run.total_tokens_in": 10 * 4 + 20 + 22,
                "trodo.run.total_tokens_out": 5 * 4 + 6,
            },
            "children": [
                {
                    "name": name,
                    "kind": "llm",
                    "status": "OK",
                    "attributes": {"gen_ai.provider.name": provider},
                    "children": [],
                }
                for name, provider in expected_calls
            ],
        }
    ]
    costs = [
        cost("gpt-4o-mini", 10, 5),
        cost("llama-3.1-8b-instant", 10, 5),
        cost("claude-haiku-4-5", 10, 5),
        cost("eu.amazon.nova-micro-v1:0", 10, 5),
        cost("gemini-2.5-flash", 20, 3),
        cost("gemini-2.5-pro", 22, 3, cache_read=10),
    ]
    llm_costs = [span.attributes["trodo.llm.cost"] for span in traces.spans if span.kind == "llm"]
    assert llm_costs == pytest.approx(costs)
    run = traces.runs()[0].attributes
    assert run["trodo.run.total_cost"] == pytest.approx(sum(costs))
    assert "trodo.run.cost_incomplete" not in run
    assert run["trodo.run.span_count"] == 7
