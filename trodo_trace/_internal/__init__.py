"""Private implementation of trodo_trace. Import from ``trodo_trace`` instead."""
