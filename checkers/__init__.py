"""Histories and checkers: pure functions of a history.

``history`` holds the ``Op`` record, JSONL I/O and readers for other tools'
formats; ``models`` the sequential specifications (register, cas-register,
kv, ...); ``linearizable`` and ``sequential`` the consistency checkers. A
checker returns valid only with a witness, invalid only with a
counterexample, and "unknown" otherwise.

This package imports nothing else of the project.
"""
