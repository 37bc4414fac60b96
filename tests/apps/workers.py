"""Functions a ProcessPoolExecutor worker runs (importable by spawned processes)."""

from __future__ import annotations

import os

import trodo_trace as trodo


@trodo.tool
def score(item: str) -> int:
    return len(item) + len(rank(item))


@trodo.chain
def rank(item: str) -> str:
    return item.upper()


def worker_pid(_: object = None) -> int:
    return os.getpid()


def score_in_run(token: trodo.RunContext, item: str) -> int:
    """A ``multiprocessing.Process`` target: score ``item`` inside the caller's run."""
    return trodo.join_run(token, score, item)
