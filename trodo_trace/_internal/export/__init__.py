"""Getting finished spans and events out: the batch queue and its worker, OTLP encoding, delivery
with retries, transports, the disk spool, dual export, redaction and privacy."""
