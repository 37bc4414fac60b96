"""The public test kit: the pytest fixture, deterministic ids and clocks, tree helpers."""

from __future__ import annotations

import pytest

import trodo_trace as trodo
from trodo_trace.testing import capture


@trodo.tool
def lookup(key):
    return key.upper()


@trodo.agent("kit-agent")
def kit_agent(key):
    return lookup(key)


def test_fixture_captures_spans_of_the_test(trodo_capture):
    """The trodo_capture fixture sees every span that ends during the test."""
    kit_agent("a")
    (root,) = trodo_capture.runs()
    assert root.name == "kit-agent"
    assert [s.name for s in trodo_capture.run_spans(root.run_id)] == ["kit-agent", "lookup"]
    assert trodo_capture.by_name("lookup").parent_id == root.span_id


def test_deterministic_capture_gives_stable_ids_and_durations():
    """deterministic=True: counter ids and a 1 ms clock make two identical runs compare equal."""
    results = []
    for _ in range(2):
        with capture(deterministic=True) as traces:
            kit_agent("b")
        results.append([(s.name, s.span_id, s.parent_id, s.run_id, s.duration_ms) for s in traces.spans])
    assert results[0] == results[1]
    assert results[0] == [
        ("lookup", "0000000000000002", "0000000000000001", "00000000000000000000000000000001", 1.0),
        ("kit-agent", "0000000000000001", None, "00000000000000000000000000000001", 3.0),
    ]


def test_capture_stops_at_the_end_of_the_block_and_clear_works():
    """Spans ending after the block are not captured; clear() empties the capture."""
    with capture() as traces:
        kit_agent("c")
        assert len(traces.spans) == 2
        traces.clear()
        assert traces.spans == []
    kit_agent("d")
    assert traces.spans == []
    with pytest.raises(KeyError):
        traces.by_name("lookup")
    with pytest.raises(KeyError):
        traces.run("nope")
