"""The local SQLite store: schema and migrations, the writer, queries and retention."""
