"""Fixtures of the Cohere, Mistral and LiteLLM provider tests: fake servers and SDK clients."""

from __future__ import annotations

import pytest

from trodo_trace.testing import FakeCohere, FakeMistral


@pytest.fixture
def fake_cohere():
    """A fake Cohere v2 server for one test."""
    with FakeCohere() as fake:
        yield fake


@pytest.fixture
def fake_mistral():
    """A fake Mistral server for one test."""
    with FakeMistral() as fake:
        yield fake


@pytest.fixture
def cohere_client(fake_cohere):
    """A cohere.ClientV2 made before tracing starts (the SDK copies ``chat`` onto the instance)."""
    import cohere

    return cohere.ClientV2(api_key="test-key", base_url=fake_cohere.base_url, max_retries=0)


@pytest.fixture
def async_cohere_client(fake_cohere):
    import cohere

    return cohere.AsyncClientV2(api_key="test-key", base_url=fake_cohere.base_url, max_retries=0)


@pytest.fixture
def mistral_client(fake_mistral):
    from mistralai.client import Mistral

    client = Mistral(api_key="test-key", server_url=fake_mistral.base_url)
    yield client
    client.sdk_configuration.client.close()
