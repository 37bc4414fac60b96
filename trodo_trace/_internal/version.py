"""The package version (read by packaging too, so it stays a plain literal)."""

VERSION = "0.1.0"
