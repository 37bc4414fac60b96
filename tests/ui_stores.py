"""Stores for the dashboard tests, written through the real SDK in a child process.

``python tests/ui_stores.py STORE``: the demo (a two-turn conversation with a sub-run), then a
support bot whose LLM call goes through the OpenAI SDK to the fake OpenAI server (chat messages and a
tool call), a tracked event, a handled ``server_error`` and one feedback.

``python tests/ui_stores.py STORE --hostile``: the same shapes with HTML, script and ``javascript:``
payloads in every user-controlled string (names, ids, inputs, outputs, errors, events, feedback).
"""

from __future__ import annotations

import sys

import trodo_trace as trodo

HOSTILE = {
    "script": "<script>alert('script')</script>",
    "img": '"><img src=x onerror=alert("img")>',
    "js": "javascript:alert('js')",
    "svg": "'><svg onload=alert('svg')>",
}


def normal(store: str) -> None:
    from openai import OpenAI

    from trodo_trace._internal import demo
    from trodo_trace.testing import FakeOpenAI

    demo.main(store)
    trodo.init(store_path=store, service_name="support")
    trodo.instrument_openai()
    with FakeOpenAI() as fake:
        client = OpenAI(base_url=fake.base_url, api_key="test-key", max_retries=0)
        fake.reply(
            None, tool_calls=[{"name": "lookup_order", "arguments": {"order": "A-17"}, "id": "call_1"}]
        )
        fake.reply("Your order A-17 ships tomorrow.", usage=(40, 9))

        @trodo.tool
        def lookup_order(order: str) -> dict[str, str]:
            return {"order": order, "status": "shipped"}

        def support(run: trodo.Run, question: str) -> str:
            messages: list[dict[str, object]] = [
                {"role": "system", "content": "You are a support bot."},
                {"role": "user", "content": question},
            ]
            first = client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
            call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
            result = lookup_order("A-17")
            messages.append(first.choices[0].message.model_dump(exclude_none=True))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": str(result)})
            second = client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
            trodo.track("alice", "order_status_viewed", {"order": "A-17"})
            return second.choices[0].message.content or ""

        _, run_id = trodo.for_user("alice").wrap_agent(
            "support-bot", lambda run: support(run, "Where is my order A-17?"), conversation_id="support-1"
        )
    try:
        raise ConnectionError("payment gateway unreachable")
    except ConnectionError as exc:
        trodo.for_user("alice").capture_error(exc)
    trodo.feedback(run_id, score=1, comment="fast answer", distinct_id="alice")
    trodo.shutdown(10.0)


def hostile(store: str) -> None:
    trodo.init(store_path=store, service_name=HOSTILE["img"])
    script, img, js, svg = HOSTILE["script"], HOSTILE["img"], HOSTILE["js"], HOSTILE["svg"]

    @trodo.tool(name=svg)
    def bad_tool(text: str) -> str:
        raise ValueError(f"tool failed {img} {script}")

    @trodo.llm(name=img, model=script)
    def bad_llm(prompt: str) -> dict[str, object]:
        return {"choices": [{"message": {"role": "assistant", "content": script}}]}

    def child(run: trodo.Run) -> str:
        return js

    def agent(run: trodo.Run) -> str:
        bad_llm(script)
        try:
            bad_tool(js)
        except ValueError:
            pass
        trodo.wrap_agent(script, child, distinct_id=img, conversation_id=js, parent_run_id=run.run_id)
        trodo.track(img, "hostile_event", {"link": js, "html": script})
        return img

    _, run_id = trodo.wrap_agent(
        script, agent, distinct_id=img, conversation_id=js, metadata={"note": script, "url": js}
    )

    def failing(run: trodo.Run) -> None:
        raise RuntimeError(f"boom {script} {img}")

    try:
        trodo.wrap_agent(js, failing, distinct_id=js, conversation_id=js)
    except RuntimeError as exc:
        trodo.for_user(img).capture_error(exc)
    trodo.feedback(run_id, score=0, label=svg, comment=script, distinct_id=img)
    trodo.shutdown(10.0)


if __name__ == "__main__":
    (hostile if "--hostile" in sys.argv else normal)(sys.argv[1])
