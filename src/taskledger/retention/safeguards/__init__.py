"""Safeguards: caps, the deletion-spike window and its alerts, the single-runner lock."""
