"""Privacy on the wire: masking (fail closed), capture_content=False, default secret redaction."""

from __future__ import annotations

import pytest
from otlp_receiver import OtlpReceiver

import trodo_trace as trodo
from trodo_trace._internal.export.redact import redact_secrets, strip_exception_messages
from trodo_trace.testing import Capture

SECRETS = {
    "openai": "sk-proj-Abc123def456GHI789jkl012MNO345",
    "anthropic": "sk-ant-api03-Zyx987Wvu654Tsr321Qpo098",
    "google": "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
    "groq": "gsk_Q1w2E3r4T5y6U7i8O9p0A1s2D3f4",
    "bearer": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "url_password": "s3cr3t-Pa55",
    "cohere": "Xk29dLq8Pz7Wm3Rt5Yv1Bn6Hc4Js0Fg2Ae9Ku7Lo",
}


@pytest.fixture
def receiver():
    with OtlpReceiver("http") as server:
        yield server


def _payload(receiver):
    """Every byte that reached the collector, decompressed."""
    return b"".join(r.body for r in receiver.requests)


def _agent(secret_text="the answer"):
    @trodo.llm(model="gpt-4o-mini", provider="openai")
    def complete(messages):
        return {"text": "reply-CONTENT-7", "usage": {"prompt_tokens": 11, "completion_tokens": 4}}

    @trodo.retrieval
    def fetch(query):
        return [{"id": "doc-1", "content": "document-CONTENT-3", "score": 0.5}]

    @trodo.tool
    def explode(arg):
        raise ValueError(f"bad argument {arg.replace('question', 'error')} {secret_text}")

    @trodo.agent("private-bot")
    def bot(question):
        fetch(question)
        complete([{"role": "user", "content": question}])
        try:
            explode(question)
        except ValueError:
            pass
        return "final-CONTENT-5"

    return bot


TREE_KEYS = ("gen_ai.usage.input_tokens", "trodo.retrieval.result_count", "error.type")


@pytest.mark.parametrize(
    "how", ["argument", "TRODO_CAPTURE_CONTENT", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"]
)
def test_capture_content_off_sends_structure_but_no_content_bytes(receiver, monkeypatch, how):
    """capture_content=False: tree, timing, tokens and cost arrive; no input, output, document or message text."""
    options = {}
    if how == "argument":
        options["capture_content"] = False
    else:
        monkeypatch.setenv(how, "false")
    trodo.init(endpoint=receiver.url, schedule_delay_ms=20, **options)
    _agent()("question-CONTENT-1")
    assert trodo.flush(5.0)
    payload = _payload(receiver)
    assert b"CONTENT" not in payload
    assert Capture().tree(TREE_KEYS, spans=receiver.spans()) == [
        {
            "name": "private-bot",
            "kind": "run",
            "status": "OK",
            "attributes": {},
            "children": [
                {
                    "name": "fetch",
                    "kind": "retrieval",
                    "status": "OK",
                    "attributes": {"trodo.retrieval.result_count": 1},
                    "children": [],
                },
                {
                    "name": "complete",
                    "kind": "llm",
                    "status": "OK",
                    "attributes": {"gen_ai.usage.input_tokens": 11},
                    "children": [],
                },
                {
                    "name": "explode",
                    "kind": "tool",
                    "status": "ERROR",
                    "attributes": {"error.type": "ValueError"},
                    "children": [],
                },
            ],
        }
    ]
    explode = next(s for s in receiver.spans() if s.name == "explode")
    (event,) = explode.events
    assert event["attributes"]["exception.type"] == "ValueError"
    stack = event["attributes"]["exception.stacktrace"]
    assert ", in explode" in stack and "raise ValueError" not in stack  # frames stay, their code lines go
    assert explode.status_message == "ValueError"
    llm = next(s for s in receiver.spans() if s.name == "complete")
    assert llm.attributes["trodo.llm.cost"] > 0


def test_mask_applies_to_inputs_outputs_documents_and_messages(receiver):
    """init(mask=...) reaches every captured value: arguments, results, documents, exception messages."""

    def mask(value):
        if isinstance(value, str):
            return value.replace("CONTENT", "*******")
        if isinstance(value, dict):
            return {k: mask(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mask(v) for v in value]
        return value

    trodo.init(endpoint=receiver.url, schedule_delay_ms=20, mask=mask)
    _agent()("question-CONTENT-1")
    assert trodo.flush(5.0)
    payload = _payload(receiver)
    assert b"CONTENT" not in payload
    for masked in (b"question-*******-1", b"document-*******-3", b"error-*******-1", b"final-*******-5"):
        assert masked in payload


def test_a_failing_mask_fails_closed(receiver):
    """A mask that raises: the value is replaced whole, never sent as it was."""

    def mask(value):
        raise RuntimeError("mask bug")

    trodo.init(endpoint=receiver.url, schedule_delay_ms=20, mask=mask)
    _agent()("question-CONTENT-1")
    assert trodo.flush(5.0)
    assert b"CONTENT" not in _payload(receiver)
    spans = {s.name: s for s in receiver.spans()}
    assert spans["private-bot"].attributes["input.value"] == '"<masked>"'
    assert spans["fetch"].attributes["retrieval.documents.0.document.content"] == "<masked>"
    assert spans["explode"].events[0]["attributes"]["exception.message"] == "<masked>"


def test_secrets_are_redacted_by_default_everywhere_content_goes(receiver):
    """API keys, bearer tokens, URL passwords and key assignments are redacted from inputs, outputs and errors."""
    text = (
        f"openai {SECRETS['openai']} anthropic {SECRETS['anthropic']} google {SECRETS['google']} "
        f"groq {SECRETS['groq']} header 'Authorization: Bearer {SECRETS['bearer']}' "
        f"db postgres://admin:{SECRETS['url_password']}@db.internal/app cohere_api_key={SECRETS['cohere']}"
    )
    trodo.init(endpoint=receiver.url, schedule_delay_ms=20)
    _agent(secret_text=text)(text)
    assert trodo.flush(5.0)
    payload = _payload(receiver)
    for name, secret in SECRETS.items():
        assert secret.encode() not in payload, name
    assert payload.count(b"[REDACTED]") >= 14  # 7 secrets, in the input and in the exception message


def test_redaction_can_be_turned_off(receiver):
    """redact_secrets=False sends captured text as it is."""
    trodo.init(endpoint=receiver.url, schedule_delay_ms=20, redact_secrets=False)
    _agent()(SECRETS["openai"])
    assert trodo.flush(5.0)
    assert SECRETS["openai"].encode() in _payload(receiver)


def test_header_values_and_url_passwords_never_reach_logs_or_stats(receiver, caplog):
    """A refused export is logged with status and body, never with the auth header or the URL password."""
    receiver.set_behaviour(401, message="token rejected")
    endpoint = receiver.url.replace("http://", "http://svc:url-pass-77@")
    trodo.init(endpoint=endpoint, schedule_delay_ms=20, headers={"x-api-key": "header-secret-55"})
    _agent()("q")
    trodo.flush(5.0)
    assert receiver.requests[0].headers["x-api-key"] == "header-secret-55"
    assert "401: token rejected" in caplog.text
    everything = caplog.text + str(trodo.stats())
    assert "header-secret-55" not in everything and "url-pass-77" not in everything


def test_redactor_recognises_each_secret_shape_and_leaves_prose_alone():
    """Each provider key shape is replaced even bare; named ones in context; prose with 'key' stays."""
    for name in ("openai", "anthropic", "google", "groq", "bearer"):
        assert redact_secrets(f"see {SECRETS[name]} here") == "see [REDACTED] here"
    assert redact_secrets(f"CO_API_KEY={SECRETS['cohere']}") == "CO_API_KEY=[REDACTED]"
    # An authorization value is a secret whole (scheme included).
    assert (
        redact_secrets(f"Authorization: bearer {SECRETS['cohere']}") == "Authorization: [REDACTED] [REDACTED]"
    )
    assert redact_secrets("redis://:pw-secret-1@cache:6379/0") == "redis://:[REDACTED]@cache:6379/0"
    prose = (
        '{"max_tokens": 100, "keyboard": "monkey business", "tokens": 5, "url": "https://example.com/a:b"}'
    )
    assert redact_secrets(prose) == prose
    assert redact_secrets('{"password": "hunter22"}') == '{"password": "[REDACTED]"}'


def test_short_texts_are_redacted_the_same_every_time_they_recur():
    """Short texts found clean are remembered; one holding a secret is redacted on every call,
    also after a clean text that differs from it by the secret alone, and is never remembered."""
    from trodo_trace._internal.export import redact

    clean, secret = '{"q": "weather"}', '{"q": "weather", "api_key": "sk-abcdefghijklmnopqrstu"}'
    for _ in range(3):
        assert redact_secrets(clean) == clean
        assert redact_secrets(secret) == '{"q": "weather", "api_key": "[REDACTED]"}'
    assert clean in redact._CLEAN_SHORT
    assert secret not in redact._CLEAN_SHORT
    long_secret = "x" * 200 + " password=hunter22"
    assert redact_secrets(long_secret) == redact_secrets(long_secret) == "x" * 200 + " password=[REDACTED]"


def test_stack_traces_keep_frames_and_lose_messages():
    """With content off, chained tracebacks keep every frame (file, line, function) but no code line and only
    the exception type."""
    stack = (
        "Traceback (most recent call last):\n"
        '  File "app.py", line 3, in f\n'
        "    g(user)\n"
        "KeyError: 'alice@example.com'\n"
        "\n"
        "The above exception was the direct cause of the following exception:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "app.py", line 9, in h\n'
        "    raise ValueError(msg) from e\n"
        "ValueError: lookup failed for alice@example.com\n"
        "second line of the message\n"
    )
    assert strip_exception_messages(stack) == (
        "Traceback (most recent call last):\n"
        '  File "app.py", line 3, in f\n'
        "KeyError\n"
        "\n"
        "The above exception was the direct cause of the following exception:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "app.py", line 9, in h\n'
        "ValueError\n"
    )


def test_redaction_holds_after_more_attribute_names_than_the_scrubber_remembers(receiver):
    """The scrubber remembers which attribute names carry content (bounded): after thousands of
    distinct names have passed, documents are still masked and message content still redacted."""
    from trodo_trace._internal.export import redact

    trodo.init(endpoint=receiver.url, schedule_delay_ms=20, mask=lambda v: "<masked>" if v == "doc" else v)

    @trodo.llm(model="gpt-4o-mini", provider="openai")
    def noisy(batch):
        span = trodo.current_span()
        span.set_attributes({f"custom.field_{batch}_{n}": n for n in range(700)})
        span.set_attribute("llm.input_messages.0.message.content", "key sk-proj-abcdefghijklmnopqrstuvwx")
        return "ok"

    @trodo.retrieval
    def fetch(query):
        return [{"id": "d", "content": "doc"}]

    for batch in range(8):  # 5,600 names: past the bound, the remembered names are forgotten
        noisy(batch)
        fetch("q")
    assert trodo.flush(5.0)
    assert len(redact._CONTENT_KEY_CACHE) <= redact._SECRET_KEY_CACHE_SIZE
    payload = _payload(receiver)
    assert b"abcdefghijklmnopqrstuvwx" not in payload
    assert payload.count(b"[REDACTED]") >= 8
    assert payload.count(b"<masked>") >= 8
