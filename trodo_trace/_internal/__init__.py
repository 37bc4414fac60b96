"""Private implementation of trodo_trace. Import from ``trodo_trace`` instead.

Rooms, bottom to top. A module imports its own room and the rooms below it, never one above
(``tests/test_layers.py`` checks it, deferred imports included):

- ``core/``: spans and runs, tracing, the decorator factory, attribute names, usage extraction,
  the value normaliser (``values``), pricing and cost, the internal-error guard; with ``config.py``
  and ``version.py``
- ``export/`` (queue, OTLP encoding and delivery, transports, spool, dual export, redaction),
  ``store/`` (the SQLite store), ``lifecycle.py`` (atexit, fork and multiprocessing hooks)
- ``runtime.py``: process-wide state; it builds the export or the store at ``init()`` or first use
- ``display/`` (run views, text tree, HTML waterfall), ``propagation.py`` (runs across threads,
  processes and services)
- ``api.py``: the public tracing functions
- ``events/``: ``track``, ``for_user``, ``capture_error``, auto events and their sink
- ``demo.py``: the CLI's demo, written on the public API

Two hooks stand in for upward imports: a run renders through ``core.spans.RUN_RENDERERS`` (filled
by the display layer) and the first span builds the runtime through ``core.spans.BUILD_RUNTIME``
(set by ``runtime.py``).
"""
