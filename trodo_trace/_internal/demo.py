"""``trodo-trace demo``: an offline travel assistant traced into the local store, its runs printed.

It shows every part of a run: tools, a retrieval, LLM calls with token usage and cost (OpenAI-
and Anthropic-shaped responses, no network), a sub-agent run, a two-turn conversation and a tool
error that the agent handles.
"""

from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path
from typing import Any

import trodo_trace as trodo

_DOCS: list[dict[str, Any]] = [
    {
        "id": "kb-paris-weather",
        "content": "Paris in spring: mild, 12-18 C, frequent short showers.",
        "score": 0.92,
    },
    {
        "id": "kb-umbrella",
        "content": "Carry a compact umbrella when the rain chance is above 40%.",
        "score": 0.81,
    },
    {"id": "kb-metro", "content": "The Paris metro runs 05:30-01:15; tickets cost 2.15 EUR.", "score": 0.33},
]


class _Flaky:
    """The weather service times out on its first call (the agent retries)."""

    calls = 0


@trodo.retrieval
def search_knowledge_base(query: str, top_k: int = 2) -> list[dict[str, Any]]:
    words = {w.strip("?,.'").lower() for w in query.split()}
    ranked = sorted(_DOCS, key=lambda d: (-len(words & set(d["content"].lower().split())), -d["score"]))
    return ranked[:top_k]


@trodo.tool
def get_weather(city: str) -> dict[str, Any]:
    _Flaky.calls += 1
    if _Flaky.calls == 1:
        raise TimeoutError(f"weather service did not answer for {city!r} within 2.0 s")
    return {"city": city, "forecast": "light rain", "rain_chance": 0.6, "temp_c": 14}


@trodo.llm(model="gpt-4o-mini", provider="openai", temperature=0.2)
def plan(question: str, context: list[dict[str, Any]]) -> dict[str, Any]:
    prompt_tokens = 180 + 12 * len(context)
    return {
        "id": "chatcmpl-demo",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"message": {"role": "assistant", "content": "Check the weather, then advise."}}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": 24,
            "total_tokens": prompt_tokens + 24,
        },
    }


@trodo.llm(model="claude-3-5-haiku-20241022", provider="anthropic")
def judge_umbrella(forecast: dict[str, Any]) -> dict[str, Any]:
    need = forecast["rain_chance"] > 0.4
    return {
        "model": "claude-3-5-haiku-20241022",
        "content": [{"type": "text", "text": "Yes, take an umbrella." if need else "No umbrella needed."}],
        "usage": {
            "input_tokens": 95,
            "output_tokens": 9,
            "cache_read_input_tokens": 64,
            "cache_creation_input_tokens": 0,
        },
    }


@trodo.agent("umbrella-advisor", sub_run=True)
def umbrella_advisor(forecast: dict[str, Any]) -> str:
    verdict = judge_umbrella(forecast)
    text: str = verdict["content"][0]["text"]
    return text


@trodo.llm(model="gpt-4o-mini", provider="openai", temperature=0.2)
def answer(question: str, facts: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"message": {"role": "assistant", "content": f"{facts}"}}],
        "usage": {
            "prompt_tokens": 240,
            "completion_tokens": 58,
            "prompt_tokens_details": {"cached_tokens": 128},
        },
    }


def travel_assistant(run: trodo.Run, question: str) -> str:
    run.set_input({"question": question})
    context = search_knowledge_base(question)
    plan(question, context)
    try:
        forecast = get_weather("Paris")
    except TimeoutError:
        run.set_metadata(weather_retries=1)
        forecast = get_weather("Paris")
    facts: dict[str, Any] = {"forecast": forecast["forecast"], "temp_c": forecast["temp_c"]}
    if "umbrella" in question.lower():
        facts["umbrella"] = umbrella_advisor(forecast)
    reply = answer(question, facts)
    content: str = reply["choices"][0]["message"]["content"]
    return content


def main(store_path: str | os.PathLike[str] | None = None) -> int:
    """Run the demo into the store at ``store_path`` and print each run's tree."""
    from .config import default_store_path
    from .display.render import format_run_tree
    from .store.local import LocalStore

    path = Path(store_path) if store_path else default_store_path()
    trodo.init(store_path=str(path), service_name="trodo-demo")
    conversation_id = f"demo-{uuid.uuid4().hex[:8]}"
    _Flaky.calls = 0
    run_ids = []
    for question in ("What's the weather in Paris tomorrow?", "Should I take an umbrella?"):
        _, run_id = trodo.wrap_agent(
            "travel-assistant",
            functools.partial(travel_assistant, question=question),
            distinct_id="demo-user",
            conversation_id=conversation_id,
            metadata={"channel": "cli-demo"},
        )
        run_ids.append(run_id)
    if not trodo.flush(10.0):
        print("trodo-trace: the demo's spans could not all be stored; see the log above")
        return 1
    with LocalStore(path, create=False) as store:
        stored = store.conversation_runs(conversation_id)
        subs = sum(1 for run in stored if run.get("parent_run_id"))
        turns = len(stored) - subs
        counted = f"{turns} run{'s' if turns != 1 else ''}"
        if subs:
            counted += f" and {subs} sub-run{'s' if subs != 1 else ''} they started"
        print(f"Stored conversation {conversation_id} ({counted}) in {path}\n")
        for run_id in run_ids:
            run = store.get_run(run_id)
            if run is None:
                print(f"trodo-trace: run {run_id} is missing from {path}")
                return 1
            sub_runs = store.sub_runs(run_id)
            print(format_run_tree(run, store.get_spans(run_id), sub_runs))
            for sub in sub_runs:
                print()
                print(format_run_tree(sub, store.get_spans(sub["run_id"]), parent_run=run))
            print()
    print("Next: trodo-trace runs | trodo-trace show RUN_ID | trodo-trace conversation " + conversation_id)
    trodo.shutdown()
    return 0
