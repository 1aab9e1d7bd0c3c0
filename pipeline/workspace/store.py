"""The on-disk workspace: versioned workspace.json, the SQLite face index, set folders.

This module owns every SQL statement and every read or write of workspace.json; stages
work with the types of ``pipeline.workspace.records``. Rules every stage relies on:

- Nothing is created until there is something to store, so a failed first run leaves
  no half-made workspace behind.
- The artist's files are the truth: ``scan_artist_edits`` finds aligned faces deleted
  by hand and masks repainted by hand; automatic steps never overwrite such a mask.
- Writes are atomic: json by temp file + rename, the index by SQLite transactions.
- One writer at a time (``lock.WorkspaceLock``); readers never write anything.
- A workspace of an older schema is read as it is and migrated, after a backup, when a
  writer opens it. File names read from the index must stay inside their folder.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from pipeline.core.errors import UserError
from pipeline.core.files import DiskFullError, confined, inside, is_disk_full, remove_quietly, write_atomic
from pipeline.core.images import read_gray
from pipeline.workspace.layout import (  # noqa: F401 - INDEX_NAME and META_NAME are read from here too
    INDEX_NAME, MASK_MODEL_DIR, META_NAME, MODEL_DIR, REPORT_DIR, STUDIO_DIR)
from pipeline.workspace.lock import WorkspaceLock
from pipeline.workspace.records import (
    FACE_COLUMNS, SETS, DropReason, FaceRow, FrameRow, MaskOrigin, SetMeta, face_from_sql, face_to_sql)
from pipeline.workspace.schema import MIGRATIONS, SCHEMA_VERSION, TABLES, upgrade_meta

log = logging.getLogger("workspace")

_REBUILD = ("run extract again for each set with the same --input (it rebuilds the index and keeps "
            "hand-edited masks and deleted faces)")
_EDITED = f"the index is damaged or was edited: restore it from a backup, or move {INDEX_NAME} aside and {_REBUILD}"
#: Every file and folder the stages keep in a workspace (relative to its root): each must stay inside it.
LAYOUT = (META_NAME, INDEX_NAME, f"{INDEX_NAME}-wal", f"{INDEX_NAME}-shm", ".lock", ".masks.lock", MODEL_DIR,
          MASK_MODEL_DIR, REPORT_DIR, STUDIO_DIR, f"{STUDIO_DIR}/trash",
          *(f"{folder}{part}" for s in SETS for folder in (f"data_{s}", f"{STUDIO_DIR}/trash/{s}")
            for part in ("", "/aligned", "/masks")))


def mask_hash(mask: np.ndarray) -> str:
    """Hash of the mask's pixels, not its bytes: re-saving without painting is no edit."""
    h = hashlib.sha256()
    h.update(f"{mask.shape[0]}x{mask.shape[1]}:".encode())
    h.update(np.ascontiguousarray(mask, dtype=np.uint8).tobytes())
    return h.hexdigest()[:32]


def _entries(folder: Path) -> dict[str, os.DirEntry[str]]:
    """A folder's entries by name, listed once (an edit scan looks up thousands); empty if it cannot be read.

    An entry that is no link is a file of that folder by construction: no name check needed.
    """
    try:
        with os.scandir(folder) as listing:
            return {e.name: e for e in listing}
    except OSError:
        return {}


def source_photo(meta: SetMeta, source: str, where: str) -> Path:
    """The photo named by a row's ``source``: a file of the set's --input folder, or a UserError.

    A tampered index must not make the studio serve, or masks export read, any other file
    of the machine, so the name must stay inside the input folder (links followed).
    """
    folder = Path(meta.input)
    if folder.is_file():               # one photo given as --input
        if source != folder.name:
            raise UserError(f"{where}: {source!r} is not the input photo {folder}; {_EDITED}")
        return folder
    return inside(folder, source, where, _EDITED)


@dataclass
class EditScan:
    """What the artist changed in a set since the index was written."""

    deleted: list[int] = field(default_factory=list)         # face ids whose aligned image is gone
    restored: list[int] = field(default_factory=list)        # deleted faces whose aligned image is back
    hand_masks: list[int] = field(default_factory=list)      # face ids with a repainted mask
    restored_masks: list[int] = field(default_factory=list)  # 'hand' masks back to the automatic pixels
    restored_learned: list[int] = field(default_factory=list)  # of those, the ones a mask model had written
    missing_masks: list[int] = field(default_factory=list)   # face ids whose mask file is gone
    mask_stats: dict[int, tuple[int, int]] = field(default_factory=dict)

    def applied(self, row: FaceRow, automatic: str) -> FaceRow:
        """``row`` as the artist left it (in memory): deleted -> dropped, repainted -> 'hand'."""
        changes: dict[str, Any] = {}
        if row.id in self.deleted:
            changes.update(dropped=True, drop_reason=DropReason.DELETED)
        elif row.id in self.restored:
            changes.update(dropped=False, drop_reason=None)
        if row.id in self.hand_masks:
            changes["mask_origin"] = MaskOrigin.HAND
        elif row.id in self.restored_masks:
            changes["mask_origin"] = MaskOrigin.LEARNED if row.id in self.restored_learned else MaskOrigin(automatic)
        return replace(row, **changes) if changes else row


class Workspace:
    """Handle on a workspace folder.

    ``write=True`` is for commands that change it (extract, train, migrate): they take
    the write lock and migrate an older schema. Readers (info, convert, evaluate) take
    no lock and write nothing. ``rebuild_index`` lets extract open a workspace whose
    index was deleted, to build it again.
    """

    def __init__(self, root: Path, write: bool = False, command: str = "", rebuild_index: bool = False) -> None:
        self.root = Path(root).absolute()
        self.meta_path = self.root / META_NAME
        self.db_path = self.root / INDEX_NAME
        self.write = write
        self._db: sqlite3.Connection | None = None
        self._in_txn = False
        self._resolved_dirs: dict[tuple[str, str], Path] = {}
        self.migrated_from: int | None = None
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"workspace {self.root} is a file, not a folder; pass --workspace DIR")
        self.check_layout()
        self._lock = WorkspaceLock(self.root, command or "a writer") if write else None
        if self._lock is not None and self.root.exists():
            self._lock.acquire()
        try:
            self._meta, self.file_version = self._read_meta()
            self._check_index(rebuild_index)
            if self.file_version < SCHEMA_VERSION and self.exists:
                if write:
                    self.migrate()
                else:
                    log.warning("note: workspace %s uses schema %d; it is read as it is and migrated to schema %d "
                                "the next time extract or train writes to it (or now: python main.py migrate "
                                "--workspace %s)", self.root, self.file_version, SCHEMA_VERSION, self.root)
        except BaseException:
            self.close()
            raise

    def check_layout(self) -> None:
        """Refuse a workspace whose own files or folders are links that lead out of it (see ``confined``)."""
        if not self.root.is_dir():
            return
        for name in LAYOUT:
            path = self.root / name
            if os.path.islink(path) or (path.exists() and name.count("/")):
                confined(self.root, path, "workspace entry")

    # ---------------------------------------------------------------- metadata
    def _read_meta(self) -> tuple[dict[str, Any], int]:
        if not self.meta_path.exists():
            return {"schema_version": SCHEMA_VERSION, "sets": {}}, SCHEMA_VERSION
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.meta_path} is not valid JSON ({exc}); restore it from a backup "
                            f"or move the workspace aside") from exc
        version = meta.get("schema_version") if isinstance(meta, dict) else None
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise UserError(f"{self.meta_path} has no schema_version; it is not a workspace of this tool")
        if version > SCHEMA_VERSION:
            raise UserError(f"workspace {self.root} was written by a newer version of this tool "
                            f"(schema {version}, this one reads up to {SCHEMA_VERSION}); "
                            f"upgrade the tool to use it")
        sets = meta.setdefault("sets", {})
        unknown = [name for name in sets if name not in SETS]
        if not isinstance(sets, dict) or unknown:
            raise UserError(f"{self.meta_path} lists unknown face sets {unknown}; only {', '.join(SETS)} exist: "
                            f"restore workspace.json from a backup")
        return upgrade_meta(meta, version), version

    def _check_index(self, rebuild: bool) -> None:
        """A missing or damaged index is one clear error (extract may rebuild a missing one)."""
        if not self.db_path.exists():
            if self._meta["sets"] and not rebuild:
                raise UserError(f"{self.db_path} is missing, but {META_NAME} lists set(s) "
                                f"{', '.join(self._meta['sets'])}: the index was deleted or moved; put it back, "
                                f"or {_REBUILD}")
            return
        with self._sql():
            self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        lost = [name for name in self._meta["sets"] if self.set_unindexed(name)]
        if lost and not rebuild:
            raise UserError(f"{self.db_path} has no faces of set(s) {', '.join(lost)} though {META_NAME} lists "
                            f"them (the index was replaced or rebuilt); {_REBUILD}")

    def set_unindexed(self, set_name: str) -> bool:
        """workspace.json lists the set but the index has no frame of it (index deleted or replaced)."""
        if set_name not in self._meta["sets"]:
            return False
        return not self._has_index() or not self._query("SELECT 1 FROM frames WHERE set_name=? LIMIT 1", (set_name,))

    def remove_stale_temp_files(self, set_name: str) -> int:
        """Temp files a killed run left in the set's folders (never the artist's files; writers only)."""
        count = 0
        for folder in (self.aligned_dir(set_name), self.masks_dir(set_name)):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    remove_quietly(tmp)
                    count += 1
        return count

    @property
    def index_missing(self) -> bool:
        """True when workspace.json lists sets but faces.sqlite is gone (only opened with rebuild_index)."""
        return bool(self._meta["sets"]) and not self.db_path.exists()

    @property
    def exists(self) -> bool:
        return self.meta_path.exists()

    def save_meta(self) -> None:
        self._meta["schema_version"] = SCHEMA_VERSION
        write_atomic(self.meta_path, (json.dumps(self._meta, indent=2, sort_keys=True) + "\n").encode())

    def set_meta(self, set_name: str) -> SetMeta | None:
        data = self._meta["sets"].get(set_name)
        return None if data is None else SetMeta.from_json(data)

    def put_set_meta(self, set_name: str, meta: SetMeta) -> None:
        """Record a set's metadata in workspace.json (atomically)."""
        self._meta["sets"][set_name] = meta.to_json()
        self.save_meta()

    def set_dir(self, set_name: str) -> Path:
        return self.root / f"data_{set_name}"

    def aligned_dir(self, set_name: str) -> Path:
        return self.set_dir(set_name) / "aligned"

    def masks_dir(self, set_name: str) -> Path:
        return self.set_dir(set_name) / "masks"

    def _where(self, row: FaceRow, column: str) -> str:
        return (f"{INDEX_NAME} row {row.id} ({row.set_name} {row.source} frame {row.frame_index} face "
                f"{row.face_index}), {column}")

    def _resolved(self, kind: str, set_name: str) -> Path:
        """A set's aligned/ or masks/ folder with links resolved, once per handle (thousands of names are checked)."""
        key = (kind, set_name)
        folder = self._resolved_dirs.get(key)
        if folder is None:
            folder = (self.set_dir(set_name) / kind).resolve()
            self._resolved_dirs[key] = folder
        return folder

    def _inside(self, kind: str, row: FaceRow, column: str) -> Path:
        """``inside`` for a name of the index, quick for the common case (edit scans check thousands).

        A plain file name (no separator) that is no link cannot lead out of the resolved
        folder; anything else gets ``inside``'s full check, and its error naming the row.
        """
        folder = self._resolved(kind, row.set_name)
        name = getattr(row, column)
        if (isinstance(name, str) and name and name not in (".", "..") and "\x00" not in name and os.sep not in name
                and (os.altsep is None or os.altsep not in name)):
            path = folder / name
            if path.parent == folder and not os.path.islink(path):
                return path
        return inside(folder, name, self._where(row, column), _EDITED)

    def aligned_path(self, row: FaceRow) -> Path:
        """The row's aligned image; UserError naming the row if its name leads out of aligned/."""
        return self._inside("aligned", row, "aligned_file")

    def mask_path(self, row: FaceRow) -> Path:
        return self._inside("masks", row, "mask_file")

    # ---------------------------------------------------------------- the index
    @contextlib.contextmanager
    def _sql(self) -> Iterator[None]:
        """SQLite errors as one line: a damaged index says how to rebuild it; a full disk says so.

        SQLite reports a full disk as "database or disk is full", or, when it cannot grow its
        WAL or shared-memory file (a reader too), as "disk I/O error": neither is damage, and
        moving a healthy index aside would throw away the artist's work. The batch being
        written is rolled back (the connection is closed), so the index is as it was.
        """
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise UserError(f"{self.db_path} is busy ({exc}): another program holds it; wait and run this "
                                f"again") from exc
            if is_disk_full(exc, self.root):
                self.close_db()
                raise DiskFullError(self.root, f"{INDEX_NAME} is as it was before this write (nothing of the "
                                               f"unfinished batch was stored)", INDEX_NAME) from exc
            raise self._damaged(exc) from exc
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc

    def _damaged(self, exc: Exception) -> UserError:
        self.close_db()
        return UserError(f"{self.db_path} is damaged ({exc}); move it aside (mv {self.db_path} "
                         f"{self.db_path}.bad) and {_REBUILD}")

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            if not self.write and not self.db_path.exists():
                raise UserError(f"{self.root} has no index yet; run 'python main.py extract' first")
            if not self.db_path.exists() and not self.root.exists():
                self.root.mkdir(parents=True)
            with self._sql():
                db = sqlite3.connect(self.db_path, isolation_level=None, timeout=30, check_same_thread=False)
                self._db = db
                db.row_factory = sqlite3.Row
                if self.write:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("PRAGMA synchronous=NORMAL")
                    db.executescript(TABLES)
        return self._db

    def _has_index(self) -> bool:
        return self.db_path.exists()

    def _query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        if not self._has_index():
            return []
        with self._sql():
            return self.db.execute(sql, params).fetchall()

    def close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
            self._in_txn = False

    def close(self) -> None:
        """Close the index (an uncommitted batch is rolled back) and release the write lock."""
        self.close_db()
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- creation, migration
    def create(self, set_name: str) -> None:
        """Make the folders, index and json; called once there is a first face to store."""
        self.aligned_dir(set_name).mkdir(parents=True, exist_ok=True)
        self.masks_dir(set_name).mkdir(parents=True, exist_ok=True)
        if self._lock is not None:
            self._lock.acquire()
        if not self.db_path.exists():
            for leftover in (self.root / f"{INDEX_NAME}-wal", self.root / f"{INDEX_NAME}-shm"):
                remove_quietly(leftover)      # of a deleted index: must not be replayed into a new one
        with self._sql():
            db = self.db
            db.executescript(TABLES)
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        if not self.meta_path.exists():
            self.save_meta()

    def migrate(self) -> bool:
        """Bring an older workspace to the current schema, after backing up both files; True if it did."""
        old = self.file_version
        if old >= SCHEMA_VERSION or not self.exists:
            return False
        backups = [confined(self.root, self.meta_path.with_name(f"{META_NAME}.v{old}.bak"), "backup")]
        if self._has_index():
            confined(self.root, self.db_path.with_name(f"{INDEX_NAME}.v{old}.bak"), "backup")
        write_atomic(backups[0], self.meta_path.read_bytes())
        raw = json.loads(self.meta_path.read_text())
        if self._has_index():
            backups.append(self.db_path.with_name(f"{INDEX_NAME}.v{old}.bak"))
            with self._sql():
                target = sqlite3.connect(backups[1])
                try:
                    self.db.backup(target)
                finally:
                    target.close()
                with self._transaction():
                    for version in range(old, SCHEMA_VERSION):
                        MIGRATIONS[version].index(self.db)
                    self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                                    (str(SCHEMA_VERSION),))
        for version in range(old, SCHEMA_VERSION):
            MIGRATIONS[version].meta(raw)
        self._meta = {**raw, "sets": raw.get("sets", {})}
        self.save_meta()
        self.file_version = SCHEMA_VERSION
        self.migrated_from = old
        log.info("workspace %s migrated from schema %d to %d (backups: %s)", self.root, old, SCHEMA_VERSION,
                 ", ".join(p.name for p in backups))
        return True

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._sql():
            self.db.execute("BEGIN")
            try:
                yield
            except BaseException:
                if self._db is not None:      # a full disk closed it already: the batch is rolled back
                    self._db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # ---------------------------------------------------------------- queries
    def faces(self, set_name: str, kept: bool = False, source: str | None = None,
              frame_index: int | None = None, geometry: bool = True) -> list[FaceRow]:
        """Faces of a set in source, frame, face order; ``kept`` leaves out dropped ones.

        ``geometry=False`` is for listing: rows without box, landmarks and transform (see
        ``records.face_from_sql``), several times quicker to read; they cannot be stored back.
        """
        sql = "SELECT * FROM faces WHERE set_name=?"
        params: list[Any] = [set_name]
        if kept:
            sql += " AND dropped=0"
        if source is not None:
            sql += " AND source=?"
            params.append(source)
        if frame_index is not None:
            sql += " AND frame_index=?"
            params.append(frame_index)
        rows = self._query(sql + " ORDER BY source, frame_index, face_index", tuple(params))
        out = []
        with self._sql():
            for r in rows:
                try:
                    out.append(face_from_sql(r, geometry))
                except (ValueError, TypeError, KeyError) as exc:   # a value no version of the tool writes
                    raise UserError(f"{INDEX_NAME} row {r['id']} ({set_name} {r['source']} frame {r['frame_index']}) "
                                    f"holds an invalid value ({exc}); {_EDITED}") from exc
        return out

    def face(self, set_name: str, face_id: int) -> FaceRow | None:
        """One face by its row id (None when the set has no such face)."""
        rows = self._query("SELECT * FROM faces WHERE set_name=? AND id=?", (set_name, face_id))
        return face_from_sql(rows[0]) if rows else None

    def frame_faces(self, set_name: str, source: str, frame_index: int) -> dict[int, FaceRow]:
        """The faces stored for one frame, by face index."""
        return {r.face_index: r for r in self.faces(set_name, source=source, frame_index=frame_index)}

    def names_taken(self, set_name: str, names: list[str], source: str, frame_index: int) -> set[str]:
        """Which of ``names`` another frame's face already uses as its aligned or mask file.

        Faces are named after their photo or frame, which is unique today; a set extracted by
        an older version used other names (the stem alone), and one of those may equal a
        name given now. A new face must never take a file another face's row points to.
        """
        if not names or not self._has_index():
            return set()
        marks = ",".join("?" * len(names))
        rows = self._query(f"SELECT aligned_file, mask_file FROM faces WHERE set_name=? AND NOT (source=? AND "
                           f"frame_index=?) AND (aligned_file IN ({marks}) OR mask_file IN ({marks}))",
                           (set_name, source, frame_index, *names, *names))
        return {n for r in rows for n in (r["aligned_file"], r["mask_file"])} & set(names)

    def frames(self, set_name: str) -> list[FrameRow]:
        rows = self._query("SELECT source, frame_index, status, faces FROM frames WHERE set_name=? "
                           "ORDER BY source, frame_index", (set_name,))
        return [FrameRow(r[0], r[1], r[2], r[3]) for r in rows]

    def done_frames(self, set_name: str) -> set[tuple[str, int]]:
        """(source, frame) pairs extract has finished (with or without faces)."""
        return {(r[0], r[1]) for r in self._query("SELECT source, frame_index FROM frames WHERE set_name=?",
                                                   (set_name,))}

    def next_track(self, set_name: str) -> int:
        rows = self._query("SELECT MAX(track) FROM faces WHERE set_name=?", (set_name,))
        value = rows[0][0] if rows else None
        return 0 if value is None else int(value) + 1

    # ---------------------------------------------------------------- writing frames
    def write_frame(self, set_name: str, source: str, frame_index: int, status: str, rows: list[FaceRow],
                    removed: list[FaceRow]) -> None:
        """Store one finished frame: its faces (insert or update), faces it no longer has, the frame.

        Runs in the open batch transaction (begun here if none is); ``commit`` ends it, so a
        frame counts as done exactly when its faces are stored.
        """
        cols = ", ".join(FACE_COLUMNS)
        marks = ", ".join("?" for _ in FACE_COLUMNS)
        updates = ", ".join(f"{c}=excluded.{c}" for c in FACE_COLUMNS)
        with self._sql():
            db = self.db
            if not self._in_txn:
                db.execute("BEGIN")
                self._in_txn = True
            db.executemany("DELETE FROM faces WHERE id=?", [(r.id,) for r in removed])
            db.executemany(f"INSERT INTO faces ({cols}) VALUES ({marks}) ON CONFLICT "
                           f"(set_name, source, frame_index, face_index) DO UPDATE SET {updates}",
                           [face_to_sql(r) for r in rows])
            db.execute("INSERT OR REPLACE INTO frames (set_name, source, frame_index, status, faces) "
                       "VALUES (?, ?, ?, ?, ?)", (set_name, source, frame_index, status, len(rows)))

    def commit(self) -> None:
        if self._in_txn and self._db is not None:
            with self._sql():
                self._db.execute("COMMIT")
            self._in_txn = False

    # ---------------------------------------------------------------- artist edits
    def scan_artist_edits(self, set_name: str, rows: list[FaceRow] | None = None) -> EditScan:
        """Compare the set's files with the index (read-only; ``apply_edits`` records it).

        ``rows``: the set's faces as just read (all of them), when the caller has them already.
        """
        scan = EditScan()
        aligned, masks = _entries(self.aligned_dir(set_name)), _entries(self.masks_dir(set_name))
        for row in rows if rows is not None else self.faces(set_name, geometry=False):
            assert row.id is not None
            if not row.dropped and not self._exists(aligned, "aligned", row, "aligned_file"):
                scan.deleted.append(row.id)
            elif (row.dropped and row.drop_reason == DropReason.DELETED
                  and self._exists(aligned, "aligned", row, "aligned_file")):
                scan.restored.append(row.id)       # the artist (or the studio) put the face back
            try:
                st = self._stat(masks, "masks", row, "mask_file")
            except FileNotFoundError:
                scan.missing_masks.append(row.id)
                continue
            if (st.st_mtime_ns, st.st_size) == (row.mask_mtime_ns, row.mask_bytes):
                continue  # untouched since we last looked
            pixels = read_gray(self.mask_path(row))
            changed = pixels is None or mask_hash(pixels) != row.mask_hash
            if changed and row.mask_origin != MaskOrigin.HAND:
                scan.hand_masks.append(row.id)
            elif not changed and row.mask_origin == MaskOrigin.HAND:
                scan.restored_masks.append(row.id)
                if row.mask_model:
                    scan.restored_learned.append(row.id)
            scan.mask_stats[row.id] = (st.st_mtime_ns, st.st_size)
        return scan

    def _exists(self, entries: dict[str, os.DirEntry[str]], kind: str, row: FaceRow, column: str) -> bool:
        """Whether the row's file is there: a plain entry of the folder's listing, else ``_inside`` and a look."""
        entry = entries.get(getattr(row, column))
        if entry is not None and not entry.is_symlink():
            return True
        return self._inside(kind, row, column).exists()

    def _stat(self, entries: dict[str, os.DirEntry[str]], kind: str, row: FaceRow, column: str) -> os.stat_result:
        """The row's file's stat, as ``_exists`` finds the file (FileNotFoundError when it is not there)."""
        entry = entries.get(getattr(row, column))
        if entry is not None and not entry.is_symlink():
            return entry.stat()
        return self._inside(kind, row, column).stat()

    def apply_edits(self, set_name: str, scan: EditScan) -> None:
        """Record an EditScan in the index in one transaction."""
        if not self._has_index():
            return
        automatic = self.automatic_mask_origin(set_name)
        with self._transaction():
            db = self.db
            db.executemany("UPDATE faces SET dropped=1, drop_reason=? WHERE id=?",
                           [(DropReason.DELETED.value, i) for i in scan.deleted])
            db.executemany("UPDATE faces SET dropped=0, drop_reason=NULL WHERE id=? AND drop_reason=?",
                           [(i, DropReason.DELETED.value) for i in scan.restored])
            db.executemany("UPDATE faces SET mask_origin=? WHERE id=?",
                           [(MaskOrigin.HAND.value, i) for i in scan.hand_masks])
            learned = set(scan.restored_learned)
            db.executemany("UPDATE faces SET mask_origin=? WHERE id=? AND mask_origin=?",
                           [(MaskOrigin.LEARNED.value if i in learned else automatic, i, MaskOrigin.HAND.value)
                            for i in scan.restored_masks])
            db.executemany("UPDATE faces SET mask_mtime_ns=?, mask_bytes=? WHERE id=?",
                           [(m, b, i) for i, (m, b) in scan.mask_stats.items()])

    def sync_artist_edits(self, set_name: str) -> EditScan:
        """Scan the artist's edits and record them (writers only)."""
        scan = self.scan_artist_edits(set_name)
        if self.write:
            self.apply_edits(set_name, scan)
        return scan

    def faces_as_edited(self, set_name: str, scan: EditScan | None = None, geometry: bool = True) -> list[FaceRow]:
        """The set's faces with the artist's edits on disk (``scan``) applied, without writing the index.

        The index is read once (for the scan too); ``geometry=False`` as in ``faces``.
        """
        rows = self.faces(set_name, geometry=geometry)
        scan = scan if scan is not None else self.scan_artist_edits(set_name, rows)
        automatic = self.automatic_mask_origin(set_name)
        return [scan.applied(row, automatic) for row in rows]

    def put_masks(self, updates: list[tuple[FaceRow, str, str, str | None]]) -> None:
        """Record masks just written: (row, origin, pixel hash, mask model hash), in one transaction.

        The file's stat is taken now, so the next scan sees these files as untouched.
        """
        values = []
        for row, origin, pixels_hash, model in updates:
            st = self.mask_path(row).stat()
            values.append((MaskOrigin(origin).value, pixels_hash, model, st.st_mtime_ns, st.st_size, row.id))
        with self._transaction():
            self.db.executemany("UPDATE faces SET mask_origin=?, mask_hash=?, mask_model=?, mask_mtime_ns=?, "
                                "mask_bytes=? WHERE id=?", values)

    def replace_mask_unless_painted(self, row: FaceRow, png: bytes) -> bool:
        """Write an automatic mask for ``row`` unless its file no longer holds the recorded pixels.

        Call it inside ``mask_guard.mask_writes(ws.root)``: the check and the write must not
        be split by another writer. False when the artist saved a mask since the index
        recorded this one (the file is then left as it is, to be recorded as hand work).
        """
        if self.is_hand_mask(row):
            return False
        write_atomic(self.mask_path(row), png)
        return True

    def automatic_mask_origin(self, set_name: str) -> str:
        meta = self.set_meta(set_name)
        return meta.extract.masker if meta is not None else MaskOrigin.HULL.value

    def is_hand_mask(self, row: FaceRow) -> bool:
        """True when the mask on disk is not the one we wrote: never overwrite it.

        A mask with no recorded hash was left by an interrupted run, not by the artist.
        """
        pixels = read_gray(self.mask_path(row))
        if pixels is None:
            return False
        return bool(row.mask_hash) and mask_hash(pixels) != row.mask_hash
