"""The whole benchmark suite in one run: trodo_trace beside raw OpenTelemetry and the peers.

Sets up one virtualenv per SDK (``bench/setup_envs.py``), then measures, each SDK in its own
process against the same loopback sink: decorator overhead (``overhead.py``), burst and queued
memory (``burst.py``), import time and cold start (``startup.py``), scaling with run size and
threads (``scaling.py``); runs the LangChain, LlamaIndex, provider SDK (OpenAI; Bedrock, Gemini, Cohere, Mistral, LiteLLM) and OTLP export benchmarks that live
beside it when they exist; checks the targets; writes ``BENCHMARKS.md`` (tables + the machine)
and the raw figures to ``bench/results/latest.json``.

Run: ``make bench`` (= ``.venv/bin/python bench/run.py``); ``--quick`` for small counts
(to check the suite works; the figures are then not worth quoting).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import burst
import overhead
import scaling
import startup
from common import BENCH, REPO, log, machine
from report import write_report
from setup_envs import SDKS, ensure, versions

SECTIONS = (
    "overhead",
    "burst",
    "startup",
    "scaling",
    "langchain",
    "llamaindex",
    "providers",
    "provider_sdks",
    "export",
)

FULL = {
    "overhead": {"runs": 2000, "repeat": 5, "warmup": 200, "deadline": 60.0},
    "burst": {"spans": 100_000, "delay": 0.005, "deadline": 120.0},
    "memory": {"queued": 10_000, "stall": 60.0, "deadline": 60.0},
    "startup": {"repeat": 7},
    "scaling": {"total": 20_000, "repeat": 3, "deadline": 60.0},
    "langchain": ["--runs", "200", "--blocks", "8", "--rounds", "2"],
    "llamaindex": ["--runs", "100", "--blocks", "8", "--rounds", "2"],
    "providers": ["--runs", "500", "--repeat", "3", "--rounds", "2"],
    "provider_sdks": ["--blocks", "16", "--calls", "200", "--floor"],
    "export": [],
}
QUICK = {
    "overhead": {"runs": 200, "repeat": 3, "warmup": 50, "deadline": 30.0},
    "burst": {"spans": 10_000, "delay": 0.005, "deadline": 30.0},
    "memory": {"queued": 4_000, "stall": 20.0, "deadline": 30.0},
    "startup": {"repeat": 2},
    "scaling": {"total": 2_000, "repeat": 2, "deadline": 30.0},
    "langchain": ["--runs", "50", "--blocks", "2", "--rounds", "1", "--warmup", "20"],
    "llamaindex": ["--runs", "20", "--blocks", "2", "--rounds", "1", "--warmup", "10"],
    "providers": ["--runs", "100", "--repeat", "2", "--rounds", "1", "--warmup", "20"],
    "provider_sdks": ["--quick", "--floor"],
    "export": ["--spans", "10000", "--runs", "200", "--repeat", "2"],
}
#: Benchmarks owned elsewhere in bench/: (file, how to set up its peers, timeout in seconds).
EXTERNAL = {
    "langchain": ("langchain_overhead.py", ["bash", "bench/setup_peers.sh"], 1200),
    "llamaindex": ("llamaindex_overhead.py", ["{python}", "bench/llamaindex_overhead.py", "--setup"], 1200),
    "providers": ("provider_overhead.py", ["{python}", "bench/provider_overhead.py", "--setup"], 1800),
    "provider_sdks": ("provider_sdks.py", None, 1800),
    "export": ("export.py", None, 900),
}


def run_external(section: str, options: list[str]) -> dict[str, Any]:
    """Run another engineer's benchmark script as it is; its stdout goes into the report."""
    filename, setup, timeout = EXTERNAL[section]
    script = BENCH / filename
    if not script.exists():
        return {"status": "missing", "script": f"bench/{filename}"}
    python = sys.executable
    usage = subprocess.run([python, str(script), "--help"], capture_output=True, text=True, cwd=REPO).stdout
    # pass only the options this script knows (its interface is its owner's)
    supported, skip = [], False
    for i, option in enumerate(options):
        if skip:
            skip = False
            continue
        if option.startswith("--"):
            takes_value = i + 1 < len(options) and not options[i + 1].startswith("--")
            if option in usage:
                supported += [option, options[i + 1]] if takes_value else [option]
            skip = takes_value
    command = [python, f"bench/{filename}", *supported]
    shown = " ".join(shlex.quote(part) for part in [".venv/bin/python", *command[1:]])
    started = time.monotonic()
    try:
        if setup is not None:
            setup_command = [part.format(python=python) for part in setup]
            done = subprocess.run(setup_command, capture_output=True, text=True, cwd=REPO, timeout=900)
            if done.returncode != 0:
                return {"status": "failed", "command": " ".join(setup), "output": _tail(done)}
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "command": shown, "output": f"no result within {timeout} s"}
    result = {"command": shown, "seconds": time.monotonic() - started, "output": done.stdout.strip()}
    result["status"] = "ok" if done.returncode == 0 else "failed"
    if done.returncode != 0:
        result["output"] = _tail(done)
    return result


def _tail(done: subprocess.CompletedProcess) -> str:
    return "\n".join((done.stderr or done.stdout).strip().splitlines()[-12:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, to check that the suite works")
    parser.add_argument("--sdks", nargs="+", choices=list(SDKS), help="default: all")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="sections to run (default: all)")
    parser.add_argument("--output", default=str(REPO / "BENCHMARKS.md"), help="report path")
    parser.add_argument("--no-setup", action="store_true", help="use the virtualenvs as they are")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    sections = args.only or list(SECTIONS)
    started = time.monotonic()
    data: dict[str, Any] = {
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine(),
        "command": (
            "make bench"
            if not (argv if argv is not None else sys.argv[1:])
            else ".venv/bin/python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
        ),
        "argv": sys.argv[1:],
        "load": {"start": os.getloadavg()},
        "plan": {k: v for k, v in plan.items()},
    }

    names, failed = [], {}
    for name in args.sdks or list(SDKS):
        try:
            if not args.no_setup:
                ensure(SDKS[name])
            data.setdefault("versions", {})[name] = versions(SDKS[name])
            names.append(name)
        except (subprocess.CalledProcessError, OSError) as exc:
            failed[name] = f"setup failed: {exc}"
            log(f"{name}: {failed[name]}")
    data["setup_failed"] = failed

    def section(key: str, fn: Any) -> None:
        if key in sections or (key == "memory" and "burst" in sections):
            t0 = time.monotonic()
            data[key] = fn()
            data["load"][key] = os.getloadavg()
            log(f"{key}: {time.monotonic() - t0:.0f} s, load average {os.getloadavg()[0]:.2f}")

    o, b, m, st, sc = plan["overhead"], plan["burst"], plan["memory"], plan["startup"], plan["scaling"]
    section("overhead", lambda: overhead.measure(names, o["runs"], o["repeat"], o["warmup"], o["deadline"]))
    section("burst", lambda: burst.measure_burst(names, b["spans"], b["delay"], b["deadline"]))
    section("memory", lambda: burst.measure_memory(names, m["queued"], m["stall"], m["deadline"]))
    section("startup", lambda: startup.measure(names, st["repeat"]))
    section("scaling", lambda: scaling.measure(sc["total"], sc["repeat"], sc["deadline"]))
    for key in ("langchain", "llamaindex", "providers", "provider_sdks", "export"):
        if key in sections:
            log(f"{key}: bench/{EXTERNAL[key][0]}")
            section(key, lambda key=key: run_external(key, list(plan[key])))

    data["load"]["end"] = os.getloadavg()
    data["seconds"] = time.monotonic() - started
    results_dir = BENCH / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / "latest.json").write_text(json.dumps(data, indent=2, default=str))
    output = Path(args.output)
    write_report(data, output)
    log(f"wrote {output} and {results_dir / 'latest.json'} in {data['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
