"""Spans and runs, tracing, the decorator factory, attribute names, usage extraction, the value
normaliser, pricing and the internal-error guard: the layer everything else builds on."""
