"""The face browser's data: faces of a set with their figures, sorts, filters, thumbnails, delete/restore,
and the set's people (the row the artist picks a person from).

Deleting a face in the studio means exactly what deleting its aligned file by hand means
(dropped everywhere: not trained on, not swapped): the file is moved into the studio's
trash (``workspace/.studio/trash/<set>/``), and the edit scan records it. Restoring moves it
back, and the scan records that too. Nothing else is written, so a studio killed at any
moment leaves a workspace the other commands read as the artist left it.
"""
from __future__ import annotations

import dataclasses
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
    """Every face of a set, as the artist left it, in the asked order, with its person (``person_list``'s index)."""
    _check_set(set_name)
    if sort not in SORTS:
        raise UserError(f"unknown sort '{sort}' ({', '.join(SORTS)})")
    with Workspace(root) as ws:
        if ws.set_meta(set_name) is None:
            return {"set": set_name, "faces": [], "persons": 0}
        rows = ws.faces_as_edited(set_name, geometry=False)     # a list needs no landmarks: 5x quicker
        _LISTED[(ws.root, set_name)] = _Listed(ws.aligned_dir(set_name), {r.id: r.aligned_file for r in rows})
        people = _people(ws, set_name, rows)
    faces = [_face_json(r, int(p)) for r, p in zip(rows, people.labels)]
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
    return {"set": set_name, "faces": faces, "persons": len(people.people)}


def person_list(root: Path, set_name: str) -> dict[str, Any]:
    """The people of a set, most frames first, each with its best face to show: the studio's row of people.

    The same grouping, of the same faces, as ``info`` lists and ``convert --person N`` swaps
    (``pipeline.faces.people`` over the kept faces as the artist left them), so the artist picks
    person 2 here and gets what ``convert --person 2`` renders. ``person`` numbers from 1; a
    face list's ``person`` is the index into this list (``person`` - 1).
    """
    _check_set(set_name)
    with Workspace(root) as ws:
        if ws.set_meta(set_name) is None:
            return {"set": set_name, "people": [], "unplaced": 0}
        rows = ws.faces_as_edited(set_name, geometry=False)
        _LISTED[(ws.root, set_name)] = _Listed(ws.aligned_dir(set_name), {r.id: r.aligned_file for r in rows})
        found = _people(ws, set_name, rows)
    unplaced = sum(1 for r, p in zip(rows, found.labels) if p < 0 and not r.dropped)
    return {"set": set_name, "people": [dict(p) for p in found.people], "unplaced": unplaced}


@dataclass(frozen=True)
class _People:
    """A set's people: per listed row its person index (-1: nobody's), and each person's figures."""

    labels: np.ndarray
    people: tuple[dict[str, Any], ...]


#: The last groupings into people, by a hash of what they read: the face list is asked for again at
#: every sort, delete and restore, and grouping thousands of faces is its slowest part.
_CLUSTERS: OrderedDict[bytes, _People] = OrderedDict()
_CLUSTERS_KEPT = 8
_CLUSTERS_LOCK = threading.Lock()


def _people(ws: Workspace, set_name: str, rows: list[FaceRow]) -> _People:
    """Person per listed face and the people, as ``convert --person`` numbers them; remembered for the same faces.

    Grouped are the kept faces with their boxes (face size weighs a descriptor's vote), exactly
    the rows convert and info group; a listing reads rows without geometry, so the boxes are read
    once more on a miss. A deleted face is nobody's to convert, but the artist still filters by
    person with *show deleted* on, so it takes the person of the nearest kept face of its track
    (by frame), or, without a track, of the nearest kept face by descriptor within SAME_PERSON.
    The key covers what the grouping reads: descriptors, tracks, frames, quality figures, dropped.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(ws.root).encode() + set_name.encode())
    for r in rows:
        digest.update(repr((r.id, r.source, r.frame_index, r.track, r.blur, r.yaw, r.dropped)).encode())
        digest.update(b"-" if r.descriptor is None else np.ascontiguousarray(r.descriptor).tobytes())
    key = digest.digest()
    with _CLUSTERS_LOCK:
        if key in _CLUSTERS:
            _CLUSTERS.move_to_end(key)
            return _CLUSTERS[key]
    found = _group(ws, set_name, rows)
    with _CLUSTERS_LOCK:
        _CLUSTERS[key] = found
        while len(_CLUSTERS) > _CLUSTERS_KEPT:
            _CLUSTERS.popitem(last=False)
    return found


def _group(ws: Workspace, set_name: str, rows: list[FaceRow]) -> _People:
    kept_at = [i for i, r in enumerate(rows) if not r.dropped]
    boxes = {r.id: r.bbox for r in ws.faces(set_name)} if kept_at else {}     # the index's, as convert reads
    kept = [dataclasses.replace(rows[i], bbox=boxes.get(rows[i].id, rows[i].bbox)) for i in kept_at]
    kept_labels, found = group_people(kept, SAME_PERSON)
    labels = np.full(len(rows), -1, dtype=int)
    labels[kept_at] = kept_labels
    _place_dropped(rows, labels)
    labels.flags.writeable = False
    people = tuple({"person": p.number, "faces": len(p.rows), "frames": p.frames, "first_frame": p.first_frame,
                    "last_frame": p.last_frame, "sources": len({kept[i].source for i in p.rows}),
                    "face": kept[p.best].id} for p in found)
    return _People(labels, people)


def _place_dropped(rows: list[FaceRow], labels: np.ndarray) -> None:
    """Dropped faces (label -1) take a person: the nearest kept face of their track by frame, else by descriptor."""
    by_track: dict[tuple[str, int | None], list[tuple[int, int]]] = {}
    placed = [i for i in range(len(rows)) if labels[i] >= 0]
    for i in placed:
        if rows[i].track is not None:
            by_track.setdefault((rows[i].source, rows[i].track), []).append((rows[i].frame_index, int(labels[i])))
    described = [i for i in placed if rows[i].descriptor is not None]
    known = np.stack([rows[i].descriptor for i in described]) if described else None  # type: ignore[misc]
    for i, r in enumerate(rows):
        if not r.dropped or labels[i] >= 0:
            continue
        same_track = by_track.get((r.source, r.track)) if r.track is not None else None
        if same_track:
            labels[i] = min(same_track, key=lambda fl: abs(fl[0] - r.frame_index))[1]
        elif known is not None and r.descriptor is not None:
            dist = np.linalg.norm(known - r.descriptor, axis=1)
            if float(dist.min()) < SAME_PERSON:
                labels[i] = labels[described[int(dist.argmin())]]


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
