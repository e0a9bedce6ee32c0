"""Workloads: each bundles a client (kazoo), an operation source and a checker.

The same workload runs against the squall node and Apache ZooKeeper.
Workloads may import ``checkers``; nothing else of the project.
"""
