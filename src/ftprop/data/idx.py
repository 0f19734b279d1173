"""Placeholder, filled in by the datasets work."""
