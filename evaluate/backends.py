"""Evaluate's own kind: the held-apart identity networks that judge a result and that training never uses.

Declared here, in the stage that alone may run them, so no other stage can pick one up by
name from a shared registry; the package imports this module when it loads, which is how
``main.py models`` lists it (``pipeline.core.registry.listed``).
"""
from __future__ import annotations

from pipeline.core.registry import Entry, Registry

#: Identity networks evaluate rates with and training never uses (held apart): ``evaluate/held_apart.py``.
JUDGES = Registry("held-apart identity network", "evaluate only")

JUDGES.register(Entry(
    "facenet", "evaluate.held_apart:FaceNetJudge",
    "FaceNet (Inception-ResNet-v1), its frozen graph run with PyTorch: evaluate's second identity opinion; "
    "never used in training",
    weights=("facenet-casia",), terms="this project's code"))
