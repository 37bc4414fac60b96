"""Leaving the store: `trodo-trace push` to a real OTLP receiver on loopback and `trodo-trace export`
to files, run as real subprocesses against real store files."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from otlp_receiver import Behaviour, OtlpReceiver

from trodo_trace._internal.store.local import LocalStore

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def cli(store: pathlib.Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRODO_", "OTEL_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "trodo_trace.cli", "--store", str(store), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory) -> pathlib.Path:
    store = tmp_path_factory.mktemp("demo") / "trodo.db"
    cli(store, "demo")
    return store


def stored_spans(store: pathlib.Path) -> dict[str, tuple[str, str | None, str, str]]:
    """Every stored span: span id -> (trace id, parent span id, name, run id)."""
    with LocalStore(store) as local:
        rows = local._query("SELECT trace_id, span_id, parent_span_id, name, run_id FROM spans")
    return {r["span_id"]: (r["trace_id"], r["parent_span_id"], r["name"], r["run_id"]) for r in rows}


def test_push_sends_every_span_of_the_demo_store_with_its_ids_and_parents(demo_store):
    """Every stored span arrives once, with the same trace id, span id, parent and run; the trees
    are the stored trees (the sub-run hangs under its parent run's span); a second push sends
    nothing already sent."""
    expected = stored_spans(demo_store)
    with OtlpReceiver("http") as receiver:
        result = cli(demo_store, "push", "--endpoint", receiver.url)
        assert result.stdout.startswith(
            f"Pushed 3 runs ({len(expected)} spans) and 0 events to {receiver.url}"
        )
        arrived = {s.span_id: (s.trace_id, s.parent_id, s.name, s.run_id) for s in receiver.spans()}
        assert arrived == expected
        assert receiver.span_count() == len(expected)  # once each
        resources = receiver.resources()
        assert {r["service.name"] for r in resources} == {"trodo-demo"}
        sub = next(s for s in receiver.spans() if s.name == "umbrella-advisor")
        assert sub.attributes["trodo.parent_run_id"] and sub.parent_id in arrived
        assert arrived[sub.parent_id][3] == sub.attributes["trodo.parent_run_id"]

        again = cli(demo_store, "push", "--endpoint", receiver.url)
        assert again.stdout.startswith(f"Pushed 0 runs (0 spans) and 0 events to {receiver.url}")
        assert "3 runs and 0 events were already there" in again.stdout
        assert receiver.span_count() == len(expected)


def _big_store(path: pathlib.Path, runs: int) -> None:
    script = (
        "import trodo_trace as trodo\n"
        f"for n in range({runs}):\n"
        "    trodo.wrap_agent('job', lambda run: [trodo.tool(f't{i}')(len)('x') for i in range(3)],"
        " distinct_id='u', conversation_id=f'c{n % 7}')\n"
        "    trodo.track('u', 'job_done', {'n': n})\n"
        "trodo.flush(30)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRODO_", "OTEL_"))}
    env["TRODO_STORE"] = str(path)
    env["PYTHONPATH"] = str(REPO_ROOT)
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)


def test_push_stopped_by_the_collector_resumes_where_it_stopped(tmp_path):
    """The collector refuses the second request: the push stops (exit 1, one line), and the next
    push sends exactly the runs and events that had not arrived — none twice."""
    store = tmp_path / "big.db"
    _big_store(store, 300)  # 1,200 spans: three requests of about 512
    expected = stored_spans(store)
    assert len(expected) == 1200
    with OtlpReceiver("http") as receiver:
        receiver.script(Behaviour(), Behaviour(status=400, message="bad batch"))
        first = cli(store, "push", "--endpoint", receiver.url, check=False)
        assert first.returncode == 1
        assert first.stderr.startswith("trodo-trace: push stopped:") and len(first.stderr.splitlines()) == 1
        assert "run the same command again to resume" in first.stderr
        partial = receiver.span_count()
        assert 0 < partial < 1200
        second = cli(store, "push", "--endpoint", receiver.url)
        assert "and 300 events" in second.stdout
        arrived = [s.span_id for s in receiver.spans()]
        assert len(arrived) == len(set(arrived)) == 1200  # every span, none twice
        assert set(arrived) == set(expected)
        assert sorted(r["body"]["n"] for r in receiver.logs()) == list(range(300))


def test_push_of_one_run_and_since(demo_store):
    with LocalStore(demo_store) as local:
        first = local.list_runs(limit=None)[-1]
    with OtlpReceiver("http") as receiver:
        cli(demo_store, "push", "--endpoint", receiver.url, "--run", first["run_id"][:8])
        assert {s.run_id for s in receiver.spans()} == {first["run_id"]}
        nothing = cli(demo_store, "push", "--endpoint", receiver.url + "/", "--since", "2999-01-01")
        assert nothing.stdout.startswith("Pushed 0 runs (0 spans)")


def test_push_bad_endpoint_is_one_line_exit_2(demo_store):
    result = cli(demo_store, "push", "--endpoint", "ftp://example.invalid", check=False)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr and "endpoint" in result.stderr


def test_export_jsonl_holds_every_run_span_and_event(demo_store, tmp_path):
    out = tmp_path / "runs.jsonl"
    result = cli(demo_store, "export", "--format", "jsonl", "--out", str(out))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    runs = [line for line in lines if line["type"] == "run"]
    assert len(runs) == 3
    exported = {
        s["span_id"]: (s["trace_id"], s["parent_span_id"], s["name"], s["run_id"])
        for r in runs
        for s in r["spans"]
    }
    assert exported == stored_spans(demo_store)
    assert result.stderr == f"Exported 3 runs ({len(exported)} spans) and 0 events to {out}\n"


def test_export_otlp_json_has_hex_ids_and_every_span(demo_store):
    """otlp-json: one OTLP/JSON request a line, ids in hex as the OTLP JSON encoding wants."""
    text = cli(demo_store, "export", "--format", "otlp-json").stdout
    requests = [json.loads(line) for line in text.splitlines()]
    spans = [
        span
        for request in requests
        for resource in request["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]
    got = {s["spanId"]: (s["traceId"], s.get("parentSpanId") or None, s["name"]) for s in spans}
    assert got == {k: v[:3] for k, v in stored_spans(demo_store).items()}
