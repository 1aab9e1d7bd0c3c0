"""The on-disk workspace: versioned workspace.json, the SQLite face index, set folders.

Rules every stage relies on:
- Nothing is created until there is something to store, so a failed first run leaves
  no half-made workspace behind.
- The artist's files are the truth: ``scan_artist_edits`` finds aligned faces deleted
  by hand and masks repainted by hand; automatic steps never overwrite such a mask.
- Writes are atomic: json by temp file + rename, the index by SQLite transactions.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from pipeline.core.errors import UserError
from pipeline.core.files import remove_quietly, write_atomic
from pipeline.core.images import read_gray

SCHEMA_VERSION = 1
SETS = ("dst", "src")

_SCHEMA = """
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
    aligned_file TEXT NOT NULL, mask_file TEXT NOT NULL,   -- relative to the set folder
    mask_origin TEXT NOT NULL,     -- 'hull', 'xseg', 'parsing', 'hand'
    mask_hash TEXT NOT NULL,       -- hash of the mask pixels as written automatically
    mask_mtime_ns INTEGER, mask_bytes INTEGER,
    descriptor BLOB,
    blur REAL, yaw REAL, pitch REAL, roll REAL,
    dropped INTEGER NOT NULL DEFAULT 0, drop_reason TEXT,
    UNIQUE (set_name, source, frame_index, face_index)
);
CREATE INDEX IF NOT EXISTS faces_by_set ON faces (set_name, frame_index);
"""

FACE_COLUMNS = ("set_name", "source", "frame_index", "face_index", "track", "origin", "detector",
                "score", "bbox", "landmarks", "aligned_landmarks", "transform", "face_type", "size",
                "aligned_file", "mask_file", "mask_origin", "mask_hash", "mask_mtime_ns",
                "mask_bytes", "descriptor", "blur", "yaw", "pitch", "roll", "dropped", "drop_reason")


def mask_hash(mask: np.ndarray) -> str:
    """Hash of the mask's pixels, not its bytes: re-saving without painting is no edit."""
    h = hashlib.sha256()
    h.update(f"{mask.shape[0]}x{mask.shape[1]}:".encode())
    h.update(np.ascontiguousarray(mask, dtype=np.uint8).tobytes())
    return h.hexdigest()[:32]


@dataclass
class EditScan:
    """What the artist changed in a set since the index was written."""

    deleted: list[int] = field(default_factory=list)         # face ids whose aligned image is gone
    hand_masks: list[int] = field(default_factory=list)      # face ids with a repainted mask
    restored_masks: list[int] = field(default_factory=list)  # 'hand' masks back to the automatic pixels
    missing_masks: list[int] = field(default_factory=list)   # face ids whose mask file is gone
    mask_stats: dict[int, tuple[int, int]] = field(default_factory=dict)


class Workspace:
    """Handle on a workspace folder; creates files only when ``create`` is called."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.meta_path = self.root / "workspace.json"
        self.db_path = self.root / "faces.sqlite"
        self._db: sqlite3.Connection | None = None
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"workspace {self.root} is a file, not a folder; pass --workspace DIR")
        self.meta = self._read_meta()

    # ---------------------------------------------------------------- metadata
    def _read_meta(self) -> dict:
        if not self.meta_path.exists():
            return {"schema_version": SCHEMA_VERSION, "sets": {}}
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.meta_path} is not valid JSON ({exc}); restore it from a backup "
                            f"or move the workspace aside") from exc
        version = meta.get("schema_version") if isinstance(meta, dict) else None
        if not isinstance(version, int):
            raise UserError(f"{self.meta_path} has no schema_version; it is not a workspace of this tool")
        if version > SCHEMA_VERSION:
            raise UserError(f"workspace {self.root} was written by a newer version of this tool "
                            f"(schema {version}, this one reads up to {SCHEMA_VERSION}); "
                            f"upgrade the tool to use it")
        meta.setdefault("sets", {})
        return meta

    @property
    def exists(self) -> bool:
        return self.meta_path.exists()

    def save_meta(self) -> None:
        self.meta["schema_version"] = SCHEMA_VERSION
        write_atomic(self.meta_path, (json.dumps(self.meta, indent=2, sort_keys=True) + "\n").encode())

    def set_meta(self, set_name: str) -> dict | None:
        return self.meta["sets"].get(set_name)

    def set_dir(self, set_name: str) -> Path:
        return self.root / f"data_{set_name}"

    def aligned_dir(self, set_name: str) -> Path:
        return self.set_dir(set_name) / "aligned"

    def masks_dir(self, set_name: str) -> Path:
        return self.set_dir(set_name) / "masks"

    # ---------------------------------------------------------------- creation
    def create(self, set_name: str) -> None:
        """Make the folders, index and json; called once there is a first face to store."""
        self.aligned_dir(set_name).mkdir(parents=True, exist_ok=True)
        self.masks_dir(set_name).mkdir(parents=True, exist_ok=True)
        db = self.db
        with db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                       (str(SCHEMA_VERSION),))
        if not self.meta_path.exists():
            self.save_meta()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            if not self.db_path.exists() and not self.root.exists():
                self.root.mkdir(parents=True)
            self._db = sqlite3.connect(self.db_path, isolation_level="DEFERRED", timeout=30,
                                       check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        return self._db

    def read_db(self) -> sqlite3.Connection | None:
        """Connection for reading, or None when no index exists yet (never creates one)."""
        if not self.db_path.exists():
            return None
        return self.db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def remove_stale_temp_files(self, set_name: str) -> int:
        """Temp files a killed run left behind (never the artist's files)."""
        count = 0
        for folder in (self.aligned_dir(set_name), self.masks_dir(set_name)):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    remove_quietly(tmp)
                    count += 1
        return count

    # ---------------------------------------------------------------- queries
    def faces(self, set_name: str, where: str = "", params: Iterable = ()) -> list[sqlite3.Row]:
        db = self.read_db()
        if db is None:
            return []
        sql = "SELECT * FROM faces WHERE set_name=?" + (f" AND {where}" if where else "")
        return db.execute(sql + " ORDER BY source, frame_index, face_index", (set_name, *params)).fetchall()

    # ---------------------------------------------------------------- artist edits
    def scan_artist_edits(self, set_name: str) -> EditScan:
        """Compare the set's files with the index (read-only; ``apply_edits`` records it)."""
        scan = EditScan()
        aligned_dir, masks_dir = self.aligned_dir(set_name), self.masks_dir(set_name)
        for row in self.faces(set_name):
            if not row["dropped"] and not (aligned_dir / row["aligned_file"]).exists():
                scan.deleted.append(row["id"])
            mask_path = masks_dir / row["mask_file"]
            try:
                st = mask_path.stat()
            except FileNotFoundError:
                scan.missing_masks.append(row["id"])
                continue
            if (st.st_mtime_ns, st.st_size) == (row["mask_mtime_ns"], row["mask_bytes"]):
                continue  # untouched since we last looked
            pixels = read_gray(mask_path)
            changed = pixels is None or mask_hash(pixels) != row["mask_hash"]
            if changed and row["mask_origin"] != "hand":
                scan.hand_masks.append(row["id"])
            elif not changed and row["mask_origin"] == "hand":
                scan.restored_masks.append(row["id"])
            scan.mask_stats[row["id"]] = (st.st_mtime_ns, st.st_size)
        return scan

    def apply_edits(self, set_name: str, scan: EditScan) -> None:
        """Record an EditScan in the index in one transaction."""
        db = self.read_db()
        if db is None:
            return
        with db:
            db.executemany("UPDATE faces SET dropped=1, drop_reason='deleted' WHERE id=?",
                           [(i,) for i in scan.deleted])
            db.executemany("UPDATE faces SET mask_origin='hand' WHERE id=?", [(i,) for i in scan.hand_masks])
            db.executemany("UPDATE faces SET mask_origin='hull' WHERE id=? AND mask_origin='hand'",
                           [(i,) for i in scan.restored_masks])
            db.executemany("UPDATE faces SET mask_mtime_ns=?, mask_bytes=? WHERE id=?",
                           [(m, b, i) for i, (m, b) in scan.mask_stats.items()])

    def sync_artist_edits(self, set_name: str) -> EditScan:
        scan = self.scan_artist_edits(set_name)
        self.apply_edits(set_name, scan)
        return scan

    def is_hand_mask(self, set_name: str, mask_file: str, recorded_hash: str | None) -> bool:
        """True when the mask on disk is not the one we wrote: never overwrite it.

        A mask with no recorded hash was left by an interrupted run, not by the artist.
        """
        pixels = read_gray(self.masks_dir(set_name) / mask_file)
        if pixels is None:
            return False
        return recorded_hash is not None and mask_hash(pixels) != recorded_hash


def dumps(value) -> str:
    """Compact JSON for arrays stored in the index (rounded to 1/1000 pixel)."""
    return json.dumps(np.round(np.asarray(value, dtype=np.float64), 3).tolist(), separators=(",", ":"))


def loads_array(text: str) -> np.ndarray:
    return np.asarray(json.loads(text), dtype=np.float64)
