"""docs/configuration.md's options table is what tools/gen_config_docs.py generates from the options table."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_config_docs", ROOT / "tools" / "gen_config_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_page_is_generated_from_the_options_table():
    """The committed page equals the generator's output: run `python3 tools/gen_config_docs.py` to update."""
    generator = _generator()
    page = generator.PAGE.read_text(encoding="utf-8")
    assert generator.page_with_table(page) == page, "run: python3 tools/gen_config_docs.py"


def test_every_option_has_a_row_with_its_environment_variables():
    """Each option of the table, with each of its environment variables, appears in its row."""
    generator = _generator()
    rows = {line.split("|")[1].strip(" `"): line for line in generator.render().splitlines()[2:]}
    for option in generator.options_module().OPTIONS:
        assert option.name in rows
        assert all(f"`{var}`" in rows[option.name] for var in option.env)


def test_check_mode_exits_zero_on_the_committed_page():
    """`gen_config_docs.py --check` exits 0 on the committed page."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_config_docs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
