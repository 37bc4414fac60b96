"""The typed public API: init's keywords and the Config fields are the options table's, and mypy
accepts tests/typing/ok_usage.py and rejects each line of tests/typing/bad_usage.py."""

from __future__ import annotations

import dataclasses
import inspect

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
