"""Shared pieces of the dashboard tests: stores built in a child process, ``trodo-trace ui`` as a real
subprocess, and the system Chromium driven by Playwright.

Playwright's own browser download is not used: the tests drive the Debian ``chromium`` that
``tools/testenv.py setup`` installs. Without it they fail under CI (``CI=true``) and skip elsewhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from procs import stop

HERE = Path(__file__).resolve().parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def build_store(path: Path, *, hostile: bool = False) -> Path:
    """A store written by the real SDK in a child process (see tests/ui_stores.py)."""
    args = [sys.executable, str(HERE / "ui_stores.py"), str(path)] + (["--hostile"] if hostile else [])
    env = {k: v for k, v in os.environ.items() if k != "TRODO_RAISE_INTERNAL"}
    subprocess.run(args, check=True, timeout=120, env=env, capture_output=True)
    return path


@contextmanager
def dashboard(store: Path, *extra: str) -> Iterator[str]:
    """``trodo-trace ui`` on a free loopback port; yields its URL (without the trailing slash)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "trodo_trace.cli", "ui", "--store", str(store), "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"(http://\S+?)/? ", line)
        if match is None:
            process.kill()
            raise AssertionError(f"the dashboard did not start: {line!r} {process.stderr.read()}")  # type: ignore[union-attr]
        yield match.group(1).rstrip("/")
    finally:
        stop(process, 10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "the system Chromium is missing (tools/testenv.py setup installs it with apt-get as root)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@contextmanager
def browser_page(dark: bool = False) -> Iterator[object]:
    """A headless Chromium page (1400x900) that records dialogs, console errors and page errors."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(
                viewport={"width": 1400, "height": 900}, color_scheme="dark" if dark else "light"
            )
            page = context.new_page()
            page.trodo_problems = []  # type: ignore[attr-defined]

            def on_dialog(dialog: object) -> None:
                page.trodo_problems.append(f"dialog: {dialog.message}")  # type: ignore[attr-defined]
                dialog.dismiss()  # type: ignore[attr-defined]

            page.on("dialog", on_dialog)
            page.on(
                "console",
                lambda msg: (
                    msg.type in ("error", "warning")
                    and page.trodo_problems.append(f"console {msg.type}: {msg.text}")
                ),  # type: ignore[attr-defined]
            )
            page.on("pageerror", lambda exc: page.trodo_problems.append(f"page error: {exc}"))  # type: ignore[attr-defined]
            yield page
        finally:
            browser.close()
