"""Uses of the public API that ``mypy --strict`` must reject (never run; see tests/test_typing.py).

Each rejected line ends in ``# type: ignore[<code>]`` naming the error mypy must report there:
with ``warn_unused_ignores`` the file type-checks only if every one is needed, and
tests/test_typing.py checks the exact lines and codes with the ignores taken out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import trodo_trace as trodo


@trodo.tool
def double(x: int) -> str:
    return str(2 * x)


@trodo.llm(model="gpt-4o-mini")
def complete(prompt: str) -> dict[str, int]:
    return {"tokens": len(prompt)}


@trodo.agent
async def answer(question: str) -> str:
    return question


@trodo.chain
def numbers(n: int) -> Iterator[int]:
    yield n


@trodo.retrieval("docs")
async def documents(query: str) -> AsyncIterator[str]:
    yield query


def no_run() -> str:
    return "takes no run"


# Decorated functions keep their parameters and return types.
double("2")  # type: ignore[arg-type]
double(1, 2)  # type: ignore[call-arg]
double(y=1)  # type: ignore[call-arg]
as_int: int = double(2)  # type: ignore[assignment]
complete(1)  # type: ignore[arg-type]
as_text: str = answer("q")  # type: ignore[assignment]
as_list: list[int] = numbers(1)  # type: ignore[assignment]
as_iter: Iterator[str] = documents("q")  # type: ignore[assignment]

# Decorator and context manager arguments are checked.
trodo.tool("x", unknown=1)  # type: ignore[call-overload]
trodo.agent("a", sub_run="yes")  # type: ignore[call-overload]
trodo.llm(model=4)  # type: ignore[call-overload]
trodo.trace("t", kind="nope")  # type: ignore[call-overload]
trodo.with_span("w", kind="nope")  # type: ignore[arg-type]

# Span handles have the Span API only; current_run() may be None.
with trodo.tool("x") as span:
    span.no_such_method()  # type: ignore[attr-defined]
    span.set_usage(input_tokens="10")  # type: ignore[arg-type]
trodo.current_run().set_input(1)  # type: ignore[union-attr]

# init's options are typed keywords.
trodo.init(no_such_option=1)  # type: ignore[call-arg]
trodo.init(batch_size="50")  # type: ignore[arg-type]
trodo.init(protocol="ftp")  # type: ignore[arg-type]
trodo.init(enabled="yes")  # type: ignore[arg-type]
trodo.init("site", "http://127.0.0.1:4318", True)  # type: ignore[call-arg]

# Functions handed to the SDK are checked against their arguments.
trodo.join_run(None, double, "2")  # type: ignore[call-overload]
trodo.wrap_agent("triage", no_run)  # type: ignore[arg-type]
trodo.flush(timeout="1")  # type: ignore[arg-type]
trodo.feedback("0" * 32, score="high")  # type: ignore[arg-type]
