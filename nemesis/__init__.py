"""Fault strategies: which faults, on which nodes, when.

Nemeses are written against a small fault protocol (``drop``, ``heal``,
``pause``, ``resume``, ``kill``, ``start``) that every backend implements;
this package declares that protocol and imports nothing else of the project.
"""
