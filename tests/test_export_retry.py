"""The retry policy against a real receiver: which answers are retried, Retry-After, deadlines, partial success."""

from __future__ import annotations

import logging
import time
from email.utils import formatdate

import pytest
from otlp_receiver import Behaviour, OtlpReceiver

import trodo_trace as trodo
from trodo_trace._internal.export.otlp_transport import parse_retry_after


@pytest.fixture
def http_receiver():
    with OtlpReceiver("http") as server:
        yield server


@pytest.fixture
def grpc_receiver():
    with OtlpReceiver("grpc") as server:
        yield server


def _run(n_tools=2):
    @trodo.tool
    def step(i):
        return i

    @trodo.agent("retry-bot")
    def bot():
        for i in range(n_tools):
            step(i)

    bot()
    return n_tools + 1


def _init(receiver, **options):
    protocol = "grpc" if receiver.protocol == "grpc" else "http/protobuf"
    trodo.init(endpoint=receiver.url, protocol=protocol, schedule_delay_ms=20, **options)


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retryable_http_statuses_are_retried_until_accepted(http_receiver, status):
    """429/502/503/504 are retried; the batch then arrives once and counts as exported."""
    http_receiver.script(Behaviour(status, retry_after="0"), Behaviour(status, retry_after="0"))
    _init(http_receiver)
    n = _run()
    assert trodo.flush(5.0) is True
    assert [r.status for r in http_receiver.requests] == [status, status, 200]
    assert len(http_receiver.spans()) == n
    stats = trodo.stats()
    assert (stats["exported"], stats["retries"], stats["rejected"], stats["spooled"]) == (n, 2, 0, 0)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500])  # 413 splits the batch (test_export_hardening)
def test_other_statuses_are_rejected_once_and_logged_once(http_receiver, status, caplog):
    """Other 4xx/5xx are not retried: the batch counts as rejected, logged once with status and body excerpt."""
    http_receiver.set_behaviour(status, message=f"bad batch number {status}")
    _init(http_receiver)
    with caplog.at_level(logging.WARNING, logger="trodo_trace"):
        first = _run()
        assert trodo.flush(5.0) is False
        second = _run()
        assert trodo.flush(5.0) is False
    assert [r.status for r in http_receiver.requests] == [status, status]
    stats = trodo.stats()
    assert (stats["rejected"], stats["exported"], stats["retries"], stats["spooled"]) == (
        first + second,
        0,
        0,
        0,
    )
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 1
    assert str(status) in lines[0] and f"bad batch number {status}" in lines[0]
    assert stats["last_error"].startswith(str(status))


def test_backoff_grows_exponentially_with_jitter(http_receiver):
    """Without Retry-After, retries wait about 0.5 s then 1 s (plus up to 0.5 s of jitter)."""
    http_receiver.script(Behaviour(503), Behaviour(503))
    _init(http_receiver)
    _run()
    assert trodo.flush(10.0) is True
    first, second, third = (r.at for r in http_receiver.requests)
    assert 0.45 <= second - first <= 1.6
    assert 0.95 <= third - second <= 2.1


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_is_honoured_in_both_forms(http_receiver, form):
    """Retry-After as delay-seconds or as an HTTP date sets the wait before the next attempt."""
    value = "1" if form == "seconds" else formatdate(time.time() + 2, usegmt=True)
    http_receiver.script(Behaviour(429, retry_after=value))
    _init(http_receiver)
    n = _run()
    assert trodo.flush(10.0) is True
    first, second = (r.at for r in http_receiver.requests)
    assert 0.9 <= second - first <= 2.6
    assert len(http_receiver.spans()) == n


@pytest.mark.serial
def test_retry_after_past_the_export_deadline_spools_and_waits(http_receiver):
    """A Retry-After longer than the export deadline: the batch is spooled and not retried before it."""
    http_receiver.script(Behaviour(503, retry_after="2"))
    _init(http_receiver, export_timeout_ms=1000)
    n = _run()
    started = time.monotonic()
    assert trodo.flush(0.5) is False  # even a flush does not send before the collector allows it
    assert time.monotonic() - started < 1.0
    assert trodo.stats()["spooled"] == n
    assert len(http_receiver.requests) == 1
    assert http_receiver.wait_for_spans(n, timeout=4.0)
    assert trodo.flush(2.0) is True
    first, second = (r.at for r in http_receiver.requests)
    assert 1.9 <= second - first <= 3.0
    assert trodo.stats()["exported"] == n


@pytest.mark.serial
def test_each_attempt_has_a_deadline(http_receiver):
    """An answer slower than the attempt timeout is abandoned and the batch retried at once after backoff."""
    http_receiver.script(Behaviour(delay=4.0))
    _init(http_receiver, attempt_timeout_ms=300)
    n = _run()
    started = time.monotonic()
    assert trodo.flush(5.0) is True
    assert time.monotonic() - started < 2.5  # not the 4 s the first answer takes
    assert trodo.stats()["retries"] == 1
    assert len(http_receiver.spans()) == n  # from the second request; the first is still unanswered


@pytest.mark.serial
def test_the_whole_export_has_a_deadline(http_receiver):
    """A collector that is always slower than the attempt timeout: retries stop at the export deadline, spool."""
    http_receiver.set_behaviour(delay=2.0)
    _init(http_receiver, attempt_timeout_ms=200, export_timeout_ms=900)
    n = _run()
    started = time.monotonic()
    assert trodo.flush(3.0) is False
    assert time.monotonic() - started < 2.0
    stats = trodo.stats()
    assert (stats["spooled"], stats["exported"]) == (n, 0)
    assert "ReadTimeout" in stats["last_error"]


def test_partial_success_is_counted(http_receiver, caplog):
    """A partial-success answer: the rejected spans are counted as rejected, the rest as exported."""
    http_receiver.script(Behaviour(partial_rejected=2, message="2 spans too old"))
    _init(http_receiver)
    with caplog.at_level(logging.WARNING, logger="trodo_trace"):
        n = _run(4)
        trodo.flush(5.0)
    stats = trodo.stats()
    assert (stats["exported"], stats["rejected"]) == (n - 2, 2)
    assert "2 spans too old" in caplog.text


def test_grpc_status_matrix(grpc_receiver):
    """gRPC: UNAVAILABLE and RESOURCE_EXHAUSTED with RetryInfo are retried; INVALID_ARGUMENT is rejected."""
    grpc_receiver.script(Behaviour(503), Behaviour(429, retry_after="0.1"))
    _init(grpc_receiver)
    n = _run()
    assert trodo.flush(5.0) is True
    assert [r.status for r in grpc_receiver.requests] == [503, 429, 200]
    grpc_receiver.set_behaviour(400, message="malformed")
    m = _run()
    assert trodo.flush(5.0) is False
    stats = trodo.stats()
    assert (stats["exported"], stats["rejected"], stats["retries"]) == (n, m, 2)
    assert stats["last_error"] == "INVALID_ARGUMENT: malformed"


def test_grpc_resource_exhausted_without_retry_info_is_not_retried(grpc_receiver):
    """Per OTLP, RESOURCE_EXHAUSTED is retryable only when the server says when (RetryInfo)."""
    grpc_receiver.script(Behaviour(429))
    _init(grpc_receiver)
    n = _run()
    assert trodo.flush(5.0) is False
    assert len(grpc_receiver.requests) == 1
    assert trodo.stats()["rejected"] == n


def test_retry_after_parsing():
    """Retry-After: seconds, HTTP dates in the future and past, and garbage."""
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("-3") == 0.0
    assert 9.0 <= parse_retry_after(formatdate(time.time() + 10, usegmt=True)) <= 10.0
    assert parse_retry_after(formatdate(time.time() - 100, usegmt=True)) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
