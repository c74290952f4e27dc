"""Domain logic per resource. Functions take a keyword-only ``session`` and never commit."""
