"""``masks apply --ray``: the segmenter run over the faces on a Ray cluster; the masks written here.

The unit is a face, not a frame: the faces still to do are cut into shards (``--shard-frames``
faces each), a worker reads their aligned images from the workspace (at the same path on
every node), predicts with the same segmenter and sends back each mask and its png. The
driver writes every mask file and row under the mask-write lock, exactly as one machine
does, so a mask painted in the studio meanwhile is still never overwritten, and it is the
only writer of ``faces.sqlite``. A shard's masks are committed when it arrives: a rerun
after a killed driver skips them (they are learned masks of this model already).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.core.errors import UserError
from pipeline.core.images import ImageReadError, encode, read_rgb
from pipeline.faces.backends.learned_mask import LearnedMasker
from pipeline.workspace.records import FaceRow
from pipeline.workspace.store import Workspace

if TYPE_CHECKING:
    from pipeline.cluster.ray_cluster import Cluster, Lane, Shard


@dataclass
class MaskSpec:
    model_dir: Path
    model_hash: str
    device: str
    batch: int


_MASKERS: dict[tuple, LearnedMasker] = {}


def mask_shard(spec: MaskSpec, shard: Shard, faces: list[tuple[int, str]]
               ) -> list[tuple[int, np.ndarray | None, bytes | None]]:
    """Run on a worker: (face id, mask or None when its aligned image cannot be read, png) for each face."""
    key = (str(spec.model_dir), spec.model_hash, spec.device, spec.batch)
    masker = _MASKERS.get(key)
    if masker is None:
        _MASKERS.clear()
        masker = _MASKERS[key] = LearnedMasker(spec.model_dir, spec.device, spec.batch)
    if masker.hash != spec.model_hash:
        raise UserError(f"the mask model in {spec.model_dir} changed while masks apply ran; run it again")
    out: list[tuple[int, np.ndarray | None, bytes | None]] = []
    for i in range(0, len(faces), spec.batch):
        chunk = faces[i:i + spec.batch]
        images: list[np.ndarray | None] = []
        for _, path in chunk:
            try:
                images.append(read_rgb(Path(path)))
            except ImageReadError:
                images.append(None)
        predicted = iter(masker.masks([im for im in images if im is not None]))
        for (face_id, _), image in zip(chunk, images):
            if image is None:
                out.append((face_id, None, None))
            else:
                mask = next(predicted)
                out.append((face_id, mask, encode(mask, ".png")))
    return out


def predict_on_cluster(cluster: Cluster, ws: Workspace, set_name: str, todo: list[FaceRow], masker: LearnedMasker,
                       model_dir: Path, batch: int, shard_faces: int | None
                       ) -> Iterator[list[tuple[FaceRow, np.ndarray | None, bytes | None]]]:
    """Per shard, in order: each face of ``todo`` with its predicted mask and png (None, None: unreadable).
    The workers' device is the cluster's placement for ``--device`` (``Cluster.where``)."""
    from pipeline.cluster.ray_cluster import plan_shards
    shards = plan_shards([(0, len(todo))], cluster.where.slots, shard_faces)

    def spec(lane: Lane) -> tuple:
        return (MaskSpec(model_dir, masker.hash, lane.device, batch),)
    by_id = {r.id: r for r in todo}

    def own_faces(shard: Shard) -> tuple:
        return ([(r.id, str(ws.aligned_path(r))) for r in todo[shard.start:shard.end]],)

    for _, result in cluster.run(mask_shard, shards, spec, f"masks apply {set_name}", len(todo), 0,
                                 extra=own_faces, unit="face"):
        yield [(by_id[face_id], mask, png) for face_id, mask, png in result]
