"""Sizes of the face enhancer (``enhance``), declared once and without torch.

``enhance/options.py`` declares ``--resolution`` and ``--width`` with them (the command line
is built without importing torch), and ``enhancer.EnhancerModel`` checks an enhancer's
``options.json`` against the same ranges before it builds anything.
"""
from __future__ import annotations

#: Sides the three stride-2 levels allow (a multiple of 8), and the first level's widths.
RESOLUTIONS = tuple(range(64, 513, 8))
WIDTHS = (4, 64)
