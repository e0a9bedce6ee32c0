"""The Jepsen-style test harness: CLI, runner, generators, backends, databases, store and reports.

``harness.cli`` is the composition root: the only module that knows every
workload, nemesis, database and backend by name.
"""
