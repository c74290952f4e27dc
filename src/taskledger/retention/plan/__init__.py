"""Planning: the pure planner, the held set, previews and the single-use plans they confirm."""
