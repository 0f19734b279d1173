"""Placeholder, filled in by the models work."""
