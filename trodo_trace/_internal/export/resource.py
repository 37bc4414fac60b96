"""The OpenTelemetry resource and instrumentation scope of this process (loaded with the first runtime)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from ..config import Config
from ..version import VERSION

SCOPE = InstrumentationScope("trodo_trace", VERSION)


#: Launchers whose name says nothing about the service.
_LAUNCHERS = frozenset(("", "-c", "-m", "python", "ipykernel_launcher", "__main__"))


def default_service_name(argv0: str | None = None) -> str | None:
    """The script's name (``worker`` for ``python worker.py``), or the package's for ``python -m pkg``;
    ``None`` when it says nothing (``python -c``, a notebook kernel).

    Example:
        >>> default_service_name("/srv/app/worker.py"), default_service_name("/srv/app/shop/__main__.py")
        ('worker', 'shop')
        >>> default_service_name("-c") is None
        True
    """
    argv0 = sys.argv[0] if argv0 is None and sys.argv else (argv0 or "")
    path = Path(argv0)
    name = path.stem
    if name == "__main__":
        name = path.parent.name
    return None if name in _LAUNCHERS or name.startswith("ipykernel") else name


def build_resource(config: Config) -> Resource:
    """``service.name``, ``trodo.site_id``, ``telemetry.sdk.*`` and ``OTEL_RESOURCE_ATTRIBUTES``.

    Without ``service_name`` (or ``OTEL_SERVICE_NAME``, or a ``service.name`` in
    ``OTEL_RESOURCE_ATTRIBUTES``), ``service.name`` is the script's or package's name.
    """
    attributes: dict[str, Any] = {}
    if config.service_name:
        attributes["service.name"] = config.service_name
    elif "service.name=" not in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        name = default_service_name()
        if name:
            attributes["service.name"] = name
    if config.site_id:
        attributes["trodo.site_id"] = config.site_id
    try:
        resource = Resource.create(attributes)
    except RuntimeError:
        # Resource detectors run in a thread pool, which refuses work once the interpreter is
        # exiting (a first span from a thread that outlives the main thread): detect in place.
        from opentelemetry.sdk import resources

        from .otel_compat import default_resource

        resource = (
            default_resource().merge(resources.OTELResourceDetector().detect()).merge(Resource(attributes))
        )
        if not resource.attributes.get("service.name"):
            resource = resource.merge(Resource({"service.name": "unknown_service:python"}))
    return _Resource(resource.attributes, resource.schema_url)


class _Resource(Resource):
    """A resource whose hash is computed once: the OTLP encoder hashes it for every span."""

    _hash: int | None = None

    def __hash__(self) -> int:
        value = self._hash
        if value is None:
            value = self._hash = super().__hash__()
        return value
