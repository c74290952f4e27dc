"""Retention policies: the rule model, where policies come from, the presets, the table registry."""
