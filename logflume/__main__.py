"""``python -m logflume``: the ``logflume`` command (``logflume run`` starts its stages so)."""

from logflume.cli import main

main()
