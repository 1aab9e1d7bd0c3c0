"""``main.py masks apply``: the trained segmenter's mask for every face the artist did not paint.

Rules (the artist's files are the truth):
- a ``hand`` mask (painted, imported, or an edited learned one: the edit scan runs first)
  is never read for writing, never touched;
- every other mask of a kept face is replaced by the prediction, recorded as origin
  ``learned`` with the model's weights hash (``faces.mask_model``), its pixel hash and
  file stat, so a later edit of it is seen as hand work;
- resumable: a face whose learned mask came from this same model is skipped, so running
  it again after an interruption (or twice) does only what is left; after a retrain the
  hash differs and every learned mask is replaced.
Each mask file is written atomically and its row updated in a transaction per batch, under
the workspace's mask-write lock (``pipeline.workspace.mask_guard``): a mask the studio saves
while apply runs is skipped, never overwritten, and recorded as hand work.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from masks.options import MaskApplyOptions
from pipeline.core.errors import UserError
from pipeline.core.images import ImageReadError, encode, read_rgb
from pipeline.core.options import check
from pipeline.faces.backends.learned_mask import LearnedMasker
from pipeline.workspace import layout
from pipeline.workspace.mask_guard import mask_writes
from pipeline.workspace.records import FaceRow, MaskOrigin
from pipeline.workspace.store import Workspace, mask_hash

if TYPE_CHECKING:
    from pipeline.cluster.ray_cluster import Cluster

log = logging.getLogger("masks")


@dataclass
class ApplySummary:
    model: str
    written: dict[str, int] = field(default_factory=dict)
    hand_kept: dict[str, int] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        parts = [f"{s}: {self.written[s]} learned masks written, {self.hand_kept[s]} hand masks kept"
                 + (f", {self.current[s]} already from this model" if self.current[s] else "")
                 for s in self.written]
        total = sum(self.written.values())
        rate = total / self.seconds if self.seconds > 0 else 0.0
        tail = f"; {len(self.unreadable)} unreadable faces skipped" if self.unreadable else ""
        return f"masks apply ({self.model}): {'; '.join(parts)}{tail}; {self.seconds:.1f} s ({rate:.1f} faces/s)"


def _sets(ws: Workspace, choice: str) -> list[str]:
    names = ["dst", "src"] if choice == "both" else [choice]
    present = [s for s in names if ws.set_meta(s) is not None]
    if not present:
        raise UserError(f"workspace {ws.root} has no {' or '.join(names)} faces; run 'python main.py extract' first")
    return present


def _read(ws: Workspace, row: FaceRow) -> np.ndarray | None:
    try:
        return read_rgb(ws.aligned_path(row))
    except ImageReadError:
        return None


def run_apply(opts: MaskApplyOptions) -> ApplySummary:
    """Write learned masks into the workspace (see the module docstring for what is kept).

    With ``--ray`` the segmenter runs on a Ray cluster (``masks.cluster``) and this process
    writes the masks; the cluster is joined before the workspace is opened.
    """
    check(opts)
    if opts.ray is None:
        return _run_apply(opts, None)
    from pipeline.cluster.ray_cluster import connect
    with connect(opts.ray, opts.device) as cluster:
        return _run_apply(opts, cluster)


def _run_apply(opts: MaskApplyOptions, cluster: Cluster | None) -> ApplySummary:
    started = time.perf_counter()
    root = Path(opts.workspace)
    layout.require(root)
    masker = LearnedMasker(layout.mask_model_dir(root), opts.device, opts.batch_size)
    log.info("masks: %s", masker.describe())
    summary = ApplySummary(masker.hash)
    with Workspace(root, write=True, command="masks apply") as ws:
        sets = _sets(ws, opts.set_name)
        for set_name in sets:
            face_type = ws.set_meta(set_name).extract.face_type     # type: ignore[union-attr]
            if face_type != masker.face_type:
                raise UserError(f"the mask model in {layout.mask_model_dir(root)} learned '{masker.face_type}' faces "
                                f"but "
                                f"the {set_name} set holds '{face_type}' faces; train a mask model on this "
                                f"workspace ('python main.py masks train --fresh') or apply it to a workspace "
                                f"extracted with --face-type {masker.face_type}")
        for set_name in sets:
            if cluster is None:
                _apply_set(ws, set_name, masker, opts.batch_size, summary)
            else:
                _apply_set_on_cluster(ws, set_name, masker, opts, summary, cluster)
    summary.seconds = time.perf_counter() - started
    return summary


def _todo(ws: Workspace, set_name: str, masker: LearnedMasker, summary: ApplySummary) -> list[FaceRow]:
    """The kept faces whose mask is neither the artist's nor already this model's (counted in ``summary``)."""
    ws.remove_stale_temp_files(set_name)
    ws.sync_artist_edits(set_name)
    rows = ws.faces(set_name, kept=True)
    hand = [r for r in rows if r.mask_origin == MaskOrigin.HAND]
    current = [r for r in rows if r.mask_origin == MaskOrigin.LEARNED and r.mask_model == masker.hash
               and ws.mask_path(r).is_file()]
    done = {r.id for r in hand} | {r.id for r in current}
    summary.hand_kept[set_name], summary.current[set_name], summary.written[set_name] = len(hand), len(current), 0
    return [r for r in rows if r.id not in done]


def _write(ws: Workspace, set_name: str, masker: LearnedMasker, ok: list[tuple[FaceRow, np.ndarray, bytes]],
           summary: ApplySummary) -> None:
    """Predicted masks written and recorded, under the mask-write lock; a mask the studio saved meanwhile is
    skipped, never overwritten."""
    with mask_writes(ws.root):
        written = [(row, m) for row, m, png in ok if ws.replace_mask_unless_painted(row, png)]
        ws.put_masks([(row, MaskOrigin.LEARNED.value, mask_hash(m), masker.hash) for row, m in written])
    summary.written[set_name] += len(written)
    summary.hand_kept[set_name] += len(ok) - len(written)


def _apply_set_on_cluster(ws: Workspace, set_name: str, masker: LearnedMasker, opts: MaskApplyOptions,
                          summary: ApplySummary, cluster: Cluster) -> None:
    from masks.cluster import predict_on_cluster
    todo = _todo(ws, set_name, masker, summary)
    if todo:
        for results in predict_on_cluster(cluster, ws, set_name, todo, masker, layout.mask_model_dir(ws.root),
                                          opts.batch_size, opts.shard_frames):
            summary.unreadable += [row.aligned_file for row, m, _ in results if m is None]
            _write(ws, set_name, masker, [(row, m, png) for row, m, png in results if m is not None and png],
                   summary)
    ws.sync_artist_edits(set_name)


def _apply_set(ws: Workspace, set_name: str, masker: LearnedMasker, batch: int, summary: ApplySummary) -> None:
    todo = _todo(ws, set_name, masker, summary)
    chunks = [todo[i:i + batch] for i in range(0, len(todo), batch)]

    def read_chunk(chunk: list[FaceRow]) -> list[np.ndarray | None]:
        return [_read(ws, r) for r in chunk]

    with ThreadPoolExecutor(2, thread_name_prefix="masks-io") as io, \
            tqdm(total=len(todo), unit="face", desc=f"masks apply {set_name}", dynamic_ncols=True,
                 mininterval=1.0) as bar:
        ahead = [io.submit(read_chunk, c) for c in chunks[:1]]
        for i, chunk in enumerate(chunks):
            faces = ahead.pop().result()
            if i + 1 < len(chunks):       # decode the next batch while the network runs
                ahead.append(io.submit(read_chunk, chunks[i + 1]))
            ok = [(r, f) for r, f in zip(chunk, faces) if f is not None]
            summary.unreadable += [r.aligned_file for r, f in zip(chunk, faces) if f is None]
            predicted = masker.masks([f for _, f in ok])
            pngs = list(io.map(lambda m: encode(m, ".png"), predicted))
            _write(ws, set_name, masker, [(row, m, png) for (row, _), m, png in zip(ok, predicted, pngs)], summary)
            bar.update(len(chunk))
    ws.sync_artist_edits(set_name)         # masks painted while this ran are recorded as hand work now
