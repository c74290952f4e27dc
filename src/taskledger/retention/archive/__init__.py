"""Retention archives: where they are stored, their format, and writing and reading them."""
