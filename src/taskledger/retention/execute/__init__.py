"""Executing retention: the batch loop, what deletes take with them, SQLite pacing, the runner."""
