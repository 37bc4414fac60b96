"""Helpers shared by the benchmark scripts: running one measurement in an SDK's env, tables, machine."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from setup_envs import SDK, SDKS

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CHILD = BENCH / "child.py"
#: Environment variables an SDK reads that must not leak from the caller into a measurement.
_SCRUB_PREFIXES = (
    "OTEL_",
    "TRODO_",
    "LANGFUSE_",
    "LANGSMITH_",
    "LANGCHAIN_",
    "TRACELOOP_",
    "PHOENIX_",
    "MLFLOW_",
)


_DEAD_PROXY = "http://127.0.0.1:9"


class ChildError(RuntimeError):
    """A measurement process failed; the message carries the end of its stderr."""


def child_env(tmp: str) -> dict[str, str]:
    """The caller's environment without any SDK configuration, plus a private trodo store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
    env.update(
        TRODO_STORE=str(Path(tmp) / "trodo.db"),
        # no SDK phones home: telemetry off, and anything not on loopback goes to a dead proxy
        TRACELOOP_TELEMETRY="false",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        HTTP_PROXY=_DEAD_PROXY,
        HTTPS_PROXY=_DEAD_PROXY,
        ALL_PROXY=_DEAD_PROXY,
        NO_PROXY="127.0.0.1,localhost",
    )
    for key in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        env[key] = env[key.upper()]
    return env


def run_child(sdk: SDK, mode: str, endpoint: str, *options: Any, timeout: float = 600.0) -> dict[str, Any]:
    """Run ``bench/child.py`` for ``sdk`` in its env and return its ``RESULT`` dict."""
    with tempfile.TemporaryDirectory(prefix="trodo-bench-") as tmp:
        command = [str(sdk.python), str(CHILD), sdk.name, mode, "--endpoint", endpoint]
        command += [str(option) for option in options]
        try:
            out = subprocess.run(
                command, capture_output=True, text=True, env=child_env(tmp), timeout=timeout, cwd=tmp
            )
        except subprocess.TimeoutExpired as exc:
            raise ChildError(f"{sdk.name} {mode}: no result within {timeout:.0f} s") from exc
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-8:])
    raise ChildError(f"{sdk.name} {mode} exited {out.returncode}:\n{tail}")


def selected(names: Iterable[str] | None) -> list[SDK]:
    """The SDKs to measure, in table order, skipping ones whose env does not exist."""
    wanted = list(names) if names else list(SDKS)
    return [SDKS[name] for name in wanted if name in SDKS]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- tables ---------------------------------------------------------------------------------------
def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: bool = True) -> str:
    """A GitHub markdown table; the first column left-aligned, the others right-aligned if ``numeric``."""
    rest = "---:" if numeric else ":---"
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join([":---"] + [rest] * (len(headers) - 1)) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "n/a"
    return f"{value / base:.2f}x"


def mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.1f}"


# -- the machine ----------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """CPU model, cores, memory, OS, Python, load average."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "load": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
