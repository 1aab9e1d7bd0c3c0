"""The MediaPipe 478-point mesh as the 68 iBUG points every stage uses, and its face outline.

Each iBUG point is a fixed blend of two mesh points, ``(1 - w) * mesh[i] + w * mesh[j]``,
chosen by ``benchmarks/mesh_to_ibug.py`` to agree best with dlib's 68 points on Hill's
clip: mean error 0.026 eye distances there and on Ocasio-Cortez's clip, which the fit
never saw (that script prints the figures; rerun it to refit). The mesh topology is
MediaPipe's canonical face model, so the table holds for every face.
"""
from __future__ import annotations

import numpy as np

#: (i, j, w) per iBUG point, in iBUG order.
MESH_TO_IBUG: tuple[tuple[int, int, float], ...] = (
    (127, 127, 0.0), (234, 137, 0.25), (93, 177, 0.5), (177, 58, 0.5), (58, 172, 0.5), (136, 172, 0.25),
    (150, 149, 0.5), (176, 148, 0.25), (152, 152, 0.0), (400, 377, 0.25), (379, 400, 0.25), (365, 364, 0.25),
    (397, 435, 0.25), (361, 288, 0.5), (323, 401, 0.5), (454, 366, 0.25), (356, 356, 0.0), (124, 68, 0.5),
    (53, 104, 0.25), (105, 66, 0.5), (65, 108, 0.25), (55, 107, 0.5), (285, 336, 0.5), (295, 337, 0.25),
    (333, 442, 0.5), (445, 333, 0.5), (276, 251, 0.25), (168, 6, 0.25), (197, 6, 0.25), (5, 197, 0.25),
    (4, 1, 0.25), (240, 218, 0.25), (97, 20, 0.25), (94, 164, 0.5), (326, 462, 0.25), (460, 309, 0.25),
    (246, 25, 0.25), (160, 159, 0.25), (157, 159, 0.5), (173, 26, 0.25), (155, 144, 0.5), (144, 144, 0.0),
    (398, 453, 0.25), (385, 384, 0.25), (386, 466, 0.25), (388, 255, 0.5), (373, 374, 0.25), (252, 385, 0.25),
    (78, 57, 0.25), (39, 185, 0.25), (37, 37, 0.0), (0, 11, 0.25), (267, 267, 0.0), (269, 270, 0.25),
    (291, 308, 0.25), (405, 325, 0.25), (17, 405, 0.5), (17, 16, 0.25), (84, 85, 0.25), (181, 146, 0.25),
    (183, 146, 0.25), (38, 82, 0.25), (13, 12, 0.5), (268, 312, 0.5), (415, 375, 0.25), (317, 317, 0.0),
    (14, 14, 0.0), (87, 178, 0.25),
)

#: The mesh's face outline, forehead included, in order around the face (MediaPipe's FACE_OVAL).
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)

_I = np.array([m[0] for m in MESH_TO_IBUG])
_J = np.array([m[1] for m in MESH_TO_IBUG])
_W = np.array([m[2] for m in MESH_TO_IBUG])[:, None]


def mesh_to_ibug(mesh: np.ndarray) -> np.ndarray:
    """(68, 2) iBUG points from a (478, 2+) mesh."""
    mesh = np.asarray(mesh, np.float64)[:, :2]
    return (1.0 - _W) * mesh[_I] + _W * mesh[_J]
