"""Filled in by its own issue."""

router = None
