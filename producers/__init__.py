"""Producers: the wire contract of every event (`contract`) and the fire-and-forget SDK (`sdk`)."""
