"""The squall node: a ZooKeeper-wire-compatible coordination service.

Pure, deterministic cores (``tree``, ``sessions``, ``watches``,
``consensus``) take messages, ticks and injected randomness and return
effects; ``server`` is the asyncio shell that carries the effects out over
sockets, timers and disk. ``wire`` holds the jute codec, ``storage`` the
write-ahead log and snapshots, ``admin`` the four-letter words and HTTP admin.

This package imports nothing else of the project.
"""
