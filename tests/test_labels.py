"""Labels on the stills in docs/: the outline stays around the letters (OpenCV 5 lays out thick text wider)."""
from __future__ import annotations

import numpy as np

from pipeline.core.images import outlined_text


def _extent(mask: np.ndarray) -> tuple[int, int]:
    cols = np.nonzero(mask.any(axis=0))[0]
    return int(cols.min()), int(cols.max())


def test_the_outline_hugs_the_letters_and_the_letters_are_readable() -> None:
    image = np.full((40, 400, 3), 128, np.uint8)
    outlined_text(image, "sharpness 0.91  fringes 1.56  tone dE 0.85", (8, 26), 0.6, (255, 255, 0))
    yellow = (image[..., 0] > 200) & (image[..., 1] > 200) & (image[..., 2] < 80)
    dark = image.max(axis=2) < 40
    assert yellow.sum() > 300 and dark.sum() > yellow.sum()
    (y0, y1), (d0, d1) = _extent(yellow), _extent(dark)
    # the black copy ends where the letters end, give or take the outline's 2 pixels (a thick copy ran 11 px on)
    assert abs(d1 - y1) <= 3 and abs(d0 - y0) <= 3
