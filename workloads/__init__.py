"""Workloads: each is an operation source and a checker for one client interface.

A workload does not talk to a database: it names the client interface it
needs (``interfaces``: register, set, lock, session, multi, watch, queue,
counter, election), and each database offers clients for the interfaces it
supports (``harness/dbs/``; the squall node and Apache ZooKeeper share kazoo
clients), so the same workload runs against every database that offers its
interface. Workloads may import ``checkers``; nothing else of the project.

- ``base``: the ``Client``, ``ClientFactory`` and ``Workload`` protocols;
- ``interfaces``: the interfaces' op vocabularies;
- ``register``, ``set``, ``lock``, ``session``, ``multi``, ``watch``,
  ``queue``, ``counter``, ``election``: the workloads, each with
  ``make(options) -> Workload`` (registered as ``squall.workloads`` entry points);
- ``checks``: their checkers (set-full, lock fencing, session ephemerals,
  and the register adapters to ``checkers.linearizable``/``sequential``).
"""
