"""trodo.feedback(): validation, the local store's event and feedback rows, the OTLP log record,
another process attaching feedback by run id, and ``trodo-trace show`` listing it."""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys

import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from otlp_receiver import OtlpReceiver, any_value

import trodo_trace as trodo
from trodo_trace import cli


@trodo.agent("answerer")
def answer(question: str) -> str:
    return "42"


def _feedback_rows(path: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT run_id, span_id, name, score, label, comment, distinct_id FROM feedback ORDER BY id"
        ).fetchall()
    conn.close()
    return rows


def _event_rows(path: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT name, category, distinct_id, run_id, properties FROM events ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def test_feedback_is_stored_as_an_event_and_a_feedback_row():
    """Two feedbacks on a finished run: two trodo.feedback events and two feedback rows with their fields."""
    answer("meaning?")
    run_id = trodo.last_run().run_id
    trodo.feedback(run_id, score=1, comment="spot on", distinct_id="user-42")
    trodo.feedback(run_id, label="correct", name="review", span_id="00000000000000AB")
    assert trodo.flush(5.0) is True
    store = os.environ["TRODO_STORE"]
    assert _feedback_rows(store) == [
        (run_id, None, "feedback", 1.0, None, "spot on", "user-42"),
        (run_id, "00000000000000ab", "review", None, "correct", None, None),
    ]
    assert _event_rows(store) == [
        (
            "trodo.feedback",
            "feedback",
            "user-42",
            run_id,
            '{"name":"feedback","score":1.0,"comment":"spot on"}',
        ),
        (
            "trodo.feedback",
            "feedback",
            None,
            run_id,
            '{"name":"review","label":"correct","span_id":"00000000000000ab"}',
        ),
    ]


def test_cli_show_lists_the_runs_feedback(capsys):
    """trodo-trace show prints each feedback of the run under its tree."""
    answer("meaning?")
    run_id = trodo.last_run().run_id
    trodo.feedback(run_id, score=0, label="wrong", comment="no <b>", distinct_id="u-7")
    assert trodo.flush(5.0) is True
    assert cli.main(["show", run_id]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("feedback")]
    assert len(lines) == 1
    assert lines[0].startswith("feedback feedback (score 0.0, label wrong, by u-7) ")
    assert lines[0].endswith(": no <b>")


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("",), {"score": 1}, "run_id must be a non-empty string"),
        ((None,), {"score": 1}, "run_id must be a string"),
        (("r1",), {"score": math.nan}, "score must be a finite number"),
        (("r1",), {"score": math.inf}, "score must be a finite number"),
        (("r1",), {"score": "5"}, "score must be a number"),
        (("r1",), {"score": True}, "score must be a number"),
        (("r1",), {"label": "x" * 256}, "label must be at most 255 characters"),
        (("r1",), {"score": 1, "span_id": "xyz"}, "span_id must be 16 hexadecimal characters"),
        (("r1",), {"score": 1, "name": ""}, "name must be a non-empty string"),
        (("r1",), {}, "feedback needs a score, a label or a comment"),
    ],
)
def test_bad_feedback_is_a_value_error_naming_the_problem(args, kwargs, message):
    """Bad input raises ValueError with a message naming the argument; nothing is stored."""
    with pytest.raises(ValueError, match=message):
        trodo.feedback(*args, **kwargs)
    assert trodo.flush(5.0) is True
    assert not os.path.exists(os.environ["TRODO_STORE"]) or _event_rows(os.environ["TRODO_STORE"]) == []


def test_label_of_255_characters_is_accepted():
    """The label limit is inclusive."""
    trodo.feedback("run-1", label="x" * 255)
    assert trodo.flush(5.0) is True
    assert _feedback_rows(os.environ["TRODO_STORE"])[0][4] == "x" * 255


def test_feedback_over_otlp_is_a_log_record_with_the_run_id():
    """With an endpoint, feedback is an OTLP log record: event.name trodo.feedback, trodo.run.id, fields in the body."""
    with OtlpReceiver("http") as receiver:
        trodo.init(endpoint=receiver.url)
        trodo.feedback("run-abc", score=0.5, label="partial", comment="ok-ish", distinct_id="u-9")
        assert trodo.flush(5.0) is True
        records = []
        for request in receiver.requests:
            if request.accepted and request.path.endswith("logs"):
                message = logs_service_pb2.ExportLogsServiceRequest.FromString(request.body)
                for resource_logs in message.resource_logs:
                    for scope_logs in resource_logs.scope_logs:
                        records.extend(scope_logs.log_records)
    assert len(records) == 1
    attributes = {kv.key: any_value(kv.value) for kv in records[0].attributes if kv.key != "trodo.event.id"}
    assert attributes == {
        "event.name": "trodo.feedback",
        "trodo.distinct_id": "u-9",
        "trodo.event.category": "feedback",
        "trodo.run.id": "run-abc",
    }
    assert any_value(records[0].body) == {
        "name": "feedback",
        "score": 0.5,
        "label": "partial",
        "comment": "ok-ish",
    }


def test_another_process_attaches_feedback_by_run_id(tmp_path):
    """A separate process that knows only the run id adds feedback the first process's store shows."""
    answer("meaning?")
    run_id = trodo.last_run().run_id
    assert trodo.flush(5.0) is True
    script = (
        "import sys, trodo_trace as trodo\n"
        "trodo.feedback(sys.argv[1], score=1, comment='from the web app')\n"
        "trodo.flush(5.0)\n"
    )
    env = {**os.environ}
    subprocess.run([sys.executable, "-c", script, run_id], env=env, check=True, timeout=60)
    assert _feedback_rows(os.environ["TRODO_STORE"]) == [
        (run_id, None, "feedback", 1.0, None, "from the web app", None)
    ]
