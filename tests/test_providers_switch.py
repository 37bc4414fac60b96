"""Turning provider instrumentation on and off: the runtime start hook, the instrument option and
TRODO_INSTRUMENT, the explicit instrument_* functions, shutdown, and import cost."""

from __future__ import annotations

import subprocess
import sys
import warnings

import anthropic
import openai
import pytest
import wrapt

import trodo_trace as trodo
from trodo_trace.integrations import providers


def _patched(owner, name="create") -> bool:
    return isinstance(owner.__dict__[name], wrapt.FunctionWrapper)


CHAT = openai.resources.chat.completions.Completions
ASYNC_CHAT = openai.resources.chat.completions.AsyncCompletions
MESSAGES = anthropic.resources.messages.Messages


@pytest.fixture(autouse=True)
def _restore():
    """Each test leaves the SDKs unpatched."""
    yield
    providers.uninstrument()


def test_runtime_start_instruments_every_installed_sdk():
    """The first span (no init) instruments openai and anthropic, sync and async classes alike."""
    providers.uninstrument()
    assert not _patched(CHAT)
    with trodo.tool("t"):
        pass
    imported = {
        name
        for name, top in providers.SUPPORTED.items()
        if providers.HOOK_MODULES.get(name, top) in sys.modules
    }
    assert providers.instrumented() == {"openai", "anthropic"} | imported
    assert _patched(CHAT) and _patched(ASYNC_CHAT) and _patched(MESSAGES) and _patched(MESSAGES, "stream")


def test_shutdown_restores_the_original_methods():
    """shutdown() removes every patch: the resource classes hold the SDK's own functions again."""
    original = CHAT.__dict__["create"]
    trodo.init()
    assert _patched(CHAT)
    trodo.shutdown()
    assert CHAT.__dict__["create"] is original
    assert providers.instrumented() == frozenset()


def test_instrument_false_turns_it_off():
    """init(instrument=False) patches nothing (and removes patches an earlier runtime made)."""
    trodo.init()
    trodo.init(instrument=False)
    assert not _patched(CHAT) and not _patched(MESSAGES)


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_a_list_narrows_it(monkeypatch, how):
    """instrument=["openai"] / TRODO_INSTRUMENT=openai instruments openai only."""
    if how == "argument":
        trodo.init(instrument=["openai"])
    else:
        monkeypatch.setenv("TRODO_INSTRUMENT", "openai")
        trodo.init()
    assert providers.instrumented() == {"openai"}
    assert _patched(CHAT) and not _patched(MESSAGES)


def test_environment_none_turns_it_off(monkeypatch):
    """TRODO_INSTRUMENT=none patches nothing."""
    monkeypatch.setenv("TRODO_INSTRUMENT", "none")
    trodo.init()
    assert providers.instrumented() == frozenset()


def test_explicit_functions_are_idempotent():
    """instrument_openai() / instrument_anthropic() after instrument=False patch once, however often called."""
    trodo.init(instrument=False)
    trodo.instrument_openai()
    trodo.instrument_openai()
    trodo.instrument_anthropic()
    wrapper = CHAT.__dict__["create"]
    assert _patched(CHAT) and not isinstance(wrapper.__wrapped__, wrapt.FunctionWrapper)
    assert providers.instrumented() == {"openai", "anthropic"}
    assert "instrument_openai" in trodo.__all__ and "instrument_anthropic" in trodo.__all__


def test_bad_values():
    """An unknown provider name raises ValueError naming the option; a bad environment value warns."""
    with pytest.raises(ValueError, match="instrument: unknown provider 'watsonx'"):
        trodo.init(instrument=["watsonx"])
    with pytest.raises(TypeError, match="instrument"):
        trodo.init(instrument=3)
    from trodo_trace._internal.config import _warned_env, resolve

    _warned_env.discard("TRODO_INSTRUMENT")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = resolve({}, {"TRODO_INSTRUMENT": "openai,watsonx"})
    assert config.instrument is True
    assert "TRODO_INSTRUMENT" in str(caught[0].message)


def test_import_and_init_import_no_provider_sdk():
    """import trodo_trace and init() import no provider SDK; the SDK is patched when the app imports it."""
    code = (
        "import sys, trodo_trace as trodo\n"
        "trodo.init(store_path=sys.argv[1])\n"
        "assert 'openai' not in sys.modules and 'anthropic' not in sys.modules, 'imported early'\n"
        "import openai\n"
        "from trodo_trace.integrations import providers\n"
        "assert providers.instrumented() == {'openai'}, providers.instrumented()\n"
        "trodo.shutdown()\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "/tmp/trodo-switch-test.db"], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_missing_sdk_raises_an_install_hint(monkeypatch):
    """instrument_openai() without the SDK installed raises ImportError with the extra to install."""
    monkeypatch.setitem(providers.SUPPORTED, "openai", "openai_not_installed_here")
    with pytest.raises(ImportError, match=r"trodo-trace\[openai\]"):
        trodo.instrument_openai()
