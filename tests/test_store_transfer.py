"""Leaving the store: `trodo-trace push` to a real OTLP receiver on loopback and `trodo-trace export`
to files, run as real subprocesses against real store files."""

from __future__ import annotations

import collections
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading

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
    # Each span carries its resource (stored once per distinct resource, read back with every span).
    assert {s["resource"]["service.name"] for r in runs for s in r["spans"]} == {"trodo-demo"}
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
    services = {
        attribute["value"]["stringValue"]
        for request in requests
        for resource in request["resourceSpans"]
        for attribute in resource["resource"]["attributes"]
        if attribute["key"] == "service.name"
    }
    assert services == {"trodo-demo"}
    assert got == {k: v[:3] for k, v in stored_spans(demo_store).items()}


class HoldingReceiver(OtlpReceiver):
    """A loopback receiver that answers the first ``answered`` trace requests and then holds every
    later one (without answering) until :meth:`release`: the push it serves is stuck mid-way."""

    def __init__(self, answered: int) -> None:
        super().__init__("http")
        self.answered = answered
        self.traces_asked = 0
        self.holding = True
        self.held = threading.Event()
        self._release = threading.Event()
        self._count_lock = threading.Lock()

    def _next(self, path: str = "") -> Behaviour:
        behaviour = super()._next(path)
        with self._count_lock:
            if path.endswith("traces"):
                self.traces_asked += 1
            hold = self.holding and self.traces_asked > self.answered
        if hold:
            self.held.set()
            self._release.wait(120)
        return behaviour

    def release(self) -> None:
        """Stop holding: held requests are taken now (as a collector that got them before the sender
        died would), later ones at once."""
        self.holding = False
        self._release.set()


@pytest.mark.serial
def test_killed_push_resumes_and_resends_at_most_the_batch_in_flight(tmp_path):
    """SIGKILL a push while the collector holds its third request: the next push delivers every
    span (whole trees: names, parents, run ids) and every event, and re-sends nothing the first push
    had confirmed; the only spans that arrive twice are those of the one request in flight."""
    store = tmp_path / "big.db"
    _big_store(store, 640)  # 2,560 spans: five requests of 512 (128 runs of 4 spans each)
    expected = stored_spans(store)
    assert len(expected) == 2560
    with HoldingReceiver(answered=2) as receiver:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRODO_", "OTEL_"))}
        env["PYTHONPATH"] = str(REPO_ROOT)
        command = [sys.executable, "-m", "trodo_trace.cli", "--store", str(store)]
        pusher = subprocess.Popen(
            [*command, "push", "--endpoint", receiver.url],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert receiver.held.wait(120), "the push never reached its third request"
            pusher.send_signal(signal.SIGKILL)
            assert pusher.wait(30) == -signal.SIGKILL
        finally:
            if pusher.poll() is None:
                pusher.kill()
                pusher.wait(30)
        with LocalStore(store) as local:
            confirmed = local._query("SELECT COUNT(*) AS n FROM push_log WHERE item LIKE 'run:%'")[0]["n"]
        assert confirmed == 256  # the two answered requests, recorded before the third was sent
        first = {s.span_id for s in receiver.spans()}
        assert len(first) == 1024
        receiver.release()  # the held request is taken after all: its spans arrive, unconfirmed
        assert receiver.wait_for_spans(1536, timeout=30)
        in_flight = [s.span_id for s in receiver.spans()][1024:]
        assert len(in_flight) == 512 and not set(in_flight) & first

        result = subprocess.run(
            [*command, "push", "--endpoint", receiver.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"Pushed 384 runs (1536 spans) and 640 events to {receiver.url}")
        assert "256 runs and 0 events were already there" in result.stdout
        arrived = receiver.spans()
        counts = collections.Counter(s.span_id for s in arrived)
        assert {span_id for span_id, n in counts.items() if n > 1} == set(in_flight)  # the bound
        assert max(counts.values()) == 2 and len(arrived) == 2560 + 512
        trees = {s.span_id: (s.trace_id, s.parent_id, s.name, s.run_id) for s in arrived}
        assert trees == expected  # every span with its trace, parent, name and run
        assert sorted(r["body"]["n"] for r in receiver.logs()) == list(range(640))
