"""Typed events: the catalog, the change diff and their wire form."""
