"""Interop: `trodo-trace push` moves the demo store's runs into a real Arize Phoenix, in their trees."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_phoenix import _get

from trodo_trace._internal.store.local import LocalStore

pytestmark = pytest.mark.interop
PROJECT = "trodo-push"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _cli(store: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRODO_", "OTEL_"))}
    base["PYTHONPATH"] = str(REPO_ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "trodo_trace.cli", "--store", str(store), *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_push_shows_every_demo_span_in_phoenix_in_its_tree(phoenix, tmp_path):
    store = tmp_path / "trodo.db"
    # The demo's spans carry Phoenix's project attribute in their stored resource.
    _cli(store, "demo", OTEL_RESOURCE_ATTRIBUTES=f"openinference.project.name={PROJECT}")
    with LocalStore(store) as local:
        rows = local._query("SELECT trace_id, span_id, parent_span_id, name, kind FROM spans")
        sub = next(r for r in local.list_runs() if r["parent_run_id"])
    stored = {r["span_id"]: r for r in rows}
    pushed = _cli(store, "push", "--endpoint", phoenix["http"])
    assert pushed.stdout.startswith(f"Pushed 3 runs ({len(stored)} spans)")

    deadline = time.monotonic() + 60
    while True:
        try:  # the project appears with its first span
            spans = _get(f"{phoenix['http']}/v1/projects/{PROJECT}/spans?limit=1000")["data"]
        except OSError:
            spans = []
        if len(spans) >= len(stored) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    got = {s["context"]["span_id"]: s for s in spans}
    assert set(got) == set(stored)
    assert {sid: (s["context"]["trace_id"], s["parent_id"]) for sid, s in got.items()} == {
        sid: (r["trace_id"], r["parent_span_id"]) for sid, r in stored.items()
    }
    kinds = {"run": "AGENT", "llm": "LLM", "tool": "TOOL", "retrieval": "RETRIEVER"}
    assert {sid: s["span_kind"] for sid, s in got.items()} == {
        sid: kinds[r["kind"]] for sid, r in stored.items()
    }
    # The sub-run is in its parent's trace, under the span that started it.
    sub_root = got[sub["root_span_id"]]
    assert sub_root["context"]["trace_id"] == sub["trace_id"]
    assert got[sub_root["parent_id"]]["attributes"]["trodo.run.id"] == sub["parent_run_id"]
