"""Restore: put archived rows back, judge rows that still exist, and report what was done."""
