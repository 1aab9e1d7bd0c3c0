"""Where things live in a workspace: the one module that names its folders and files.

Every command reads and writes the same workspace; when each named ``model/`` or
``result.mp4`` itself, a rename meant a hunt through the stages. Commands ask here
instead, and ``require`` gives the one line a command says when the folder is not a
workspace yet.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.core.errors import UserError

META_NAME = "workspace.json"
INDEX_NAME = "faces.sqlite"
MODEL_DIR = "model"              # the face model train writes and convert, export and info read
MASK_MODEL_DIR = "mask_model"    # the learned mask segmenter (masks train / apply, the studio)
ENHANCER_DIR = "enhancer"        # the src person's face enhancer (enhance writes it, convert runs it)
REPORT_DIR = "report"            # evaluate's report.json and index.html
STUDIO_DIR = ".studio"           # the studio's thumbnails, trash and session state
RESULT_NAME = "result.mp4"       # convert's output when --output is not given


def model_dir(root: Path | str) -> Path:
    return Path(root) / MODEL_DIR


def mask_model_dir(root: Path | str) -> Path:
    return Path(root) / MASK_MODEL_DIR


def enhancer_dir(root: Path | str) -> Path:
    return Path(root) / ENHANCER_DIR


def report_dir(root: Path | str) -> Path:
    return Path(root) / REPORT_DIR


def studio_dir(root: Path | str) -> Path:
    return Path(root) / STUDIO_DIR


def default_output(root: Path | str) -> Path:
    return Path(root) / RESULT_NAME


def is_workspace(root: Path | str) -> bool:
    """Whether ``root`` holds a workspace (its ``workspace.json``)."""
    return (Path(root) / META_NAME).is_file()


def require(root: Path | str, first: str = "python main.py extract") -> Path:
    """``root`` when it holds a workspace, else one clear line: it is not one yet, and ``first`` makes it one."""
    if not is_workspace(root):
        raise UserError(f"{root} is not a workspace yet (no {META_NAME}); run '{first}' first")
    return Path(root)
