"""Sizes of the mask segmenter (``masks train``), declared once and without torch.

``train/options.py`` declares ``--resolution`` and ``--width`` with them (the command line
is built without importing torch), and ``segmenter.SegmenterModel`` checks a mask model's
``options.json`` against the same ranges before it builds anything.
"""
from __future__ import annotations

#: Sides the four stride-2 levels allow: a multiple of 16.
RESOLUTIONS = tuple(range(64, 257, 16))
#: (fewest, most) channels of the first level.
WIDTHS = (4, 128)
