"""Consent records: who agreed to the use of their face, when, and the SHA-256 of the signed document.

Stored in the workspace as ``consent_records.json`` (written atomically, under the workspace's
write lock); the document itself is copied into ``consent/`` only when the artist asks
(``--copy``), because a release form holds personal data a shared workspace should not
carry by default. Nothing is ever refused for want of consent: the artist decides; convert
says when none was recorded, and the manifest states whether one was (the document hashes
and dates, never the names: the manifest travels with the video, the names stay here).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, BinaryIO

from pipeline.core.errors import UserError
from pipeline.core.files import remove_quietly, write_atomic
from pipeline.workspace.lock import WorkspaceLock

CONSENT_FILE = "consent_records.json"
CONSENT_DIR = "consent"
SETS = ("src", "dst")


def consent_path(root: Path) -> Path:
    return Path(root) / CONSENT_FILE


def read_records(root: Path) -> list[dict[str, Any]]:
    """The workspace's consent records (none when it has no ``consent_records.json``)."""
    path = consent_path(root)
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        records = data["records"]
        if not isinstance(records, list):
            raise TypeError("records is not a list")
        return records
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"consent record {path} is damaged ({err}); restore it from your backup or remove it "
                        f"and record the consent again") from err


def _document_hash(path: Path) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def _copy_into(document: Path, fh: BinaryIO) -> None:
    with open(document, "rb") as source:
        shutil.copyfileobj(source, fh)


def add_record(root: Path, face_set: str, name: str, document: Path, copy: bool) -> dict[str, Any]:
    """Record that ``name`` agreed for ``face_set``, with ``document``'s hash (and a copy when ``copy``)."""
    if face_set not in SETS:
        raise UserError(f"--set {face_set}: consent is recorded for the src or the dst person")
    name = name.strip()
    if not name:
        raise UserError("--name is empty; give the name of the person who agreed")
    if not document.is_file():
        raise UserError(f"consent document {document} is not a file; give the signed release (PDF, scan, ...)")
    try:
        digest, size = _document_hash(document)
    except OSError as err:
        raise UserError(f"consent document {document} cannot be read ({err.strerror}); check the file") from err
    with WorkspaceLock(Path(root), "consent add"):
        records = read_records(root)
        record: dict[str, Any] = {
            "set": face_set, "name": name,
            "recorded_at": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
            "document": {"name": document.name, "sha256": digest, "bytes": size, "copy": None}}
        copied: Path | None = None
        try:
            if copy:
                folder = Path(root) / CONSENT_DIR
                copied = folder / f"{digest[:16]}{document.suffix.lower()}"
                folder.mkdir(exist_ok=True)
                if not copied.exists():
                    write_atomic(copied, lambda fh: _copy_into(document, fh))
                else:
                    copied = None           # the same document, copied before: keep it
                record["document"]["copy"] = f"{CONSENT_DIR}/{digest[:16]}{document.suffix.lower()}"
            text = json.dumps({"version": 1, "records": records + [record]}, indent=2) + "\n"
            write_atomic(consent_path(root), text.encode())
        except OSError as err:
            if copied is not None:
                remove_quietly(copied)
            raise UserError(f"could not write the consent record in {root} ({err.strerror}); the workspace is "
                            f"unchanged") from err
    return record


def summary(root: Path) -> dict[str, Any]:
    """Consent as the manifest and the .dfm metadata state it: recorded or not, per set, hashes and dates only."""
    records = read_records(root)
    return {"recorded": bool(records),
            "sets": sorted({str(r.get("set")) for r in records}),
            "documents": [{"set": r.get("set"), "sha256": (r.get("document") or {}).get("sha256"),
                           "recorded_at": r.get("recorded_at")} for r in records]}
