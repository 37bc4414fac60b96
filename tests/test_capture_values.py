"""Captured inputs and outputs: every value becomes bounded JSON text and never breaks the call."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import uuid
from pathlib import Path

import numpy as np
import pydantic

import trodo_trace as trodo
from trodo_trace.testing import capture


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Order:
    id: int
    items: list


class User(pydantic.BaseModel):
    name: str
    tags: set[str]


class BadRepr:
    def __repr__(self):
        raise RuntimeError("repr exploded")


def _captured_input(*args, **kwargs):
    @trodo.function
    def target(*args, **kwargs):
        return "ok"

    with capture() as traces:
        assert target(*args, **kwargs) == "ok"
    return traces.by_name("target").attributes["input.value"]


def test_rich_types_become_json():
    """Dataclasses, pydantic models, enums, dates, UUIDs, paths, bytes, sets and numpy arrays serialise."""
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    text = _captured_input(
        order=Order(1, ["a"]),
        user=User(name="ann", tags={"x"}),
        color=Color.RED,
        when=dt.datetime(2026, 1, 2, 3, 4, 5),
        day=dt.date(2026, 1, 2),
        ident=ident,
        path=Path("/tmp/x"),
        raw=b"bytes",
        binary=b"\xff\x00",
        numbers={3, 1, 2},
        array=np.arange(3),
        scalar=np.float64(1.5),
    )
    value = json.loads(text)
    assert value["order"] == {"id": 1, "items": ["a"]}
    assert value["user"] == {"name": "ann", "tags": ["x"]}
    assert value["color"] == "red"
    assert value["when"] == "2026-01-02T03:04:05"
    assert value["day"] == "2026-01-02"
    assert value["ident"] == str(ident)
    assert value["path"] == "/tmp/x"
    assert value["raw"] == "bytes"
    assert value["binary"].startswith("<bytes len=2")
    assert value["numbers"] == [1, 2, 3]
    assert value["array"] == [0, 1, 2]
    assert value["scalar"] == 1.5


def test_cycles_and_raising_repr_do_not_crash():
    """A self-referencing structure and an object whose repr raises are captured safely."""
    cyclic: dict = {"name": "loop"}
    cyclic["self"] = cyclic
    items: list = [1]
    items.append(items)
    value = json.loads(_captured_input(cyclic=cyclic, items=items, bad=BadRepr()))
    assert value["cyclic"] == {"name": "loop", "self": "<cycle>"}
    assert value["items"] == [1, "<cycle>"]
    assert value["bad"] == "<unrepresentable BadRepr>"


def test_huge_values_are_cut_with_a_visible_marker():
    """A value over the limit (32 KiB by default) is cut and marked."""
    text = _captured_input(blob="x" * 5_000_000)
    assert len(text) < 33_000
    assert "truncated" in text


def test_limit_is_configurable():
    """init(max_value_length=...) changes where values are cut."""
    trodo.init(max_value_length=1000)
    text = _captured_input(blob="y" * 10_000)
    assert 1000 <= len(text) < 1100
    assert "[truncated:" in text


def test_unserialisable_output_and_raising_repr_output():
    """A return value json cannot encode is still captured, and the caller gets it untouched."""
    bad = BadRepr()

    @trodo.tool
    def make():
        return bad

    with capture() as traces:
        assert make() is bad
    assert traces.by_name("make").attributes["output.value"] == '"<unrepresentable BadRepr>"'


def test_methods_drop_self_and_cls_and_keep_signatures():
    """Methods, classmethods and staticmethods are traced without self/cls; wraps keeps metadata."""
    import inspect

    class Agent:
        @trodo.agent
        def run(self, question: str, *extra, limit: int = 3, **options) -> str:
            """Answer a question."""
            return question

        @classmethod
        @trodo.tool
        def build(cls, name):
            return name

        @staticmethod
        @trodo.tool
        def helper(x):
            return x

    with capture() as traces:
        assert Agent().run("q", 1, 2, limit=5, mode="fast") == "q"
        assert Agent.build("b") == "b"
        assert Agent.helper(7) == 7
    inputs = {s.name: json.loads(s.attributes["input.value"]) for s in traces.spans}
    assert inputs == {
        "run": {"question": "q", "extra": [1, 2], "limit": 5, "mode": "fast"},
        "build": {"name": "b"},
        "helper": {"x": 7},
    }
    assert Agent.run.__name__ == "run" and Agent.run.__doc__ == "Answer a question."
    assert list(inspect.signature(Agent.run).parameters) == ["self", "question", "extra", "limit", "options"]
    assert inspect.signature(Agent.run) == inspect.signature(Agent.run.__wrapped__)


def test_function_kinds_are_preserved_for_frameworks():
    """Wrappers stay coroutine/generator/async-generator functions so frameworks detect them."""
    import inspect

    @trodo.tool
    async def coro():
        return 1

    @trodo.tool
    def gen():
        yield 1

    @trodo.tool
    async def agen():
        yield 1

    assert inspect.iscoroutinefunction(coro)
    assert inspect.isgeneratorfunction(gen)
    assert inspect.isasyncgenfunction(agen)


def test_capture_input_and_output_can_be_turned_off_per_decorator():
    """capture_input/capture_output=False leave those attributes out."""

    @trodo.tool(capture_input=False, capture_output=False)
    def secret(password):
        return "token"

    with capture() as traces:
        secret("hunter2")
    attributes = traces.by_name("secret").attributes
    assert "input.value" not in attributes and "output.value" not in attributes
