"""Training faces from the workspace: the content set (dst), the style set (src), N_best.

The artist's files are the truth: faces whose aligned image was deleted are not used,
and a repainted mask is used as painted. Everything is loaded once at the training
resolution (a few hundred faces fit easily in memory; the images are small).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.core import geometry
from pipeline.core.errors import UserError
from pipeline.core.images import ImageReadError, read_gray, read_rgb
from pipeline.faces.backends.base import Masker
from pipeline.faces.people import people
from pipeline.registries import MASKERS
from pipeline.workspace import layout
from pipeline.workspace.records import FaceRow, MaskOrigin
from pipeline.workspace.store import Workspace

log = logging.getLogger("train")


@dataclass
class FaceSet:
    """Aligned faces at the training resolution, as arrays ready for torch."""

    images: np.ndarray        # (N, R, R, 3) uint8 RGB
    masks: np.ndarray         # (N, R, R) uint8, 0..255
    landmarks: np.ndarray     # (N, 68, 2) float32, pixels of the R x R crop
    names: list[str]          # where each face came from (for previews and logs)
    descriptors: np.ndarray | None = None   # (N, 128) identity descriptors when all faces have one
    face_type: str = "full"
    hand_masks: int = 0
    # per face, for the chip warp (train.features): crop pixels (at R) per source-frame pixel,
    # and the stored aligned size over R (how much the resize to R averaged)
    source_scale: np.ndarray = field(default_factory=lambda: np.ones(0, np.float32))
    downscale: np.ndarray = field(default_factory=lambda: np.ones(0, np.float32))

    def __len__(self) -> int:
        return len(self.images)


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, R, R, 3) or (N, R, R) uint8 -> (N, C, R, R) float in [0, 1] on ``device``."""
    t = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    if t.ndim == 3:
        return t[:, None].float() / 255.0
    return t.permute(0, 3, 1, 2).float() / 255.0


def load_set(ws: Workspace, set_name: str, resolution: int, writer: bool = True, person: int | None = None) -> FaceSet:
    """Kept faces of one set (deleted ones are dropped first), resized to ``resolution``.

    ``writer`` records the artist's edits in the index; other training processes only
    read them. ``person`` (a number as info lists them; None = everyone): when the set
    shows several people, only that person's faces, so the net learns the face convert
    swaps and not the audience's.
    """
    meta = ws.set_meta(set_name)
    if meta is None:
        what = "the video to change" if set_name == "dst" else "photos or a video of the person to put in"
        raise UserError(f"workspace {ws.root} has no {set_name} faces; run 'python main.py extract --input "
                        f"PATH --set {set_name}' with {what} first")
    if writer:
        ws.sync_artist_edits(set_name)
        rows = ws.faces(set_name, kept=True)
    else:
        rows = [r for r in ws.faces_as_edited(set_name) if r.kept]
    if person is not None:
        rows = _person_rows(rows, person, set_name)
    masker: Masker = MASKERS.load(meta.extract.masker)()
    images, masks, points, names, descs, scales, downs = [], [], [], [], [], [], []
    hand = 0
    for row in rows:
        try:
            img = read_rgb(ws.aligned_path(row))
        except ImageReadError:
            continue   # deleted or unreadable since the sync: not used
        pts = geometry.transform_points(row.aligned_landmarks, geometry.resize_transform(img.shape[0], resolution))
        small = cv2.resize(img, (resolution, resolution), interpolation=cv2.INTER_AREA)
        mask = read_gray(ws.mask_path(row))
        if mask is None:           # mask deleted by the artist: the automatic one again
            dense = None if row.dense_landmarks is None else geometry.transform_points(
                row.dense_landmarks, geometry.compose(geometry.resize_transform(img.shape[0], resolution),
                                                      row.transform))
            mask = masker.mask(small, pts, resolution, dense)
        else:
            hand += row.mask_origin == MaskOrigin.HAND
            mask = cv2.resize(mask, (resolution, resolution), interpolation=cv2.INTER_AREA)
        images.append(small)
        masks.append(mask)
        points.append(pts)
        names.append(row.aligned_file)
        descs.append(row.descriptor)
        scales.append(geometry.similarity_scale(row.transform) * resolution / img.shape[0])
        downs.append(img.shape[0] / resolution)
    if not images:
        raise UserError(f"workspace {ws.root}: every {set_name} face is deleted or unreadable; "
                        f"re-run extract (with --force to restore deleted faces)")
    face_types = {r.face_type for r in rows}
    all_desc = np.stack([d for d in descs if d is not None]).astype(np.float32) \
        if all(d is not None for d in descs) else None
    return FaceSet(np.stack(images), np.stack(masks), np.stack(points).astype(np.float32), names,
                   all_desc, face_types.pop() if len(face_types) == 1 else "mixed", hand,
                   np.array(scales, np.float32), np.array(downs, np.float32))


def _person_rows(rows: list[FaceRow], person: int, set_name: str) -> list[FaceRow]:
    labels, found = people(rows)
    if person > max(len(found), 1):
        raise UserError(f"--person {person}: the {set_name} faces show {len(found)} "
                        f"{'person' if len(found) == 1 else 'people'}; 'python main.py info' lists them")
    if len(found) <= 1:
        return rows
    chosen = found[person - 1]
    log.info("train: the %s faces show %d people; training on person %d (%d faces, frames %d-%d), not on the %d "
             "other faces (--person N|all to choose)", set_name, len(found), person, len(chosen.rows),
             chosen.first_frame, chosen.last_frame, len(rows) - len(chosen.rows))
    return [rows[i] for i in chosen.rows]


def with_flips(faces: FaceSet) -> FaceSet:
    """The style set and its mirror images (the paper augments style images this way)."""
    r = faces.images.shape[1]
    flipped_pts = faces.landmarks[:, geometry.MIRROR_68].copy()
    flipped_pts[..., 0] = (r - 1) - flipped_pts[..., 0]
    return FaceSet(
        np.concatenate([faces.images, faces.images[:, :, ::-1]]),
        np.concatenate([faces.masks, faces.masks[:, :, ::-1]]),
        np.concatenate([faces.landmarks, flipped_pts]),
        faces.names + [f"{n} (flipped)" for n in faces.names],
        None if faces.descriptors is None else np.concatenate([faces.descriptors, faces.descriptors]),
        faces.face_type, faces.hand_masks, np.tile(faces.source_scale, 2), np.tile(faces.downscale, 2))


def nearest_styles(content_landmarks: np.ndarray, style_landmarks: np.ndarray, n_best: int) -> np.ndarray:
    """(N_content, n_best) indices of the style faces whose aligned landmarks are closest.

    Aligned landmarks share one frame, so the Euclidean distance between them compares
    pose and expression; the style patches taken at the same positions then match.
    """
    a = content_landmarks.reshape(len(content_landmarks), -1).astype(np.float64)
    b = style_landmarks.reshape(len(style_landmarks), -1).astype(np.float64)
    d2 = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T
    k = min(n_best, len(b))
    idx = np.argpartition(d2, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(d2, idx, axis=1).argsort(axis=1)
    return np.take_along_axis(idx, order, axis=1)


def load_training_sets(workspace: Path, resolution: int, content_extra: list[Path],
                       writer: bool = True, person: int | None = None) -> tuple[FaceSet, FaceSet]:
    """Content = dst faces (+ dst faces of other workspaces), style = src faces with flips.

    ``person``: the dst person to train on (``load_set``); the extra workspaces' dst faces are
    taken whole.
    """
    layout.require(workspace)
    with Workspace(workspace, write=writer, command="train") as ws:
        content = load_set(ws, "dst", resolution, writer, person)
        style = load_set(ws, "src", resolution, writer)
    for extra in content_extra:
        if not layout.is_workspace(extra):
            raise UserError(f"--content-extra {extra} is not a workspace (no workspace.json); give the folder "
                            f"of a workspace with extracted dst faces")
        with Workspace(extra, write=writer, command="train") as other:
            more = load_set(other, "dst", resolution, writer)
        if more.face_type != content.face_type:
            raise UserError(f"--content-extra {extra}: its dst faces are '{more.face_type}' crops but this "
                            f"workspace's are '{content.face_type}'; use workspaces extracted with the same "
                            f"--face-type")
        content = FaceSet(np.concatenate([content.images, more.images]), np.concatenate([content.masks, more.masks]),
                          np.concatenate([content.landmarks, more.landmarks]), content.names + more.names,
                          None, content.face_type, content.hand_masks + more.hand_masks,
                          np.concatenate([content.source_scale, more.source_scale]),
                          np.concatenate([content.downscale, more.downscale]))
    if content.face_type != style.face_type:
        raise UserError(f"dst faces are '{content.face_type}' crops but src faces '{style.face_type}'; extract both "
                        f"sets with the same --face-type (add --force to re-extract one)")
    return content, with_flips(style)


#: Fewest hand-painted masks ``masks train`` starts with (a few dozen across the shot is better).
MIN_HAND_MASKS = 2
#: Faces without a hand mask kept as texture for synthetic occluders and for previews.
POOL_SIZE = 64


def _small_faces(ws: Workspace, rows: list, resolution: int, with_masks: bool) -> tuple[list, list, list]:
    images, masks, names = [], [], []
    for row in rows:
        try:
            img = read_rgb(ws.aligned_path(row))
        except ImageReadError:
            continue
        mask = read_gray(ws.mask_path(row)) if with_masks else None
        if with_masks and mask is None:
            continue
        images.append(cv2.resize(img, (resolution, resolution), interpolation=cv2.INTER_AREA))
        if mask is not None:
            masks.append(cv2.resize(mask, (resolution, resolution), interpolation=cv2.INTER_AREA))
        names.append(f"{row.set_name}/{row.aligned_file}")
    return images, masks, names


def load_mask_sets(workspace: Path, resolution: int, seed: int = 0, writer: bool = True) -> tuple[FaceSet, FaceSet]:
    """(faces with a hand-painted mask, of both sets; up to POOL_SIZE other faces) for the mask segmenter."""
    layout.require(workspace)
    with Workspace(workspace, write=writer, command="masks train") as ws:
        hand: list = []
        others: list = []
        for set_name in ("dst", "src"):
            if ws.set_meta(set_name) is None:
                continue
            scan = ws.sync_artist_edits(set_name) if writer else ws.scan_artist_edits(set_name)
            missing = set(scan.missing_masks)
            for row in ws.faces_as_edited(set_name, scan):
                if row.dropped or row.id in missing:
                    continue
                (hand if row.mask_origin == MaskOrigin.HAND else others).append(row)
        face_types = {r.face_type for r in hand}
        if len(hand) < MIN_HAND_MASKS:
            raise UserError(f"workspace {ws.root} has {len(hand)} hand-painted mask(s); masks train needs at least "
                            f"{MIN_HAND_MASKS} (20 or more, from across the shot and covering what crosses the face, "
                            f"work best). Paint them in data_dst/masks/ (white = face, black = hands, hair, "
                            f"microphones, background; same file name and size) with any image editor, or bring "
                            f"them in with 'python main.py masks import DIR'")
        if len(face_types) > 1:
            raise UserError(f"the hand-painted masks are on faces of different face types "
                            f"({', '.join(sorted(face_types))}); a mask model learns one face type: extract both sets "
                            f"with the same --face-type")
        images, masks, names = _small_faces(ws, hand, resolution, with_masks=True)
        rng = np.random.default_rng(seed)
        picks = sorted(rng.choice(len(others), size=min(POOL_SIZE, len(others)), replace=False)) if others else []
        pool_images, _, pool_names = _small_faces(ws, [others[i] for i in picks], resolution, with_masks=False)
    if len(images) < MIN_HAND_MASKS:
        raise UserError(f"only {len(images)} of the {len(hand)} faces with hand-painted masks could be read (aligned "
                        f"image or mask unreadable); masks train needs at least {MIN_HAND_MASKS}")
    r = resolution
    face_type = face_types.pop()
    pool = FaceSet(np.stack(pool_images) if pool_images else np.zeros((0, r, r, 3), np.uint8),
                   np.zeros((len(pool_images), r, r), np.uint8), np.zeros((len(pool_images), 68, 2), np.float32),
                   pool_names, None, face_type)
    return FaceSet(np.stack(images), np.stack(masks), np.zeros((len(images), 68, 2), np.float32), names, None,
                   face_type, len(images)), pool
