"""Retention by stage: policy → plan (pure) → execute (batched); archive, restore, safeguards."""
