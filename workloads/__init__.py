"""Workloads: each bundles a client (kazoo), an operation source and a checker.

The same workload runs against the squall node and Apache ZooKeeper.
Workloads may import ``checkers``; nothing else of the project.

- ``base``: the ``Client`` and ``Workload`` protocols the runner drives;
- ``register``, ``set``, ``lock``, ``session``: the workloads, each with
  ``make(options) -> Workload`` (the CLI's registry maps names to them);
- ``checks``: their checkers (set-full, lock fencing, session ephemerals,
  and the register adapters to ``checkers.linearizable``/``sequential``);
- ``_zk``: the shared kazoo connection and the ok/fail/info mapping.
"""
