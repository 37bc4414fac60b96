"""Create, or reuse, the virtualenv that holds Arize Phoenix for the interop tests.

Phoenix brings hundreds of megabytes of its own dependencies, so it lives in ``.venv-interop/``
beside the project's ``.venv/`` and never mixes with it. It is installed from its lock,
``requirements/interop-py3.11.txt``, by ``tools/testenv.py interop``: ``make test`` runs that first,
and the interop fixture calls it too, so ``pytest`` alone also works. An unchanged lock is reused.

    python tests/interop/setup_env.py      # prints the path of the phoenix executable
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ensure() -> Path:
    """The phoenix executable, installing it from the lock first when missing or out of date.

    Under pytest-xdist every worker's fixture calls this at once: a lock file lets one install while
    the others wait, then find it done."""
    with open(ROOT / ".venv-interop.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run(
            [sys.executable, str(ROOT / "tools" / "testenv.py"), "interop"],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"installing Arize Phoenix failed:\n{result.stderr}")
    return Path(result.stdout.strip())


if __name__ == "__main__":
    print(ensure())
