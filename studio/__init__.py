"""``main.py studio``: the artist's local page for the work between stages (face browser first)."""
