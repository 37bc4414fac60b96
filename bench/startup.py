"""Import time and cold start of trodo_trace and each peer, each in its own virtualenv.

- ``import``: seconds to run the import statement a user writes to trace with that SDK, in a fresh
  interpreter (interpreter start-up excluded), best of ``--repeat`` processes;
- ``cold start``: import + configure (exporter pointed at the loopback sink) + the first traced
  4-span agent run, best of ``--repeat`` processes.

Run: ``.venv/bin/python bench/startup.py [--repeat 7] [--sdks ...]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH, ChildError, child_env, log, num, selected, table
from setup_envs import SDK, SDKS
from sink import OTLPSink

_TIMER = "import time\nt0 = time.perf_counter()\n{stmt}\nprint('SECONDS', time.perf_counter() - t0)\n"
WORKLOADS = BENCH / "workloads"
# import + configure + first traced run, in a bare interpreter (nothing of bench/ imported first)
_COLD = """import time
t0 = time.perf_counter()
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("bench_workload", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.setup(sys.argv[2])["agent"]("what is the weather?")
print("SECONDS", time.perf_counter() - t0, flush=True)
os._exit(0)
"""


def _seconds(sdk: SDK, code: str, *arguments: str) -> float:
    """Run ``code`` in a fresh interpreter of ``sdk``'s env; the ``SECONDS`` it prints."""
    with tempfile.TemporaryDirectory(prefix="trodo-bench-") as tmp:
        out = subprocess.run(
            [str(sdk.python), "-c", code, *arguments],
            capture_output=True,
            text=True,
            env=child_env(tmp),
            cwd=tmp,
            timeout=120,
        )
    for line in out.stdout.splitlines():
        if line.startswith("SECONDS "):
            return float(line.split()[1])
    raise ChildError(f"{sdk.name} failed:\n{out.stderr.strip()[-400:]}")


def import_seconds(sdk: SDK) -> float:
    """Seconds one fresh interpreter takes to run ``sdk.import_stmt``."""
    return _seconds(sdk, _TIMER.format(stmt=sdk.import_stmt))


def cold_seconds(sdk: SDK, endpoint: str) -> float:
    """Seconds from a fresh interpreter to the end of the first traced agent run."""
    return _seconds(sdk, _COLD, str(WORKLOADS / f"{sdk.name}.py"), endpoint)


def measure(names: list[str] | None, repeat: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for sdk in selected(names):
        log(f"startup: {sdk.name}")
        try:
            imports = [import_seconds(sdk) for _ in range(repeat)]
            with OTLPSink() as sink:
                cold = [cold_seconds(sdk, sink.url) for _ in range(repeat)]
        except ChildError as exc:
            results[sdk.name] = {"error": str(exc)}
            continue
        results[sdk.name] = {"import_s": min(imports), "cold_s": min(cold), "import_all": imports}
    return results


def render(results: dict[str, Any]) -> str:
    rows = []
    for name, r in results.items():
        label = SDKS[name].label
        if "error" in r:
            rows.append([label, "failed: " + r["error"].splitlines()[0][:80], "", ""])
            continue
        statement = "; ".join(SDKS[name].import_stmt.splitlines())
        rows.append([label, num(r["import_s"] * 1000), num(r["cold_s"] * 1000), f"`{statement}`"])
    return table(["SDK", "import ms", "import + configure + first run ms", "import statement"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="fresh processes per figure; the best is kept")
    parser.add_argument("--sdks", nargs="+", choices=list(SDKS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = measure(args.sdks, args.repeat)
    print(json.dumps(results, indent=2) if args.json else render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
