"""The disk spool: outages, restarts after SIGKILL, the size cap, several processes, `trodo-trace status`."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from otlp_receiver import OtlpReceiver, free_port, run_script

import trodo_trace as trodo
from trodo_trace import cli
from trodo_trace._internal import runtime as runtime_mod
from trodo_trace.testing import Capture, capture

KEYS = ("trodo.run.id", "input.value")


def _unique(spans):
    seen = {}
    for span in spans:
        seen.setdefault(span.span_id, span)
    return list(seen.values())


def _spool_files(root):
    return sorted(p.name for p in root.rglob("*.otlp"))


def _down_env(tmp_path, port, **extra):
    return {
        "TRODO_ENDPOINT": f"http://127.0.0.1:{port}",
        "TRODO_SPOOL_DIR": str(tmp_path / "spool"),
        "OTEL_BSP_SCHEDULE_DELAY": "20",
        "OTEL_BSP_EXPORT_TIMEOUT": "400",
        "TRODO_EXPORT_ATTEMPT_TIMEOUT_MS": "200",
        **extra,
    }


_PRODUCER = """
    import json, sys, time
    import trodo_trace as trodo
    from trodo_trace.testing import capture

    @trodo.tool
    def step(i):
        return i

    @trodo.agent("spooled-bot")
    def bot(n):
        for i in range(n):
            step(i)

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    with capture() as local:
        for _ in range(runs):
            bot(5)
    trodo.flush(3.0)
    print(json.dumps({"stats": trodo.stats(), "tree": local.tree(("trodo.run.id", "input.value"))}), flush=True)
    time.sleep(120)
"""


def _start_producer(tmp_path, env, runs=1):
    script = tmp_path / "producer.py"
    script.write_text(textwrap.dedent(_PRODUCER))
    process = subprocess.Popen(
        [sys.executable, str(script), str(runs)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert process.stdout is not None
    report = json.loads(process.stdout.readline())
    return process, report


def _sigkill(process):
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    process.stdout.close()


def test_collector_down_then_up_every_span_arrives_in_one_tree():
    """The collector is down for the first half of a run: spooled spans and live ones arrive as one tree."""
    port = free_port()
    trodo.init(
        endpoint=f"http://127.0.0.1:{port}",
        schedule_delay_ms=20,
        export_timeout_ms=400,
        attempt_timeout_ms=200,
    )
    receiver = OtlpReceiver("http", port=port)

    @trodo.tool
    def step(i):
        return i

    @trodo.agent("outage-bot")
    def bot():
        for i in range(5):
            step(i)
        deadline = time.monotonic() + 5
        while trodo.stats()["spooled"] < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        receiver.start()
        for i in range(5, 10):
            step(i)

    try:
        with capture() as local:
            bot()
        assert trodo.flush(5.0) is True
        assert Capture().tree(KEYS, spans=_unique(receiver.spans())) == local.tree(KEYS)
    finally:
        receiver.stop()
    stats = trodo.stats()
    assert (stats["exported"], stats["spooled"], stats["dropped"]) == (11, 0, 0)
    assert stats["spooled_total"] >= 5


def test_sigkill_with_spans_in_the_spool_then_restart_delivers_them(tmp_path):
    """A process killed with spans in the spool: the next process with the same spool sends them."""
    port = free_port()
    env = _down_env(tmp_path, port)
    process, report = _start_producer(tmp_path, env)
    assert report["stats"]["spooled"] == 6
    _sigkill(process)
    assert len(_spool_files(tmp_path / "spool")) >= 1
    with OtlpReceiver("http", port=port) as receiver:
        result = run_script(
            """
            import time, trodo_trace as trodo
            trodo.init()
            deadline = time.monotonic() + 10
            while trodo.stats()["recovered"] < 6 and time.monotonic() < deadline:
                time.sleep(0.02)
            print(trodo.stats()["recovered"])
            """,
            tmp_path,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "6"
        tree = Capture().tree(KEYS, spans=_unique(receiver.spans()))
    assert json.loads(json.dumps(tree)) == report["tree"]
    assert _spool_files(tmp_path / "spool") == []


def test_past_the_spool_cap_spans_are_dropped_counted_and_logged_once(caplog):
    """With the collector down and the spool full, further spans are dropped, counted and logged once."""
    trodo.init(
        endpoint=f"http://127.0.0.1:{free_port()}",
        spool_max_bytes=40_000,
        max_export_batch_size=50,
        schedule_delay_ms=10,
        export_timeout_ms=200,
        attempt_timeout_ms=100,
    )

    @trodo.tool
    def step(i):
        return "x" * 100

    with caplog.at_level(logging.WARNING, logger="trodo_trace"):
        for _ in range(10):
            with trodo.agent("filler"):
                for i in range(49):
                    step(i)
            trodo.flush(2.0)
    stats = trodo.stats()
    assert stats["dropped"] > 0 and stats["spooled"] > 0
    assert stats["spooled"] + stats["dropped"] == stats["ended"] == 500
    assert stats["spool_bytes"] <= 40_000
    assert sum("spool is full" in r.getMessage() for r in caplog.records) == 1


def test_a_disabled_spool_drops_what_the_collector_cannot_take():
    """spool_max_bytes=0: past the retry budget the batch is dropped and counted."""
    trodo.init(
        endpoint=f"http://127.0.0.1:{free_port()}",
        spool_max_bytes=0,
        schedule_delay_ms=10,
        export_timeout_ms=200,
        attempt_timeout_ms=100,
    )
    with trodo.agent("lost"):
        pass
    assert trodo.flush(2.0) is False
    stats = trodo.stats()
    assert (stats["dropped"], stats["spooled"], stats["exported"]) == (1, 0, 0)


def test_processes_sharing_a_spool_send_each_batch_once(tmp_path):
    """Two processes draining one spool at the same time: every spooled span is delivered exactly once."""
    port = free_port()
    env = _down_env(tmp_path, port, OTEL_BSP_MAX_EXPORT_BATCH_SIZE="6", OTEL_BSP_SCHEDULE_DELAY="500")
    process, report = _start_producer(tmp_path, env, runs=30)
    assert report["stats"]["spooled"] == 180
    _sigkill(process)
    assert len(_spool_files(tmp_path / "spool")) >= 3
    drain = """
        import trodo_trace as trodo
        trodo.init()
        trodo.flush(20.0)
        print(trodo.stats()["recovered"])
    """
    with OtlpReceiver("http", port=port) as receiver:
        receiver.set_behaviour(delay=0.05)
        results = []
        threads = [
            threading.Thread(
                target=lambda i=i: results.append(run_script(drain, tmp_path, env=env, name=f"d{i}.py"))
            )
            for i in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
        spans = receiver.spans()
    assert sum(int(r.stdout) for r in results) == 180
    assert all(int(r.stdout) > 0 for r in results), [r.stdout for r in results]  # both really drained
    assert len(spans) == len({s.span_id for s in spans}) == 180
    assert _spool_files(tmp_path / "spool") == []


def test_status_command_prints_spool_size_and_age(tmp_path, capsys):
    """`trodo-trace status` shows the spool's size, batches, spans and the oldest batch's age."""
    store = tmp_path / "store" / "trodo.db"
    trodo.init(
        endpoint=f"http://127.0.0.1:{free_port()}",
        store_path=str(store),
        schedule_delay_ms=10,
        export_timeout_ms=200,
        attempt_timeout_ms=100,
    )
    with trodo.agent("waiting"):
        pass
    trodo.flush(2.0)
    assert (store.parent / "spool").is_dir()
    capsys.readouterr()
    assert cli.main(["--store", str(store), "status"]) == 0
    out = capsys.readouterr().out
    assert "spool: " + str(store.parent / "spool") in out
    assert "1 batches" in out and "1 spans" in out and "oldest" in out
    assert runtime_mod.get().exporter_description.split()[-1] in out


@pytest.mark.serial
@pytest.mark.parametrize("kind", ["blackhole", "down"])
def test_exit_with_an_unreachable_collector_spools_and_a_later_process_sends(tmp_path, kind):
    """A script ends while the collector never answers (or is down): exit stays bounded, spans wait on disk."""
    with OtlpReceiver("http") as receiver:
        port = receiver.port if kind == "blackhole" else free_port()
        receiver.set_behaviour(blackhole=True)
        env = _down_env(tmp_path, port)
        started = time.monotonic()
        result = run_script(
            """
            import trodo_trace as trodo

            @trodo.agent("exit-bot")
            def bot():
                with trodo.tool("step"):
                    pass

            bot()
            """,
            tmp_path,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started < 8.0
        assert len(_spool_files(tmp_path / "spool")) >= 1
    with OtlpReceiver("http", port=port) as receiver:
        result = run_script(
            "import trodo_trace as trodo; trodo.init(); print(trodo.flush(5.0))", tmp_path, env=env
        )
        assert result.returncode == 0, result.stderr
        assert receiver.wait_for_spans(2, timeout=5)
        assert sorted(s.name for s in _unique(receiver.spans())) == ["exit-bot", "step"]
    assert _spool_files(tmp_path / "spool") == []


def test_a_burst_past_the_queue_holds_a_few_batches_beyond_it_and_loses_nothing():
    """Queue full (collector down): the overflow buffer in front of the spool holds a few batches,
    never another queue's worth; the thread ending spans writes batches itself past it; every span
    arrives once the collector is up."""
    from trodo_trace._internal.export.delivery import OVERFLOW_BATCHES

    port = free_port()
    trodo.init(
        endpoint=f"http://127.0.0.1:{port}",
        max_queue_size=200,
        max_export_batch_size=20,
        schedule_delay_ms=20,
        export_timeout_ms=400,
        attempt_timeout_ms=200,
    )

    @trodo.tool
    def step(i):
        return i

    deepest = 0
    with capture() as local:
        for _ in range(40):
            with trodo.agent("burst-bot"):
                for i in range(99):
                    step(i)
                    deepest = max(deepest, trodo.stats()["queue_depth"])  # queue + overflow buffer
    assert 200 < deepest <= 200 + OVERFLOW_BATCHES * 20 + 1
    receiver = OtlpReceiver("http", port=port)
    receiver.start()
    try:
        assert trodo.flush(30.0) is True
        assert len({span.span_id for span in receiver.spans()}) == 4000
        assert Capture().tree(KEYS, spans=_unique(receiver.spans())) == local.tree(KEYS)
    finally:
        receiver.stop()
    stats = trodo.stats()
    assert (stats["exported"], stats["spooled"], stats["dropped"], stats["failed"]) == (4000, 0, 0, 0)
    assert stats["spooled_total"] > 0
