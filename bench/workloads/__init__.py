"""One module per measured SDK, each loaded into that SDK's own virtualenv by ``bench/child.py``.

Every module defines ``setup(endpoint) -> dict`` returning the same workload written the way a user
of that SDK would write it:

- ``agent(question)``: the 4-span agent run (one agent, two tools, one llm), inputs and outputs captured;
- ``flush(timeout)``: deliver everything queued (``timeout`` is a hint; the caller bounds it anyway);
- optionally ``wide(n)``: one run of ``n`` spans (an agent calling ``n - 1`` tools), for the scaling table;
- optionally ``stats()``: the SDK's own counters (dropped spans and such).
"""
