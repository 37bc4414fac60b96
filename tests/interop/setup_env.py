"""Create, or reuse, the virtualenv that holds Arize Phoenix for the interop tests.

Phoenix brings hundreds of megabytes of its own dependencies, so it lives in ``.venv-interop/``
beside the project's ``.venv/`` and never mixes with it. ``make test`` runs this first (target
``interop-env``); the interop fixture runs it too, so ``pytest`` alone also works. A stamp file
records the requirement it was built for; with the same requirement the venv is reused as is.

    python tests/interop/setup_env.py      # prints the path of the phoenix executable
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-interop"
REQUIREMENT = "arize-phoenix==20.26.1"
STAMP = VENV / ".installed-stamp"
LOG = VENV / "install.log"


def phoenix_executable() -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / "phoenix"


def ensure() -> Path:
    """The phoenix executable, installing it first when the venv is missing or out of date."""
    if STAMP.exists() and STAMP.read_text().strip() == REQUIREMENT and phoenix_executable().exists():
        STAMP.touch()  # up to date for make as well
        return phoenix_executable()
    if VENV.exists():
        shutil.rmtree(VENV)
    started = time.monotonic()
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    python = VENV / ("Scripts" if os.name == "nt" else "bin") / "python"
    with LOG.open("w") as log:
        result = subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-compile", REQUIREMENT],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0:
        raise RuntimeError(f"installing {REQUIREMENT} failed; see {LOG}")
    STAMP.write_text(REQUIREMENT + "\n")
    print(f"installed {REQUIREMENT} into {VENV} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return phoenix_executable()


if __name__ == "__main__":
    print(ensure())
