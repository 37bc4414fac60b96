"""Turns the suite's figures into ``BENCHMARKS.md``: the machine, the versions, the targets, a table each."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import burst
import overhead
import scaling
import startup
from common import num, table
from setup_envs import SDKS

IMPORT_TARGET_S = 0.150


def targets(data: dict[str, Any]) -> list[list[str]]:
    """One row per target of the issue: target, trodo_trace's figure, the figure it is held to, met."""
    rows: list[list[str]] = []

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("**met**" if ok else "**not met**")

    over = data.get("overhead", {})
    ours = over.get("trodo_trace", {}).get("cpu_us")
    base = over.get("opentelemetry", {}).get("cpu_us")
    rows.append(
        [
            "app-thread cost ≤ raw OpenTelemetry's",
            f"{num(ours)} µs/span",
            f"{num(base)} µs/span",
            verdict(None if ours is None or base is None else ours <= base),
        ]
    )
    peer, peer_cpu = overhead.fastest_peer(over)
    rows.append(
        [
            "app-thread cost ≤ ½ of the fastest peer's",
            f"{num(ours)} µs/span",
            f"½ x {num(peer_cpu)} = {num(peer_cpu / 2 if peer_cpu else None)} µs/span ({SDKS[peer].label if peer else 'n/a'})",
            verdict(None if ours is None or peer_cpu is None else ours <= peer_cpu / 2),
        ]
    )
    b = data.get("burst", {}).get("trodo_trace", {})
    if "delivered" in b:
        lost = b["expected"] - min(b["delivered"], b["expected"])
        rows.append(
            [
                "zero spans lost in the burst",
                f"{lost:,} lost of {b['expected']:,}",
                "0",
                verdict(lost == 0),
            ]
        )
    else:
        rows.append(["zero spans lost in the burst", "not measured", "0", "n/a"])
    s = data.get("startup", {}).get("trodo_trace", {})
    imported = s.get("import_s")
    rows.append(
        [
            "`import trodo_trace` under 150 ms",
            f"{num(imported * 1000 if imported is not None else None)} ms",
            "150 ms",
            verdict(None if imported is None else imported < IMPORT_TARGET_S),
        ]
    )
    flat = scaling.flatness(data.get("scaling", {}).get("trodo_trace", {}))
    rows.append(
        [
            "cost per span flat from 10 to 10,000 spans per run (within 25%)",
            f"largest ÷ smallest = {num(flat, 2)}",
            "≤ 1.25",
            verdict(None if flat is None else flat <= 1.25),
        ]
    )
    rows.extend(process_targets(data))
    return rows


def _ratio_row(label: str, ours: float | None, base: float | None, unit: str, limit: float) -> list[str]:
    value = ours / base if ours is not None and base else None
    return [
        label,
        f"{num(ours)} {unit} ({num(value, 2)}x)",
        f"{limit} x {num(base)} = {num(base * limit if base else None)} {unit}",
        "n/a" if value is None else ("**met**" if value <= limit else "**not met**"),
    ]


def process_targets(data: dict[str, Any]) -> list[list[str]]:
    """The whole-process targets (issue 19), each a ratio to raw OpenTelemetry in the same run."""
    over = data.get("overhead", {})
    ours, base = over.get("trodo_trace", {}), over.get("opentelemetry", {})
    rows = [
        _ratio_row(
            "process CPU per span incl. export and flush ≤ 0.5x raw OTel",
            ours.get("process_us"),
            base.get("process_us"),
            "µs/span",
            0.5,
        ),
        _ratio_row(
            "app-thread cost ≤ 0.45x raw OTel", ours.get("cpu_us"), base.get("cpu_us"), "µs/span", 0.45
        ),
    ]
    b = data.get("burst", {})
    grown = {
        name: (r["peak_rss"] - r["base_rss"]) / 2**20
        for name, r in b.items()
        if isinstance(r, dict) and "peak_rss" in r and "base_rss" in r
    }
    rows.append(
        _ratio_row(
            "peak RSS in the burst minus start ≤ 2x raw OTel's",
            grown.get("trodo_trace"),
            grown.get("opentelemetry"),
            "MiB",
            2.0,
        )
    )
    output = str(data.get("export", {}).get("output", ""))
    rate = re.search(r"= ([\d,]+) spans/s \(target", output)
    core = re.search(r"= ([\d,]+) spans/s per busy core", output)
    figure = int(rate.group(1).replace(",", "")) if rate else None
    busy = f"; {core.group(1)} spans/s per busy core" if core else ""
    rows.append(
        [
            "export throughput of one worker ≥ 60,000 spans/s",
            f"{figure:,} spans/s{busy}" if figure is not None else "not measured",
            "60,000 spans/s",
            "n/a" if figure is None else ("**met**" if figure >= 60_000 else "**not met**"),
        ]
    )
    sc = data.get("scaling", {}).get("trodo_trace", {})
    for part, label in (("sizes", "10 to 10,000 spans per run"), ("threads", "1 to 16 threads")):
        flat = scaling.flatness(sc, part, "process_us")
        rows.append(
            [
                f"process CPU per span flat from {label} (within 25%)",
                f"largest ÷ smallest = {num(flat, 2)}",
                "≤ 1.25",
                "n/a" if flat is None else ("**met**" if flat <= 1.25 else "**not met**"),
            ]
        )
    return rows


def _sink_paths(result: dict[str, Any]) -> str:
    paths = result.get("sink", {}).get("paths", {})
    return ", ".join(f"`{path}` x{count}" for path, count in sorted(paths.items())) or "nothing"


def _external(title: str, result: dict[str, Any] | None, owner: str) -> list[str]:
    lines = [f"## {title}", ""]
    if result is None:
        return [*lines, "Not run in this invocation.", ""]
    status = result.get("status")
    if status == "missing":
        return [
            *lines,
            f"**Gap:** `{result['script']}` ({owner}) does not exist yet, so this was not measured.",
            "",
        ]
    lines += [f"From `{result.get('command', '?')}` ({owner}), output as printed:", ""]
    if status != "ok":
        return [*lines, "**Failed:**", "", "```", result.get("output", ""), "```", ""]
    output = result.get("output", "")
    if not any(line.startswith("|") for line in output.splitlines()):
        return [*lines, "```text", output, "```", ""]
    # a table needs a blank line before it to render after the script's caption line
    return [*lines, re.sub(r"([^\n])\n\|", r"\1\n\n|", output, count=1), ""]


def render(data: dict[str, Any]) -> str:
    m = data["machine"]
    load = data.get("load", {})
    lines = ["# Benchmarks", ""]
    lines += [
        f"Produced by `{data['command']}` on {data['date']} in {data['seconds'] / 60:.1f} minutes; "
        "every SDK in its own process and virtualenv (`bench/.envs/`), all exporting to one loopback "
        "sink on 127.0.0.1 (`bench/sink.py`). Raw figures: `bench/results/latest.json`.",
        "",
    ]
    if data.get("quick"):
        lines += [
            "> **Quick run** (small counts): checks that the suite works; do not quote these figures.",
            "",
        ]
    lines += ["## Machine", ""]
    lines.append(
        table(
            ["", ""],
            [
                ["CPU", m["cpu"]],
                ["cores", m["cores"]],
                ["memory", f"{(m['memory_bytes'] or 0) / 2**30:.1f} GiB"],
                ["OS", m["os"]],
                ["Python", f"{m['implementation']} {m['python']}"],
                ["load average (1 min) at start / end", f"{load['start'][0]:.2f} / {load['end'][0]:.2f}"],
                [
                    "load average (1 min) after each section",
                    ", ".join(f"{k} {v[0]:.2f}" for k, v in load.items() if k not in ("start", "end")),
                ],
            ],
            numeric=False,
        )
    )
    lines += ["", "## SDKs measured", ""]
    rows = []
    for name, sdk in SDKS.items():
        if name in data.get("setup_failed", {}):
            rows.append([sdk.label, "**setup failed**", data["setup_failed"][name], ""])
            continue
        found = data.get("versions", {}).get(name, {})
        rows.append(
            [
                sdk.label,
                ", ".join(f"{k} {v}" for k, v in found.items()),
                sdk.how,
                _sink_paths(data.get("overhead", {}).get(name, {})),
            ]
        )
    headers = ["SDK", "versions", "workload and export", "what the sink received (overhead run)"]
    lines.append(table(headers, rows, numeric=False))
    lines += [
        "",
        "How to read these figures:",
        "",
        "- The machine is shared (see the load averages above): figures taken in the same run compare; "
        "absolute figures move with the load.",
        "- Every SDK runs with its own defaults (batch size, queue bound, compression). OpenTelemetry's "
        "`BatchSpanProcessor` holds at most 2,048 spans; the SDKs built on it (Langfuse, OpenLLMetry, "
        "Phoenix, MLflow) drop what does not fit when spans are made faster than they are exported.",
        "- The workloads (`bench/workloads/`) are written the way each SDK's users write them; where an "
        "SDK has no equivalent (OpenLLMetry has no LLM decorator) the nearest one is used.",
        "- Setup notes: traceloop-sdk imports `httpx` without declaring it, so its env gets `httpx` too; "
        "mlflow-tracing needs a tracking URI even when it exports OTLP (without one it imports a module "
        "it does not ship), so it is pointed at the sink, which it then never calls.",
    ]
    target_table = table(["target", "trodo_trace", "held to", "verdict"], targets(data), numeric=False)
    lines += ["", "## Targets", "", target_table, ""]

    if "overhead" in data:
        o = data["plan"]["overhead"]
        lines += [
            "## Decorator overhead",
            "",
            f"The 4-span agent run (agent → two tools → llm, inputs and outputs captured), {o['runs']:,} runs "
            f"x {o['repeat']} repeats after {o['warmup']} warm-up runs, a flush after each repeat; best repeat. "
            "*App-thread CPU* is `time.thread_time()` of the calling thread — what the SDK costs the caller; "
            "*wall* includes waiting for the GIL while export threads work; *wall incl. flush* adds the flush after it. "
            "*Process CPU* is `time.process_time()` over the loop and its flush: the export threads' work too. "
            "*Spans at sink* counts what arrived after the final flush: a tool that drops spans is lossy, "
            "not fast.",
            "",
            overhead.render(data["overhead"]),
            "",
        ]
    if "burst" in data:
        b = data["plan"]["burst"]
        lines += [
            "## Burst",
            "",
            f"{b['spans']:,} spans (4-span agent runs) as fast as possible while the sink takes "
            f"{b['delay'] * 1000:.0f} ms per request; then one flush with a {b['deadline']:.0f} s deadline. "
            "*Not delivered* = produced - arrived by the deadline (dropped, or still queued when the "
            "deadline passed). Peak RSS is the process's `ru_maxrss`.",
            "",
            burst.render_burst(data["burst"]),
            "",
        ]
    if "memory" in data:
        q = data["plan"]["memory"]
        lines += [
            "## Memory per 10,000 queued spans",
            "",
            f"The sink stalls ({q['stall']:.0f} s per request) while {q['queued']:,} spans are produced; RSS "
            "growth (after `gc.collect()`) scaled to 10,000 spans. Then the sink is released and the SDK "
            "flushes: *delivered after release* shows whether it kept what it queued (a bounded queue "
            "that drops costs little memory).",
            "",
            burst.render_memory(data["memory"]),
            "",
        ]
    if "startup" in data:
        lines += [
            "## Import time and cold start",
            "",
            f"Fresh interpreter per sample, best of {data['plan']['startup']['repeat']}; interpreter start-up "
            "excluded. *Import + configure + first run* also builds the exporter (pointed at the sink) and "
            "traces one agent run.",
            "",
            startup.render(data["startup"]),
            "",
        ]
    if "scaling" in data:
        sc = data["plan"]["scaling"]
        lines += [
            "## Scaling",
            "",
            f"Cost per span as one run grows (an agent calling N - 1 tools; about {sc['total']:,} spans per "
            "size), and with several threads tracing 4-span agent runs at once (CPU summed over the "
            "threads). Raw OpenTelemetry beside it for reference.",
            "",
            scaling.render_sizes(data["scaling"]),
            "",
            scaling.render_threads(data["scaling"]),
            "",
        ]
    lines += _external("LangChain handler overhead", data.get("langchain"), "`bench/langchain_overhead.py`")
    lines += _external(
        "LlamaIndex handler overhead", data.get("llamaindex"), "`bench/llamaindex_overhead.py`"
    )
    lines += _external(
        "Provider instrumentation overhead (OpenAI SDK)",
        data.get("providers"),
        "`bench/provider_overhead.py`; target: trodo's added cost at most 0.5 of the faster peer's",
    )
    lines += _external(
        "Provider instrumentation overhead (Bedrock, Gemini, Cohere, Mistral, LiteLLM)",
        data.get("provider_sdks"),
        "`bench/provider_sdks.py`; target: at most 50 µs added calling-thread CPU per non-streaming call",
    )
    lines += _external("OTLP export throughput", data.get("export"), "`bench/export.py`")
    failed = {name: r["error"] for section in ("overhead", "burst", "memory", "startup") for name, r in
              data.get(section, {}).items() if isinstance(r, dict) and "error" in r}  # fmt: skip
    if failed or data.get("setup_failed"):
        lines += ["## Not measured", ""]
        for name, error in {**data.get("setup_failed", {}), **failed}.items():
            lines += [f"- {SDKS[name].label}: {error.splitlines()[0]}"]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_report(data: dict[str, Any], path: Path) -> None:
    path.write_text(render(data))
