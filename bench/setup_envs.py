"""One virtualenv per measured SDK, under ``bench/.envs/sdk-<name>/`` (git-ignored).

Every SDK the suite measures runs in its own process and its own virtualenv, so no SDK's
dependencies (or import-time side effects) leak into another's figures. trodo_trace itself is
installed from this checkout (``pip install -e <repo>``), so the suite works on any clone.
An env that already has its packages is reused as is; ``--upgrade`` reinstalls.

Run: ``python bench/setup_envs.py [NAME ...] [--upgrade]`` (``make bench`` calls it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
ENVS = BENCH / ".envs"


@dataclass(frozen=True)
class SDK:
    """One contender: its env, what to install, what to import, which versions to report."""

    name: str
    label: str
    packages: tuple[str, ...]
    import_stmt: str
    report: tuple[str, ...]
    how: str = ""

    @property
    def env_dir(self) -> Path:
        return ENVS / f"sdk-{self.name}"

    @property
    def python(self) -> Path:
        return self.env_dir / "bin" / "python"


OTLP_HTTP = ("opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http")

SDKS: dict[str, SDK] = {
    sdk.name: sdk
    for sdk in (
        SDK(
            "trodo_trace",
            "trodo_trace",
            ("-e", str(REPO)),
            "import trodo_trace",
            ("trodo-trace", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"),
            "`@trodo.agent` / `@trodo.tool` / `@trodo.llm(model=...)`; its own batched OTLP/HTTP exporter",
        ),
        SDK(
            "opentelemetry",
            "raw OpenTelemetry",
            OTLP_HTTP,
            "from opentelemetry.sdk.trace import TracerProvider\n"
            "from opentelemetry.sdk.trace.export import BatchSpanProcessor\n"
            "from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter",
            ("opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"),
            "`start_as_current_span` + attributes set by hand (inputs/outputs `json.dumps`); "
            "`BatchSpanProcessor` + OTLP/HTTP exporter",
        ),
        SDK(
            "langfuse",
            "Langfuse @observe",
            ("langfuse",),
            "from langfuse import observe",
            ("langfuse", "opentelemetry-sdk"),
            "`@observe(as_type=...)` (agent, tool, generation) + `update_current_generation(model, usage)`; "
            "OTLP/HTTP (gzip) to `/api/public/otel/v1/traces`",
        ),
        SDK(
            "langsmith",
            "LangSmith @traceable",
            ("langsmith",),
            "from langsmith import traceable",
            ("langsmith",),
            "`@traceable(run_type=...)` (chain, tool, llm); run batches to `/runs/multipart` (zstd when the "
            "server allows it, as the sink does)",
        ),
        SDK(
            "traceloop",
            "OpenLLMetry (traceloop-sdk)",
            # traceloop-sdk imports httpx without declaring it
            ("traceloop-sdk", "httpx"),
            "from traceloop.sdk import Traceloop\nfrom traceloop.sdk.decorators import agent, task, tool",
            ("traceloop-sdk", "opentelemetry-sdk"),
            "`@agent` / `@tool`, the llm step as `@task` (traceloop has no LLM decorator); "
            "`Traceloop.init(api_endpoint=...)`, OTLP/HTTP; telemetry off",
        ),
        SDK(
            "phoenix",
            "Phoenix / OpenInference",
            ("arize-phoenix-otel", "openinference-instrumentation", *OTLP_HTTP),
            "from phoenix.otel import register",
            ("arize-phoenix-otel", "openinference-instrumentation", "opentelemetry-sdk"),
            "`register(endpoint=..., protocol='http/protobuf', batch=True)` + OITracer "
            "`@tracer.agent` / `@tracer.tool` / `@tracer.llm`",
        ),
        SDK(
            "mlflow",
            "MLflow @mlflow.trace",
            ("mlflow-tracing", "opentelemetry-exporter-otlp-proto-http"),
            "import mlflow",
            ("mlflow-tracing", "opentelemetry-sdk"),
            "`@mlflow.trace(span_type=...)` (AGENT, TOOL, LLM); OTLP/HTTP via `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` "
            "(tracking URI also pointed at the sink)",
        ),
    )
}


def _installed_marker(sdk: SDK) -> Path:
    return sdk.env_dir / ".bench-installed.json"


def ensure(sdk: SDK, upgrade: bool = False) -> Path:
    """Create ``sdk``'s virtualenv and install its packages unless that was already done.

    Example:
        >>> python = ensure(SDKS["langsmith"])  # doctest: +SKIP
    """
    marker = _installed_marker(sdk)
    wanted = json.dumps(list(sdk.packages))
    if not upgrade and sdk.python.exists() and marker.exists() and marker.read_text() == wanted:
        return sdk.python
    if not sdk.python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(sdk.env_dir)], check=True)
    print(f"setup: installing {' '.join(sdk.packages)} into {sdk.env_dir}", file=sys.stderr, flush=True)
    # a current pip: the venv's bundled one cannot resolve traceloop-sdk's dependency set
    _pip(sdk, "--upgrade", "pip")
    _pip(sdk, *(["--upgrade"] if upgrade else []), *sdk.packages)
    marker.write_text(wanted)
    return sdk.python


def _pip(sdk: SDK, *arguments: str) -> None:
    """``pip install`` into ``sdk``'s env; its output is shown only when it fails."""
    command = [str(sdk.python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet", *arguments]
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PIP_NO_INPUT": "1"})
    if out.returncode != 0:
        noise = "WARNING: Location "  # the machine's extra index folders that lack a package
        lines = [line for line in (out.stdout + out.stderr).splitlines() if not line.startswith(noise)]
        print("\n".join(lines[-30:]), file=sys.stderr)
        raise subprocess.CalledProcessError(out.returncode, command)


def versions(sdk: SDK) -> dict[str, str]:
    """Installed versions of the packages ``sdk`` reports, read inside its env."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        out[name] = 'not installed'\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run(
        [str(sdk.python), "-c", code, *sdk.report], capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(result.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"SDKs to set up (default all: {', '.join(SDKS)})")
    parser.add_argument("--upgrade", action="store_true", help="reinstall the latest allowed versions")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in SDKS]
    if unknown:
        parser.error(f"unknown SDK(s): {', '.join(unknown)}")
    failed = []
    for name in args.names or list(SDKS):
        sdk = SDKS[name]
        try:
            ensure(sdk, upgrade=args.upgrade)
            print(f"{name}: {versions(sdk)}")
        except subprocess.CalledProcessError as exc:
            failed.append(name)
            print(f"{name}: setup failed ({exc})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
