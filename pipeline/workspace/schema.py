"""The index's tables and the migrations between schema versions.

Version 1: the first format. Version 2 records which landmark model made each face
(``faces.landmarker``) and, per set in workspace.json, the landmarker and masker the
set was extracted with, so later stages (evaluate) analyse faces the same way.
Version 3 keeps a dense landmarker's own points (``faces.dense_landmarks``: MediaPipe's
478) beside the 68, for the ``dense`` masker.
Version 4 records which mask model wrote a ``learned`` mask (``faces.mask_model``, the
hash of its weights), so ``masks apply`` after a retrain knows which masks it replaces.

Each migration is one small function that brings the index and workspace.json from
version N to N + 1; it is safe to run again after an interruption (it checks what is
already done). ``migrate`` backs both files up first.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Callable

SCHEMA_VERSION = 4

TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS frames (
    set_name TEXT NOT NULL, source TEXT NOT NULL, frame_index INTEGER NOT NULL,
    status TEXT NOT NULL,          -- 'ok' or 'unreadable'
    faces INTEGER NOT NULL,        -- faces found in this frame (detected + bridged)
    PRIMARY KEY (set_name, source, frame_index)
);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY,
    set_name TEXT NOT NULL, source TEXT NOT NULL, frame_index INTEGER NOT NULL,
    face_index INTEGER NOT NULL,
    track INTEGER,                 -- face track within a video set, NULL for photos
    origin TEXT NOT NULL,          -- 'detected' or 'bridged'
    detector TEXT NOT NULL, score REAL,
    bbox TEXT NOT NULL,            -- JSON [x0, y0, x1, y1], source pixels
    landmarks TEXT NOT NULL,       -- JSON 68 x [x, y], source pixels
    aligned_landmarks TEXT NOT NULL,
    transform TEXT NOT NULL,       -- JSON 2x3, source -> aligned
    face_type TEXT NOT NULL, size INTEGER NOT NULL,
    aligned_file TEXT NOT NULL, mask_file TEXT NOT NULL,   -- names in the set's aligned/ and masks/ folders
    mask_origin TEXT NOT NULL,     -- the automatic masker's name ('hull', 'learned'), or 'hand'
    mask_hash TEXT NOT NULL,       -- hash of the mask pixels as written automatically
    mask_mtime_ns INTEGER, mask_bytes INTEGER,
    descriptor BLOB,
    blur REAL, yaw REAL, pitch REAL, roll REAL,
    dropped INTEGER NOT NULL DEFAULT 0, drop_reason TEXT,
    landmarker TEXT NOT NULL DEFAULT 'dlib',
    dense_landmarks BLOB,          -- a dense landmarker's points: x, y little-endian float32 pairs, source pixels
    mask_model TEXT,               -- for a 'learned' mask: the hash of the mask model's weights that wrote it
    UNIQUE (set_name, source, frame_index, face_index)
);
CREATE INDEX IF NOT EXISTS faces_by_set ON faces (set_name, frame_index);
"""


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


def _v2_index(db: sqlite3.Connection) -> None:
    """faces.landmarker: every face of a version-1 index was put in by dlib's 68-point model."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "faces" in tables and "landmarker" not in _columns(db, "faces"):
        db.execute("ALTER TABLE faces ADD COLUMN landmarker TEXT NOT NULL DEFAULT 'dlib'")


def _v2_meta(meta: dict[str, Any]) -> None:
    """Each set's extract settings name its landmarker and masker (version 1 had only these)."""
    for set_meta in meta.get("sets", {}).values():
        if isinstance(set_meta, dict):
            settings = set_meta.setdefault("extract", {})
            settings.setdefault("landmarker", "dlib")
            settings.setdefault("masker", "hull")


def _v3_index(db: sqlite3.Connection) -> None:
    """faces.dense_landmarks: no landmarker before version 3 gave dense points (NULL)."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "faces" in tables and "dense_landmarks" not in _columns(db, "faces"):
        db.execute("ALTER TABLE faces ADD COLUMN dense_landmarks BLOB")


def _v3_meta(meta: dict[str, Any]) -> None:
    """Nothing in workspace.json changes."""


def _v4_index(db: sqlite3.Connection) -> None:
    """faces.mask_model: no mask before version 4 was written by a mask model (NULL)."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "faces" in tables and "mask_model" not in _columns(db, "faces"):
        db.execute("ALTER TABLE faces ADD COLUMN mask_model TEXT")


@dataclass(frozen=True)
class Migration:
    """From version N to N + 1: the index part runs in the caller's transaction."""

    index: Callable[[sqlite3.Connection], None]
    meta: Callable[[dict[str, Any]], None]


MIGRATIONS: dict[int, Migration] = {1: Migration(_v2_index, _v2_meta), 2: Migration(_v3_index, _v3_meta),
                                    3: Migration(_v4_index, _v3_meta)}


def upgrade_meta(meta: dict[str, Any], version: int) -> dict[str, Any]:
    """workspace.json of ``version`` as the current version reads it, in memory (for readers)."""
    for v in range(version, SCHEMA_VERSION):
        MIGRATIONS[v].meta(meta)
    return meta
