"""Traced and untraced blocks of the same work in one process, in ABBA order, and their summary.

A worker built from :data:`WORKER` runs in one contender's process, after that contender's setup,
which defines ``on()`` / ``off()`` (switch its tracing between blocks) and ``finish()`` (flush its
export; called at the end of each traced block, inside its timing). It prints one JSON line: the
pairs of blocks, each block's wall, calling-thread CPU and process CPU per call. Comparing blocks
of one process, next to each other, keeps out what moves between processes (the untraced loop of
a heavy framework alone moves by a hundred µs and more per call from one process to the next).
"""

from __future__ import annotations

import statistics
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

#: The figures of each block, per call, in this order.
FIGURES = ("wall_us", "cpu_us", "process_cpu_us")

#: Needs ``RUNS``, ``BLOCKS``, ``WARMUP``, ``on``, ``off``, ``finish``; ``__CALL__`` is one call.
WORKER = textwrap.dedent(
    """
    def block(traced, runs):
        (on if traced else off)()
        wall0, cpu0, proc0 = time.perf_counter(), time.thread_time(), time.process_time()
        for _ in range(runs):
            __CALL__
        flushed = finish() if traced else True  # the export of this block's spans counts too
        wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
        return [wall / runs * 1e6, cpu / runs * 1e6, (time.process_time() - proc0) / runs * 1e6, bool(flushed)]

    for traced in (True, False):
        block(traced, WARMUP)
    pairs, flushed = [], True
    for index in range(BLOCKS):
        order = (True, False) if index % 2 == 0 else (False, True)
        result = {traced: block(traced, RUNS) for traced in order}
        flushed &= result[True][3]
        pairs.append({"traced": result[True][:3], "untraced": result[False][:3]})
    print(json.dumps({"pairs": pairs, "flushed": flushed, "calls": WARMUP + RUNS * BLOCKS}))
    """
)


def worker(call: str) -> str:
    """The worker's code for ``call`` (one statement)."""
    return WORKER.replace("__CALL__", call)


def summarize(pairs: list[dict[str, list[float]]]) -> dict[str, Any]:
    """Per figure: the untraced blocks' median, and the added median and quartiles (traced block
    minus the untraced block next to it)."""
    summary: dict[str, Any] = {}
    for index, key in enumerate(FIGURES):
        added = [pair["traced"][index] - pair["untraced"][index] for pair in pairs]
        summary[key] = statistics.median(pair["untraced"][index] for pair in pairs)
        summary["added_" + key] = statistics.median(added)
        summary["added_" + key + "_quartiles"] = (
            statistics.quantiles(added, n=4)[::2] if len(added) > 1 else added
        )
    return summary


def cell(result: dict[str, Any], key: str) -> str:
    """``median (lower to upper quartile)`` of an added figure."""
    spread = " to ".join(f"{v:.0f}" for v in result[f"added_{key}_quartiles"])
    return f"{result['added_' + key]:.0f} ({spread})"


def ratios(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    """Our added medians over theirs, per figure."""
    return " / ".join(
        f"{ours['added_' + key] / theirs['added_' + key]:.2f}" if theirs["added_" + key] > 0 else "-"
        for key in FIGURES
    )


def rows(
    results: Mapping[str, dict[str, Any]],
    labels: Mapping[str, str],
    width: int,
    ratio_of: Callable[[str, dict[str, Any]], str],
    spans_of: Callable[[str, dict[str, Any]], str],
) -> list[str]:
    """One table row per contender: label, untraced app-thread CPU, the three added figures, then
    its ratio and spans cells (``width`` columns in all; a failed contender says why)."""
    lines = []
    for name, r in results.items():
        if "cpu_us" not in r:
            lines.append(f"| {labels[name]} | failed: {r.get('error', '?')[:90]} |" + " |" * (width - 2))
            continue
        cells = [labels[name], f"{r['cpu_us']:.0f}", *(cell(r, key) for key in FIGURES)]
        lines.append("| " + " | ".join([*cells, ratio_of(name, r), spans_of(name, r)]) + " |")
    return lines


def verdict(ours: dict[str, Any], floor: dict[str, Any], target_us: float, per: str) -> list[str]:
    """The line under the table: trodo's added app-thread CPU, how far above the no-op floor, and
    the target's verdict (nothing when trodo was not measured)."""
    if "added_cpu_us" not in ours:
        return []
    line = f"\ntrodo_trace added {ours['added_cpu_us']:.0f} µs app-thread CPU per {per} (median)"
    if "added_cpu_us" in floor:
        line += f", {ours['added_cpu_us'] - floor['added_cpu_us']:.0f} above the no-op floor"
    met = "met" if ours["added_cpu_us"] <= target_us else "not met"
    return [line + f"; target at most {target_us:,.0f} µs: {met}"]
