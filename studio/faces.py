"""The face browser's data: faces of a set with their figures, sorts, filters, thumbnails, delete/restore.

Deleting a face in the studio means exactly what deleting its aligned file by hand means
(dropped everywhere: not trained on, not swapped): the file is moved into the studio's
trash (``workspace/.studio/trash/<set>/``), and the edit scan records it. Restoring moves it
back, and the scan records that too. Nothing else is written, so a studio killed at any
moment leaves a workspace the other commands read as the artist left it.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.core.errors import UserError
from pipeline.core.files import write_atomic
from pipeline.core.images import encode, read_rgb
from pipeline.faces.identity import SAME_PERSON, cluster
from pipeline.workspace.records import SETS, FaceRow
from pipeline.workspace.store import Workspace

STUDIO_DIR = ".studio"
THUMB = 96
SORTS = ("frame", "blur", "yaw", "pitch", "origin", "identity")


def trash_dir(root: Path, set_name: str) -> Path:
    return Path(root) / STUDIO_DIR / "trash" / set_name


def _check_set(set_name: str) -> None:
    if set_name not in SETS:
        raise UserError(f"unknown face set '{set_name}' (dst or src)")


def face_list(root: Path, set_name: str, sort: str = "frame", ref: int | None = None) -> dict[str, Any]:
    """Every face of a set, as the artist left it, in the asked order, with its person (identity cluster)."""
    _check_set(set_name)
    if sort not in SORTS:
        raise UserError(f"unknown sort '{sort}' ({', '.join(SORTS)})")
    with Workspace(root) as ws:
        if ws.set_meta(set_name) is None:
            return {"set": set_name, "faces": [], "persons": 0}
        rows = ws.faces_as_edited(set_name)
    people = np.full(len(rows), -1)
    with_desc = [i for i, r in enumerate(rows) if r.descriptor is not None]
    if with_desc:
        people[with_desc] = cluster(np.stack([rows[i].descriptor for i in with_desc]), SAME_PERSON)  # type: ignore
    faces = [_face_json(r, int(p)) for r, p in zip(rows, people)]
    if sort == "identity":
        target = next((r.descriptor for r in rows if r.id == ref), None)
        if target is None:
            raise UserError("sort by identity needs ref=<face id> of a face with a descriptor")
        dist = {r.id: float(np.linalg.norm(r.descriptor - target)) if r.descriptor is not None else 9.0 for r in rows}
        faces.sort(key=lambda f: dist[f["id"]])
    elif sort in ("blur", "yaw", "pitch"):
        faces.sort(key=lambda f: (f[sort] is None, -(f[sort] or 0) if sort == "blur" else abs(f[sort] or 0)))
    elif sort == "origin":
        faces.sort(key=lambda f: (f["mask_origin"], f["frame"]))
    else:
        faces.sort(key=lambda f: (f["track"] if f["track"] is not None else -1, f["source"], f["frame"], f["face"]))
    return {"set": set_name, "faces": faces, "persons": int(people.max()) + 1 if len(people) else 0}


def _face_json(r: FaceRow, person: int) -> dict[str, Any]:
    return {"id": r.id, "source": r.source, "frame": r.frame_index, "face": r.face_index, "track": r.track,
            "blur": r.blur, "yaw": r.yaw, "pitch": r.pitch, "mask_origin": r.mask_origin.value,
            "dropped": r.dropped, "drop_reason": None if r.drop_reason is None else r.drop_reason.value,
            "person": person, "file": r.aligned_file}


def _row(ws: Workspace, set_name: str, face_id: int) -> FaceRow:
    row = ws.face(set_name, face_id)
    if row is None:
        raise UserError(f"no face {face_id} in set {set_name}")
    return row


def thumbnail(root: Path, set_name: str, face_id: int) -> bytes:
    """A JPEG of the aligned face, THUMB px, cached beside the workspace's data and redone when the face changes."""
    _check_set(set_name)
    with Workspace(root) as ws:
        row = _row(ws, set_name, face_id)
        source = ws.aligned_path(row)
    if not source.exists():
        source = trash_dir(root, set_name) / row.aligned_file
    if not source.exists():
        raise UserError(f"face {face_id}: its aligned image is gone (deleted outside the studio)")
    cache = Path(root) / STUDIO_DIR / "thumbs" / set_name / f"{Path(row.aligned_file).stem}.jpg"
    if cache.exists() and cache.stat().st_mtime_ns >= source.stat().st_mtime_ns:
        return cache.read_bytes()
    small = cv2.resize(read_rgb(source), (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    data = encode(small, ".jpg")
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(cache, data)
    return data


def _move(root: Path, set_name: str, ids: list[int], to_trash: bool) -> int:
    _check_set(set_name)
    moved = 0
    with Workspace(root, write=True, command="studio") as ws:
        rows = {r.id: r for r in ws.faces(set_name)}
        trash = trash_dir(root, set_name)
        trash.mkdir(parents=True, exist_ok=True)
        for face_id in ids:
            row = rows.get(face_id)
            if row is None:
                raise UserError(f"no face {face_id} in set {set_name}")
            live, kept = ws.aligned_path(row), trash / row.aligned_file
            src, dst = (live, kept) if to_trash else (kept, live)
            if src.exists() and not dst.exists():
                shutil.move(str(src), str(dst))
                moved += 1
        ws.sync_artist_edits(set_name)
    return moved


def delete_faces(root: Path, set_name: str, ids: list[int]) -> int:
    """Delete faces as the artist does by hand (their aligned files go to the studio's trash)."""
    return _move(root, set_name, ids, to_trash=True)


def restore_faces(root: Path, set_name: str, ids: list[int]) -> int:
    """Put faces deleted in the studio back; they are used again everywhere."""
    return _move(root, set_name, ids, to_trash=False)
