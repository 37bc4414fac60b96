"""Load and deadlines: a 100,000-span burst against a slow collector, and a blackholed collector."""

from __future__ import annotations

import json
import sys
import threading
import time

import pytest
from otlp_receiver import OtlpReceiver, run_script
from otlp_receiver_process import ReceiverProcess

import trodo_trace as trodo

BURST = """
import json, resource, time
import trodo_trace as trodo

trodo.init(max_queue_size=5000)

@trodo.tool
def step(i):
    return i

peak = 0
started = time.perf_counter()
for _ in range(1000):
    with trodo.agent("burst"):
        for i in range(99):
            step(i)
    peak = max(peak, trodo.stats()["queue_depth"])
loop = time.perf_counter() - started
ok = trodo.flush(100.0)


def peak_rss_mb():
    # This process's own peak (VmHWM): Linux keeps ru_maxrss across exec, so it can report the peak
    # of the pytest process that started this one (large once the provider SDKs are imported).
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


print(json.dumps({
    "ok": ok, "peak": peak, "loop_s": loop, "flush_s": time.perf_counter() - started - loop,
    "stats": trodo.stats(), "maxrss_mb": peak_rss_mb(),
}))
"""


@pytest.mark.serial
def test_burst_of_100000_spans_with_a_slow_collector_loses_nothing(tmp_path):
    """100,000 spans in a tight loop, collector 20 ms per request: all arrive, counts add up, memory bounded."""
    with ReceiverProcess("http") as receiver:
        receiver.set_behaviour(delay=0.02)
        result = run_script(BURST, tmp_path, env={"TRODO_ENDPOINT": receiver.url}, timeout=110)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        span_ids = receiver.span_ids()
    stats = report["stats"]
    assert report["ok"] is True
    assert stats["started"] == stats["ended"] == 100_000
    assert (
        stats["ended"]
        == stats["exported"] + stats["spooled"] + stats["rejected"] + stats["dropped"] + stats["failed"]
    )
    assert (stats["exported"], stats["dropped"], stats["queue_depth"], stats["in_flight"]) == (
        100_000,
        0,
        0,
        0,
    )
    assert stats["spooled_total"] > 0  # the queue overflowed to disk on the way
    assert len(set(span_ids)) == 100_000
    assert report["peak"] <= 2 * 5000  # spans held in memory: queue + overflow buffer, never more
    assert report["maxrss_mb"] < 300  # a sanity bound on the whole process (~60 MB measured)


def _make_spans(n=2000):
    @trodo.tool
    def step(i):
        return i

    for _ in range(3):
        with trodo.agent("cost"):
            for i in range(n):
                step(i)


class _IoOnThisThread:
    """Records the socket and file audit events raised on the calling thread while active."""

    WATCHED = ("socket.", "open", "os.")

    def __init__(self):
        self.events: list[str] = []
        self.active = False
        self.thread = threading.get_ident()
        sys.addaudithook(self._hook)

    def _hook(self, event, args):
        if self.active and threading.get_ident() == self.thread and event.startswith(self.WATCHED):
            self.events.append(event)

    def __enter__(self):
        self.active = True
        return self

    def __exit__(self, *exc):
        self.active = False


@pytest.mark.serial
def test_blackholed_collector_flush_and_shutdown_keep_their_deadlines():
    """A collector that accepts and never answers: flush(1) and shutdown(1) return in under 2 s, nothing lost."""
    with OtlpReceiver("http") as receiver:
        trodo.init(endpoint=receiver.url, schedule_delay_ms=50)
        _make_spans()
        assert trodo.flush(5.0)
        receiver.set_behaviour(blackhole=True)
        with _IoOnThisThread() as io:
            _make_spans()
        started = time.monotonic()
        assert trodo.flush(1.0) is False
        assert time.monotonic() - started < 2.0
        started = time.monotonic()
        trodo.shutdown(1.0)
        assert time.monotonic() - started < 2.0
        stats = trodo.stats()
        assert stats["ended"] == stats["exported"] + stats["spooled"] == 2 * 3 * 2001
        assert stats["spooled"] > 0
    # No network or file I/O on the application thread while the collector hangs.
    assert io.events == []
