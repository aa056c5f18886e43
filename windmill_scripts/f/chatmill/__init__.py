"""Chatmill Windmill scripts and flows (package marker, excluded from wmill sync)."""
