"""Tests for trodo_trace._internal.core.values."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import hashlib
import json
import pathlib
import timeit
import uuid
from typing import Any

import numpy as np
import pydantic
import pytest

from trodo_trace._internal.core.values import DEFAULT_LIMIT, _default, safe_str, to_json

MARKER = "\u2026[truncated: "


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


@dataclasses.dataclass
class Point:
    x: int
    y: int
    label: str = "p"


@dataclasses.dataclass
class Node:
    name: str
    next: Node | None = None


class Address(pydantic.BaseModel):
    city: str
    since: datetime.date


class Person(pydantic.BaseModel):
    name: str
    address: Address
    tags: set[str] = set()


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


class BadStr:
    def __str__(self) -> str:
        raise RuntimeError("str exploded")

    def __repr__(self) -> str:
        return "BadStr()"


def loads(value: Any, **kwargs: Any) -> Any:
    return json.loads(to_json(value, **kwargs))


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -17,
        2**62,
        3.25,
        "",
        "plain",
        "üñíçødé ✓ 漢字",
        'quotes " and \\ backslash\n',
        [],
        {},
        [1, "two", 3.0, None, [True, {"k": []}]],
        {"a": 1, "b": "x" * 100, "c": [1, 2, 3], "nested": {"d": {"e": [None]}}},
    ],
)
def test_plain_values_round_trip(value: Any) -> None:
    """Values JSON supports natively come back unchanged after json.loads."""
    assert loads(value) == value


def test_output_is_compact_and_keeps_unicode() -> None:
    """The text uses compact separators and leaves non-ASCII characters unescaped."""
    assert to_json({"a": [1, 2], "b": "é"}) == '{"a":[1,2],"b":"é"}'


def test_tuple_becomes_list() -> None:
    """Tuples serialize as JSON arrays."""
    assert loads((1, (2, 3))) == [1, [2, 3]]


def test_dataclass_becomes_field_dict() -> None:
    """A dataclass instance becomes a dict of its fields."""
    assert loads(Point(1, 2)) == {"x": 1, "y": 2, "label": "p"}


def test_nested_dataclasses_are_converted() -> None:
    """Dataclasses nested in containers and in other dataclasses are converted too."""
    assert loads({"outer": Node("a", Node("b"))}) == {
        "outer": {"name": "a", "next": {"name": "b", "next": None}}
    }


def test_pydantic_model_uses_json_mode_dump() -> None:
    """A pydantic v2 model serializes via model_dump(mode="json")."""
    person = Person(name="Ada", address=Address(city="London", since=datetime.date(1830, 5, 1)), tags={"x"})
    assert loads(person) == {
        "name": "Ada",
        "address": {"city": "London", "since": "1830-05-01"},
        "tags": ["x"],
    }


def test_pydantic_v1_style_dict_method_is_used() -> None:
    """An object with a v1-style dict() method and __fields__ serializes via dict()."""

    class V1Model:
        __fields__ = {"a": None}

        def dict(self) -> dict[str, int]:
            return {"a": 5}

    assert loads(V1Model()) == {"a": 5}


def test_enum_becomes_value() -> None:
    """Enum members serialize as their value."""
    assert loads([Color.RED, Color.BLUE]) == ["red", 2]


def test_datetime_date_and_time_become_isoformat() -> None:
    """datetime, date and time serialize as ISO 8601 strings."""
    tz = datetime.timezone(datetime.timedelta(hours=2))
    value = [
        datetime.datetime(2024, 3, 4, 5, 6, 7, 8000, tzinfo=tz),
        datetime.date(2024, 3, 4),
        datetime.time(5, 6, 7),
    ]
    assert loads(value) == ["2024-03-04T05:06:07.008000+02:00", "2024-03-04", "05:06:07"]


def test_timedelta_becomes_seconds() -> None:
    """timedelta serializes as its total seconds."""
    assert loads(datetime.timedelta(minutes=1, milliseconds=500)) == 60.5


def test_uuid_path_decimal_become_strings() -> None:
    """UUID, paths and Decimal serialize as their str()."""
    value = [uuid.UUID(int=255), pathlib.PurePosixPath("/tmp/a.txt"), decimal.Decimal("1.10")]
    assert loads(value) == ["00000000-0000-0000-0000-0000000000ff", "/tmp/a.txt", "1.10"]


def test_utf8_bytes_become_text() -> None:
    """bytes, bytearray and memoryview holding UTF-8 serialize as the decoded text."""
    data = "héllo".encode()
    assert loads([data, bytearray(data), memoryview(data)]) == ["héllo"] * 3


def test_binary_bytes_become_length_and_digest() -> None:
    """Non-UTF-8 bytes serialize as a length and sha256 prefix, never as raw content."""
    data = b"\xff\xfe\x00\x01binary"
    expected = f"<bytes len={len(data)} sha256={hashlib.sha256(data).hexdigest()[:12]}>"
    assert loads(data) == expected


def test_set_becomes_sorted_list() -> None:
    """A set of sortable items serializes as a sorted list."""
    assert loads({3, 1, 2}) == [1, 2, 3]


def test_frozenset_becomes_list() -> None:
    """A frozenset serializes as a list, sorted when possible and complete otherwise."""
    assert loads(frozenset({"b", "a"})) == ["a", "b"]
    mixed = loads(frozenset({"a", 1}))
    assert sorted(mixed, key=str) == [1, "a"]


def test_numpy_array_and_scalars_become_lists_and_numbers() -> None:
    """numpy arrays serialize via tolist() and numpy scalars as plain numbers."""
    value = {"arr": np.arange(6).reshape(2, 3), "f": np.float32(1.5), "i": np.int64(7), "b": np.bool_(True)}
    assert loads(value) == {"arr": [[0, 1, 2], [3, 4, 5]], "f": 1.5, "i": 7, "b": True}


def test_big_numpy_array_is_summarised() -> None:
    """A numpy array with more than 10000 elements becomes a shape/dtype summary."""
    assert loads(np.zeros((200, 100), dtype=np.float32)) == "<ndarray shape=(200, 100) dtype=float32>"


def test_exception_becomes_type_and_message() -> None:
    """An exception serializes as 'TypeName: message'."""
    assert loads(ValueError("bad input")) == "ValueError: bad input"


def test_unknown_object_becomes_repr() -> None:
    """An object of an unknown type serializes as its repr."""

    class Thing:
        def __repr__(self) -> str:
            return "Thing(42)"

    assert loads({"t": Thing()}) == {"t": "Thing(42)"}


def test_long_repr_is_clipped() -> None:
    """A repr longer than 1000 characters is cut with the truncation marker."""

    class Wordy:
        def __repr__(self) -> str:
            return "w" * 5000

    out = loads(Wordy())
    assert out.startswith("w" * 1000 + MARKER)
    assert out.endswith("5000 chars total]")


def test_raising_repr_becomes_placeholder() -> None:
    """An object whose __repr__ raises becomes '<unrepresentable Name>' instead of an error."""
    assert loads([BadRepr()]) == ["<unrepresentable BadRepr>"]


def test_default_never_raises_on_hostile_object() -> None:
    """_default converts an object whose attribute access raises without propagating the error."""

    class Hostile:
        def __getattribute__(self, name: str) -> Any:
            raise RuntimeError(name)

        def __repr__(self) -> str:
            raise RuntimeError("repr")

    result = _default(Hostile())
    assert result == f"<unrepresentable {Hostile.__qualname__}>"


def test_self_referencing_dict_marks_cycle() -> None:
    """A dict that contains itself serializes with '<cycle>' in place of the back-reference."""
    d: dict[str, Any] = {"name": "root"}
    d["self"] = d
    assert loads(d) == {"name": "root", "self": "<cycle>"}


def test_self_referencing_list_marks_cycle() -> None:
    """A list that contains itself serializes with '<cycle>' in place of the back-reference."""
    lst: list[Any] = [1]
    lst.append(lst)
    assert loads(lst) == [1, "<cycle>"]


def test_dataclass_cycle_marks_cycle() -> None:
    """Two dataclasses referencing each other serialize with '<cycle>' at the back-reference."""
    a = Node("a")
    a.next = Node("b", a)
    assert loads(a) == {"name": "a", "next": {"name": "b", "next": "<cycle>"}}


def test_shared_non_cyclic_reference_is_not_a_cycle() -> None:
    """The same object appearing twice side by side is serialized twice, not marked as a cycle."""
    shared = [1, 2]
    d: dict[str, Any] = {"a": shared, "b": shared, "loop": None}
    d["loop"] = d
    assert loads(d) == {"a": [1, 2], "b": [1, 2], "loop": "<cycle>"}


def test_deep_nesting_is_cut_at_max_depth() -> None:
    """A list nested 10000 deep serializes without error, ending in '<max depth>'."""
    root: list[Any] = []
    cur = root
    for _ in range(10_000):
        nxt: list[Any] = []
        cur.append(nxt)
        cur = nxt
    out = loads(root)
    depth = 0
    while isinstance(out, list):
        assert len(out) == 1
        out = out[0]
        depth += 1
    assert out == "<max depth>"
    assert 60 <= depth <= 70


def test_huge_string_is_cut_with_marker() -> None:
    """A 5 MB string is cut to the limit, marked with its full length, and stays bounded."""
    text = "x" * 5_000_000
    out = to_json(text)
    assert len(out) <= DEFAULT_LIMIT + 100
    assert out.startswith('"' + "x" * 1000)
    assert out.endswith(f"{MARKER}5000002 chars total]")


def test_huge_bytes_are_cut_with_marker() -> None:
    """5 MB of UTF-8 bytes serialize as text cut to a bounded length with the marker."""
    out = to_json(b"y" * 5_000_000)
    assert len(out) <= DEFAULT_LIMIT + 100
    assert MARKER in out


def test_huge_list_keeps_first_items_and_counts_the_rest() -> None:
    """A 1e6-element list keeps 1000 items followed by a '+K more items' entry."""
    out = to_json(list(range(1_000_000)))
    assert len(out) <= DEFAULT_LIMIT + 100
    data = json.loads(out)
    assert data[:1000] == list(range(1000))
    assert data[1000:] == ["\u2026[+999000 more items]"]


def test_huge_list_with_small_limit_is_cut_with_marker() -> None:
    """A 1e6-element list with a small limit is cut to that limit plus the marker."""
    out = to_json(list(range(1_000_000)), limit=200)
    assert len(out) <= 200 + 100
    assert out.startswith("[0,1,2,3,")
    assert MARKER in out


def test_huge_dict_keeps_first_items() -> None:
    """A mapping with more than 1000 items keeps 1000 and adds a '…' key with the remainder."""
    data = json.loads(to_json({f"k{i}": i for i in range(1500)}))
    assert len(data) == 1001
    assert data["k999"] == 999
    assert "k1000" not in data
    assert data["\u2026"] == "\u2026[+500 more items]"


def test_custom_limit_is_respected() -> None:
    """Output longer than a custom limit is cut to exactly that many characters plus the marker."""
    value = {"text": "abc" * 100}
    full = to_json(value)
    out = to_json(value, limit=50)
    assert out == full[:50] + f"{MARKER}{len(full)} chars total]"


def test_output_at_limit_is_not_marked() -> None:
    """Text exactly as long as the limit is returned unchanged."""
    full = to_json([1, 2, 3])
    assert to_json([1, 2, 3], limit=len(full)) == full


def test_larger_custom_limit_keeps_long_bytes() -> None:
    """A limit above the default lets decoded bytes longer than the default through uncut."""
    data = b"z" * (DEFAULT_LIMIT + 10)
    assert loads(data, limit=DEFAULT_LIMIT * 2) == "z" * (DEFAULT_LIMIT + 10)


def test_non_str_dict_keys() -> None:
    """int, tuple and arbitrary object keys become strings instead of failing."""

    class Key:
        def __str__(self) -> str:
            return "key-obj"

    assert loads({1: "a", (2, 3): "b", Key(): "c", None: "d"}) == {
        "1": "a",
        "(2, 3)": "b",
        "key-obj": "c",
        "null": "d",
    }


def test_key_with_raising_str_falls_back_to_repr() -> None:
    """A dict key whose __str__ raises is rendered with its repr."""
    assert loads({BadStr(): 1}) == {"BadStr()": 1}


def test_generator_is_not_consumed() -> None:
    """A generator serializes as its repr and still yields all its items afterwards."""

    def numbers() -> Any:
        yield from (1, 2, 3)

    gen = numbers()
    out = loads({"g": gen})
    assert out["g"].startswith("<generator object")
    assert list(gen) == [1, 2, 3]


def test_iterator_is_not_consumed() -> None:
    """A plain iterator serializes as its repr without advancing it."""
    it = iter([1, 2])
    assert loads(it).startswith("<list_iterator")
    assert next(it) == 1


def test_huge_int_does_not_raise() -> None:
    """An int too large to convert to decimal text becomes a size placeholder."""
    assert loads([10**20000]) == ["<int bits=66439>"]


def test_safe_str_returns_strings_unchanged() -> None:
    """safe_str returns a str as-is instead of JSON-quoting it."""
    assert safe_str('say "hi"') == 'say "hi"'


def test_safe_str_clips_long_strings() -> None:
    """safe_str cuts a long str at the limit and appends the marker with the full length."""
    assert safe_str("abcdef", limit=3) == f"abc{MARKER}6 chars total]"


def test_safe_str_serializes_other_values() -> None:
    """safe_str turns non-str values into JSON text."""
    assert safe_str({"a": [1, None]}) == '{"a":[1,null]}'


def test_plain_dict_is_fast() -> None:
    """to_json on a small plain dict costs at most about twice a bare json.dumps."""
    value = {"a": 1, "b": "x" * 100, "c": [1, 2, 3]}
    number = 20_000
    ours = min(timeit.repeat(lambda: to_json(value), number=number, repeat=5))
    bare = min(timeit.repeat(lambda: json.dumps(value), number=number, repeat=5))
    assert ours <= bare * 2.5
