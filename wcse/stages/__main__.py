"""``python -m wcse.stages``: print the stage graph."""

from wcse.stages import describe

print(describe())
