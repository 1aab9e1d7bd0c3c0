"""What the workspace stores, as types: a face row, a frame row, a set's metadata.

Stages read and write these; only ``pipeline.workspace.store`` turns them into SQL and
JSON. Arrays are numpy in memory; in the index, landmarks and boxes are rounded to
1/1000 pixel and transforms keep full precision (convert's warp back must hit the same
pixels extract cut).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any

import numpy as np

SETS = ("dst", "src")
DESCRIPTOR_DIM = 128


class MaskOrigin(str, Enum):
    """Who made a face's mask: an automatic masker (by its registry name) or the artist.

    The built-in masker and the artist are members; a masker registered later is an
    origin too, by its name, without a new member here (see ``_missing_``).
    """

    HULL = "hull"
    LEARNED = "learned"        # written by ``masks apply`` (a segmenter trained on the artist's masks)
    HAND = "hand"

    @classmethod
    def _missing_(cls, value: object) -> "MaskOrigin | None":
        from pipeline.registries import MASKERS
        if isinstance(value, str) and value in MASKERS:
            member = str.__new__(cls, value)
            member._name_, member._value_ = value.upper().replace("-", "_"), value
            return member
        return None


class FaceOrigin(str, Enum):
    DETECTED = "detected"      # found by the detector
    BRIDGED = "bridged"        # carried over a few frames the detector missed


class DropReason(str, Enum):
    DELETED = "deleted"        # the artist deleted its aligned image
    IDENTITY = "identity"      # not the --target-face person


def dumps(value: Any) -> str:
    """Compact JSON for arrays stored in the index (rounded to 1/1000 pixel)."""
    return json.dumps(np.round(np.asarray(value, dtype=np.float64), 3).tolist(), separators=(",", ":"))


def json_matrix(matrix: np.ndarray) -> str:
    """Transforms keep full precision: convert's warp-back must hit the same pixels."""
    return json.dumps(np.asarray(matrix, dtype=np.float64).tolist())


def loads_array(text: str) -> np.ndarray:
    return np.asarray(json.loads(text), dtype=np.float64)


def pack(descriptor: np.ndarray) -> bytes:
    """Index storage of an identity descriptor: 128 little-endian float32 (512 bytes), no pickle."""
    return np.asarray(descriptor, dtype="<f4").reshape(DESCRIPTOR_DIM).tobytes()


def unpack(blob: bytes | None) -> np.ndarray | None:
    if blob is None:
        return None
    return np.frombuffer(blob, dtype="<f4").astype(np.float64)


def pack_points(points: np.ndarray | None) -> bytes | None:
    """Dense points in the index: x, y pairs as little-endian float32 (3.8 KB for 478 points), no pickle."""
    if points is None:
        return None
    return np.asarray(points, dtype="<f4")[:, :2].tobytes()


def unpack_points(blob: bytes | None) -> np.ndarray | None:
    if blob is None:
        return None
    return np.frombuffer(blob, dtype="<f4").astype(np.float64).reshape(-1, 2)


@dataclass
class FaceRow:
    """One face of one frame or photo, as the index holds it."""

    set_name: str
    source: str                    # video file name, or photo file name
    frame_index: int               # frame in the video (0 for photos)
    face_index: int                # face in that frame, largest first
    track: int | None              # face track within a video set, None for photos
    origin: FaceOrigin
    detector: str
    landmarker: str
    score: float | None
    bbox: np.ndarray               # (4,) x0, y0, x1, y1, source pixels
    landmarks: np.ndarray          # (68, 2) source pixels
    aligned_landmarks: np.ndarray  # (68, 2) pixels of the aligned crop
    transform: np.ndarray          # (2, 3) source -> aligned
    face_type: str
    size: int
    aligned_file: str              # name in the set's aligned/ folder
    mask_file: str                 # name in the set's masks/ folder
    mask_origin: MaskOrigin
    mask_hash: str                 # hash of the mask pixels as written automatically
    mask_mtime_ns: int | None      # the mask file's stat when last looked at
    mask_bytes: int | None
    descriptor: np.ndarray | None  # (128,) identity descriptor
    blur: float | None
    yaw: float | None
    pitch: float | None
    roll: float | None
    dropped: bool = False
    drop_reason: DropReason | None = None
    dense_landmarks: np.ndarray | None = None   # (N, 2) a dense landmarker's points, source pixels (478: MediaPipe)
    mask_model: str | None = None  # hash of the mask model's weights that wrote a 'learned' mask
    id: int | None = None          # the index's row id (None until stored)

    @property
    def kept(self) -> bool:
        return not self.dropped


#: Columns of the ``faces`` table in the order ``FaceRow.to_sql`` gives them.
FACE_COLUMNS = tuple(f.name for f in fields(FaceRow) if f.name != "id")


#: What a row read without its geometry (``face_from_sql(r, geometry=False)``) holds in place of its
#: box, landmarks and transform: one empty read-only array, so ``face_to_sql`` can refuse to store it.
NO_GEOMETRY = np.zeros(0)
NO_GEOMETRY.flags.writeable = False


def face_to_sql(row: FaceRow) -> tuple:
    if any(a is NO_GEOMETRY for a in (row.bbox, row.landmarks, row.aligned_landmarks, row.transform)):
        raise ValueError(f"face {row.id} was read without its geometry (a listing); read it whole to store it")
    values = {
        **{name: getattr(row, name) for name in FACE_COLUMNS},
        "origin": FaceOrigin(row.origin).value, "mask_origin": MaskOrigin(row.mask_origin).value,
        "drop_reason": None if row.drop_reason is None else DropReason(row.drop_reason).value,
        "bbox": dumps(row.bbox), "landmarks": dumps(row.landmarks),
        "aligned_landmarks": dumps(row.aligned_landmarks), "transform": json_matrix(row.transform),
        "descriptor": None if row.descriptor is None else pack(row.descriptor),
        "dropped": int(bool(row.dropped)), "dense_landmarks": pack_points(row.dense_landmarks),
    }
    return tuple(values[name] for name in FACE_COLUMNS)


def _whole(r: Any, name: str, none_ok: bool = False) -> int | None:
    """An integer column as a Python int: a hand-edited cell holding text or a float is an invalid value."""
    value = r[name]
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} {value!r} is not a whole number")
    return value


def _number(r: Any, name: str) -> float | None:
    """A numeric column (score, blur, pose angles) as a float, or None; text there is an invalid value."""
    value = r[name]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} {value!r} is not a number")
    return float(value)


def face_from_sql(r: Any, geometry: bool = True) -> FaceRow:
    """A ``faces`` row (sqlite3.Row) as a FaceRow; columns an older index lacks get their old meaning.

    ``geometry=False`` leaves the box, landmarks, transform and dense points unparsed
    (``NO_GEOMETRY``, None): parsing their JSON is most of the cost of a row, and listing
    faces (the edit scan, the studio's face list) needs none of it.
    """
    keys = set(r.keys())
    if geometry:
        bbox, landmarks = loads_array(r["bbox"]), loads_array(r["landmarks"])
        aligned, transform = loads_array(r["aligned_landmarks"]), loads_array(r["transform"])
        dense = unpack_points(r["dense_landmarks"]) if "dense_landmarks" in keys else None
    else:
        bbox = landmarks = aligned = transform = NO_GEOMETRY
        dense = None
    return FaceRow(
        set_name=r["set_name"], source=r["source"], frame_index=_whole(r, "frame_index"),  # type: ignore[arg-type]
        face_index=_whole(r, "face_index"), track=_whole(r, "track", none_ok=True),  # type: ignore[arg-type]
        origin=FaceOrigin(r["origin"]), detector=r["detector"],
        landmarker=r["landmarker"] if "landmarker" in keys else "dlib", score=r["score"],
        bbox=bbox, landmarks=landmarks, aligned_landmarks=aligned, transform=transform,
        face_type=r["face_type"], size=r["size"], aligned_file=r["aligned_file"], mask_file=r["mask_file"],
        mask_origin=MaskOrigin(r["mask_origin"]), mask_hash=r["mask_hash"], mask_mtime_ns=r["mask_mtime_ns"],
        mask_bytes=r["mask_bytes"], descriptor=unpack(r["descriptor"]), blur=_number(r, "blur"), yaw=_number(r, "yaw"),
        pitch=_number(r, "pitch"), roll=_number(r, "roll"), dropped=bool(r["dropped"]),
        drop_reason=None if r["drop_reason"] is None else DropReason(r["drop_reason"]),
        dense_landmarks=dense, mask_model=r["mask_model"] if "mask_model" in keys else None, id=r["id"])


@dataclass
class FrameRow:
    """One frame (or photo) that extract has finished, with or without faces."""

    source: str
    frame_index: int
    status: str                    # 'ok' or 'unreadable'
    faces: int                     # faces found in it (detected + bridged)


@dataclass
class ExtractSettings:
    """How a set was extracted; a second extract into the set must use the same (or --force)."""

    detector: str = "dlib"
    landmarker: str = "dlib"
    masker: str = "hull"
    face_type: str = "full"
    size: int = 256
    image_format: str = "png"
    target_face: str | None = None
    target_threshold: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ExtractSettings":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class SetMeta:
    """A face set's entry in workspace.json."""

    input: str                                   # the video file or image folder it came from
    kind: str                                    # 'video' or 'images'
    extract: ExtractSettings = field(default_factory=ExtractSettings)
    complete: bool = False
    video: dict[str, Any] | None = None          # probe facts (width, height, fps, frames, ...), video sets
    images: int | None = None                    # image count, image sets

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"input": self.input, "kind": self.kind, "extract": self.extract.to_json(),
                               "complete": self.complete}
        if self.video is not None:
            out["video"] = self.video
        if self.images is not None:
            out["images"] = self.images
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SetMeta":
        return cls(input=data.get("input", ""), kind=data.get("kind", ""),
                   extract=ExtractSettings.from_json(data.get("extract") or {}),
                   complete=bool(data.get("complete")), video=data.get("video"), images=data.get("images"))
