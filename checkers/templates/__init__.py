"""Jinja2 templates for checker explanations (loaded with importlib.resources).

A package only so that packaging picks up the *.html files beside it.
"""
