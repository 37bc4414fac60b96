"""The Arize Phoenix server the interop tests export to: one per test session (per xdist worker),
not one per module; each test reads back only its own trace ids or its own project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import setup_env
from otlp_receiver import free_port
from procs import stop


def _get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory):
    """A Phoenix server on loopback with a private working directory (its SQLite database), one for
    the session: each test reads back only its own trace ids (or its own project)."""
    executable = setup_env.ensure()
    workdir = tmp_path_factory.mktemp("phoenix")
    port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(workdir),
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = (workdir / "phoenix.log").open("w")
    process = subprocess.Popen([str(executable), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            _get(f"{base}/v1/projects", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log.close()
                raise RuntimeError(
                    "phoenix did not start:\n" + (workdir / "phoenix.log").read_text()[-3000:]
                ) from None
            time.sleep(0.3)
    yield {"http": base, "grpc": f"http://127.0.0.1:{grpc_port}"}
    stop(process, 20)
    log.close()
