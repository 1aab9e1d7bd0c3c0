"""``main.py masks export`` and ``masks import``: masks as plain PNG files for compositing tools.

Export writes, by default, one matte per frame at the frame's full size (``000123.png``
for frame 123 of a video set; the photo's name for a photo set): every kept face's mask
warped back through its stored transform, combined by maximum; frames without a face
get an all-black matte, so the sequence has no holes. ``--space aligned`` writes each
face's mask as stored instead, named as its aligned face.

Import reads either form back (told apart by the file names), cuts each matte into the
aligned crop of every face of its frame through the same transforms, and writes those
masks into the workspace. Imported masks are hand work: the edit scan records every one
whose pixels changed as ``hand``. A frame matte identical to what export would write now
is skipped, so exporting, editing a few frames and importing the whole folder back
marks only the edited frames' faces as hand-made.
"""
from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from masks.options import MaskExportOptions, MaskImportOptions
from pipeline.core import geometry
from pipeline.core.errors import UserError
from pipeline.core.files import write_atomic
from pipeline.core.images import ImageReadError, encode, list_images, read_gray, read_rgb
from pipeline.core.options import check
from pipeline.workspace import layout
from pipeline.workspace.mask_guard import mask_writes
from pipeline.workspace.records import FaceRow, MaskOrigin, SetMeta
from pipeline.workspace.store import Workspace, source_photo

log = logging.getLogger("masks")

_FRAME_NAME = re.compile(r"^(\d+)\.png$", re.IGNORECASE)


def _open_set(root: Path, set_name: str, write: bool, command: str) -> tuple[Workspace, SetMeta]:
    layout.require(root)
    ws = Workspace(root, write=write, command=command)
    meta = ws.set_meta(set_name)
    if meta is None:
        ws.close()
        raise UserError(f"workspace {ws.root} has no {set_name} faces; run 'python main.py extract --set {set_name}' "
                        f"first")
    return ws, meta


def _frame_size(meta: SetMeta, source: str) -> tuple[int, int]:
    """(height, width) of a frame of the set: the video's, or the photo's own."""
    if meta.kind == "video" and meta.video:
        return int(meta.video["height"]), int(meta.video["width"])
    try:
        image = read_rgb(source_photo(meta, source, f"photo {source!r} of the index"))
    except ImageReadError as exc:
        raise UserError(f"{exc}: a photo's matte is the photo's size, so the photo must be where the set was "
                        f"extracted from; put it back, or use --space aligned") from exc
    return image.shape[0], image.shape[1]


def _frame_key(meta: SetMeta, source: str, frame_index: int) -> str:
    return f"{frame_index:06d}.png" if meta.kind == "video" else f"{Path(source).stem}.png"


def _face_mask(ws: Workspace, row: FaceRow) -> np.ndarray:
    mask = read_gray(ws.mask_path(row))
    if mask is None:
        raise UserError(f"mask {ws.mask_path(row)} is missing or unreadable; run 'python main.py extract' again "
                        f"(it writes the automatic mask of every face whose mask is gone)")
    return mask


def frame_matte(ws: Workspace, rows: list[FaceRow], shape: tuple[int, int]) -> np.ndarray:
    """The frame's matte: each face's mask warped back to the frame, combined by maximum."""
    matte = np.zeros(shape, np.uint8)
    for row in rows:
        back = cv2.warpAffine(_face_mask(ws, row), geometry.invert_affine(row.transform), (shape[1], shape[0]),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        np.maximum(matte, back, out=matte)
    return matte


def _frames(ws: Workspace, set_name: str) -> dict[tuple[str, int], list[FaceRow]]:
    by_frame: dict[tuple[str, int], list[FaceRow]] = {(f.source, f.frame_index): [] for f in ws.frames(set_name)
                                                      if f.status == "ok"}
    for row in ws.faces_as_edited(set_name):
        if row.kept:
            by_frame.setdefault((row.source, row.frame_index), []).append(row)
    return by_frame


@dataclass
class ExchangeSummary:
    action: str
    files: int
    folder: Path
    detail: str = ""

    def line(self) -> str:
        return f"masks {self.action}: {self.files} files, {self.folder}" + (f"; {self.detail}" if self.detail else "")


def run_export(opts: MaskExportOptions) -> ExchangeSummary:
    """Write the set's masks as PNG files into ``opts.to``; the workspace is only read."""
    check(opts)
    ws, meta = _open_set(opts.workspace, opts.set_name, False, "masks export")
    with ws:
        if opts.space == "aligned":
            jobs = {ws.mask_path(r).name: (r.source, [r]) for r in ws.faces_as_edited(opts.set_name) if r.kept}
        else:
            jobs = {_frame_key(meta, s, i): (s, rows) for (s, i), rows in _frames(ws, opts.set_name).items()}
        out = Path(opts.to)
        if out.exists() and not out.is_dir():
            raise UserError(f"--to {out} is a file; give a folder")
        clash = [name for name in jobs if (out / name).exists()]
        if clash and not opts.overwrite:
            raise UserError(f"--to {out} already holds {len(clash)} of the files to write ({clash[0]}, ...); "
                            f"choose an empty folder or add --overwrite")
        out.mkdir(parents=True, exist_ok=True)
        sizes: dict[str, tuple[int, int]] = {}
        for name, (source, rows) in tqdm(jobs.items(), unit="file", desc="masks export", dynamic_ncols=True,
                                         mininterval=1.0):
            if opts.space == "aligned":
                mask = _face_mask(ws, rows[0])
            else:
                if source not in sizes:
                    sizes[source] = _frame_size(meta, source)
                mask = frame_matte(ws, rows, sizes[source])
            write_atomic(out / name, encode(mask, ".png"))
    what = "aligned face masks" if opts.space == "aligned" else "frame mattes (white = face)"
    return ExchangeSummary("export", len(jobs), out, what)


def run_import(opts: MaskImportOptions) -> ExchangeSummary:
    """Bring masks from ``opts.folder`` into the set; every changed face mask becomes ``hand``."""
    check(opts)
    folder = Path(opts.folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder; give the folder 'masks export' wrote (or one of PNG masks "
                        f"named the same way)")
    files = [p for p in list_images(folder) if p.suffix.lower() == ".png"]
    if not files:
        raise UserError(f"{folder} holds no PNG masks; export them with 'python main.py masks export --to {folder}'")
    # planned read-only, so a folder that fits nothing leaves the workspace as it was
    ws, meta = _open_set(opts.workspace, opts.set_name, False, "masks import")
    with ws:
        before = {r.id for r in ws.faces_as_edited(opts.set_name) if r.mask_origin == MaskOrigin.HAND}
        by_mask = {ws.mask_path(r).name.lower(): r for r in ws.faces_as_edited(opts.set_name) if r.kept}
        by_frame: dict[str, list[FaceRow]] = defaultdict(list)
        for (source, index), rows in _frames(ws, opts.set_name).items():
            by_frame[_frame_key(meta, source, index).lower()] = rows
        writes: list[tuple[FaceRow, np.ndarray]] = []
        unmatched, bad, unchanged = [], [], 0
        for path in tqdm(files, unit="file", desc="masks import", dynamic_ncols=True, mininterval=1.0):
            key = path.name.lower()
            pixels = read_gray(path)
            if pixels is None:
                bad.append(path.name)
                continue
            if key in by_mask:
                row = by_mask[key]
                if pixels.shape != (row.size, row.size):
                    pixels = cv2.resize(pixels, (row.size, row.size), interpolation=cv2.INTER_LINEAR)
                writes.append((row, pixels))
            elif _FRAME_NAME.match(path.name) or (meta.kind != "video" and key in by_frame):
                rows = by_frame.get(key)
                if rows is None:
                    unmatched.append(path.name)
                    continue
                if not rows:
                    continue                       # a frame without faces: nothing to cut
                shape = _frame_size(meta, rows[0].source)
                if pixels.shape != shape:
                    bad.append(f"{path.name} ({pixels.shape[1]}x{pixels.shape[0]}, frame {shape[1]}x{shape[0]})")
                    continue
                if np.array_equal(pixels, frame_matte(ws, rows, shape)):
                    unchanged += 1
                    continue
                for row in rows:
                    writes.append((row, cv2.warpAffine(pixels, row.transform, (row.size, row.size),
                                                       flags=cv2.INTER_LINEAR)))
            else:
                unmatched.append(path.name)
        if not writes and not unchanged:
            raise UserError(f"none of the {len(files)} PNG files in {folder} names a face or frame of set "
                            f"{opts.set_name} ({(unmatched or bad)[0]}, ...): files must be named as 'masks export' "
                            f"names them (frame 000123.png, or the aligned face's name)")
    writer, _ = _open_set(opts.workspace, opts.set_name, True, "masks import")
    with writer:
        writer.remove_stale_temp_files(opts.set_name)
        with mask_writes(writer.root):
            for row, pixels in writes:
                write_atomic(writer.mask_path(row), encode(pixels, ".png"))
        writer.sync_artist_edits(opts.set_name)
        after = {r.id for r in writer.faces(opts.set_name) if r.mask_origin == MaskOrigin.HAND}
    if unmatched:
        log.warning("warning: %d files name no face or frame of set %s and were skipped: %s", len(unmatched),
                    opts.set_name, ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else ""))
    if bad:
        log.warning("warning: %d files were unreadable or of the wrong size and were skipped: %s", len(bad),
                    ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else ""))
    detail = (f"{len(writes)} face masks written, {len(after - before)} newly hand-made, {len(after)} hand masks in "
              f"the set; {unchanged} mattes unchanged since export")
    return ExchangeSummary("import", len(files), folder, detail)
