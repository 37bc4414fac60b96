"""Stopping a server the tests started in a subprocess."""

from __future__ import annotations

import subprocess


def stop(process: subprocess.Popen, grace: float) -> None:  # type: ignore[type-arg]
    """SIGTERM, up to ``grace`` seconds to exit, then SIGKILL (a process already gone is left be)."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
