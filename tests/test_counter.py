"""The event counter behind stats(): exact under threads, reads interleaved, no deprecated API."""

from __future__ import annotations

import subprocess
import sys
import threading

from trodo_trace._internal.core.counter import Counter


def test_counts_exactly_with_threads_incrementing_and_reading_at_once():
    """8 threads x 20,000 increments while another thread reads: the final value is exactly 160,000."""
    counter = Counter()
    seen: list[int] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(counter.value)

    def work() -> None:
        for _ in range(20_000):
            counter.increment()

    reader = threading.Thread(target=read)
    reader.start()
    workers = [threading.Thread(target=work) for _ in range(8)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    stop.set()
    reader.join()
    assert counter.value == 160_000
    assert counter.value == 160_000  # reading does not advance it
    assert seen == sorted(seen)  # monotonic as observed
    assert all(0 <= value <= 160_000 for value in seen)


def test_a_new_counter_reads_zero_and_counts_single_steps():
    """A fresh counter is 0; each increment adds exactly one."""
    counter = Counter()
    assert counter.value == 0
    counter.increment()
    counter.increment()
    assert counter.value == 2


def test_flush_and_stats_are_clean_under_warnings_as_errors(tmp_path):
    """`python -W error`: init, a traced call, flush, stats, shutdown raise and print nothing."""
    script = (
        "import trodo_trace as t\n"
        "t.init()\n"
        "@t.tool\n"
        "def step(x):\n"
        "    return x\n"
        "with t.agent('a'):\n"
        "    step(1)\n"
        "t.track('u', 'signed_up')\n"
        "assert t.flush(), t.stats()\n"
        "s = t.stats()\n"
        "assert s['started'] == 2, s\n"
        "t.shutdown()\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")
