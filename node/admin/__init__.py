"""Operator interfaces of the node: four-letter words on the client port, HTTP admin API and web UI."""
