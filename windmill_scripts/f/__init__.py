"""Windmill workspace root folder `f/` (package marker, excluded from wmill sync)."""
