"""An invisible, keyed watermark in the swapped face (convert puts it in) and the test that finds it again
(``main.py verify``); ``benchmarks/watermark.py`` measures how far it survives (issue 30).

Why this design: the mark has to survive what happens to a video after it leaves the
tool (re-encoding, resizing) and be found without the unmarked original. So it lives in
the face's own coordinates, not the frame's: +-1 cells (``CELLS`` a side) on the canonical
"full" face crop (``GRID`` px), drawn from the key and the frame's index (a new pattern
each frame, ``PERIOD`` of them in turn), warped onto the face with its alignment and added
inside the landmark hull, ``AMPLITUDE`` grey levels to red and taken from blue (a
face-region PSNR of about 45 dB). Any detector's landmarks give the same canonical crop
again, to about a pixel of the grid.

Why in colour, not in brightness, and why coarse cells: face recognisers read brightness
patterns. The same mark in luminance (3 px cells, 1.5 grey levels) moved FaceNet's
distance of Hill's frames to the src person by +0.013 on average, where a colour mark of
the same PSNR moved it by +0.0003; and 9 px cells (14 a side) in colour survive a crf 28
re-encode and halving the size better than 3 px cells in luminance (one frame's score 3.9
and 1.4 against 3.5 and 1.35), because the encoder keeps coarse colour and the halving
keeps coarse cells. (Hill's clip, 200 frames, ``benchmarks/watermark.py`` and the
measurements in ``docs/measurements.md``.)

Finding it: the crop's cell means, each minus the mean of its eight neighbours (the face's
own shading cancels at that scale), each cell weighed by how quiet the face is there, are
correlated with the key's signs for that frame. The signs are coin flips the face knows
nothing of, so without the mark the score is a standard normal variable. One frame's
score is weak against the face's own detail (a face is the same face in every frame); as
the pattern changes from frame to frame and the face does not, the scores of neighbouring
frames add up like independent evidence: ``window_scores`` sums ``WINDOW`` frames.

Found in a video (``FrameScorer``, what verify and evaluate use), the face's own detail is
taken out first: each face's cell means minus the mean of the same face's cell means in the
frames before and after it. The face hardly changes from one frame to the next, the pattern
does (the neighbours' patterns are other coin flips, so they add noise, not bias), so what
is left is mostly the mark and the encoder's noise. Without the mark the score is still a
standard normal variable, and the scores of different frames are uncorrelated (each frame's
signs are independent of everything else in the sum). After a crf 28 re-encode of the main
job's result this took the one-frame median score from 1.1 to 2.9 and the frames found from
112 to 200 of 200 (same key, same video, 25-frame window; the first mark, 3 px cells in
luminance).

The payload: a quarter of each frame's cells (``data_cells``, drawn from the key) carry one
bit of a 32-bit payload (``render_payload``: which model was applied to which video) and
its CRC-16, ``SLOTS`` bits in turn by frame index, as the sign of those cells; the other
three quarters are the pilot, the same whatever the payload. The finder first reads every
frame's data cells, sums them per bit over the whole video and checks the CRC; when the
payload reads back, the data cells' signs are known and count in the score like the
pilot's (the score is the same as a mark with no payload). Otherwise (a short or badly
damaged video) each frame's data cells count with the pilot, signed and weighed by how
surely the *other* frames carrying the same bit read it: independent of the frame's own
cells, so without the mark its score stays standard normal (frames ``SLOTS`` apart share a bit, and
their scores are slightly correlated: no window of the default 25 frames holds two of
them). A random video passes the CRC once in 65,536, so the payload's check does not move
the score's null distribution.
"""
from __future__ import annotations

import binascii
import functools
import hashlib
from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.core import geometry

#: side of the canonical face crop the pattern lives on, and its cells a side
GRID = 126
CELLS = 14
#: grey levels added to red and taken from blue at a +1 cell (the colour axis R - B; green is left alone)
AMPLITUDE = 1.8
#: patterns used in turn, by frame index; coprime with ``SLOTS``, so frames carrying the same payload bit show
#: different patterns (with 16, frames 48 apart showed the same one: the face's own detail then read alike in both,
#: and an unmarked video's scores leaned positive by 0.2-1.0 in the benchmark)
PERIOD = 17
#: frames whose scores are summed for one frame's verdict, and the verdict's threshold (standard deviations)
WINDOW = 9
THRESHOLD = 5.0
#: payload bits (32) and its CRC-16 (16) carried in turn, one per frame; share of the cells that carry them
PAYLOAD_BITS = 32
SLOTS = PAYLOAD_BITS + 16
DATA_SHARE = 0.25
#: when the payload does not read: a frame's data cells weigh tanh(SOFT_BIT x the other frames' evidence for its bit)
SOFT_BIT = 0.7
_BAYER = (np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]], np.float32) + 0.5) / 16.0
_NEIGHBOURS = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], np.float32) / 8.0


def _coloured(rgb: np.ndarray) -> np.ndarray:
    """0..1 per pixel: whether a +-``AMPLITUDE`` step along red - blue leaves the colour on the warm side of
    neutral. The step moves b* by about 1.4 and a* by about 0.4 (at skin tones); skin lies well above both, the
    whites of the eyes, teeth and highlights do not, and a mark there would make them cool one frame and warm the
    next (a colour fringe, to the eye and to evaluate's fringing figure)."""
    h, w = rgb.shape[:2]
    half = cv2.resize(rgb, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA)   # a quarter of the pixels
    lab = cv2.cvtColor(half, cv2.COLOR_RGB2LAB).astype(np.float32) - 128.0     # 8-bit Lab: a* and b* offset by 128
    warm = np.minimum(np.clip((lab[..., 2] - 1.5) / 1.5, 0.0, 1.0), np.clip((lab[..., 1] - 0.5) / 0.5, 0.0, 1.0))
    return cv2.resize(warm, (w, h), interpolation=cv2.INTER_LINEAR)


def _hull_weight(landmarks_grid: np.ndarray) -> np.ndarray:
    """Where the mark goes, on the grid: the landmark hull shrunk a little and feathered (0..1)."""
    hull = geometry.hull_mask(landmarks_grid, GRID).astype(np.float32) / 255.0
    return cv2.GaussianBlur(cv2.erode(hull, np.ones((5, 5), np.uint8)), (0, 0), 2.0)


def _reach(to_grid: np.ndarray, weight: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """The frame box (x0, y0, x1, y1) the mark can touch: the grid's marked cells (``weight`` > 0) mapped into
    the frame, with what the bilinear warp reaches past them; None when it lies outside the frame.

    Why not the whole crop's box: the crop of a "full" face holds hair and background around the hull, and a
    turned crop's box more; every pass over the box (warps, the colour test, the dither) was about twice
    the work the face needs."""
    gx, gy, gw, gh = cv2.boundingRect((weight > 0).astype(np.uint8))
    if gw == 0 or gh == 0:
        return None
    # grid pixels gx .. gx + gw - 1 are marked; bilinear sampling reaches one pixel past them on each side
    a, b, c, d = gx - 1, gy - 1, gx + gw, gy + gh
    square = np.array([[a, b], [c, b], [a, d], [c, d]], np.float64)
    corners = geometry.transform_points(square, geometry.invert_affine(to_grid))
    h, w = shape[:2]
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)) - 1, 0).astype(int)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)) + 2, [w, h]).astype(int)
    if x1 <= x0 or y1 <= y0:
        return None
    return int(x0), int(y0), int(x1), int(y1)


@functools.lru_cache(maxsize=2 * PERIOD)
def _pattern_of(cells: bytes) -> np.ndarray:
    grid = np.frombuffer(cells, np.float32).reshape(CELLS, CELLS)
    pattern = cv2.resize(grid, (GRID, GRID), interpolation=cv2.INTER_NEAREST)
    pattern.flags.writeable = False
    return pattern


def _pattern(cells: np.ndarray) -> np.ndarray:
    """``cells`` (+-1, ``CELLS`` a side) as a ``GRID`` image; the ``2 PERIOD`` patterns a payload gives are kept."""
    return _pattern_of(np.ascontiguousarray(cells, np.float32).tobytes())


def _dither(x0: int, y0: int, size: tuple[int, int]) -> np.ndarray:
    """The ordered-dither thresholds of the frame box at (x0, y0) of ``size`` (w, h)."""
    w, h = size
    tiled = np.tile(_BAYER, (h // 4 + 2, w // 4 + 2))
    return tiled[y0 % 4:y0 % 4 + h, x0 % 4:x0 % 4 + w]


def render_payload(dst_sha256: str, model_sha256: str) -> bytes:
    """The 32 bits the mark carries: which model (its weights' SHA-256, as the manifest and the .dfm state it) was
    applied to which video (the dst's SHA-256). A re-encode drops the manifest; the payload still names the render."""
    return hashlib.sha256(f"face-watermark-payload {dst_sha256} {model_sha256}".encode()).digest()[:PAYLOAD_BITS // 8]


def payload_bits(payload: bytes) -> np.ndarray:
    """``payload`` and its CRC-16 as ``SLOTS`` bits (0/1), the order frames carry them in."""
    if len(payload) * 8 != PAYLOAD_BITS:
        raise ValueError(f"a watermark payload is {PAYLOAD_BITS // 8} bytes, not {len(payload)}")
    crc = binascii.crc_hqx(payload, 0xFFFF).to_bytes(2, "big")
    return np.unpackbits(np.frombuffer(payload + crc, np.uint8))


def bits_payload(bits: np.ndarray) -> bytes | None:
    """The payload ``bits`` carry, or None when their CRC does not match (a misread bit, or no payload)."""
    packed = np.packbits(np.asarray(bits, np.uint8)).tobytes()
    payload, crc = packed[:PAYLOAD_BITS // 8], packed[PAYLOAD_BITS // 8:]
    return payload if binascii.crc_hqx(payload, 0xFFFF).to_bytes(2, "big") == crc else None


@dataclass(frozen=True)
class Watermark:
    """The mark of one key; ``payload`` (``PAYLOAD_BITS`` bits) is carried when given (finding needs only the key)."""

    key: bytes
    payload: bytes | None = None
    _bits: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # the bits once (checks the payload's length); cells() reads them every frame
        object.__setattr__(self, "_bits", payload_bits(self.payload) if self.payload is not None else None)

    @property
    def key_id(self) -> str:
        """A public name of the key (a hash of it): says which key made a mark, reveals nothing of the key."""
        return hashlib.sha256(b"face-watermark-id" + self.key).hexdigest()[:16]

    def cells(self, frame_index: int) -> np.ndarray:
        """The +-1 signs of frame ``frame_index`` (``CELLS`` a side): the key's, the data cells' flipped for a 1 bit."""
        base = _cells(self.key, frame_index % PERIOD)
        bits = self._bits
        if bits is None or not bits[frame_index % SLOTS]:
            return base
        return np.where(self.data_cells(frame_index), -base, base)

    def data_cells(self, frame_index: int) -> np.ndarray:
        """Which cells of frame ``frame_index`` carry the payload's bit (``DATA_SHARE`` of them, from the key)."""
        return _data_cells(self.key, frame_index % PERIOD)

    def embed(self, frame: np.ndarray, landmarks: np.ndarray, frame_index: int, amplitude: float = AMPLITUDE,
              pasted: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Add the mark to the face with ``landmarks`` in ``frame`` (RGB uint8, changed in place).

        ``pasted``: (alpha, frame -> alpha transform), the share of each pixel the swap replaced; the mark
        goes only there (a face convert pasted nothing over stays as it was).
        """
        to_grid = geometry.face_transform(landmarks, "full", GRID)
        w = _hull_weight(geometry.transform_points(landmarks, to_grid))
        signal = _pattern(self.cells(frame_index)) * w * np.float32(amplitude)
        box = _reach(to_grid, w, frame.shape)
        if box is None:
            return
        x0, y0, x1, y1 = box
        local = geometry.compose(to_grid, np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]]))
        size = (int(x1 - x0), int(y1 - y0))
        field: np.ndarray = cv2.warpAffine(signal, local, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if pasted is not None:
            alpha, to_alpha = pasted
            share = alpha.astype(np.float32) / (255.0 if alpha.dtype == np.uint8 else 1.0)
            shift = geometry.compose(np.asarray(to_alpha, np.float64), np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]]))
            field *= cv2.warpAffine(share, shift, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        roi = frame[y0:y1, x0:x1]
        support = (field != 0) * _coloured(roi)
        field *= support
        # zero mean over the face: the face's average colour stays as it was (evaluate's tone, an artist's grade)
        field -= support * (float(field.sum(dtype=np.float64)) / max(float(support.sum(dtype=np.float64)), 1e-6))
        # ordered dither instead of rounding: a field of 1.7 becomes 2 on 70 % of the pixels and 1 on the rest
        # (rounding would make it 2 everywhere: a stronger mark than the PSNR was chosen for); anchored to the
        # frame's pixels, so the pattern does not depend on the box
        dither = _dither(x0, y0, size)
        for channel, change in ((0, field), (2, -field)):     # RGB: red up where blue goes down
            level = roi[..., channel] + change
            level += dither
            np.floor(level, out=level)
            roi[..., channel] = np.clip(level, 0, 255)

    def score(self, frame: np.ndarray, landmarks: np.ndarray, frame_index: int) -> float:
        """How strongly the face carries frame ``frame_index``'s mark, in standard deviations (normal without it).

        One frame alone: the face's shading is taken out by each cell's eight neighbours
        (``FrameScorer`` does better in a video, with the frames around it)."""
        return self.score_cells(face_cells(frame, landmarks), frame_index)

    def score_cells(self, face: FaceCells, frame_index: int, reference: np.ndarray | None = None) -> float:
        """The score of ``face`` for frame ``frame_index``'s pattern, from its pilot cells (the payload unknown;
        see ``parts``); ``reference``: the same face's cell means in other frames (NaN where unknown), subtracted
        instead of the cells' spatial neighbours."""
        return self.parts(face, frame_index, reference).score(None)

    def parts(self, face: FaceCells, frame_index: int, reference: np.ndarray | None = None) -> ScoreParts:
        """The evidence of ``face`` for frame ``frame_index``'s mark, pilot and data cells apart."""
        return self.parts_of(weighted_residual(face, reference), frame_index)

    def parts_of(self, weighted: np.ndarray, frame_index: int) -> ScoreParts:
        """``weighted_residual``'s cells against frame ``frame_index``'s pattern, pilot and data cells apart."""
        s = weighted * _cells(self.key, frame_index % PERIOD)
        data = self.data_cells(frame_index)
        energy = s * s
        return ScoreParts(float(s[~data].sum()), float(energy[~data].sum()), float(s[data].sum()),
                          float(energy[data].sum()))


def weighted_residual(face: FaceCells, reference: np.ndarray | None = None) -> np.ndarray:
    """The face's cells with its own shading taken out (minus ``reference``, the same face in other frames, NaN
    where unknown; else minus each cell's eight neighbours), weighed by how quiet the face is there; 0 outside."""
    side = GRID // CELLS
    inside = face.weight > 0.6 * side * side
    residual = face.means - cv2.filter2D(face.means, -1, _NEIGHBOURS, borderType=cv2.BORDER_REPLICATE)
    if reference is not None:
        # where the other frames do not know a cell, it keeps its spatial residual for the quietness
        # (which looks at the cells around) and is left out of the sum
        known = np.isfinite(reference)
        inside &= known
        residual = np.where(known, face.means - np.where(known, reference, 0.0), residual).astype(np.float32)
    quiet = 1.0 / (cv2.medianBlur(np.abs(residual).astype(np.float32), 3) + 0.5)
    return np.where(inside, residual * quiet, 0.0).astype(np.float32)


@dataclass(frozen=True)
class ScoreParts:
    """One face's correlation with its frame's pattern: sums and energies over the pilot and the data cells."""

    pilot: float
    pilot_energy: float
    data: float
    data_energy: float

    def score(self, sign: float | None) -> float:
        """Standard deviations: pilot and data cells with the data's ``sign`` (+1: bit 0, -1: bit 1; between: how
        sure the bit is, weighing the data cells less), or with ``sign`` None the pilot alone."""
        if sign is None:
            return self.pilot / np.sqrt(self.pilot_energy) if self.pilot_energy > 0 else 0.0
        den = self.pilot_energy + sign * sign * self.data_energy
        return (self.pilot + sign * self.data) / np.sqrt(den) if den > 0 else 0.0

    def bit_evidence(self) -> float:
        """The data cells alone, standard deviations: > 0 reads as bit 0, < 0 as bit 1."""
        return self.data / np.sqrt(self.data_energy) if self.data_energy > 0 else 0.0


@dataclass(frozen=True)
class FaceCells:
    """A face's cell means of (red - blue) / 2 on the canonical crop (what the score reads), and where the face
    is."""

    means: np.ndarray           # CELLS x CELLS float32
    weight: np.ndarray          # CELLS x CELLS: how much of each cell lies in the landmark hull (pixels)
    centre: np.ndarray          # the landmarks' mean in the frame
    size: float                 # the landmarks' width in the frame


def face_cells(frame: np.ndarray, landmarks: np.ndarray) -> FaceCells:
    to_grid = geometry.face_transform(landmarks, "full", GRID)
    crop = geometry.warp_to_aligned(frame, to_grid, GRID)
    colour = (crop[..., 0].astype(np.float32) - crop[..., 2].astype(np.float32)) * 0.5     # the mark's axis
    w = _hull_weight(geometry.transform_points(landmarks, to_grid))
    side = GRID // CELLS
    weight = w.reshape(CELLS, side, CELLS, side).sum(axis=(1, 3))
    means = (colour * w).reshape(CELLS, side, CELLS, side).sum(axis=(1, 3)) / np.maximum(weight, 1e-6)
    points = np.asarray(landmarks, np.float64)
    return FaceCells(means.astype(np.float32), weight.astype(np.float32), points.mean(axis=0),
                     float(np.ptp(points[:, 0])))


class FrameScorer:
    """Each frame's score in a video, its faces fed in frame order; a face is scored against the same face in the
    previous and the next frame with a face (so each frame is scored once the next one is in).

    Three frames' faces are held while the video is read, and of every frame its faces'
    weighted cells (``CELLS`` x ``CELLS`` floats a face: 0.8 kB, 140 MB for a two-hour film
    with a face in every frame). A face with no match in either neighbour (a cut, a face
    that just appeared) is scored alone (``Watermark.score``'s spatial way). Neighbours
    whose frame shows the same pattern (``PERIOD`` frames apart) are not used: the same
    signs on both sides would cancel the mark.

    ``finish`` scores the frames, the best face of each (by its pilot). A video that does
    not start where the render started (its head trimmed, a ``convert --start`` render)
    shows the patterns shifted, so first the shift (``offset``, modulo ``PERIOD``) whose
    pilot sums highest over the whole video is found; then the payload is read for each
    of the ``SLOTS`` bit alignments that shift allows (``payload``, None when no
    alignment's CRC matches), and every frame scored with it. Choosing the best of
    ``PERIOD`` shifts leans an unmarked video's scores up by about sqrt(2 ln ``PERIOD``)
    over the square root of its frames with a face (0.17 for 200 frames): a 25-frame
    verdict by under 1 of its 5 standard deviations.
    """

    def __init__(self, mark: Watermark) -> None:
        self.mark = mark
        self.parts: dict[int, ScoreParts] = {}
        self.payload: bytes | None = None
        self.offset = 0
        self._weighted: dict[int, list[np.ndarray]] = {}
        self._prev: tuple[int, list[FaceCells]] | None = None
        self._cur: tuple[int, list[FaceCells]] | None = None

    def add(self, frame_index: int, faces: list[FaceCells]) -> None:
        """A frame with at least one face (frames without a face are not fed)."""
        if not faces:
            return
        if self._cur is not None:
            self._keep(self._cur, self._prev, (frame_index, faces))
        self._prev, self._cur = self._cur, (frame_index, faces)

    def finish(self) -> dict[int, float]:
        """Every frame's score (standard deviations), with the payload's signs when it reads back."""
        if self._cur is not None:
            self._keep(self._cur, self._prev, None)
            self._prev = self._cur = None
        if not self._weighted:
            return {}
        shifts = {o: self._best(o) for o in range(PERIOD)}
        shift = max(shifts, key=lambda o: sum(p.score(None) for p in shifts[o].values()))
        self.offset, self.parts = shift, shifts[shift]
        for k in range(SLOTS):
            offset = shift + PERIOD * k
            parts = self._best(offset) if k else self.parts
            payload = read_payload(parts, offset)
            if payload is not None:
                self.payload, self.offset, self.parts = payload, offset, parts
                bits = payload_bits(payload)
                return {i: p.score(1 - 2 * int(bits[(i + offset) % SLOTS])) for i, p in parts.items()}
        # the payload did not read: each frame's data cells signed by what the *other* frames carrying its bit say
        # (leaving the frame itself out keeps its score a standard normal variable without the mark)
        evidence, _ = _bit_evidence(self.parts, 0)
        return {i: p.score(float(np.tanh(SOFT_BIT * (evidence[i % SLOTS] - p.bit_evidence()))))
                for i, p in self.parts.items()}

    def _best(self, offset: int) -> dict[int, ScoreParts]:
        """Each frame's best face (by its pilot) with the patterns of frame index + ``offset``."""
        out = {}
        for index, faces in self._weighted.items():
            scored = [self.mark.parts_of(w, index + offset) for w in faces]
            out[index] = max(scored, key=lambda p: p.score(None))
        return out

    def _keep(self, cur: tuple[int, list[FaceCells]], *around: tuple[int, list[FaceCells]] | None) -> None:
        index, faces = cur
        usable = [other[1] for other in around if other is not None and (other[0] - index) % PERIOD != 0]
        kept = []
        for face in faces:
            matches = [m for m in (_same_face(face, others) for others in usable) if m is not None]
            reference = None
            if matches:         # the neighbours' mean, cell by cell, of those whose cell lies in their hull
                known = np.stack([_known(m) for m in matches])
                total = known.sum(axis=0)
                summed = (np.stack([m.means for m in matches]) * known).sum(axis=0)
                reference = np.where(total > 0, summed / np.maximum(total, 1), np.nan).astype(np.float32)
            kept.append(weighted_residual(face, reference))
        self._weighted[index] = kept


def read_payload(parts: dict[int, ScoreParts], offset: int = 0) -> bytes | None:
    """The payload the frames' data cells carry (frame i carrying the bit of render frame i + ``offset``), each bit
    summed over every frame that carries it, or None (a bit no frame carries, or a CRC that does not match)."""
    evidence, seen = _bit_evidence(parts, offset)
    if not seen.all():
        return None
    return bits_payload((evidence < 0).astype(np.uint8))


def _bit_evidence(parts: dict[int, ScoreParts], offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Per payload bit: the data cells' evidence summed over the frames carrying it, and whether any frame does."""
    evidence = np.zeros(SLOTS)
    seen = np.zeros(SLOTS, bool)
    for index, p in parts.items():
        evidence[(index + offset) % SLOTS] += p.bit_evidence()
        seen[(index + offset) % SLOTS] = True
    return evidence, seen


def _known(face: FaceCells) -> np.ndarray:
    side = GRID // CELLS
    return (face.weight > 0.6 * side * side).astype(np.float32)


def _same_face(face: FaceCells, others: list[FaceCells]) -> FaceCells | None:
    """The face among ``others`` nearest to ``face``, if it is within a quarter of the face's width."""
    best = min(others, key=lambda o: float(np.linalg.norm(o.centre - face.centre)))
    near = float(np.linalg.norm(best.centre - face.centre)) <= 0.25 * max(face.size, 1.0)
    return best if near else None


def window_scores(scores: dict[int, float], window: int = WINDOW) -> dict[int, float]:
    """Each frame's score summed with its neighbours' (``window`` consecutive frame indices that have a score),
    over the square root of their count: still a standard normal variable without the mark."""
    half = window // 2
    out = {}
    for index in scores:
        near = [scores[j] for j in range(index - half, index + half + 1) if j in scores]
        out[index] = float(sum(near) / np.sqrt(len(near)))
    return out



#: verdict windows (verify without --window, and evaluate): about 1, 2 and 3 seconds; the first that finds the mark
#: in at least half of the frames with a face decides (without the mark a window's sum is standard normal whatever
#: its length)
WINDOWS = (25, 51, 75)


def judge(scores: dict[int, float], window: int | None = None) -> tuple[int, list[int]]:
    """(the window the verdict is over, the marked frames): ``window``, or without one the first of ``WINDOWS`` that
    finds the mark in at least half of the frames (a weak mark, resized or re-encoded hard, is judged over longer
    stretches), else the one that finds it in most. Shared so that verify and evaluate's report count alike."""
    tried = [(w, sorted(i for i, z in window_scores(scores, w).items() if z >= THRESHOLD))
             for w in ([window] if window else WINDOWS)]
    enough = [(w, m) for w, m in tried if m and len(m) * 2 >= len(scores)]
    return enough[0] if enough else max(tried, key=lambda t: len(t[1]))

_CELLS: dict[tuple[bytes, int], np.ndarray] = {}
_DATA: dict[tuple[bytes, int], np.ndarray] = {}


def _data_cells(key: bytes, phase: int) -> np.ndarray:
    if (key, phase) not in _DATA:
        digest = hashlib.sha256(b"face-watermark-data" + key + phase.to_bytes(2, "little")).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        _DATA[(key, phase)] = rng.random((CELLS, CELLS)) < DATA_SHARE
    return _DATA[(key, phase)]


def _cells(key: bytes, phase: int) -> np.ndarray:
    if (key, phase) not in _CELLS:
        digest = hashlib.sha256(b"face-watermark-pattern" + key + phase.to_bytes(2, "little")).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        _CELLS[(key, phase)] = rng.choice(np.array([-1.0, 1.0], np.float32), size=(CELLS, CELLS))
    return _CELLS[(key, phase)]
