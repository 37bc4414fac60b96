"""Helpers shared by the propagation tests: servers in subprocesses and trees read from the store."""

from __future__ import annotations

import json
import os
import pathlib
import selectors
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from procs import stop

from trodo_trace._internal.store.local import LocalStore

TESTS_DIR = pathlib.Path(__file__).resolve().parents[1]


def canonical(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A tree with siblings in a fixed order (for work that ran concurrently)."""
    nodes = [{**node, "children": canonical(node["children"])} for node in tree]
    return sorted(nodes, key=lambda node: json.dumps(node, sort_keys=True))


def store_tree(spans: Sequence[dict[str, Any]], keys: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Stored spans (``LocalStore.get_spans``) as nested dicts: name, kind, status, service, the
    chosen attributes, children by start time. Spans whose parent is not among them are roots."""
    keys = tuple(keys)
    by_id = {span["span_id"]: span for span in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span["parent_span_id"] if span["parent_span_id"] in by_id else None
        children.setdefault(parent, []).append(span)

    def node(span: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {
            "name": span["name"],
            "kind": span["kind"],
            "status": span["status"],
            "service": span["resource"].get("service.name"),
        }
        if keys:
            result["attributes"] = {k: span["attributes"][k] for k in keys if k in span["attributes"]}
        ordered = sorted(children.get(span["span_id"], []), key=lambda s: (s["start_ns"], s["name"]))
        result["children"] = [node(child) for child in ordered]
        return result

    roots = sorted(children.get(None, []), key=lambda s: (s["start_ns"], s["name"]))
    return [node(root) for root in roots]


def wait_for(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stored_spans(path: pathlib.Path, run_id: str, count: int) -> list[dict[str, Any]]:
    """The run's spans once at least ``count`` of them are in the store at ``path``."""
    with LocalStore(path) as store:
        return wait_for(
            lambda: (lambda spans: spans if len(spans) >= count else None)(store.get_spans(run_id)),
            what=f"{count} spans of run {run_id}",
        )


def stored_run(path: pathlib.Path, run_id: str) -> dict[str, Any] | None:
    with LocalStore(path) as store:
        return store.get_run(run_id)


@contextmanager
def serve(kind: str, store: pathlib.Path, service: str, log: pathlib.Path) -> Iterator[str]:
    """Run ``apps.serve`` (``asgi`` or ``wsgi``) in a subprocess writing spans to ``store``; yields its base URL."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        TRODO_STORE=str(store),
        OTEL_SERVICE_NAME=service,
        OTEL_BSP_SCHEDULE_DELAY="50",
        TRODO_RAISE_INTERNAL="1",
    )
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "apps.serve", kind],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=str(TESTS_DIR),
        )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=60)
        line = proc.stdout.readline().decode().strip() if ready else ""
        if not line.isdigit():
            proc.kill()
            proc.wait(10)
            raise AssertionError(f"{kind} server did not start:\n{log.read_text()}")
        yield f"http://127.0.0.1:{line}"
    finally:
        stop(proc, 15)
        if proc.stdout is not None:
            proc.stdout.close()
