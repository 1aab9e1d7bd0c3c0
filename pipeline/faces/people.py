"""People, not faces: a set's faces grouped into the persons they show.

A face track (one person between cuts, as extract follows them) is one unit: its faces
are one person however their descriptors wander with pose and light. Units are then
joined by identity with average linkage: two groups are one person when the mean of
all distances between their faces, weighted by face quality, is under ``SAME_PERSON``.
Unlike joining whatever lies near a group's mean (which chained the people of a stage
clip into one: A near B, B near C, so A, B and C merged), a group only absorbs another
that is close to it on the whole. Photo faces (no track) are units of one face.

Cost: each track votes with at most ``FACES_PER_TRACK`` of its best faces, so the face
distances stay bounded however long the video; merging updates one row of a unit
distance matrix per join (Lance-Williams), so thousands of units take well under a
second or two.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import UserError
from pipeline.faces.identity import SAME_PERSON
from pipeline.workspace.records import NO_GEOMETRY, FaceRow

__all__ = ["SAME_PERSON", "FACES_PER_TRACK", "Person", "group", "parse_person", "people", "quality"]
#: faces of one track that vote in the identity distances (its best by quality)
FACES_PER_TRACK = 24
#: face width (source pixels) from which a descriptor is as good as it gets (dlib's chip is 150 px)
FULL_SIZE = 150.0


def group(descriptors: np.ndarray, units: Sequence[Hashable | None] | None = None,
          weights: np.ndarray | None = None, threshold: float = SAME_PERSON,
          order: Sequence[Hashable] | None = None, positions: Sequence[int] | None = None) -> np.ndarray:
    """Person label per face (0 = the largest person), joining units by average linkage.

    ``units``: per face, the key of the unit it belongs to (a track), or None for a face
    that is a unit alone; without it every face is its own unit. ``weights``: per face,
    how much its descriptor counts (quality); default 1. ``order``: per face, a key such
    as (source, frame): people are numbered by how many distinct keys they have (most
    frames first), ties and the default by face count. ``positions``: per face, its frame
    index, the order in which a unit's faces are checked for a change of person (default:
    the order given). Why: callers with tracks get people that do not chain; callers
    without still get a rule that does not chain.

    A track is split where its faces change person: extract follows a face by its box, and
    at a hard cut to someone else in the same place the track goes on. A split at the wrong
    place costs nothing, since average linkage joins the parts again when they are close.
    """
    x = np.asarray(descriptors, dtype=np.float64)
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=int)
    if x.ndim != 2:
        raise UserError(f"face descriptors must be a 2-D array (faces x 128), got shape {x.shape}")
    if units is not None and len(units) != n:
        raise UserError(f"{len(units)} track keys for {n} face descriptors; give one per face")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise UserError(f"face weights must be {n} positive numbers, one per face")
    if not np.all(np.isfinite(x)):
        raise UserError("face descriptors hold NaN or infinite values; re-extract the set")
    unit_of = _unit_index(units, n)
    if units is not None:
        unit_of = _split_at_changes(x, unit_of, np.arange(n) if positions is None else np.asarray(positions),
                                    threshold)
    members = _voters(unit_of, w)
    dist, unit_weight = _unit_distances(x, w, members)
    labels = _agglomerate(dist, unit_weight, threshold)[unit_of]
    return _largest_first(labels, order)


def _unit_index(units: Sequence[Hashable | None] | None, n: int) -> np.ndarray:
    if units is None:
        return np.arange(n)
    index: dict[Hashable, int] = {}
    out = np.empty(n, dtype=int)
    for i, key in enumerate(units):
        if key is None:
            out[i] = len(index)
            index[("face", i)] = out[i]
        else:
            out[i] = index.setdefault(("unit", key), len(index))
    return out


#: faces on each side of a place in a track whose means are compared to find a change of person
CHANGE_WINDOW = 6


def _split_at_changes(x: np.ndarray, unit_of: np.ndarray, positions: np.ndarray, threshold: float) -> np.ndarray:
    """``unit_of`` with each unit cut where the mean descriptor of the faces before a place and
    of those after it are ``threshold`` or more apart (the strongest such place within a window)."""
    out = unit_of.copy()
    next_unit = int(unit_of.max()) + 1
    order = np.lexsort((positions, unit_of))
    bounds = np.flatnonzero(np.diff(unit_of[order])) + 1
    k = CHANGE_WINDOW
    for members in np.split(order, bounds):
        m = len(members)
        if m < 4:
            continue
        c = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x[members], axis=0)])
        j = np.arange(2, m - 1)                     # cut before face j: at least 2 faces on each side
        lo, hi = np.maximum(j - k, 0), np.minimum(j + k, m)
        left = (c[j] - c[lo]) / (j - lo)[:, None]
        right = (c[hi] - c[j]) / (hi - j)[:, None]
        score = np.linalg.norm(left - right, axis=1)
        cuts = [int(j[i]) for i in range(len(j)) if score[i] >= threshold
                and score[i] == score[max(0, i - k):i + k + 1].max()]
        for start, stop in zip(cuts, cuts[1:] + [m]):
            out[members[start:stop]] = next_unit
            next_unit += 1
    return out


def _voters(unit_of: np.ndarray, w: np.ndarray) -> list[np.ndarray]:
    """Per unit, the faces whose descriptors vote: all, or the ``FACES_PER_TRACK`` of highest weight."""
    order = np.lexsort((-w, unit_of))
    bounds = np.flatnonzero(np.diff(unit_of[order])) + 1
    return [m[:FACES_PER_TRACK] for m in np.split(order, bounds)]


def _unit_distances(x: np.ndarray, w: np.ndarray, members: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(units x units weighted mean face distance, per unit its voters' total weight)."""
    voters = np.concatenate(members)
    sizes = np.array([len(m) for m in members])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    xv, wv = x[voters], w[voters]
    sq = (xv ** 2).sum(1)
    unit_weight = np.add.reduceat(wv, starts)
    u = len(members)
    dist = np.empty((u, u), dtype=np.float64)
    # rows in blocks of whole units: a block's faces against every voter, summed per unit pair
    first = 0
    while first < u:
        last, rows = first, 0
        while last < u and (rows == 0 or rows + sizes[last] <= 2048):
            rows += sizes[last]
            last += 1
        lo, hi = starts[first], starts[first] + rows
        d2 = sq[lo:hi, None] + sq[None, :] - 2.0 * xv[lo:hi] @ xv.T
        d = np.sqrt(np.maximum(d2, 0.0)) * wv[lo:hi, None] * wv[None, :]
        per_col = np.add.reduceat(d, starts, axis=1)
        dist[first:last] = np.add.reduceat(per_col, starts[first:last] - lo, axis=0)
        first = last
    dist /= unit_weight[:, None] * unit_weight[None, :]
    return dist, unit_weight


def _agglomerate(dist: np.ndarray, weight: np.ndarray, threshold: float) -> np.ndarray:
    """Average-linkage joins of the closest pair while it is under ``threshold``; label per unit.

    The merged group's distance to any other is the weighted mean of its parts' (exact for
    average linkage), so one row is updated per join; each unit keeps its nearest
    neighbour, recomputed only when that neighbour took part in the join.
    """
    u = len(dist)
    d = dist.astype(np.float64, copy=True)
    np.fill_diagonal(d, np.inf)
    weight = weight.astype(np.float64, copy=True)
    label = np.arange(u)
    nn = d.argmin(axis=1)
    nn_d = d[np.arange(u), nn]
    while u > 1:
        a = int(nn_d.argmin())
        if not nn_d[a] < threshold:
            break
        b = int(nn[a])
        a, b = min(a, b), max(a, b)
        row = (weight[a] * d[a] + weight[b] * d[b]) / (weight[a] + weight[b])
        row[a] = np.inf
        d[a], d[:, a] = row, row
        d[b], d[:, b] = np.inf, np.inf
        weight[a] += weight[b]
        label[label == b] = a
        nn_d[b] = np.inf
        stale = np.flatnonzero((nn == a) | (nn == b))
        stale = stale[np.isfinite(nn_d[stale])]
        stale = np.union1d(stale, [a])
        nn[stale] = d[stale].argmin(axis=1)
        nn_d[stale] = d[stale, nn[stale]]
        closer = row < nn_d
        nn[closer], nn_d[closer] = a, row[closer]
    return label


def _largest_first(labels: np.ndarray, order: Sequence[Hashable] | None) -> np.ndarray:
    ids, dense = np.unique(labels, return_inverse=True)
    faces = np.bincount(dense, minlength=len(ids))
    if order is not None:
        seen: list[set] = [set() for _ in ids]
        for lab, key in zip(dense, order):
            seen[lab].add(key)
        frames = np.array([len(s) for s in seen])
    else:
        frames = faces
    rank = np.lexsort((np.arange(len(ids)), -faces, -frames))
    remap = np.empty(len(ids), dtype=int)
    remap[rank] = np.arange(len(ids))
    return remap[dense]


# ---------------------------------------------------------------------- from index rows


def _finite(value: object) -> float | None:
    """``value`` as a finite float, or None: an index cell edited by hand may hold text or nothing."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    return float(value) if np.isfinite(value) else None


def quality(row: FaceRow, blur_scale: float | None = None) -> float:
    """How much a face's descriptor counts: its size, how frontal it is, how sharp (0.05..1).

    A small, turned or blurred face gives a descriptor that drifts from the person's own,
    so it should sway the vote less than a large frontal one. Rows read without their
    geometry have no box: size then counts as full.
    """
    q = 1.0
    if row.bbox is not NO_GEOMETRY and len(row.bbox) == 4:
        left, right = _finite(row.bbox[0]), _finite(row.bbox[2])
        if left is not None and right is not None:
            q *= float(np.clip((right - left) / FULL_SIZE, 0.1, 1.0))
    yaw, blur = _finite(row.yaw), _finite(row.blur)
    if yaw is not None:
        q *= float(np.clip(np.cos(np.radians(yaw)), 0.25, 1.0))
    if blur is not None and blur_scale:
        q *= float(np.clip(blur / blur_scale, 0.25, 1.0))
    return max(q, 0.05)


@dataclass
class Person:
    """One person of a set: their faces (row indices) and where in the video they are."""

    number: int                 # 1 = the person with the most frames
    rows: list[int]             # indices into the rows given to ``people``
    frames: int                 # distinct (source, frame) they appear in
    first_frame: int
    last_frame: int
    best: int                   # index of their best face (quality, then size): the thumbnail


def people(rows: Sequence[FaceRow], threshold: float = SAME_PERSON) -> tuple[np.ndarray, list[Person]]:
    """(person index per row, -1 for a face no descriptor places; the people, largest first).

    Faces of one track are one person; a face without a descriptor takes its track's
    person. Pass the kept rows: dropped faces are nobody's.
    """
    labels = np.full(len(rows), -1, dtype=int)
    with_desc = [i for i, r in enumerate(rows) if r.descriptor is not None]
    if not with_desc:
        return labels, []
    blurs = [b for b in (_finite(r.blur) for r in rows) if b is not None and b > 0]
    blur_scale = float(np.median(blurs)) if blurs else None
    units = [_track_key(rows[i]) for i in with_desc]
    labels[with_desc] = group(np.stack([rows[i].descriptor for i in with_desc]),  # type: ignore[misc]
                              units, np.array([quality(rows[i], blur_scale) for i in with_desc]), threshold,
                              [(rows[i].source, rows[i].frame_index) for i in with_desc],
                              [rows[i].frame_index for i in with_desc])
    _place_without_descriptor(rows, labels)
    # renumber by frames over every placed face (descriptor-less ones included)
    placed = [int(i) for i in np.flatnonzero(labels >= 0)]
    labels[placed] = _largest_first(labels[placed], [(rows[i].source, rows[i].frame_index) for i in placed])
    found: list[Person] = []
    for p in range(int(labels.max()) + 1):
        idx = [int(i) for i in np.flatnonzero(labels == p)]
        frames = [rows[i].frame_index for i in idx]
        best = max(idx, key=lambda i: (quality(rows[i], blur_scale), _width(rows[i]), -i))
        found.append(Person(p + 1, idx, len({(rows[i].source, rows[i].frame_index) for i in idx}),
                            min(frames), max(frames), best))
    return labels, found


def parse_person(value: str | None) -> int | None:
    """``--person`` of convert and train: a person's number (1 = most frames; also the default), None for all."""
    if value is None:
        return 1
    if value.strip().lower() == "all":
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise UserError(f"--person {value}: give a person's number (1 = the person in the most frames, as "
                        f"'python main.py info' lists them) or all")
    return int(value)


def _place_without_descriptor(rows: Sequence[FaceRow], labels: np.ndarray) -> None:
    """A face without a descriptor takes the person of the nearest face (by frame) of its track."""
    placed: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for i, r in enumerate(rows):
        key = _track_key(r)
        if key is not None and labels[i] >= 0:
            placed.setdefault(key, []).append((r.frame_index, int(labels[i])))
    for i, r in enumerate(rows):
        key = _track_key(r)
        if labels[i] < 0 and key in placed:
            labels[i] = min(placed[key], key=lambda fl: abs(fl[0] - r.frame_index))[1]


def _track_key(row: FaceRow) -> tuple[str, int] | None:
    return None if row.track is None else (row.source, row.track)


def _width(row: FaceRow) -> float:
    if row.bbox is NO_GEOMETRY or len(row.bbox) != 4:
        return 0.0
    left, right = _finite(row.bbox[0]), _finite(row.bbox[2])
    return right - left if left is not None and right is not None else 0.0
