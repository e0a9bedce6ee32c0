"""memkv: an example database for squall's plugin seam.

- ``server``: the database itself, one process holding string keys in memory
  and in an fsynced append-only log, speaking one JSON object per line;
- ``db``: the squall database plugin (how to start a node, its status, its
  clients, a test-only bug);
- ``client``: its client for squall's ``register`` interface;
- ``workload``: a workload of its own (``memkv-counter``), on an interface of
  its own (``memkv-incr``) that only memkv offers.
"""
