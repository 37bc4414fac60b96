"""Jupyter display of live runs: the HTML waterfall, its plain-text fallback and wrap_agent's pair."""

from __future__ import annotations

import copy
import itertools
import math
import os
import pickle
import re

import pytest
from display_html import external_references, parse, row_tree, rows
from IPython.lib.pretty import pretty

import trodo_trace as trodo
from trodo_trace._internal.core import spans as spans_mod
from trodo_trace._internal.display.render import format_cost, format_duration, format_tokens
from trodo_trace.testing import capture


@pytest.fixture(autouse=True)
def _no_recent_runs():
    """Runs finished by earlier tests are not looked up by id."""
    spans_mod.RECENT_RUNS.clear()
    yield
    spans_mod.RECENT_RUNS.clear()


@trodo.retrieval
def search_docs(query: str) -> list[dict]:
    return [{"id": "kb-1", "content": "Refunds take 5 days.", "score": 0.9}]


@trodo.tool
def get_order(order_id: str) -> dict:
    return {"id": order_id, "status": "shipped"}


@trodo.tool
def refund(order_id: str) -> dict:
    raise RuntimeError(f"refund service unavailable for {order_id}")


@trodo.llm(model="gpt-4o-mini", provider="openai")
def complete(prompt: str) -> dict:
    return {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 120, "completion_tokens": 12}}


@trodo.agent("researcher", sub_run=True)
def research(topic: str) -> str:
    search_docs(topic)
    complete(topic)
    return "notes"


@trodo.agent("support-bot")
def support(question: str) -> str:
    research(question)
    get_order("A-17")
    try:
        refund("A-17")
    except RuntimeError:
        pass
    with trodo.chain("compose"):
        complete(question)
    return "done"


EXPECTED_TREE = [
    {
        "name": "support-bot",
        "kind": "run",
        "status": "ok",
        "children": [
            {"name": "researcher", "kind": "run", "status": "ok", "children": []},
            {"name": "get_order", "kind": "tool", "status": "ok", "children": []},
            {"name": "refund", "kind": "tool", "status": "error", "children": []},
            {
                "name": "compose",
                "kind": "chain",
                "status": "ok",
                "children": [{"name": "complete", "kind": "llm", "status": "ok", "children": []}],
            },
        ],
    }
]


def test_waterfall_html_of_a_real_run_matches_the_run(tmp_path):
    """The waterfall has every span once, in tree order and indentation, with its own numbers and errors."""
    with capture() as traces:
        support("Where is my refund?")
    run = trodo.last_run()
    assert run is not None and run.name == "support-bot"
    page = tmp_path / "run.html"
    page.write_text(run._repr_html_(), encoding="utf-8")
    document = parse(page.read_text(encoding="utf-8"))

    assert row_tree(document) == EXPECTED_TREE
    assert external_references(document) == []
    (container,) = [n for n in document.iter() if "trodo-run" in n.classes]
    assert container.attrs["data-run-id"] == run.run_id

    own = {s.span_id: s for s in traces.run_spans(run.run_id)}
    sub_root = traces.run(traces.by_name("researcher").run_id)
    found = rows(document)
    assert sorted(r.attrs["data-span-id"] for r in found) == sorted([*own, sub_root.span_id])
    depth = {}
    for row in found:
        span_id, parent_id = row.attrs["data-span-id"], row.attrs["data-parent-id"]
        depth[span_id] = depth[parent_id] + 1 if parent_id else 0
        assert int(row.attrs["data-depth"]) == depth[span_id]
        assert row.find("tr-name").attrs["style"] == f"padding-left:{depth[span_id] * 16}px"
        span = own.get(span_id, sub_root)
        assert parent_id == (span.parent_id or "")
        assert float(row.attrs["data-duration-ms"]) == pytest.approx(span.duration_ms)
        assert row.find("tr-dur").text() == format_duration(span.duration_ms)
        assert ("tr-err" in row.classes) == (span.status == "ERROR")
        attributes = span.attributes
        if span.is_run_root:
            tokens = attributes["trodo.run.total_tokens_in"], attributes["trodo.run.total_tokens_out"]
            cost = attributes["trodo.run.total_cost"]
        else:
            tokens = attributes.get("gen_ai.usage.input_tokens"), attributes.get("gen_ai.usage.output_tokens")
            cost = attributes.get("trodo.llm.cost")
        assert (row.attrs["data-tokens-in"], row.attrs["data-tokens-out"]) == tuple(
            "" if t is None else str(t) for t in tokens
        )
        assert row.attrs["data-cost"] == ("" if cost is None else repr(cost))
        if span.kind == "llm":
            assert row.find("tr-tok").text() == format_tokens(*tokens) == "120→12"
            assert row.find("tr-cost").text() == format_cost(cost)
        if span.name == "refund":
            assert row.find("tr-errmsg").text() == "RuntimeError: refund service unavailable for A-17"
            assert "refund service unavailable" in row.find("tr-err-text").text()
    root = own[run.root.span_id_hex].attributes
    header = container.find("tr-meta").text()
    assert (
        f"tokens {format_tokens(root['trodo.run.total_tokens_in'], root['trodo.run.total_tokens_out'])}"
        in header
    )
    assert f"cost {format_cost(root['trodo.run.total_cost'])}" in header
    assert "spans 5 · tools 2 · errors 1" in header


def test_plain_text_fallback_is_the_cli_tree(capsys):
    """Outside HTML a run prints the same tree as `trodo-trace show`, read back from the store."""
    support("Where is my refund?")
    run = trodo.last_run()
    text = pretty(run)
    assert trodo.flush(10)
    from trodo_trace import cli

    capsys.readouterr()
    assert cli.main(["show", run.run_id]) == 0
    assert text + "\n" == capsys.readouterr().out
    tree = text.split("\n\n")[1].split("\n")
    (sub,) = [r for r in spans_mod.RECENT_RUNS if r.name == "researcher"]
    assert [re.match(r"^.*?(\] \S+|sub-run \S+ \S+)", line).group(0) for line in tree] == [
        "[run] support-bot",
        f"├─ ↳ sub-run {sub.run_id[:12]} researcher",  # where the sub-run was started
        "├─ [tool] get_order",
        "├─ [tool] refund",
        "└─ [chain] compose",
        "   └─ [llm] complete",
    ]
    assert tree[3].endswith("ERROR RuntimeError: refund service unavailable for A-17")
    assert text.endswith(f"Sub-runs:\n  {sub.run_id}  researcher  ok")
    assert repr(run) == f"Run(run_id={run.run_id!r}, name='support-bot', status='ok')"


def test_wrap_agent_pair_is_a_plain_tuple_that_displays_its_run():
    """wrap_agent's (result, run_id) unpacks, compares, hashes and pickles as a tuple and renders its run."""
    pair = trodo.wrap_agent("triage", lambda run: "answer <42>")
    result, run_id = pair
    assert (
        result == "answer <42>" and pair == (result, run_id) and hash(pair) == hash(("answer <42>", run_id))
    )
    assert repr(pair) == repr(("answer <42>", run_id)) and pair[1] == run_id == trodo.last_run().run_id
    for clone in (pickle.loads(pickle.dumps(pair)), copy.copy(pair), copy.deepcopy(pair)):
        assert type(clone) is tuple and clone == pair
    document = parse(pair._repr_html_())
    assert document.find("tr-result").text() == "result 'answer <42>'"
    assert row_tree(document) == [{"name": "triage", "kind": "run", "status": "ok", "children": []}]
    assert pretty(pair).startswith(repr(("answer <42>", run_id)) + "\nRun " + run_id)


async def test_async_wrap_agent_pair_displays_its_run():
    """The awaited pair of an async wrap_agent is the same displayable tuple."""

    async def work(run):
        complete("hi")
        return 7

    pair = await trodo.wrap_agent("async-triage", work)
    assert pair == (7, pair[1]) and pair.run is trodo.last_run()
    assert row_tree(parse(pair._repr_html_())) == [
        {
            "name": "async-triage",
            "kind": "run",
            "status": "ok",
            "children": [{"name": "complete", "kind": "llm", "status": "ok", "children": []}],
        }
    ]


def test_everything_from_the_run_is_escaped():
    """Names, inputs, outputs and errors containing markup render as text, never as elements."""
    nasty = '<script>alert("x")</script>'

    def body(run):
        run.set_input({"q": nasty})
        with trodo.with_span(nasty, kind="tool") as span:
            span.set_output("</pre></details><img src=x onerror=alert(1)>")
        with pytest.raises(ValueError), trodo.with_span("fails", kind="tool"):
            raise ValueError("<u onmouseover=alert(2)>bold</u>")
        return nasty

    trodo.wrap_agent('bot "quoted" <i>', body)
    markup = trodo.last_run()._repr_html_()
    document = parse(markup)
    assert external_references(document) == []
    assert [n.tag for n in document.iter() if n.tag in ("script", "img", "u", "i")] == []
    assert row_tree(document) == [
        {
            "name": 'bot "quoted" <i>',
            "kind": "run",
            "status": "ok",
            "children": [
                {"name": nasty, "kind": "tool", "status": "ok", "children": []},
                {"name": "fails", "kind": "tool", "status": "error", "children": []},
            ],
        }
    ]
    pres = [n.text() for n in document.iter() if n.tag == "pre"]
    assert '{\n  "q": "<script>alert(\\"x\\")</script>"\n}' in pres
    assert "</pre></details><img src=x onerror=alert(1)>" in pres
    assert "ValueError: <u onmouseover=alert(2)>bold</u>" in document.find("tr-errmsg").text()


def test_last_run_is_this_process_most_recent_run():
    """last_run() is None before any run, then the run that finished last."""
    assert trodo.last_run() is None
    _, first = trodo.wrap_agent("first", lambda run: 1)
    assert trodo.last_run().run_id == first
    support("again")
    assert trodo.last_run().name == "support-bot"
    assert trodo.last_run().status == "ok"


def test_a_run_displays_while_it_is_still_running():
    """Displaying the current run mid-way shows the finished spans and the root as running."""
    seen = {}

    @trodo.agent("long-job")
    def job():
        get_order("B-1")
        seen["html"] = trodo.current_run()._repr_html_()
        seen["text"] = pretty(trodo.current_run())

    job()
    assert row_tree(parse(seen["html"])) == [
        {
            "name": "long-job",
            "kind": "run",
            "status": "running",
            "children": [{"name": "get_order", "kind": "tool", "status": "ok", "children": []}],
        }
    ]
    assert seen["text"].startswith(f"Run {trodo.last_run().run_id}  long-job  [RUNNING]")


def test_memory_per_run_and_across_runs_is_bounded(monkeypatch):
    """A run keeps its newest RUN_SPAN_LIMIT spans; only the newest runs keep theirs; displays then use the store."""
    monkeypatch.setattr(spans_mod, "RUN_SPAN_LIMIT", 3)
    monkeypatch.setattr(spans_mod, "KEEP_SPANS_OF_RUNS", 2)

    def many(run):
        for index in range(5):
            get_order(f"A-{index}")

    _, big = trodo.wrap_agent("big", many)
    run = trodo.last_run()
    assert len(run._spans) == 3
    document = parse(run._repr_html_())
    assert [r.find("tr-label").text() for r in rows(document)] == ["big", "get_order", "get_order"]
    notes = [n.text() for n in document.iter() if "tr-note" in n.classes]
    assert notes == [
        f"showing the newest 3 of 6 spans; trodo.show('{big}') reads them all from the local store"
    ]
    assert trodo.flush(10)
    assert len(rows(parse(trodo.show(big).to_html()))) == 6

    trodo.wrap_agent("second", lambda r: 2)
    trodo.wrap_agent("third", lambda r: 3)
    assert run._spans is None
    assert [r.name for r in spans_mod.RECENT_RUNS] == ["second", "third"]
    assert trodo.flush(10)
    view = trodo.show(big)
    assert view.source == "store" and len(view.spans) == 6
    assert len(rows(parse(run._repr_html_()))) == 6


def test_show_rejects_bad_and_unknown_run_ids(tmp_path):
    """show() names the problem: wrong type, empty, no store, unknown or ambiguous id."""
    with pytest.raises(TypeError, match="run_id must be a string"):
        trodo.show(42)
    with pytest.raises(ValueError, match="run_id must not be empty"):
        trodo.show("")
    with pytest.raises(ValueError, match="no local store at"):
        trodo.show("abcdef", store=tmp_path / "missing.db")
    with capture(deterministic=True):
        trodo.wrap_agent("one", lambda run: 1)
        trodo.wrap_agent("two", lambda run: 2)
    assert trodo.flush(10)
    spans_mod.RECENT_RUNS.clear()
    with pytest.raises(ValueError, match="no run 'ffffffff'"):
        trodo.show("ffffffff")
    store = os.environ["TRODO_STORE"]
    with pytest.raises(ValueError, match="matches several runs"):
        trodo.show("0000000000", store=store)
    assert trodo.show("0" * 31 + "1", store=store).name == "one"


@pytest.mark.parametrize(
    "total_ms", [0.0001, 0.134, 0.594, 1.0, 1.911, 2.99, 3.0, 4.0, 38.4, 999.9, 1234.5, 7.2e6]
)
def test_axis_ticks_are_round_evenly_spaced_and_few(total_ms):
    """The waterfall's axis: 0 and up to four round steps (1, 2 or 5 times a power of ten), never past the run."""
    from trodo_trace._internal.display.waterfall import axis_ticks

    ticks = axis_ticks(total_ms)
    fractions = [fraction for fraction, _ in ticks]
    labels = [label for _, label in ticks]
    assert labels[0] == "0" and 2 <= len(ticks) <= 5 and len(set(labels)) == len(labels)
    assert fractions == sorted(fractions) and fractions[-1] <= 1.0
    step = fractions[1] * total_ms
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert min(abs(mantissa - m) for m in (1, 2, 5)) < 1e-6, step
    assert all(math.isclose(b - a, fractions[1], rel_tol=1e-6) for a, b in itertools.pairwise(fractions))
    assert fractions[-1] + fractions[1] > 1.0  # the last round value that fits


def test_axis_ticks_labels_and_degenerate_totals():
    from trodo_trace._internal.display.waterfall import axis_ticks

    assert [label for _, label in axis_ticks(0.134)] == ["0", "50 µs", "100 µs"]
    assert [label for _, label in axis_ticks(38.404)] == ["0", "10 ms", "20 ms", "30 ms"]
    assert [label for _, label in axis_ticks(1234.5)] == ["0", "500 ms", "1 s"]
    for total in (0.0, -1.0, float("nan"), float("inf")):
        assert axis_ticks(total) == [(0.0, "0")]
    assert format_duration(0.0004) == "0 µs" and format_duration(0.9994) == "999 µs"
    assert format_duration(0.9996) == format_duration(1.0) == "1.0 ms"
