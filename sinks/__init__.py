"""Sinks: the PostgreSQL schema, its migrations, and the batched upserting consumers."""
