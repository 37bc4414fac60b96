"""The typed public API: init's keywords and the Config fields are the options table's, and mypy
accepts tests/typing/ok_usage.py and rejects each line of tests/typing/bad_usage.py."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import trodo_trace as trodo
from trodo_trace._internal.config import OPTIONS, Config

#: init's options that DESIGN.md gives a default in the signature; the others default to None
#: (then the environment, then the table's default decide).
SIGNATURE_DEFAULTS = ("auto_events", "batch_enabled", "batch_size", "batch_flush_interval_ms")


def test_config_fields_are_the_options_table():
    """Config has one field per option of the table, with the same names in the same order."""
    assert [field.name for field in dataclasses.fields(Config)] == [option.name for option in OPTIONS]


def test_init_keywords_are_the_options_table():
    """init() takes every option of the table by name, and nothing else (no **options)."""
    parameters = inspect.signature(trodo.init).parameters
    assert sorted(parameters) == sorted(option.name for option in OPTIONS)
    assert all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in parameters.values())


def test_init_defaults_leave_options_to_the_environment():
    """init's defaults are None (environment, then the table), except the ones its signature shows."""
    parameters = inspect.signature(trodo.init).parameters
    defaults = {option.name: option.default for option in OPTIONS}
    for name, parameter in parameters.items():
        expected = defaults[name] if name in SIGNATURE_DEFAULTS else None
        assert parameter.default == expected, name


ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tests" / "typing"
_MARK = re.compile(r"  # type: ignore\[([a-z0-9,-]+)\]$")
_ERROR = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): error: .*  \[(?P<code>[a-z0-9-]+)\]$")


def _marked(lines: list[str]) -> set[tuple[int, str]]:
    """The (line, error code) pairs the ``# type: ignore[...]`` comments of a file name."""
    marked = set()
    for number, line in enumerate(lines, start=1):
        found = _MARK.search(line)
        if found:
            marked.update((number, code) for code in found.group(1).split(","))
    return marked


def test_usage_examples_cover_the_public_api():
    """tests/typing/ok_usage.py uses every name trodo_trace exports."""
    text = (EXAMPLES / "ok_usage.py").read_text(encoding="utf-8")
    assert [name for name in trodo.__all__ if f"trodo.{name}" not in text] == []


@pytest.mark.timeout(600)
@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed here")
def test_usage_examples_type_check_as_expected(tmp_path):
    """mypy --strict accepts tests/typing/ok_usage.py, needs every ignore of bad_usage.py, and
    without those ignores reports exactly the marked errors, line by line."""
    bad_lines = (EXAMPLES / "bad_usage.py").read_text(encoding="utf-8").splitlines()
    expected = _marked(bad_lines)
    assert len(expected) >= 20
    unmarked = tmp_path / "bad_usage_unmarked.py"
    unmarked.write_text("\n".join(_MARK.sub("", line) for line in bad_lines) + "\n", encoding="utf-8")
    # One mypy run (the checks share its cache): the examples as committed, and the rejected uses
    # with their ignores taken out.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--show-error-codes",
            "--no-pretty",
            str(EXAMPLES / "ok_usage.py"),
            str(EXAMPLES / "bad_usage.py"),
            str(unmarked),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    errors: dict[str, set[tuple[int, str]]] = {}
    for line in result.stdout.splitlines():
        found = _ERROR.match(line)
        if found:
            name = Path(found["path"]).name
            errors.setdefault(name, set()).add((int(found["line"]), found["code"]))
    assert set(errors) <= {"bad_usage_unmarked.py"}, result.stdout + result.stderr
    assert errors.get("bad_usage_unmarked.py", set()) == expected, result.stdout + result.stderr
