"""Product events into the local store: `track`, `for_user`, `capture_error`, validation, batching."""

from __future__ import annotations

import datetime
import decimal
import json
import os
import threading
import time
from pathlib import Path

import pytest

import trodo_trace as trodo
from trodo_trace._internal.events import auto as autoevents
from trodo_trace._internal.events.sink import to_rows
from trodo_trace._internal.events.track import RESERVED_PROPERTIES, EventWarning
from trodo_trace._internal.store.local import LocalStore
from trodo_trace.cli import main as cli_main
from trodo_trace.testing import capture

KEYS = ("name", "distinct_id", "category", "run_id", "trace_id", "span_id", "properties")


@pytest.fixture(autouse=True)
def _no_hooks_left():
    """No test leaves exception hooks installed."""
    yield
    autoevents.uninstall()


def store_path() -> Path:
    return Path(os.environ["TRODO_STORE"])


def stored(keys: tuple[str, ...] = KEYS) -> list[dict]:
    """Events in the local store, oldest first, with the chosen keys."""
    path = store_path()
    if not path.exists():
        return []
    with LocalStore(path) as store:
        rows = store.list_events(limit=None)
    return [{key: row[key] for key in keys} for row in reversed(rows)]


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def event(name: str, user: str = "u-1", properties: dict | None = None, **more) -> dict:
    row = {
        "name": name,
        "distinct_id": user,
        "category": "custom",
        "run_id": None,
        "trace_id": None,
        "span_id": None,
        "properties": properties or {},
    }
    row.update(more)
    return row


# -- delivery and content ----------------------------------------------------------------------
def test_track_stores_event_with_properties_after_flush():
    """track() queues an event that flush() writes to the local store, properties intact."""
    trodo.track("u-1", "signup_completed", {"plan": "pro", "seats": 5, "trial": False, "tags": ["a", "b"]})
    trodo.track("u-2", "plan_upgraded", category="billing")
    assert trodo.flush(5.0) is True
    assert stored() == [
        event("signup_completed", properties={"plan": "pro", "seats": 5, "trial": False, "tags": ["a", "b"]}),
        event("plan_upgraded", user="u-2", category="billing"),
    ]


def test_event_rows_carry_unique_ids_and_timestamps():
    """Every event gets its own id (the store's dedup key) and a wall-clock timestamp."""
    before = time.time_ns()
    for index in range(3):
        trodo.track("u-1", "step_done", {"index": index})
    trodo.flush()
    rows = stored(("dedup_key", "ts_ns"))
    assert len({row["dedup_key"] for row in rows}) == 3
    assert all(len(row["dedup_key"]) == 32 for row in rows)
    assert all(before <= row["ts_ns"] <= time.time_ns() for row in rows)


def test_redelivered_batch_is_stored_once():
    """A batch written twice (an at-least-once retry) keeps one row per event: the event id is the key."""
    from trodo_trace._internal.events.sink import Event

    batch = to_rows(
        [
            Event(f"id-{n}", n, "retried_event", "u-1", "custom", {"n": n}, None, 0, 0, 0, None)
            for n in range(3)
        ]
    )
    with LocalStore(store_path()) as store:
        store.write_events(batch)
        store.write_events(batch)
    assert stored() == [event("retried_event", properties={"n": n}) for n in range(3)]


def test_event_inside_run_carries_run_id_and_trace_context():
    """An event tracked inside a run carries that run's id and the current span's trace and span ids."""
    with capture() as traces:

        @trodo.tool
        def charge() -> None:
            trodo.for_user("u-7").track("payment_captured", {"amount": 12.5})

        @trodo.agent("billing-bot")
        def bot() -> None:
            trodo.track("u-7", "billing_started")
            charge()

        bot()
    trodo.flush()
    run = traces.runs()[0]
    tool = traces.by_name("charge")
    assert stored() == [
        event("billing_started", user="u-7", run_id=run.run_id, trace_id=run.trace_id, span_id=run.span_id),
        event(
            "payment_captured",
            user="u-7",
            properties={"amount": 12.5},
            run_id=run.run_id,
            trace_id=tool.trace_id,
            span_id=tool.span_id,
        ),
    ]


def test_event_outside_run_has_no_run_or_trace():
    """Outside any span an event has no run id and no trace context."""
    trodo.track("u-1", "page_loaded_server")
    trodo.flush()
    assert stored() == [event("page_loaded_server")]


def test_cli_lists_stored_events_with_filters(capsys):
    """`trodo-trace events` lists what track() stored, filtered by --user and --name, as --json."""
    trodo.track("u-1", "signup_completed", {"plan": "pro"})
    trodo.track("u-2", "signup_completed", {"plan": "free"})
    trodo.track("u-1", "report_exported")
    trodo.flush()
    store = str(store_path())
    assert cli_main(["--store", store, "events", "--user", "u-1", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(e["name"], e["distinct_id"], e["properties"]) for e in listed] == [
        ("report_exported", "u-1", {}),
        ("signup_completed", "u-1", {"plan": "pro"}),
    ]
    assert cli_main(["--store", store, "events", "--name", "signup_completed"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TIME", "(UTC)", "NAME", "USER", "CATEGORY", "RUN", "ID", "PROPERTIES"]
    assert [line.split()[2] for line in lines[1:]] == ["u-2", "u-1"]


def test_tracking_disabled_sends_nothing_but_still_validates():
    """With enabled=False, track() stores nothing, yet a bad argument still raises."""
    trodo.init(enabled=False)
    trodo.track("u-1", "ignored_event")
    trodo.flush()
    assert stored() == []
    with pytest.raises(ValueError, match="event_name"):
        trodo.track("u-1", "")


def test_track_after_shutdown_is_dropped_quietly():
    """After shutdown() an event is dropped (logged once), never raised."""
    trodo.track("u-1", "before_shutdown")
    trodo.shutdown()
    trodo.track("u-1", "after_shutdown")
    assert stored() == [event("before_shutdown")]


def test_stats_count_events_separately_from_spans():
    """stats() reports queued/exported events under events_* keys, leaving span counts alone."""
    trodo.track("u-1", "counted_event")
    trodo.track("u-1", "counted_event")
    trodo.flush()
    stats = trodo.stats()
    assert {k: stats[k] for k in ("events_queued", "events_exported", "events_failed", "events_dropped")} == {
        "events_queued": 2,
        "events_exported": 2,
        "events_failed": 0,
        "events_dropped": 0,
    }
    assert stats["exported"] == 0
    assert stats["events_exporter"] == f"local store {store_path()}"


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "kwargs", "error", "argument"),
    [
        ((None, "ok_name"), {}, TypeError, "distinct_id"),
        ((42, "ok_name"), {}, TypeError, "distinct_id"),
        (("", "ok_name"), {}, ValueError, "distinct_id"),
        (("   ", "ok_name"), {}, ValueError, "distinct_id"),
        (("u-1", None), {}, TypeError, "event_name"),
        (("u-1", b"bytes_name"), {}, TypeError, "event_name"),
        (("u-1", ""), {}, ValueError, "event_name"),
        (("u-1", "x" * 256), {}, ValueError, "event_name"),
        (("u-1", "ok_name"), {"properties": ["not", "a", "mapping"]}, TypeError, "properties"),
        (("u-1", "ok_name"), {"properties": "text"}, TypeError, "properties"),
        (("u-1", "ok_name"), {"category": None}, TypeError, "category"),
        (("u-1", "ok_name"), {"category": ""}, ValueError, "category"),
        (("u-1", "ok_name"), {"category": "c" * 256}, ValueError, "category"),
    ],
)
def test_track_rejects_invalid_argument_naming_it(args, kwargs, error, argument):
    """Each invalid track() argument raises ValueError/TypeError whose message names it; nothing is sent."""
    with pytest.raises(error, match=argument):
        trodo.track(*args, **kwargs)
    trodo.flush()
    assert stored() == []


def test_event_name_of_255_characters_is_accepted():
    """A 255-character event name is the longest accepted."""
    trodo.track("u-1", "a" * 255)
    trodo.flush()
    assert [row["name"] for row in stored()] == ["a" * 255]


@pytest.mark.parametrize(
    ("call", "error", "argument"),
    [
        (lambda: trodo.for_user(None), TypeError, "distinct_id"),
        (lambda: trodo.for_user(""), ValueError, "distinct_id"),
        (lambda: trodo.for_user("u").track(""), ValueError, "event_name"),
        (lambda: trodo.for_user("u").track(7), TypeError, "event_name"),
        (lambda: trodo.for_user("u").track("n" * 256), ValueError, "event_name"),
        (lambda: trodo.for_user("u").track("ok_name", properties=[1]), TypeError, "properties"),
        (lambda: trodo.for_user("u").track("ok_name", category=1), TypeError, "category"),
        (lambda: trodo.for_user("u").capture_error("boom"), TypeError, "exc"),
        (lambda: trodo.for_user("u").capture_error(ValueError), TypeError, "exc"),
        (
            lambda: trodo.for_user("u").capture_error(ValueError("x"), severity="fatal"),
            ValueError,
            "severity",
        ),
        (lambda: trodo.for_user("u").capture_error(ValueError("x"), severity=3), TypeError, "severity"),
        (lambda: trodo.for_user("u").capture_error(ValueError("x"), properties=1), TypeError, "properties"),
        (lambda: trodo.for_user("u").wrap_agent("", lambda run: 1), ValueError, "name"),
        (lambda: trodo.for_user("u").wrap_agent("bot", None), TypeError, "fn"),
    ],
)
def test_for_user_rejects_invalid_argument_naming_it(call, error, argument):
    """for_user() and its methods reject each invalid argument with an error naming it."""
    with pytest.raises(error, match=argument):
        call()
    trodo.flush()
    assert stored() == []


# -- reserved names, conversions and naming warnings ------------------------------------------
def test_reserved_properties_are_stripped_with_one_warning():
    """All ten reserved property names are removed, with one warning naming them."""
    properties = {name: "x" for name in sorted(RESERVED_PROPERTIES)}
    properties["plan"] = "pro"
    with pytest.warns(EventWarning) as record:
        trodo.track("u-1", "checkout_started", properties)
    assert len(record) == 1
    message = str(record[0].message)
    assert all(name in message for name in RESERVED_PROPERTIES)
    assert record[0].filename == __file__
    trodo.flush()
    assert stored() == [event("checkout_started", properties={"plan": "pro"})]


def test_reserved_property_warning_is_not_repeated():
    """The same reserved-name problem warns once, however often it recurs."""
    with pytest.warns(EventWarning) as record:
        for _ in range(5):
            trodo.track("u-1", "checkout_started", {"url": "https://example.com"})
    assert len(record) == 1
    trodo.flush()
    assert [row["properties"] for row in stored()] == [{}] * 5


def test_non_json_values_are_converted_with_one_warning():
    """Values JSON cannot hold are converted (dates to ISO text, sets to lists, ...) with one warning."""

    class Custom:
        def __repr__(self) -> str:
            return "Custom()"

    cyclic: list = []
    cyclic.append(cyclic)
    properties = {
        "when": datetime.datetime(2024, 5, 6, 7, 8, 9),
        "price": decimal.Decimal("9.99"),
        "ids": {3, 1, 2},
        "raw": b"bytes",
        "huge": 2**70,
        "nan": float("nan"),
        "obj": Custom(),
        "nested": {"day": datetime.date(2024, 1, 2), 5: "int key"},
        "loop": cyclic,
        "fine": (1, 2.5, None, True),
    }
    with pytest.warns(EventWarning) as record:
        trodo.track("u-1", "order_placed", properties)
    assert len(record) == 1
    assert "when, price, ids, raw, huge, nan, obj, nested, loop" in str(record[0].message)
    trodo.flush()
    assert stored()[0]["properties"] == {
        "when": "2024-05-06T07:08:09",
        "price": "9.99",
        "ids": [1, 2, 3],
        "raw": "bytes",
        "huge": "1180591620717411303424",
        "nan": "nan",
        "obj": "Custom()",
        "nested": {"day": "2024-01-02", "5": "int key"},
        "loop": ["<cycle>"],
        "fine": [1, 2.5, None, True],
    }


def test_json_values_pass_without_warning():
    """Plain JSON values (nested dicts, lists, tuples, numbers, None) are sent as is, silently."""
    properties = {"a": {"b": [1, 2, {"c": None}]}, "t": (1, "x"), "f": 1.5, "n": -(2**63), "s": "é"}
    trodo.track("u-1", "plain_values", properties)
    trodo.flush()
    assert stored()[0]["properties"] == {
        "a": {"b": [1, 2, {"c": None}]},
        "t": [1, "x"],
        "f": 1.5,
        "n": -(2**63),
        "s": "é",
    }


@pytest.mark.parametrize(
    "name", ["SignupCompleted", "signup-completed", "signup completed", "2fa_enabled", "a__b"]
)
def test_non_snake_case_name_warns_once_and_is_sent(name):
    """A name that is not snake_case warns once (not an error) and the event is still sent."""
    with pytest.warns(EventWarning, match="snake_case") as record:
        trodo.track("u-1", name)
        trodo.for_user("u-2").track(name)
    assert len(record) == 1
    trodo.flush()
    assert [row["name"] for row in stored()] == [name, name]


@pytest.mark.parametrize("name", ["signup", "signup_completed", "step_2_done", "a1"])
def test_snake_case_names_do_not_warn(name):
    """snake_case names are accepted without a warning (pytest turns any warning into an error)."""
    trodo.track("u-1", name)
    trodo.flush()
    assert [row["name"] for row in stored()] == [name]


# -- for_user ---------------------------------------------------------------------------------
def test_for_user_track_and_wrap_agent_use_the_bound_distinct_id():
    """for_user(id).track records for that user; .wrap_agent runs an agent whose run has that user."""
    user = trodo.for_user("u-9")
    assert repr(user) == "UserContext(distinct_id='u-9')"
    user.track("report_exported", {"format": "pdf"}, category="reports")
    with capture() as traces:

        def agent(run):
            user.track("agent_step")
            return "answer"

        result, run_id = user.wrap_agent("helper", agent, conversation_id="c-1", metadata={"tier": "gold"})
    assert result == "answer"
    trodo.flush()
    root = traces.run(run_id)
    assert (root.name, root.attributes["trodo.distinct_id"], root.attributes["trodo.conversation_id"]) == (
        "helper",
        "u-9",
        "c-1",
    )
    assert stored() == [
        event("report_exported", user="u-9", category="reports", properties={"format": "pdf"}),
        event("agent_step", user="u-9", run_id=run_id, trace_id=root.trace_id, span_id=root.span_id),
    ]


async def test_for_user_wrap_agent_awaits_async_functions():
    """for_user(id).wrap_agent with an async function returns an awaitable of (result, run_id)."""
    with capture() as traces:

        async def agent(run):
            return 42

        result, run_id = await trodo.for_user("u-3").wrap_agent("async-helper", agent)
    assert result == 42
    assert traces.run(run_id).attributes["trodo.distinct_id"] == "u-3"


def _raise_value_error(order: int = 17) -> None:
    raise ValueError(f"card declined for order {order}")


def test_capture_error_emits_server_error_with_the_user_id():
    """capture_error emits one server_error for the user: type, message, trace, runtime, severity, extras."""
    user = trodo.for_user("u-5")
    for severity in ("critical", "error", "warning"):
        try:
            _raise_value_error()
        except ValueError as exc:
            user.capture_error(exc, severity=severity, properties={"order": 17, "severity": "ignored"})
    trodo.flush()
    rows = stored()
    assert [
        {**row, "properties": {k: v for k, v in row["properties"].items() if k != "stack_trace"}}
        for row in rows
    ] == [
        event(
            "server_error",
            user="u-5",
            category="error",
            properties={
                "order": 17,
                "error_type": "ValueError",
                "error_message": "card declined for order 17",
                "runtime": "python",
                "severity": severity,
            },
        )
        for severity in ("critical", "error", "warning")
    ]
    stack = rows[0]["properties"]["stack_trace"]
    assert stack.startswith("Traceback (most recent call last):")
    assert "_raise_value_error" in stack
    assert stack.rstrip().endswith("ValueError: card declined for order 17")


def test_capture_error_default_severity_is_error():
    """capture_error without a severity reports severity "error"."""
    trodo.for_user("u-5").capture_error(KeyError("k"))
    trodo.flush()
    (row,) = stored()
    assert {k: row["properties"][k] for k in ("error_type", "error_message", "severity")} == {
        "error_type": "KeyError",
        "error_message": "'k'",
        "severity": "error",
    }


def test_capture_error_after_run_failed_carries_that_run():
    """An exception that escaped a traced run and is captured later carries that run's id and span."""

    @trodo.tool
    def charge() -> None:
        raise RuntimeError("gateway down")

    @trodo.agent("checkout")
    def checkout() -> None:
        charge()

    with capture() as traces:
        try:
            checkout()
        except RuntimeError as exc:
            trodo.for_user("u-8").capture_error(exc)
    trodo.flush()
    run = traces.runs()[0]
    tool = traces.by_name("charge")
    (row,) = stored()
    assert (row["run_id"], row["trace_id"], row["span_id"]) == (run.run_id, tool.trace_id, tool.span_id)
    assert row["properties"]["error_type"] == "RuntimeError"


def test_capture_error_inside_run_carries_current_run():
    """capture_error called inside a run carries that run, even for an exception raised outside any span."""
    with capture() as traces:

        def agent(run):
            trodo.for_user("u-1").capture_error(OSError("disk full"), severity="critical")

        _, run_id = trodo.wrap_agent("disk-check", agent)
    trodo.flush()
    (row,) = stored()
    assert (row["run_id"], row["span_id"]) == (run_id, traces.run(run_id).span_id)


def test_capture_error_without_content_keeps_type_and_frames_only():
    """With capture_content=False a server_error keeps the error type and frames, not the message."""
    trodo.init(capture_content=False)
    try:
        _raise_value_error()
    except ValueError as exc:
        trodo.for_user("u-1").capture_error(exc)
    trodo.flush()
    (row,) = stored()
    assert "error_message" not in row["properties"]
    assert "order 17" not in row["properties"]["stack_trace"]
    assert "_raise_value_error" in row["properties"]["stack_trace"]
    assert row["properties"]["stack_trace"].rstrip().endswith("ValueError")


# -- batching ---------------------------------------------------------------------------------
def test_batch_is_sent_when_full():
    """With batching, nothing is written until batch_size events are queued; a full batch goes at once."""
    trodo.init(batch_size=5, batch_flush_interval_ms=60_000)
    for index in range(4):
        trodo.track("u-1", "batched_event", {"index": index})
    time.sleep(0.3)
    assert stored() == []
    trodo.track("u-1", "batched_event", {"index": 4})
    assert wait_for(lambda: len(stored()) == 5)
    for index in range(5, 8):
        trodo.track("u-1", "batched_event", {"index": index})
    time.sleep(0.3)
    assert [row["properties"]["index"] for row in stored()] == [0, 1, 2, 3, 4]


@pytest.mark.serial
def test_batch_is_sent_when_interval_elapses():
    """A partial batch is written once batch_flush_interval_ms has passed, without flush()."""
    trodo.init(batch_size=1000, batch_flush_interval_ms=200)
    started = time.monotonic()
    for index in range(3):
        trodo.track("u-1", "interval_event", {"index": index})
    assert wait_for(lambda: len(stored()) == 3, timeout=3.0)
    assert time.monotonic() - started >= 0.15


def test_batch_is_sent_on_flush_and_on_shutdown():
    """flush() writes a partial batch at once; shutdown() writes what is left."""
    trodo.init(batch_size=1000, batch_flush_interval_ms=60_000)
    trodo.track("u-1", "flushed_event")
    time.sleep(0.2)
    assert stored() == []
    assert trodo.flush(5.0) is True
    assert [row["name"] for row in stored()] == ["flushed_event"]
    trodo.track("u-1", "shutdown_event")
    trodo.shutdown(5.0)
    assert [row["name"] for row in stored()] == ["flushed_event", "shutdown_event"]


def test_batching_off_delivers_before_track_returns():
    """With batch_enabled=False each track() returns only once its event is in the store."""
    trodo.init(batch_enabled=False, batch_flush_interval_ms=60_000, batch_size=1000)
    for index in range(3):
        trodo.track("u-1", "immediate_event", {"index": index})
        assert [row["properties"]["index"] for row in stored()] == list(range(index + 1))
    trodo.for_user("u-2").capture_error(ValueError("now"))
    assert [row["name"] for row in stored()][-1] == "server_error"


def test_batching_options_come_from_environment(monkeypatch):
    """TRODO_BATCH_ENABLED=false configures immediate delivery without init()."""
    monkeypatch.setenv("TRODO_BATCH_ENABLED", "false")
    monkeypatch.setenv("TRODO_BATCH_FLUSH_INTERVAL_MS", "60000")
    trodo.track("u-1", "env_configured")
    assert [row["name"] for row in stored()] == ["env_configured"]


def test_concurrent_tracking_from_8_threads_stores_every_event():
    """8 threads tracking 10,000 events in all: every one is stored exactly once."""
    trodo.init(batch_size=500, batch_flush_interval_ms=100)
    per_thread = 1250
    barrier = threading.Barrier(8)

    def worker(index: int) -> None:
        barrier.wait()
        user = trodo.for_user(f"user-{index}")
        for n in range(per_thread):
            user.track("load_event", {"n": n})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert trodo.flush(30.0) is True
    with LocalStore(store_path()) as store:
        rows = store.list_events(limit=None)
    assert len(rows) == 10_000
    assert len({row["dedup_key"] for row in rows}) == 10_000
    per_user = {
        f"user-{i}": sorted(r["properties"]["n"] for r in rows if r["distinct_id"] == f"user-{i}")
        for i in range(8)
    }
    assert per_user == {f"user-{i}": list(range(per_thread)) for i in range(8)}
    assert trodo.stats()["events_exported"] == 10_000


def test_rows_conversion_keeps_ids_as_hex():
    """The store row of an event holds the run id and hex trace/span ids."""
    from trodo_trace._internal.events.sink import Event

    rows = to_rows([Event("e1", 5, "n", "u", "custom", {"a": 1}, "r1", 0xABC, 0x12, 1, None)])
    assert rows == [
        {
            "dedup_key": "e1",
            "ts_ns": 5,
            "name": "n",
            "distinct_id": "u",
            "category": "custom",
            "run_id": "r1",
            "trace_id": "00000000000000000000000000000abc",
            "span_id": "0000000000000012",
            "properties": {"a": 1},
        }
    ]


def test_enum_and_str_subclass_values_are_sent_as_their_value():
    """str/int enums and str subclasses are JSON values already: sent as their value, without a warning."""
    import enum

    class Plan(str, enum.Enum):
        PRO = "pro"

    class Seats(enum.IntEnum):
        FIVE = 5

    class Color(enum.Enum):
        RED = (255, 0, 0)

    class Name(str):
        pass

    trodo.track("u-1", "plan_chosen", {"plan": Plan.PRO, "seats": Seats.FIVE, "name": Name("ada")})
    with pytest.warns(EventWarning, match="color"):
        trodo.track("u-1", "color_chosen", {"color": Color.RED})
    trodo.flush()
    assert [row["properties"] for row in stored()] == [
        {"plan": "pro", "seats": 5, "name": "ada"},
        {"color": [255, 0, 0]},
    ]


FORK_SCRIPT = """
import os, sys
import trodo_trace as trodo
trodo.track("u-1", "before_fork")
trodo.flush()
trodo.track("u-1", "queued_at_fork")
pid = os.fork()
if pid == 0:
    trodo.track("u-2", "in_child")
    os._exit(0 if trodo.flush(5.0) else 3)
_, status = os.waitpid(pid, 0)
trodo.track("u-1", "in_parent")
sys.exit(os.waitstatus_to_exitcode(status) or (0 if trodo.flush(5.0) else 4))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_sends_its_own_events_and_parent_queue_once(tmp_path):
    """After os.fork the child sends only its own events; what the parent had queued is stored once."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRODO_", "OTEL_"))}
    env["TRODO_STORE"] = str(tmp_path / "fork.db")
    result = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", FORK_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    with LocalStore(tmp_path / "fork.db") as store:
        names = sorted(row["name"] for row in store.list_events(limit=None))
    assert names == ["before_fork", "in_child", "in_parent", "queued_at_fork"]
