"""Hardening: nothing lost, nothing leaked, nothing raised — poison values, exits, hostile input."""

from __future__ import annotations

import json

import pytest
from otlp_receiver import OtlpReceiver, run_script

from trodo_trace._internal.export.pipeline import Pipeline

ENV = {"OTEL_BSP_SCHEDULE_DELAY": "5000"}


@pytest.fixture
def receiver():
    with OtlpReceiver("http") as server:
        yield server


def _last_json(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


POISON = r"""
import json, trodo_trace as trodo
bad = json.loads('{"q":"\\ud800"}')["q"]

class BadKey:
    def __str__(self):
        raise RuntimeError("no str")
    __repr__ = __str__

@trodo.tool
def step(x):
    return x

@trodo.agent("poison")
def bot():
    for i in range(20):
        step(i)
        trodo.track("u1", "fine", {"i": i})
    step({"text": "scraped " + bad})
    trodo.current_span().set_attribute("note." + bad, bad)
    trodo.current_span().set_attribute(BadKey(), 1)
    trodo.track("u1", "poisoned", {"p": bad, bad: [bad], BadKey(): 1})

bot()
ok = trodo.flush(10)
stats = trodo.stats()
print(json.dumps({"ok": ok, "exported": stats["exported"], "failed": stats["failed"],
                  "events_exported": stats["events_exported"], "events_failed": stats["events_failed"]}))
"""


def test_poison_value_is_replaced_at_capture_and_loses_nothing_over_otlp(tmp_path, receiver):
    """A lone surrogate and a key whose str() raises: every span and event of the batch is delivered."""
    result = run_script(POISON, tmp_path, env={"TRODO_ENDPOINT": receiver.url, **ENV})
    out = _last_json(result)
    assert out == {"ok": True, "exported": 22, "failed": 0, "events_exported": 21, "events_failed": 0}
    spans = receiver.spans()
    assert len(spans) == 22
    assert any("\ufffd" in str(span.attributes.get("input.value")) for span in spans)
    logs = receiver.logs()
    assert len(logs) == 21
    assert {"p": "\ufffd", "\ufffd": ["\ufffd"], "<unrepresentable BadKey>": 1} in [r["body"] for r in logs]
    assert "Traceback" not in result.stderr


def test_poison_value_loses_nothing_in_the_local_store(tmp_path):
    """Without an endpoint, the same poison values are stored with all their batch's spans and events."""
    result = run_script(POISON, tmp_path, env=ENV)
    out = _last_json(result)
    assert out == {"ok": True, "exported": 22, "failed": 0, "events_exported": 21, "events_failed": 0}


def test_one_item_that_cannot_be_converted_is_dropped_alone():
    """A conversion failure drops and counts that item only; the rest of its batch is exported."""
    exported = []

    def convert(batch):
        if "poison" in batch:
            raise ValueError("cannot convert")
        return list(batch)

    pipeline = Pipeline(exported.extend, convert=convert, batch_size=10, interval_s=0.01)
    for item in ["a", "b", "poison", "c"]:
        pipeline.submit(item)
    pipeline.flush(5.0)
    pipeline.shutdown(1.0)
    assert exported == ["a", "b", "c"]
    stats = pipeline.stats()
    assert (stats["exported"], stats["failed"], stats["lost"]) == (3, 1, 1)


LOSS_BEFORE_FLUSH = """
import json, sqlite3, time, trodo_trace as trodo
from trodo_trace._internal.store import local

failures = {"left": 2}
original = local.LocalStore._write

def failing_write(self, body):
    if failures["left"]:
        failures["left"] -= 1
        raise sqlite3.OperationalError("disk I/O error")
    return original(self, body)

local.LocalStore._write = failing_write
trodo.init(schedule_delay_ms=20, batch_flush_interval_ms=20)

@trodo.agent("lost")
def bot():
    trodo.track("u1", "lost_event")

bot()
deadline = time.monotonic() + 10
while time.monotonic() < deadline and failures["left"]:
    time.sleep(0.02)
time.sleep(0.2)
first = trodo.flush(5)
bot()
second = trodo.flush(5)
stats = trodo.stats()
print(json.dumps([first, second, stats["failed"], stats["events_failed"]]))
"""


def test_flush_is_false_after_a_loss_that_happened_before_it(tmp_path):
    """Spans and events the worker failed to store before flush() make that flush False; the next is True."""
    result = run_script(LOSS_BEFORE_FLUSH, tmp_path, env={"TRODO_RAISE_INTERNAL": "0"})
    assert _last_json(result) == [False, True, 1, 1]


EVENTS_AT_EXIT = """
import trodo_trace as trodo
for i in range(100):
    trodo.track("u1", "exit_event", {"i": i})
"""


def test_events_of_a_script_that_never_flushes_are_delivered_at_exit(tmp_path, receiver):
    """100 events tracked by a script that exits without flush(): all 100 reach the collector."""
    result = run_script(EVENTS_AT_EXIT, tmp_path, env={"TRODO_ENDPOINT": receiver.url, **ENV})
    assert result.returncode == 0, result.stderr
    assert sorted(r["body"]["i"] for r in receiver.logs()) == list(range(100))
    assert result.stderr == ""


def test_capture_content_off_leaks_no_exception_message_or_set_content(receiver):
    """Content off: multi-paragraph, grouped, chained and noted exception messages and content attributes
    or message events set by hand (span.set_attribute, get_tracer()) never reach the collector."""
    import sys

    import trodo_trace as trodo

    trodo.init(endpoint=receiver.url, capture_content=False, schedule_delay_ms=20)
    secret = "LEAK-"
    with trodo.get_tracer().start_as_current_span("raw") as span:
        span.set_attribute("gen_ai.prompt", secret + "prompt")
        span.set_attribute("llm.input_messages.0.message.content", secret + "message")
        span.add_event("gen_ai.user.message", {"content": secret + "event", "gen_ai.system": "openai"})

    @trodo.tool
    def paragraphs(text):
        raise ValueError("first line\n\n" + text + "\nlast")

    @trodo.tool
    def chained(text):
        try:
            raise KeyError(text + "cause")
        except KeyError as exc:
            raise RuntimeError(text + "effect") from exc

    @trodo.tool
    def grouped(text):
        inner = ValueError(text + "inner")
        if sys.version_info >= (3, 11):
            inner.add_note(text + "note")
            raise ExceptionGroup(text + "group", [inner, KeyError(text + "key")])  # noqa: F821
        raise inner

    @trodo.agent("private")
    def bot():
        for fn in (paragraphs, chained, grouped):
            try:
                fn(secret)
            except Exception:
                pass

    bot()
    assert trodo.flush(5.0)
    payload = b"".join(r.body for r in receiver.requests)
    assert b"LEAK-" not in payload
    events = [e for s in receiver.spans() for e in s.events]
    assert {"gen_ai.system": "openai"} in [
        e["attributes"] for e in events if e["name"] == "gen_ai.user.message"
    ]
    assert sorted(e["attributes"]["exception.type"] for e in events if e["name"] == "exception") == sorted(
        ["ValueError", "RuntimeError", "ExceptionGroup" if sys.version_info >= (3, 11) else "ValueError"]
    )


def test_a_key_that_names_a_secret_has_its_whole_value_redacted(receiver):
    """Passphrases with spaces, short passwords, api keys with commas: redacted whole in spans and events."""
    import trodo_trace as trodo

    trodo.init(endpoint=receiver.url, schedule_delay_ms=20, batch_flush_interval_ms=20)

    @trodo.tool
    def login(passphrase, password, options):
        trodo.current_span().set_attribute("db.password", "hunter")
        return {"ok": True}

    @trodo.agent("login-bot")
    def bot():
        login("correct horse battery staple", "pw1", {"api_key": "abc,defghijkl", "max_tokens": 5})
        trodo.track("u1", "signed_in", {"password": "pw1", "nested": {"Authorization": "Basic dXNlcg=="}})

    bot()
    assert trodo.flush(5.0)
    payload = b"".join(r.body for r in receiver.requests)
    for secret in (b"horse", b"pw1", b"defghijkl", b"hunter", b"dXNlcg"):
        assert secret not in payload, secret
    (tool,) = [s for s in receiver.spans() if s.name == "login"]
    assert json.loads(tool.attributes["input.value"]) == {
        "passphrase": "[REDACTED]",
        "password": "[REDACTED]",
        "options": {"api_key": "[REDACTED]", "max_tokens": 5},
    }
    assert tool.attributes["db.password"] == "[REDACTED]"
    (event,) = receiver.logs()
    assert event["body"] == {"password": "[REDACTED]", "nested": {"Authorization": "[REDACTED]"}}


HEADER_SECRET = "tok-9f8e7d6c5b4a"


def test_a_header_value_with_a_newline_is_refused_at_init_without_showing_it():
    """init(headers=...) with a control character raises ValueError naming the header, never the value."""
    import trodo_trace as trodo

    with pytest.raises(ValueError, match="x-api-key") as info:
        trodo.init(endpoint="http://127.0.0.1:9", headers={"x-api-key": HEADER_SECRET + "\n"})
    assert HEADER_SECRET not in str(info.value)


def test_a_malformed_headers_variable_is_ignored_without_printing_its_secret(tmp_path):
    """OTEL_EXPORTER_OTLP_HEADERS with a malformed or newline entry: one warning, no secret in any output."""
    code = """
import json, trodo_trace as trodo
trodo.init()
print(json.dumps(trodo.stats()))
"""
    for headers in (f"authorization Bearer {HEADER_SECRET}", f"x-api-key={HEADER_SECRET}%0Aextra"):
        result = run_script(
            code,
            tmp_path,
            env={"OTEL_EXPORTER_OTLP_HEADERS": headers, "TRODO_ENDPOINT": "http://127.0.0.1:9"},
        )
        assert result.returncode == 0, result.stderr
        assert "OTEL_EXPORTER_OTLP_HEADERS" in result.stderr
        assert HEADER_SECRET not in result.stderr + result.stdout


def test_header_values_are_scrubbed_from_send_errors():
    """An error message quoting a header value (as requests' InvalidHeader does) keeps no trace of it in stats."""
    from trodo_trace._internal.export.otlp_transport import Attempt, Sender, TransportOptions

    class Failing(Sender):
        def _send(self, body, timeout):
            raise ValueError(f"Invalid header value {HEADER_SECRET + chr(10)!r}")

    sender = Failing(
        "traces",
        TransportOptions("http/protobuf", "http://127.0.0.1:9", {"x-api-key": HEADER_SECRET}, "none"),
    )
    attempt = sender.send(b"", 1.0)
    assert isinstance(attempt, Attempt) and not attempt.ok
    assert HEADER_SECRET not in attempt.summary
    assert "[REDACTED]" in attempt.summary


REFUSED = """
import json, time, trodo_trace as trodo

@trodo.agent("refused-bot")
def bot():
    return 1

started = time.monotonic()
bot()
time.sleep(0.3)  # the first export is under way
ok = trodo.flush(15)
stats = trodo.stats()
print(json.dumps({"flush_s": time.monotonic() - started, "ok": ok, "spooled": stats["spooled"]}))
"""


@pytest.mark.serial
def test_a_refused_connection_sends_the_first_batch_to_the_spool_within_seconds(tmp_path):
    """Collector down from the start: the first batch is spooled after a short budget; the script exits quickly."""
    import socket
    import time

    from otlp_receiver import free_port

    port = free_port()
    with socket.socket() as probe:  # nothing listens on port: connections are refused
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    started = time.monotonic()
    result = run_script(
        REFUSED, tmp_path, env={"TRODO_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_BSP_SCHEDULE_DELAY": "20"}
    )
    elapsed = time.monotonic() - started
    out = _last_json(result)
    assert out["spooled"] == 1 and out["ok"] is False
    assert out["flush_s"] < 6.0, out
    assert elapsed < 10.0


@pytest.mark.serial
def test_retry_after_from_the_collector_is_capped_at_a_minute(receiver):
    """Retry-After: 99999 holds sending for at most 60 s; the batch waits in the spool, not in memory."""
    import time

    import trodo_trace as trodo
    from trodo_trace._internal import runtime

    receiver.set_behaviour(status=503, retry_after="99999")
    trodo.init(endpoint=receiver.url, schedule_delay_ms=20)
    with trodo.agent("held"):
        pass
    assert trodo.flush(3.0) is False
    assert trodo.stats()["spooled"] == 1
    hold = runtime.get().otlp_hub.circuit("traces").hold_until - time.monotonic()
    assert 0 < hold <= 60.0


HOSTILE_STORE = r"""
import trodo_trace as trodo
esc = "\x1b]0;pwned\x07\x1b[2J\x1b]8;;http://evil\x1b\\\x9b31m"

@trodo.tool(esc + "tool")
def step():
    raise ValueError("line one " + esc + "\nline two")

@trodo.agent(esc + "agent", distinct_id=esc + "user", conversation_id=esc + "conv")
def bot():
    trodo.track(esc + "user", "hostile_event", {"p": esc}, category=esc + "cat")
    try:
        step()
    except ValueError:
        pass

bot()
trodo.flush(5)
print(trodo.last_run().run_id)
"""


def test_cli_output_carries_no_terminal_control_characters(tmp_path):
    """runs/show/events print stored names, ids and errors without escape sequences (newlines kept)."""
    import subprocess
    import sys

    result = run_script(HOSTILE_STORE, tmp_path)
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip().splitlines()[-1]
    outputs = []
    for args in (["runs"], ["show", run_id], ["events"], ["show", "\x1b[2Jnope"]):
        done = subprocess.run(
            [sys.executable, "-m", "trodo_trace.cli", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        outputs.append(done.stdout + done.stderr)
    text = "".join(outputs)
    assert "pwned" in text and "line two" in text
    assert not any((ord(ch) < 0x20 and ch not in "\n\t") or 0x7F <= ord(ch) <= 0x9F for ch in text)


def test_trodo_directory_is_private_when_the_spool_creates_it(tmp_path):
    """The spool creating .trodo (collector down, no local store yet) makes it 0700, as the store does."""
    import stat

    from otlp_receiver import free_port

    code = """
import trodo_trace as trodo
with trodo.agent("down"):
    pass
trodo.flush(5)
print(trodo.stats()["spooled"])
"""
    env = {
        "TRODO_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "OTEL_BSP_SCHEDULE_DELAY": "20",
        "TRODO_STORE": str(tmp_path / ".trodo" / "trodo.db"),
    }
    result = run_script(code, tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "1"
    for directory in (tmp_path / ".trodo", tmp_path / ".trodo" / "spool"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_spans_after_shutdown_are_reported_as_after_shutdown_not_as_a_full_queue(tmp_path):
    """A span after shutdown() is dropped with a message saying tracing was shut down (init() again)."""
    code = """
import trodo_trace as trodo
with trodo.agent("before"):
    pass
trodo.shutdown()
with trodo.agent("after"):
    pass
print(trodo.stats()["dropped"])
"""
    result = run_script(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "shut down" in result.stderr and "init()" in result.stderr
    assert "queue full" not in result.stderr


def test_a_malformed_endpoint_variable_warns_with_its_host_only(tmp_path):
    """OTEL_EXPORTER_OTLP_ENDPOINT with a typo: one warning naming the host and the local-store fallback, no password."""
    code = """
import trodo_trace as trodo
with trodo.agent("typo"):
    pass
print(trodo.stats()["exporter"])
"""
    result = run_script(
        code, tmp_path, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "htp://user:s3cr3t-pw@collector:4318/x"}
    )
    assert result.returncode == 0, result.stderr
    assert "collector:4318" in result.stderr and "local store" in result.stderr
    assert "s3cr3t" not in result.stderr + result.stdout


@pytest.mark.serial
def test_stats_after_a_shutdown_that_timed_out_count_the_in_flight_batch_once(receiver):
    """A shutdown cut short by a silent collector: the batch being sent is counted as spooled, not also in flight;
    recovered_rejected is reported."""
    import time

    import trodo_trace as trodo

    receiver.set_behaviour(blackhole=True)
    trodo.init(endpoint=receiver.url, schedule_delay_ms=20)
    with trodo.agent("stuck"):
        pass
    deadline = time.monotonic() + 5.0
    while trodo.stats()["in_flight"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    trodo.shutdown(1.0)
    stats = trodo.stats()
    assert (stats["in_flight"], stats["queue_depth"], stats["spooled"]) == (0, 0, 1)
    assert stats["recovered_rejected"] == 0


@pytest.mark.parametrize("spawned", [True, False])
def test_a_worker_start_that_raises_recursion_error_still_exports_everything_through_one_worker(
    tmp_path, spawned
):
    """``Thread.start()`` waits for the new thread in Python code, so at the recursion limit it can raise
    after the thread was spawned (Python 3.12+), or before: either way every span is exported by exactly
    one worker, and flush() says so. The failure is injected into the standard library's start()."""
    code = f"""
import json, threading, trodo_trace as trodo

original = threading.Thread.start
failed = []

def start(self):
    if self.name == "trodo-span-export" and not failed:
        failed.append(self.name)
        if {spawned!r}:
            original(self)
        raise RecursionError("maximum recursion depth exceeded")
    original(self)

threading.Thread.start = start
for index in range(3):
    with trodo.agent(f"run-{{index}}"):
        with trodo.tool("step"):
            pass
ok = trodo.flush(10)
stats = trodo.stats()
workers = sum(thread.name == "trodo-span-export" for thread in threading.enumerate())
print(json.dumps([failed, ok, stats["started"], stats["exported"], workers]))
"""
    result = run_script(code, tmp_path)
    assert _last_json(result) == [["trodo-span-export"], True, 6, 6, 1], result.stderr


def test_recursion_to_the_limit_through_traced_calls_ends_every_span(tmp_path):
    """Recursing through a decorated function until RecursionError: the user's error comes back, every span ends."""
    code = """
import json, sys, trodo_trace as trodo

sys.setrecursionlimit(300)  # each traced call takes two frames: about 150 spans deep

@trodo.tool
def down(n):
    return down(n + 1)

@trodo.agent("deep")
def bot():
    try:
        down(0)
    except RecursionError:
        return "caught"

result = bot()
ok = trodo.flush(10)
stats = trodo.stats()
print(json.dumps([result, ok, stats["started"] == stats["ended"] == stats["exported"], stats["started"] > 100]))
"""
    for raise_internal in ("0", "1"):
        result = run_script(code, tmp_path, env={"TRODO_RAISE_INTERNAL": raise_internal})
        assert _last_json(result) == ["caught", True, True, True], raise_internal


def test_track_with_a_key_whose_str_raises_never_raises_into_the_app(tmp_path):
    """track({BadKey(): 1}): the event is recorded under the key's safe repr; nothing raises."""
    code = """
import trodo_trace as trodo

class BadKey:
    def __str__(self):
        raise RuntimeError("no str")

trodo.track("u1", "bad_key", {BadKey(): 1})
print(trodo.flush(5), trodo.stats()["events_exported"])
"""
    result = run_script(code, tmp_path, env={"TRODO_RAISE_INTERNAL": "0"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "1"]


def test_requests_are_capped_in_bytes_and_only_an_item_too_large_alone_is_dropped(receiver):
    """max_request_bytes: batches are split to fit; a span or event larger than the cap alone is dropped and
    counted, its batch delivered."""
    import trodo_trace as trodo

    cap = 64 * 1024
    trodo.init(
        endpoint=receiver.url,
        schedule_delay_ms=5000,
        batch_flush_interval_ms=5000,
        max_request_bytes=cap,
        max_value_length=200_000,
    )

    @trodo.tool
    def step(text):
        return len(text)

    @trodo.agent("big-batch")
    def bot():
        for i in range(100):
            step(f"{i:04d}" + "x" * 2000)
        step("huge" + "y" * 100_000)
        for i in range(20):
            trodo.track("u1", "small_event", {"i": i})
        trodo.track("u1", "huge_event", {"blob": "z" * 100_000})

    bot()
    assert trodo.flush(10.0) is False  # two items were too large
    assert all(len(request.body) <= cap for request in receiver.requests)
    assert len([r for r in receiver.requests if r.path.endswith("traces")]) > 2
    names = [span.name for span in receiver.spans()]
    assert (names.count("step"), names.count("big-batch")) == (100, 1)
    assert sorted(r["body"]["i"] for r in receiver.logs()) == list(range(20))
    stats = trodo.stats()
    assert (stats["dropped"], stats["events_dropped"], stats["rejected"]) == (1, 1, 0)


def test_a_413_splits_the_batch_instead_of_rejecting_it(receiver):
    """A collector answering 413 gets the batch again in halves: every span is delivered, none rejected."""
    from otlp_receiver import Behaviour

    import trodo_trace as trodo

    receiver.script(Behaviour(status=413), Behaviour(status=413))
    trodo.init(endpoint=receiver.url, schedule_delay_ms=5000)

    @trodo.tool
    def step(i):
        return i

    @trodo.agent("split")
    def bot():
        for i in range(40):
            step(i)

    bot()
    assert trodo.flush(10.0) is True
    assert [r.status for r in receiver.requests][:2] == [413, 413]
    assert len(receiver.spans()) == 41
    assert trodo.stats()["rejected"] == 0


def test_the_spool_never_follows_links_and_counts_from_content(tmp_path, receiver):
    """A symlink in the spool is never read or sent; a file's item count comes from its content, not its name."""
    store = tmp_path / ".trodo" / "trodo.db"
    env = {"TRODO_ENDPOINT": receiver.url, "TRODO_STORE": str(store), "OTEL_BSP_EXPORT_TIMEOUT": "300"}
    receiver.set_behaviour(status=503)
    first = run_script(
        "import trodo_trace as trodo\nwith trodo.agent('spooled'):\n    pass\ntrodo.flush(2)\n",
        tmp_path,
        env=env,
    )
    assert first.returncode == 0, first.stderr
    (spooled,) = (tmp_path / ".trodo" / "spool").glob("*/*.otlp")
    stem, signal, _count, suffix = spooled.name.split(".")
    spooled.rename(spooled.with_name(f"{stem}.{signal}.1000000000.{suffix}"))
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOP-SECRET-FILE")
    link = spooled.with_name(f"{int(stem.split('-')[0]) - 1:020d}-3ffffex00000000-00000001.traces.7.otlp")
    link.symlink_to(secret)
    receiver.set_behaviour(status=200)
    code = """
import json, trodo_trace as trodo
trodo.init()
trodo.flush(5)
print(json.dumps(trodo.stats()["recovered"]))
"""
    second = run_script(code, tmp_path, env=env)
    assert _last_json(second) == 1
    assert b"TOP-SECRET" not in b"".join(r.body for r in receiver.requests)
    assert [span.name for span in receiver.spans()] == ["spooled"]
    assert secret.read_bytes() == b"TOP-SECRET-FILE"


def test_a_failed_spool_write_leaves_no_partial_file_and_says_why(tmp_path, monkeypatch):
    """ENOSPC while spooling: the partial file is removed and the reason is 'the disk ... is full';
    files of an unknown signal expire."""
    import errno
    import os
    import time

    from trodo_trace._internal.export import spool as spool_mod

    spool = spool_mod.Spool(tmp_path / "spool", 1 << 20, "1x1")
    assert spool.put("traces", b"ok", 1)
    real_write = os.write

    def full(fd, data):
        real_write(fd, bytes(data[:1]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_mod.os, "write", full)
    assert spool.put("traces", b"x" * 1000, 1) is False
    monkeypatch.setattr(spool_mod.os, "write", real_write)
    assert "full" in spool.last_failure
    assert list((tmp_path / "spool" / spool_mod.TMP_DIR).iterdir()) == []
    unknown = tmp_path / "spool" / "00000000000000000001-1x1-00000009.metrics.5.otlp"
    unknown.write_bytes(b"?")
    old = time.time() - 2 * 3600
    os.utime(unknown, (old, old))
    assert [f.signal for f in spool.files()] == ["traces"]
    assert not unknown.exists()


def test_the_span_queue_is_bounded_in_bytes_and_spills_to_the_spool(receiver):
    """max_queue_bytes: spans with big inputs past the byte bound go to the spool, not memory; all are delivered."""
    import trodo_trace as trodo
    from trodo_trace._internal import runtime

    trodo.init(endpoint=receiver.url, schedule_delay_ms=60_000, max_queue_bytes=1024 * 1024)

    @trodo.tool
    def step(text):
        return 1

    @trodo.agent("heavy")
    def bot():
        for i in range(150):
            step(f"{i:04d}" + "x" * 32_000)

    bot()
    pipeline = runtime.get().pipeline.stats()
    assert pipeline["queue_bytes"] <= 1024 * 1024
    assert pipeline["queue_depth"] < 40 and pipeline["overflowed"] > 100
    assert trodo.flush(15.0) is True
    assert len(receiver.spans()) == 151
    assert trodo.stats()["dropped"] == 0


def test_event_properties_are_capped_like_captured_values():
    """track(): strings past max_value_length are cut with a marker, lists keep 1,000 items; the call stays cheap."""
    import time

    import trodo_trace as trodo
    from trodo_trace._internal import runtime
    from trodo_trace._internal.store.local import LocalStore

    trodo.init(max_value_length=1000)
    trodo.track("u1", "warm_up")  # builds the event sink
    properties = {"text": "a" * 50_000_000, "items": list(range(1_000_000))}
    started = time.thread_time()  # this thread's CPU time: unaffected by a busy machine
    trodo.track("u1", "big_props", properties)
    elapsed = time.thread_time() - started
    assert trodo.flush(5.0)
    event = next(e for e in LocalStore(runtime.get().store_path).list_events() if e["name"] == "big_props")
    assert event["properties"]["text"] == "a" * 1000 + "\u2026[truncated: 50000000 chars total]"
    assert len(event["properties"]["items"]) == 1001
    assert elapsed < 0.05


SERVICE = """
import signal, sys, time
{before}
import trodo_trace as trodo

@trodo.tool
def step(i):
    return i

for _ in range(20):
    with trodo.agent("svc"):
        for i in range(100):
            step(i)
print("ready", flush=True)
time.sleep(30)
"""


@pytest.mark.serial
@pytest.mark.parametrize(
    ("before", "returncode"),
    [("", -15), ("signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(3))", 3)],
    ids=["default-action", "chained-handler"],
)
def test_sigterm_flushes_queued_spans_and_keeps_the_previous_behaviour(
    tmp_path, receiver, before, returncode
):
    """SIGTERM with 2,020 spans queued: all are delivered, then the default action or the app's handler runs."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "service.py"
    script.write_text(SERVICE.format(before=before))
    env = {**os.environ, "TRODO_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "60000"}
    process = subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert process.stdout.readline().strip() == "ready"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == returncode, process.stderr.read()
        assert time.monotonic() - started < 11.0  # within the exit deadline
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    assert receiver.span_count() == 2020


def test_the_byte_bound_holds_though_a_short_queue_is_not_measured():
    """With a per-item maximum, items joining a short queue are not measured (no cost on the app thread),
    yet what the queue holds stays within max_bytes while the worker is stuck; the rest overflows."""
    import threading

    release = threading.Event()
    exported, spilled = [], []

    def export(batch):
        release.wait(10.0)
        exported.extend(batch)

    def overflow(item):
        spilled.append(item)
        return True

    pipeline = Pipeline(
        export,
        batch_size=4,
        interval_s=0.01,
        size=len,
        max_bytes=10_000,
        max_item_bytes=1_000,
        overflow=overflow,
    )
    measured = []
    pipeline._size = lambda item: measured.append(item) or len(item)
    for i in range(200):
        pipeline.submit(f"{i:03d}" + "x" * (200 if i % 2 else 997))
    queued = sum(map(len, list(pipeline._queue)))
    assert queued <= 10_000 and spilled
    assert len(measured) < 200  # the first items of the short queue were not measured
    release.set()
    assert pipeline.flush(10.0)
    pipeline.shutdown(1.0)
    assert sorted(exported + spilled) == sorted(
        f"{i:03d}" + "x" * (200 if i % 2 else 997) for i in range(200)
    )


def test_the_event_queue_is_bounded_in_bytes_and_spills_to_the_spool(receiver):
    """max_queue_bytes holds for events too: big events past the bound go to the spool, all are delivered."""
    import trodo_trace as trodo
    from trodo_trace._internal.events.sink import current_sink

    trodo.init(endpoint=receiver.url, batch_flush_interval_ms=60_000, max_queue_bytes=1024 * 1024)
    for i in range(100):
        trodo.track("u1", "heavy_event", {"i": i, "blob": "x" * 30_000})
    pipeline = current_sink().pipeline.stats()
    assert pipeline["queue_bytes"] <= 1024 * 1024
    assert pipeline["queue_depth"] < 40 and pipeline["overflowed"] > 60
    assert trodo.flush(15.0) is True
    assert sorted(r["body"]["i"] for r in receiver.logs()) == list(range(100))
    stats = trodo.stats()
    assert (stats["events_dropped"], stats["events_exported"]) == (0, 100)


REFUSED_LOGS = """
import json, trodo_trace as trodo

@trodo.agent("phoenix-like")
def bot():
    for i in range(3):
        trodo.track("u1", "clicked", {"i": i})

bot()
bot()
first = trodo.flush(10)
second = trodo.flush(10)
stats = trodo.stats()
print(json.dumps({key: stats[key] for key in ("exported", "rejected", "events_rejected", "events_exported",
                                               "events_refused", "events_last_error", "refused")} |
                 {"first": first, "second": second}))
"""


def test_a_backend_without_logs_gets_one_clear_warning_and_events_count_as_rejected(tmp_path, receiver):
    """405 on /v1/logs (as Phoenix answers): spans arrive, each event is counted as rejected, one warning names the
    signal and the answer (no header values), flush() is False once with the reason in stats()."""
    receiver.refuse_signal("logs", 405)
    env = {
        "TRODO_ENDPOINT": receiver.url,
        "OTEL_EXPORTER_OTLP_HEADERS": f"x-api-key={HEADER_SECRET}",
        "TRODO_BATCH_SIZE": "3",
        "TRODO_BATCH_FLUSH_INTERVAL_MS": "20",
        **ENV,
    }
    result = run_script(REFUSED_LOGS, tmp_path, env=env)
    out = _last_json(result)
    assert out == {
        "exported": 2,
        "rejected": 0,
        "events_rejected": 6,
        "events_exported": 0,
        "events_refused": "405: no logs here (the collector does not accept logs)",
        "events_last_error": "405: no logs here (the collector does not accept logs)",
        "refused": None,
        "first": False,
        "second": True,
    }
    assert len([r for r in receiver.requests if r.path.endswith("logs")]) >= 2
    warnings = [line for line in result.stderr.splitlines() if "trodo_trace" in line]
    assert len(warnings) == 1, result.stderr
    assert "does not accept logs" in warnings[0] and "405" in warnings[0] and "/v1/logs" in warnings[0]
    assert HEADER_SECRET not in result.stderr + result.stdout
    assert [span.name for span in receiver.spans()] == ["phoenix-like", "phoenix-like"]


SOURCE_LINES = """
import traceback, trodo_trace as trodo
trodo.init(capture_content=False, schedule_delay_ms=20, batch_flush_interval_ms=20)

@trodo.tool
def lookup(account):
    return {"SRC-LEAK-1": account}["SRC-LEAK-2 " + account]

@trodo.agent("private-source")
def bot():
    try:
        lookup("acct")
    except KeyError as exc:
        trodo.for_user("u1").capture_error(exc)
        text = "".join(traceback.format_exception(exc))
        with trodo.get_tracer().start_as_current_span("by-hand") as span:
            span.add_event("exception", {"exception.type": "KeyError", "exception.stacktrace": text})

bot()
print(trodo.flush(10))
"""


def test_capture_content_off_leaves_no_source_text_in_stack_traces(tmp_path, receiver):
    """Content off: stack traces keep each frame's file, line and function but no code line (it can hold literals
    and arguments), in span exception events, server_error events and hand-added exception events alike."""
    result = run_script(SOURCE_LINES, tmp_path, env={"TRODO_ENDPOINT": receiver.url, **ENV})
    assert result.stdout.split() == ["True"], result.stderr
    assert b"SRC-LEAK" not in b"".join(r.body for r in receiver.requests)
    stacks = [
        e["attributes"]["exception.stacktrace"]
        for s in receiver.spans()
        for e in s.events
        if e["name"] == "exception"
    ]
    (event,) = receiver.logs()
    stacks.append(event["body"]["stack_trace"])
    assert len(stacks) == 3  # the tool span's exception event, the hand-added one, the server_error event
    for stack in stacks:
        assert ", in lookup" in stack and stack.rstrip().endswith("KeyError"), stack
        assert "return {" not in stack


def test_status_counts_spooled_items_from_content_and_skips_links(tmp_path, receiver):
    """trodo-trace status: a renamed file claiming 1,000,000,000 spans counts what it holds; a link is not counted."""
    import subprocess
    import sys

    store = tmp_path / ".trodo" / "trodo.db"
    env = {"TRODO_ENDPOINT": receiver.url, "TRODO_STORE": str(store), "OTEL_BSP_EXPORT_TIMEOUT": "300"}
    receiver.set_behaviour(status=503)
    code = "import trodo_trace as trodo\nfor _ in range(3):\n    with trodo.agent('spooled'):\n        pass\ntrodo.flush(2)\n"
    first = run_script(code, tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    (spooled,) = (tmp_path / ".trodo" / "spool").glob("*/*.otlp")
    stem, signal, _count, suffix = spooled.name.split(".")
    spooled.rename(spooled.with_name(f"{stem}.{signal}.1000000000.{suffix}"))
    secret = tmp_path / "secret.otlp"
    secret.write_bytes(spooled.with_name(f"{stem}.{signal}.1000000000.{suffix}").read_bytes())
    spooled.with_name(
        f"{int(stem.split('-')[0]) - 1:020d}-3ffffex00000000-00000001.traces.7.otlp"
    ).symlink_to(secret)
    done = subprocess.run(
        [sys.executable, "-m", "trodo_trace.cli", "status"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={**__import__("os").environ, "TRODO_STORE": str(store)},
    )
    assert done.returncode == 0, done.stderr
    assert "1 batches" in done.stdout and "3 spans" in done.stdout, done.stdout
    assert "1000000000" not in done.stdout and " 7 spans" not in done.stdout


READ_ONLY_SPOOL = """
import errno, json, os, trodo_trace as trodo
from trodo_trace._internal.export import spool as spool_mod

real_open = os.open

def read_only(path, flags, *args, **kwargs):
    if flags & os.O_CREAT and "spool" in str(path):
        raise OSError(errno.EROFS, "Read-only file system")
    return real_open(path, flags, *args, **kwargs)

spool_mod.os.open = read_only
with trodo.agent("nowhere"):
    pass
ok = trodo.flush(3)
stats = trodo.stats()
print(json.dumps([ok, stats["dropped"], stats["spooled"]]))
"""


def test_a_read_only_spool_is_reported_as_read_only_not_as_full(tmp_path, receiver):
    """Collector refusing for now and a read-only spool: the warning says the file system is read-only."""
    receiver.set_behaviour(status=503)
    result = run_script(
        READ_ONLY_SPOOL,
        tmp_path,
        env={
            "TRODO_ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "20",
            "OTEL_BSP_EXPORT_TIMEOUT": "300",
        },
    )
    assert _last_json(result) == [False, 1, 0]
    assert "read-only" in result.stderr and "spool is full" not in result.stderr, result.stderr


INIT_TWICE = """
import trodo_trace as trodo
trodo.init(schedule_delay_ms=20, batch_flush_interval_ms=20)
with trodo.agent("first"):
    trodo.track("u1", "first_event")
trodo.init(schedule_delay_ms=20, batch_flush_interval_ms=20)
with trodo.agent("second"):
    trodo.track("u1", "second_event")
trodo.init(schedule_delay_ms=20, batch_flush_interval_ms=20)
print(trodo.flush(5))
"""


def test_init_twice_prints_nothing_and_loses_nothing(tmp_path, receiver):
    """init() again (and again) with spans and events queued: no OpenTelemetry message, everything delivered."""
    result = run_script(INIT_TWICE, tmp_path, env={"TRODO_ENDPOINT": receiver.url})
    assert result.returncode == 0 and result.stdout.split() == ["True"], result.stderr
    assert result.stderr == ""
    assert sorted(span.name for span in receiver.spans()) == ["first", "second"]
    assert sorted(r["attributes"]["event.name"] for r in receiver.logs()) == ["first_event", "second_event"]
