"""Retention: policy -> pure planner -> batched executor; archives, restore, holds, audit, guards."""
