"""Producers: the wire contract of every event and (later) the fire-and-forget SDK."""
