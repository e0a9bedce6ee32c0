"""The squall node: a ZooKeeper-wire-compatible coordination service.

Pure, deterministic cores (``tree``, ``sessions``, ``watches``,
``consensus``, ``replica``) take messages, ticks and injected randomness and
return effects; ``runner`` carries them out (for the server and the
simulator alike) and ``server`` is the asyncio shell around it: sockets
(``connection``, ``peer``), timers and disk. One code path for a standalone
node (a one-member group) and a member of three or five. ``wire`` holds the
jute codec, ``storage`` the Raft store, ``admin`` the four-letter words and
the HTTP admin.

This package imports nothing else of the project.
"""
