"""Durable state: a checksummed write-ahead log with group-commit fsync, and snapshots."""
