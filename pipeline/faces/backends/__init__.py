"""Face detector and landmark backends, chosen by name and imported only when asked for.

Each backend is a small class in its own module. Adding FAN or RetinaFace later means
one more module and one more line here; a missing optional dependency only matters
when that backend is chosen.
"""
from __future__ import annotations

import importlib

from pipeline.faces.backends.base import FaceDetector, Landmarker
from pipeline.core.errors import UserError

DETECTORS: dict[str, str] = {
    "dlib": "pipeline.faces.backends.dlib_hog:DlibHogDetector",
    "dlib-cnn": "pipeline.faces.backends.dlib_cnn:DlibCnnDetector",
}

LANDMARKERS: dict[str, str] = {
    "dlib": "pipeline.faces.backends.dlib_landmarks:DlibLandmarker",
}


def _load(registry: dict[str, str], kind: str, name: str):
    if name not in registry:
        raise UserError(f"unknown {kind} '{name}'; choose one of: {', '.join(registry)}")
    module_name, cls_name = registry[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"{kind} '{name}' needs the Python package '{exc.name}', which is not "
                        f"installed; pip install it or choose another --{kind}") from exc
    return getattr(module, cls_name)


def create_detector(name: str, upsample: str = "auto", min_face: int = 80) -> FaceDetector:
    """A detector by name; ``min_face`` (pixels) lets it search a shrunk image first."""
    return _load(DETECTORS, "detector", name)(upsample=upsample, min_face=min_face)


def create_landmarker(name: str = "dlib") -> Landmarker:
    return _load(LANDMARKERS, "landmarker", name)()
