"""Shared helpers imported by Chatmill Windmill scripts (package marker, excluded from wmill sync)."""
