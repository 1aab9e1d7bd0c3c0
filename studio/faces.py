"""The face browser's data: faces of a set with their figures, sorts, filters, thumbnails, delete/restore.

Deleting a face in the studio means exactly what deleting its aligned file by hand means
(dropped everywhere: not trained on, not swapped): the file is moved into the studio's
trash (``workspace/.studio/trash/<set>/``), and the edit scan records it. Restoring moves it
back, and the scan records that too. Nothing else is written, so a studio killed at any
moment leaves a workspace the other commands read as the artist left it.
"""
from __future__ import annotations

import hashlib
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.core.errors import UserError
from pipeline.core.files import inside, write_atomic
from pipeline.core.images import encode, read_rgb
from pipeline.faces.identity import SAME_PERSON
from pipeline.faces.people import people as group_people
from pipeline.workspace.layout import STUDIO_DIR
from pipeline.workspace.records import SETS, FaceRow
from pipeline.workspace.store import Workspace

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
        rows = ws.faces_as_edited(set_name, geometry=False)     # a list needs no landmarks: 5x quicker
        _LISTED[(ws.root, set_name)] = _Listed(ws.aligned_dir(set_name), {r.id: r.aligned_file for r in rows})
    people = _people(rows)
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


#: The last identity clusterings, by a hash of their descriptors: the face list is asked for again at
#: every sort, delete and restore, and clustering thousands of faces is its slowest part.
_CLUSTERS: OrderedDict[bytes, np.ndarray] = OrderedDict()
_CLUSTERS_KEPT = 8
_CLUSTERS_LOCK = threading.Lock()


def _people(rows: list[FaceRow]) -> np.ndarray:
    """Person per face (``people.people``: tracks first, -1 unplaced), remembered for the same faces.

    The key covers what the grouping reads: descriptors, tracks, frames and the quality figures.
    """
    digest = hashlib.blake2b(digest_size=16)
    for r in rows:
        digest.update(repr((r.source, r.frame_index, r.track, r.blur, r.yaw)).encode())
        digest.update(b"-" if r.descriptor is None else np.ascontiguousarray(r.descriptor).tobytes())
    key = digest.digest()
    with _CLUSTERS_LOCK:
        if key in _CLUSTERS:
            _CLUSTERS.move_to_end(key)
            return _CLUSTERS[key]
    labels = group_people(rows, SAME_PERSON)[0]
    labels.flags.writeable = False
    with _CLUSTERS_LOCK:
        _CLUSTERS[key] = labels
        while len(_CLUSTERS) > _CLUSTERS_KEPT:
            _CLUSTERS.popitem(last=False)
    return labels


def _face_json(r: FaceRow, person: int) -> dict[str, Any]:
    return {"id": r.id, "source": r.source, "frame": r.frame_index, "face": r.face_index, "track": r.track,
            "blur": r.blur, "yaw": r.yaw, "pitch": r.pitch, "mask_origin": r.mask_origin.value,
            "dropped": r.dropped, "drop_reason": None if r.drop_reason is None else r.drop_reason.value,
            "person": person, "file": r.aligned_file}


@dataclass(frozen=True)
class _Listed:
    """A set's aligned files by face id, as its last face list read them."""

    aligned: Path
    files: dict[int | None, str]


#: By (workspace, set): the page asks for the thumbnails of the faces it has just listed, a
#: screenful at a time; knowing their files spares each thumbnail opening the index (most of
#: its cost). A name found here still goes through ``inside``; a face not found, or whose file
#: is not there, is looked up in the index as before.
_LISTED: dict[tuple[Path, str], _Listed] = {}


def _row(ws: Workspace, set_name: str, face_id: int) -> FaceRow:
    row = ws.face(set_name, face_id)
    if row is None:
        raise UserError(f"no face {face_id} in set {set_name}")
    return row


def thumbnail(root: Path, set_name: str, face_id: int) -> bytes:
    """A JPEG of the aligned face, THUMB px, cached beside the workspace's data and redone when the face changes."""
    _check_set(set_name)
    listed = _LISTED.get((Path(root).absolute(), set_name))
    name = listed.files.get(face_id, "") if listed is not None else ""
    source = None
    if listed is not None and name:
        source = _existing(inside(listed.aligned, name, f"face {face_id}'s aligned file", "list the faces again"),
                           trash_dir(root, set_name) / name)
    if source is None:
        with Workspace(root) as ws:
            row = _row(ws, set_name, face_id)
            name = row.aligned_file
            source = _existing(ws.aligned_path(row), trash_dir(root, set_name) / name)
    if source is None:
        raise UserError(f"face {face_id}: its aligned image is gone (deleted outside the studio)")
    cache = Path(root) / STUDIO_DIR / "thumbs" / set_name / f"{Path(name).stem}.jpg"
    if cache.exists() and cache.stat().st_mtime_ns >= source.stat().st_mtime_ns:
        return cache.read_bytes()
    small = cv2.resize(read_rgb(source), (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    data = encode(small, ".jpg")
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(cache, data)
    return data


def _existing(live: Path, trashed: Path) -> Path | None:
    """The face's aligned image where it is: in aligned/, or in the studio's trash."""
    return live if live.exists() else trashed if trashed.exists() else None


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
