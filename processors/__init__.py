"""Processors: the Faust stages (entity merge, trace assembly). Built on the wire contract."""
