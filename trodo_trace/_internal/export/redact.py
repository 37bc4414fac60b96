"""Privacy on the way out: secret redaction, masking and ``capture_content=False`` for spans.

Two parts:

* :func:`redact_secrets` — the default ``Runtime.redact`` hook. One compiled pattern replaces API
  keys of the major LLM providers (OpenAI ``sk-``/``sk-proj-``, Anthropic ``sk-ant-``, Google
  ``AIza``, Groq ``gsk_``, Hugging Face ``hf_``, xAI ``xai-``, AWS ``AKIA``), JWTs, ``Bearer`` tokens,
  passwords in URLs and the value of ``api_key=`` / ``"password": ...``-style assignments (which
  catches prefix-less keys such as Cohere's). A cheap substring pre-check skips the regex for text
  that cannot hold a secret, so the usual cost is a few ``in`` tests.
* :class:`Scrubber` — runs on the export thread just before a finished span is converted, so the
  application thread never pays for redaction. It redacts captured content (``input.value``,
  ``output.value`` and the message/prompt attributes integrations write), exception messages and
  stack traces, the status message and the run's error summary, and masks and redacts retrieval
  document contents (the user's ``mask`` has already been applied to inputs and outputs when they
  were captured). With ``capture_content=False`` it removes every content attribute of the wire contract
  (whoever set it: a decorator, ``span.set_attribute``, a ``get_tracer()`` span, an integration),
  the content attributes of span events (GenAI message events), and keeps exceptions as type and
  stack frames only: exception messages (of chained exceptions and exception groups too) and notes
  are left out when the traceback is formatted (:func:`~..core.spans.format_stack`), since an
  exception message often quotes the input that caused it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..core import attrs
from ..core.errors import log_once
from ..core.values import to_json

REDACTED = "[REDACTED]"

# Secrets recognisable by their own shape: provider key prefixes, bearer tokens, URL passwords.
_SHAPED = re.compile(
    r"\b(?:sk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"
    r"|AIza[0-9A-Za-z_\-]{35}"
    r"|gsk_[A-Za-z0-9]{20,}"
    r"|hf_[A-Za-z0-9]{30,}"
    r"|xai-[A-Za-z0-9]{20,}"
    r"|AKIA[0-9A-Z]{16}"
    r"|eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,})"
    r"|(?P<bearer>\b[Bb]earer\s+)[A-Za-z0-9._~+/\-]{8,}=*"
    r"|(?P<url>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@\"']*:)[^\s/@\"']+@"
)
_SHAPED_HINTS = ("sk-", "AIza", "gsk_", "hf_", "xai-", "AKIA", "eyJ", "earer", "://")

# Secrets recognisable by their name: ``api_key=...``, ``"password": "..."`` (also catches Cohere keys).
# The whole value goes: a quoted value up to its closing quote (spaces and commas included), an
# unquoted one up to the next separator, whatever its length.
_SECRET_NAMES = (
    r"api[_\-]?key|apikey|access[_\-]?key|secret[_\-]?key|private[_\-]?key"
    r"|access[_\-]?token|auth[_\-]?token|refresh[_\-]?token|id[_\-]?token|token|secret|client[_\-]?secret"
    r"|password|passwd|pwd|passphrase|authorization|cookie|credentials?"
)
_NAMED = re.compile(
    r"(?i:(?:[a-z0-9]+[_\-])*(?:" + _SECRET_NAMES + r"))"
    r"(?P<sep>[\"']?\s*[:=]\s*)"
    r"(?:\"(?P<dq>(?:[^\"\\]|\\.)*)\"|'(?P<sq>(?:[^'\\]|\\.)*)'|(?P<value>[^\s\"',;&}]+))"
)
_JSON_LITERALS = frozenset(("null", "true", "false"))
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_NAMED_ANCHORS = (
    "key",
    "token",
    "secret",
    "passw",
    "pwd",
    "passphrase",
    "authorization",
    "cookie",
    "credential",
)
#: Where a secret's name may occur (one scan of the text instead of one per anchor).
_ANCHOR = re.compile("|".join(_NAMED_ANCHORS))
#: Substrings one of which any anchor contains (``in`` checks: cheaper than the regex on plain text).
_PREFILTER = ("key", "token", "secret", "pass", "pwd", "authoriz", "cookie", "credential")
#: A key (attribute or property name) that names a secret: its whole value is redacted.
_SECRET_KEY = re.compile(r"(?i)(?:^|[._\-])(?:[a-z0-9]+[_\-])*(?:" + _SECRET_NAMES + r")$")


def is_secret_key(key: str) -> bool:
    """Whether ``key`` names a secret (``password``, ``x-api-key``, ``db.passphrase``, ...).

    Example:
        >>> [is_secret_key(k) for k in ("user_password", "Authorization", "max_tokens", "input.value")]
        [True, True, False, False]
    """
    found = _SECRET_KEY_CACHE.get(key)
    if found is None:
        found = type(key) is str and _SECRET_KEY.search(key) is not None
        if len(_SECRET_KEY_CACHE) >= _SECRET_KEY_CACHE_SIZE:
            _SECRET_KEY_CACHE.clear()
            _SECRET_KEYS_SEEN.clear()
        _SECRET_KEY_CACHE[key] = found
        if found:
            _SECRET_KEYS_SEEN.add(key)
    return found


#: Answers of :func:`is_secret_key` by key: attribute names repeat from span to span, and the regex
#: search costs more than the rest of a span's scrubbing. Bounded (cleared when full).
_SECRET_KEY_CACHE: dict[Any, bool] = {}
#: The keys of the cache that name a secret (a span's attributes are intersected with it).
_SECRET_KEYS_SEEN: set[Any] = set()
_SECRET_KEY_CACHE_SIZE = 4096


def redact_data(value: Any, redact: Callable[[str], str]) -> Any:
    """JSON data (event properties) with secrets redacted: the whole value of a key that names a
    secret, and secrets found in any text."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            key: REDACTED if isinstance(key, str) and is_secret_key(key) else redact_data(item, redact)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_data(item, redact) for item in value]
    return value


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _replace_shaped(match: re.Match[str]) -> str:
    if match.group("bearer") is not None:
        return match.group("bearer") + REDACTED
    if match.group("url") is not None:
        return match.group("url") + REDACTED + "@"
    return REDACTED


def _redact_named(text: str, lowered: str) -> str:
    """Replace the values of secret-named assignments, trying the regex only where a name occurs."""
    spans: list[tuple[int, int, str]] = []
    done = 0
    for hit in [m.start() for m in _ANCHOR.finditer(lowered)]:
        if hit < done:
            continue
        start = hit
        while start > 0 and text[start - 1] in _NAME_CHARS and hit - start < 48:
            start -= 1
        match = _NAMED.match(text, start)
        if match is None or match.start("sep") <= hit:
            continue
        group = "dq" if match.group("dq") is not None else "sq" if match.group("sq") is not None else "value"
        found = match.group(group)
        if group == "value" and found in _JSON_LITERALS:
            continue  # "token": null
        if found:
            # An unquoted number after a colon (JSON) becomes a string, so JSON text stays JSON.
            quote = group == "value" and ":" in match.group("sep") and _NUMBER.fullmatch(found) is not None
            spans.append((match.start(group), match.end(group), f'"{REDACTED}"' if quote else REDACTED))
        done = match.end()
    if not spans:
        return text
    parts = []
    last = 0
    for begin, end, replacement in spans:
        parts.append(text[last:begin])
        parts.append(replacement)
        last = end
    parts.append(text[last:])
    return "".join(parts)


def redact_secrets(text: str) -> str:
    """Replace API keys, bearer tokens and passwords in ``text`` with ``[REDACTED]``.

    Example:
        >>> redact_secrets('{"key": "sk-proj-abcdefghijklmnopqrstuvwx", "url": "https://u:pw@host/x"}')
        '{"key": "[REDACTED]", "url": "https://u:[REDACTED]@host/x"}'
    """
    if type(text) is str and len(text) <= _SHORT_TEXT:
        # Short values (ids, names, small tool arguments and results) recur from span to span:
        # those found clean are remembered (never one that held a secret).
        if text in _CLEAN_SHORT:
            return text
        done = _redact(text)
        if done is text:
            if len(_CLEAN_SHORT) >= _CLEAN_ENTRIES:
                _CLEAN_SHORT.clear()
            _CLEAN_SHORT.add(text)
        return done
    return _redact(text)


#: Short texts that redaction left as they were, kept (bounded) for the next span that carries one.
_SHORT_TEXT = 96
_CLEAN_ENTRIES = 4096
_CLEAN_SHORT: set[str] = set()


def _redact(text: str) -> str:
    for hint in _SHAPED_HINTS:
        if hint in text:
            text = _SHAPED.sub(_replace_shaped, text)
            break
    lowered = text.lower()
    for anchor in _PREFILTER:
        if anchor in lowered:
            return _redact_named(text, lowered)
    return text


#: Attribute names (or prefixes) that carry captured content; removed when content capture is off.
CONTENT_KEYS = (attrs.INPUT_VALUE, attrs.OUTPUT_VALUE, attrs.INPUT_MIME, attrs.OUTPUT_MIME)
CONTENT_PREFIXES = (
    "llm.input_messages",
    "llm.output_messages",
    "llm.prompts",
    "llm.prompt_template",
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "tool.parameters",
    "embedding.embeddings",
    "reranker.input_documents",
    "reranker.output_documents",
    "reranker.query",
)
_CAPTURED_KEYS = frozenset((attrs.INPUT_VALUE, attrs.OUTPUT_VALUE))
#: Span kinds whose content may sit in other attributes (LLM messages, documents, reranker results).
_KINDS_WITH_MESSAGES = frozenset(("llm", "retrieval", "function"))
_FEW_ATTRIBUTES = 16
_DOC_PREFIX = "retrieval.documents."
_DOC_CONTENT = ".document.content"


class Scrubber:
    """Applies redaction, the mask and ``capture_content=False`` to a finished span (export thread)."""

    def __init__(
        self,
        *,
        capture_content: bool,
        mask: Callable[[Any], Any] | None,
        redact: Callable[[str], str] | None,
        max_value_length: int = 32768,
    ):
        self.capture_content = capture_content
        self.mask = mask
        self.redact = redact
        self.max_value_length = max_value_length

    @property
    def active(self) -> bool:
        return not self.capture_content or self.mask is not None or self.redact is not None

    def text(self, value: str) -> str:
        """A free-text value (an exception message, a document) masked and redacted."""
        mask = self.mask
        if mask is not None:
            try:
                masked = mask(value)
            except Exception:
                log_once("mask-failed", "trodo_trace: the mask function raised; the value is masked whole")
                return "<masked>"
            value = masked if isinstance(masked, str) else to_json(masked, self.max_value_length)
        if self.redact is not None:
            value = self.redact(value)
        return value

    def span(self, span: Any) -> None:
        """Scrub a finished ``TrodoSpan`` in place (it no longer changes once ended)."""
        attributes = span.attributes
        if not self.capture_content:
            self._drop_content(attributes)
        elif span.kind in _KINDS_WITH_MESSAGES or len(attributes) > _FEW_ATTRIBUTES:
            keys = attributes.keys()
            if not keys <= _CONTENT_KEY_CACHE.keys():  # names not seen before: classify them once
                _classify_content_keys(keys)
            for key in keys & _DOC_KEYS_SEEN:
                value = attributes[key]
                if isinstance(value, str):
                    attributes[key] = self.text(value)  # documents were not masked when captured
            redact = self.redact
            if redact is not None:
                for key in keys & _CONTENT_KEYS_SEEN:
                    value = attributes[key]
                    if isinstance(value, str):
                        attributes[key] = redact(value)
        elif self.redact is not None:
            # Agent, tool and chain spans carry content only in input.value / output.value (unless
            # they have many attributes, scanned above): two lookups instead of a scan.
            redact = self.redact
            for key in _CAPTURED_KEYS:
                value = attributes.get(key)
                if isinstance(value, str):
                    attributes[key] = redact(value)
        if self.capture_content and self.redact is not None:
            keys = attributes.keys()
            if not keys <= _SECRET_KEY_CACHE.keys():  # names not seen before: classify them once
                for key in keys - _SECRET_KEY_CACHE.keys():
                    is_secret_key(key)
            if _SECRET_KEYS_SEEN:
                for key in keys & _SECRET_KEYS_SEEN:
                    attributes[key] = REDACTED  # span.set_attribute("db.password", ...): the whole value
        message = span.status_message
        if message:
            new = self._status(message)
            if attributes.get(attrs.RUN_ERROR_SUMMARY) == message:
                attributes[attrs.RUN_ERROR_SUMMARY] = new
            span.status_message = new
        if span.events:
            span.events = [self._event(event) for event in span.events]

    def _drop_content(self, attributes: dict[str, Any]) -> None:
        for key in CONTENT_KEYS:
            attributes.pop(key, None)
        for key in [k for k in attributes if k.startswith(CONTENT_PREFIXES) or _is_doc_content(k)]:
            del attributes[key]

    def _status(self, message: str) -> str:
        kind, sep, detail = message.partition(": ")
        if not self.capture_content:
            return kind if sep else "error"
        return f"{kind}: {self.text(detail)}" if sep else self.text(message)

    def _event(self, event: tuple[str, int, dict[str, Any]]) -> tuple[str, int, dict[str, Any]]:
        name, timestamp, attributes = event
        if name != "exception":
            if self.capture_content or not attributes:
                return event
            # Content off: content attributes of span events go too (the GenAI semantic
            # conventions' message events carry the messages), whoever added them.
            return name, timestamp, {k: v for k, v in attributes.items() if not _is_event_content(k)}
        attributes = dict(attributes)
        message = attributes.get("exception.message")
        stack = attributes.get("exception.stacktrace")
        if not self.capture_content:
            attributes.pop("exception.message", None)
            if isinstance(stack, str):
                attributes["exception.stacktrace"] = strip_exception_messages(stack)
            return name, timestamp, attributes
        if isinstance(message, str) and message:
            masked = self.text(message)
            attributes["exception.message"] = masked
            if isinstance(stack, str) and masked != message:
                stack = stack.replace(message, masked)
        if isinstance(stack, str):
            attributes["exception.stacktrace"] = self.redact(stack) if self.redact is not None else stack
        return name, timestamp, attributes


#: Attribute names already sorted into document contents (masked and redacted), other content
#: (redacted) or neither: a span's names are intersected with the first two sets instead of each
#: name being tested against every prefix. Bounded (cleared when full).
_CONTENT_KEY_CACHE: dict[Any, bool] = {}
_DOC_KEYS_SEEN: set[Any] = set()
_CONTENT_KEYS_SEEN: set[Any] = set()


def _classify_content_keys(keys: Any) -> None:
    """Sort ``keys`` (all of a span's names: the cache may be cleared first) into the sets above."""
    if len(_CONTENT_KEY_CACHE) + len(keys) > _SECRET_KEY_CACHE_SIZE:
        _CONTENT_KEY_CACHE.clear()
        _DOC_KEYS_SEEN.clear()
        _CONTENT_KEYS_SEEN.clear()
    for key in keys:
        text = type(key) is str
        if text and _is_doc_content(key):
            _DOC_KEYS_SEEN.add(key)
        elif text and (key in _CAPTURED_KEYS or key.startswith(CONTENT_PREFIXES)):
            _CONTENT_KEYS_SEEN.add(key)
        _CONTENT_KEY_CACHE[key] = True


_EVENT_CONTENT_KEYS = frozenset(
    ("content", "message", "body", "tool_calls", "arguments", "gen_ai.event.content", "exception.message")
)


def _is_event_content(key: str) -> bool:
    return (
        key in _EVENT_CONTENT_KEYS
        or key in CONTENT_KEYS
        or key.startswith(CONTENT_PREFIXES)
        or _is_doc_content(key)
    )


def _is_doc_content(key: str) -> bool:
    return key.startswith(_DOC_PREFIX) and key.endswith(_DOC_CONTENT)


_EXCEPTION_TYPE = re.compile(r"[A-Za-z_][\w.]*")
#: One line of a formatted traceback: exception groups prefix theirs with ``|`` columns.
_STACK_LINE = re.compile(r"(?P<prefix>(?:\s*\|)*)(?P<indent>\s*)(?P<rest>.*)")
_GROUP_RULE = re.compile(r"[+\-]+(?: \d+ [+\-]+| \.\.\. .*)?")
_CHAIN_LINES = (
    "Traceback (most recent call last):",
    "Exception Group Traceback (most recent call last):",
    "The above exception was the direct cause of the following exception:",
    "During handling of the above exception, another exception occurred:",
)


def strip_exception_messages(stack: str) -> str:
    """A Python traceback with each frame's file, line and function kept, and its source lines and every
    exception's message cut (exception lines keep the type; exception groups' frames are kept too).

    Example:
        >>> strip_exception_messages('Traceback (most recent call last):\\n  File "a.py", line 1, in f\\n'
        ...                          '    g("secret")\\nValueError: user 42 said hi\\n')
        'Traceback (most recent call last):\\n  File "a.py", line 1, in f\\nValueError\\n'
    """
    out = []
    in_message = False
    for line in stack.splitlines():
        match = _STACK_LINE.match(line)
        if match is None:  # pragma: no cover - the pattern matches any line
            continue
        prefix, indent, rest = match.group("prefix"), match.group("indent"), match.group("rest")
        if rest == "":
            out.append(line)  # a message's own blank lines do not end it
        elif rest.lstrip("+ ") in _CHAIN_LINES or _GROUP_RULE.fullmatch(rest):
            out.append(line)
            in_message = False
        elif rest.startswith('File "'):
            if not in_message:
                out.append(line)
        elif len(indent) >= 2:
            continue  # a frame's source text, or its ^^^ markers
        else:
            kind = rest.split(":", 1)[0]
            if not in_message and _EXCEPTION_TYPE.fullmatch(kind):
                out.append(prefix + indent + kind)
            in_message = True
    return "\n".join(out) + ("\n" if stack.endswith("\n") else "")
