"""Processors: the Faust stages (entity merge, trace assembly). Built on the wire contract."""

from processors.native import use_sources_if_stale

use_sources_if_stale()  # never a compiled stage older than its source (processors.native)
