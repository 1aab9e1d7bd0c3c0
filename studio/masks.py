"""The mask editor's data: a face's mask with its version, guarded saves, carry-forward, predictions.

A save is what painting the file in any other editor is: the PNG is written atomically and
the edit scan finds it and makes the face ``hand``. Every save names the version (the
pixel hash) of the mask the artist started from; when the file has changed since (another
tab, another person, an outside editor) the save is refused with both versions, so no
hand work is ever overwritten without the artist seeing it.

Carry-forward moves one face's mask onto the next faces of its track and only proposes:
nothing is written until the artist accepts, and then each mask is saved as above. What
the painted region follows is the artist's choice (``anchor``): the frame (a microphone on
a stand: the mask goes back to the frame through the face's stored source->aligned
transform and into the next face's crop through its own) or the face (a hand on the cheek,
glasses: the mask keeps its place in the aligned crop, which the transforms already keep
on the face). Optical flow between the faces can refine either.
"""
from __future__ import annotations

import base64
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.core import geometry
from pipeline.core.errors import UserError
from pipeline.core.files import write_atomic
from pipeline.core.images import ImageReadError, encode, read_gray, read_rgb
from pipeline.workspace import layout
from pipeline.workspace.mask_guard import mask_writes
from pipeline.workspace.records import SETS, FaceRow
from pipeline.workspace.store import Workspace, mask_hash

log = logging.getLogger("studio")

MISSING = "missing"
MAX_CARRY = 500
#: One save at a time: the version check and the write must not interleave between requests.
_SAVE_LOCK = threading.Lock()


class MaskConflict(Exception):
    """The mask changed since the artist opened it; ``current`` is its version now."""

    def __init__(self, set_name: str, face_id: int, current: str) -> None:
        super().__init__(f"face {face_id}: the mask was saved elsewhere (another tab, person or editor) since you "
                         f"opened it; compare both and choose")
        self.set_name, self.face_id, self.current = set_name, face_id, current


@dataclass
class MaskEdit:
    """One mask to save: the face, the pixels, and the version the artist started from."""

    face_id: int
    pixels: np.ndarray
    base: str


def _check_set(set_name: str) -> None:
    if set_name not in SETS:
        raise UserError(f"unknown face set '{set_name}' (dst or src)")


def _row(ws: Workspace, set_name: str, face_id: int) -> FaceRow:
    _check_set(set_name)
    row = ws.face(set_name, face_id)
    if row is None:
        raise UserError(f"no face {face_id} in set {set_name}")
    return row


def version_of(pixels: np.ndarray | None) -> str:
    return MISSING if pixels is None else mask_hash(pixels)


def aligned_file(root: Path, row: FaceRow, ws: Workspace) -> Path:
    """The aligned image, live or in the studio's trash (a deleted face can still be looked at)."""
    from studio.faces import trash_dir
    live = ws.aligned_path(row)
    if live.exists():
        return live
    kept = trash_dir(root, row.set_name) / row.aligned_file
    if kept.exists():
        return kept
    raise UserError(f"face {row.id}: its aligned image {live} is gone (deleted outside the studio)")


def aligned_image(root: Path, set_name: str, face_id: int) -> tuple[bytes, str]:
    """The aligned face file's bytes and its type (the editor paints over it at full size)."""
    with Workspace(root) as ws:
        path = aligned_file(root, _row(ws, set_name, face_id), ws)
    return path.read_bytes(), "image/png" if path.suffix.lower() == ".png" else "image/jpeg"


def current_mask(root: Path, set_name: str, face_id: int) -> tuple[np.ndarray, str]:
    """The mask as the artist left it, and its version; a missing mask reads as all face (white)."""
    with Workspace(root) as ws:
        row = _row(ws, set_name, face_id)
        pixels = read_gray(ws.mask_path(row))
    if pixels is None:
        return np.full((row.size, row.size), 255, np.uint8), MISSING
    return pixels, mask_hash(pixels)


def face_state(root: Path, set_name: str, face_id: int) -> dict[str, Any]:
    """What the editor shows about a face: its size, mask version and origin, its track, its neighbours."""
    with Workspace(root) as ws:
        row = _row(ws, set_name, face_id)
        scan = ws.scan_artist_edits(set_name)
        row = scan.applied(row, ws.automatic_mask_origin(set_name))
        pixels = read_gray(ws.mask_path(row))
        track = [r for r in ws.faces(set_name, source=row.source) if r.track == row.track and not r.dropped] \
            if row.track is not None else []
    later = [r.frame_index for r in track if r.frame_index > row.frame_index]
    return {"id": row.id, "set": set_name, "file": row.aligned_file, "frame": row.frame_index, "face": row.face_index,
            "track": row.track, "size": row.size, "mask_origin": row.mask_origin.value, "dropped": row.dropped,
            "version": version_of(pixels), "later_in_track": len(later),
            "can_predict": predictor_available(root)}


def decode_mask(data: bytes, size: int | None = None) -> np.ndarray:
    """A PNG from the page as an 8-bit mask of the face's size (the canvas sends RGBA; grey is kept)."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE) if data else None
    if pixels is None:
        raise UserError("the mask sent is not a readable PNG; reload the page and paint again")
    if size is not None and pixels.shape != (size, size):
        raise UserError(f"the mask sent is {pixels.shape[1]}x{pixels.shape[0]}, the face is {size}x{size}; "
                        f"reload the page")
    return pixels


def png_data(data: str) -> bytes:
    """The bytes of a base64 PNG, with or without its ``data:image/png;base64,`` prefix."""
    try:
        return base64.b64decode(data.split(",", 1)[1] if data.startswith("data:") else data, validate=True)
    except (ValueError, IndexError) as exc:
        raise UserError("the mask sent is not base64 PNG data; reload the page") from exc


def png_base64(pixels: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode(pixels, ".png", rgb=False)).decode()


def save_masks(root: Path, set_name: str, edits: list[MaskEdit], force: bool = False) -> dict[str, Any]:
    """Write the artist's masks atomically if each is still the version it started from; record them.

    All are checked before any is written, so a refused save writes nothing. The edit scan
    then records the new masks as ``hand`` (when another command holds the workspace's write
    lock, the files are the truth and the next command records them).
    """
    _check_set(set_name)
    with _SAVE_LOCK:
        with Workspace(root) as ws:
            rows = [_row(ws, set_name, e.face_id) for e in edits]
            paths = [ws.mask_path(r) for r in rows]
        with mask_writes(root):        # no other mask writer between the version check and the write
            for edit, row, path in zip(edits, rows, paths):
                if edit.pixels.shape != (row.size, row.size):
                    raise UserError(f"face {row.id}: mask {edit.pixels.shape} does not fit the {row.size} px face")
                now = version_of(read_gray(path))
                if not force and now != edit.base:
                    raise MaskConflict(set_name, row.id, now)
            for edit, path in zip(edits, paths):
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(path, encode(edit.pixels, ".png", rgb=False))
        recorded = True
        try:
            with Workspace(root, write=True, command="studio") as ws:
                ws.sync_artist_edits(set_name)
        except UserError as exc:     # another command holds the lock: the files stay the truth
            log.warning("studio: saved %d masks; %s (the next command records them)", len(edits), exc)
            recorded = False
    return {"saved": len(edits), "recorded": recorded,
            "versions": {str(e.face_id): mask_hash(e.pixels) for e in edits}}


# ---------------------------------------------------------------------- carry forward


def _flow_refine(mask: np.ndarray, moved_face: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Follow what the transforms missed (a jaw opening, a hand moving with the face) by dense optical flow.

    The flow goes from the target face to the moved source face, so each target pixel
    looks up where its content came from (a backward map: no holes).
    """
    a = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(moved_face, cv2.COLOR_RGB2GRAY)
    flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, max(9, face.shape[0] // 16), 3, 5, 1.1, 0)
    h, w = mask.shape
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(mask, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


ANCHORS = ("frame", "face")


def carry_forward(root: Path, set_name: str, face_id: int, count: int, mask: np.ndarray | None = None,
                  flow: bool = False, anchor: str = "frame") -> list[dict[str, Any]]:
    """Proposals: this face's mask (``mask``, else its file) moved onto the next ``count`` faces of its track.

    Each proposal says whether that face's mask is hand-made now (the page leaves those
    unticked) and the version it replaces, for the guarded save when accepted.
    """
    if not 1 <= count <= MAX_CARRY:
        raise UserError(f"carry forward over 1 to {MAX_CARRY} faces, not {count}")
    if anchor not in ANCHORS:
        raise UserError(f"carry forward anchored to the frame or the face, not '{anchor}'")
    with Workspace(root) as ws:
        row = _row(ws, set_name, face_id)
        if row.track is None:
            raise UserError(f"face {face_id} is a photo face, not in a track: nothing to carry it to")
        automatic = ws.automatic_mask_origin(set_name)
        scan = ws.scan_artist_edits(set_name)
        later = sorted((scan.applied(r, automatic) for r in ws.faces(set_name, source=row.source)
                        if r.track == row.track and r.frame_index > row.frame_index),
                       key=lambda r: r.frame_index)
        later = [r for r in later if not r.dropped][:count]
        if mask is None:
            mask = read_gray(ws.mask_path(row))
            if mask is None:
                raise UserError(f"face {face_id} has no mask file to carry; paint one first")
        if mask.shape != (row.size, row.size):
            raise UserError(f"face {face_id}: mask {mask.shape} does not fit the {row.size} px face; reload the page")
        source_face = read_rgb(aligned_file(root, row, ws)) if flow else None
        targets = [(r, ws.mask_path(r), aligned_file(root, r, ws) if flow else None) for r in later]
    proposals = []
    for r, mask_path, face_path in targets:
        on_frame = anchor == "frame"
        moved = geometry.move_between_crops(mask, row.transform, r.transform, r.size) if on_frame else mask
        if flow and source_face is not None and face_path is not None:
            try:
                target_face = read_rgb(face_path)
            except ImageReadError as exc:
                raise UserError(f"face {r.id}: {exc}") from exc
            moved_face = geometry.move_between_crops(source_face, row.transform, r.transform, r.size) \
                if on_frame else source_face
            moved = _flow_refine(moved, moved_face, target_face)
        proposals.append({"id": r.id, "frame": r.frame_index, "mask_origin": r.mask_origin.value,
                          "version": version_of(read_gray(mask_path)), "png": png_base64(moved)})
    return proposals


# ---------------------------------------------------------------------- learned masks


def predictor_available(root: Path) -> bool:
    return (layout.mask_model_dir(root) / "options.json").is_file()


_predictors: dict[tuple[str, str], Any] = {}
_predictor_lock = threading.Lock()


def predict(root: Path, set_name: str, face_id: int) -> np.ndarray:
    """The workspace's mask model's prediction for a face (the artist can take it or correct it)."""
    from pipeline.faces.backends.learned_mask import LearnedMasker
    from pipeline.models.segmenter import weights_hash
    folder = layout.mask_model_dir(root)
    if not predictor_available(root):
        raise UserError("no mask model in this workspace yet: paint a few masks, then run "
                        "'python main.py masks train'")
    key = (str(folder), weights_hash(folder))
    with _predictor_lock:
        masker = _predictors.get(key)
        if masker is None:
            _predictors.clear()
            masker = _predictors[key] = LearnedMasker(folder, device="auto")
            log.info("studio: predictions from %s", masker.describe())
        with Workspace(root) as ws:
            row = _row(ws, set_name, face_id)
            face = read_rgb(aligned_file(root, row, ws))
        return masker.masks([face])[0]
