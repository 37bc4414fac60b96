"""The OpenTelemetry resource and instrumentation scope of this process (loaded with the first runtime)."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from ..config import Config
from ..version import VERSION

SCOPE = InstrumentationScope("trodo_trace", VERSION)


def build_resource(config: Config) -> Resource:
    """``service.name``, ``trodo.site_id``, ``telemetry.sdk.*`` and ``OTEL_RESOURCE_ATTRIBUTES``."""
    attributes: dict[str, Any] = {}
    if config.service_name:
        attributes["service.name"] = config.service_name
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
