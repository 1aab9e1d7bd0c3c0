"""Colour transfer of a generated face toward the destination face, for the convert stage.

The network's output face rarely has the exact skin tone, white balance and lighting of the
destination frame, so before blending it in we move its colours toward the destination face
crop at the same place. Statistics are taken only inside the face mask (background, hair and
the edges of the crop would otherwise bias them), but the mapping learned there is applied to
the WHOLE generated crop: the feathered blend edge then changes consistently with the inside
and no seam appears where the mask ends.

Everything is vectorised numpy / OpenCV in float32, because it runs once per face per frame.

Methods (registered in ``convert.backends.COLOR_TRANSFERS``; each is
``f(source, target, on, seed) -> uint8 image``):

* ``rct``  - Reinhard et al. 2001, per-channel mean/std matching in L*a*b*.
* ``lct``  - linear transfer matching mean and full 3x3 RGB covariance
             (whitening-colouring with symmetric square roots: A = Ct^1/2 Cs^-1/2).
* ``mkl``  - Monge-Kantorovich linear map (Pitie & Kokaram 2007), the optimal-transport
             linear map between the two Gaussians; reproduces an affine cast with an SPD matrix.
* ``idt``  - iterative distribution transfer (Pitie et al. 2005): random 3-D rotations,
             1-D quantile matching on each rotated axis.
* ``sot``  - sliced optimal transport: per step, several random orthonormal bases, 1-D
             sort-based matching along each direction, steps averaged.
* ``hist`` - per-channel 256-bin CDF matching in RGB.
* ``none`` - source unchanged.
"""
from __future__ import annotations

import cv2
import numpy as np

from convert.backends import COLOR_TRANSFERS

MIN_MASK_PIXELS = 16    # fewer in-mask pixels than this: statistics are meaningless
COV_RIDGE = 1e-5        # added to covariances (0..1 units) so near-flat faces stay invertible
LAB_STD_EPS = 1e-2      # L*a*b* std below this: that channel is shifted, not rescaled
MAX_SAMPLES = 4096      # in-mask pixels used for idt / sot statistics (seeded subsample)
QUANTILES = 128         # knots of each 1-D quantile map of idt / sot (smooth, cheap)
LUT_SIZE = 1024         # uniform grid on which those 1-D maps are read back for all pixels
IDT_ITERATIONS = 12     # one random rotation each
SOT_ITERATIONS = 6      # SOT_BASES random rotations each, their steps averaged
SOT_BASES = 2

_INV255 = np.float32(1.0 / 255.0)


def transfer(method: str, source: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None,
             seed: int = 0) -> np.ndarray:
    """Move ``source``'s colours toward ``target``'s, statistics taken where ``mask`` is on.

    ``source`` (generated face) and ``target`` (destination crop at the same place) are uint8
    RGB (H, W, 3). ``mask`` is (H, W) uint8 0..255 (on: > 127), float 0..1 (on: > 0.5) or
    bool; None means the whole image. The colour mapping learned inside the mask is applied
    to every source pixel, and the result is uint8 RGB of the same shape. With fewer than
    ``MIN_MASK_PIXELS`` mask pixels a copy of ``source`` is returned. ``seed`` makes the
    random rotations / subsampling of ``idt`` and ``sot`` deterministic.
    """
    if method not in COLOR_TRANSFERS:
        raise ValueError(f"unknown colour transfer method {method!r}; choose one of: "
                         f"{', '.join(COLOR_TRANSFERS.names())}")
    _check_image("source", source)
    _check_image("target", target)
    if source.shape != target.shape:
        raise ValueError(f"source {source.shape} and target {target.shape} differ in shape")
    if method == "none":
        return source.copy()
    on = _mask_on(mask, source.shape[:2])
    if np.count_nonzero(on) < MIN_MASK_PIXELS:
        return source.copy()
    return COLOR_TRANSFERS.load(method)(source, target, on, seed)


# --------------------------------------------------------------------------- helpers

def _check_image(name: str, image: np.ndarray) -> None:
    """Reject anything but uint8 (H, W, 3): silent casts would give wrong colours."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"{name} must be a uint8 RGB (H, W, 3) array, got {dtype} {shape}")


def _mask_on(mask: np.ndarray | None, hw: tuple[int, int]) -> np.ndarray:
    """Contiguous bool (H, W): the pixels whose statistics count (all of them for no mask)."""
    if mask is None:
        return np.ones(hw, bool)
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.shape != tuple(hw):
        raise ValueError(f"mask shape {mask.shape} does not match image {tuple(hw)}")
    if mask.dtype == np.bool_:
        return np.ascontiguousarray(mask)
    if np.issubdtype(mask.dtype, np.integer):
        return mask > 127
    return mask > 0.5


def _to_uint8(values: np.ndarray, scale: float) -> np.ndarray:
    """values * scale rounded to uint8, saturating what the mapping pushed out of 0..255."""
    h, w, c = values.shape
    return cv2.multiply(values.reshape(h, w * c), scale, dtype=cv2.CV_8U).reshape(h, w, c)


def _sym_power(cov: np.ndarray, power: float) -> np.ndarray:
    """Symmetric matrix power of an SPD 3x3 (eigh), eigenvalues floored above 0."""
    w, v = np.linalg.eigh(cov)
    w = np.maximum(w, 1e-12) ** power
    return (v * w) @ v.T


def _mean_cov(image: np.ndarray, on: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (3,) and ridge-regularised covariance (3, 3) of the in-mask pixels, 0..255 units."""
    pixels = image.reshape(-1, 3)[on.ravel()].astype(np.float32)
    cov, mean = cv2.calcCovarMatrix(pixels, None,
                                    cv2.COVAR_NORMAL | cv2.COVAR_ROWS | cv2.COVAR_SCALE)
    return mean.ravel(), cov + (COV_RIDGE * 255.0 ** 2) * np.eye(3)


def _apply_affine(source: np.ndarray, matrix: np.ndarray, mean_s: np.ndarray,
                  mean_t: np.ndarray) -> np.ndarray:
    """y = M (x - ms) + mt on every source pixel; cv2.transform rounds and saturates to uint8."""
    bias = mean_t - matrix @ mean_s
    return cv2.transform(source, np.hstack([matrix, bias[:, None]]))


def _interp_extrap(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Monotone piecewise-linear map through (xp, fp), continued with slope 1 past the ends.

    Slope 1 (a shift) rather than np.interp's clamping, so colours outside the in-mask range
    (background, specular highlights) keep their contrast instead of being flattened.
    """
    return (np.interp(x, xp, fp) + np.minimum(x - xp[0], 0.0)
            + np.maximum(x - xp[-1], 0.0)).astype(np.float32)


def _merge_ties(xp: np.ndarray, fp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Collapse equal knots of a sorted ``xp`` into one whose value is the mean of their ``fp``.

    Pixels of one colour project to one value and must all go to the same place: np.interp
    would send them to the last of the tied targets; the mean is the least-squares choice
    (a flat source patch lands on the target's mean instead of one of its extremes).
    """
    new = np.empty(len(xp), bool)
    new[0] = True
    np.not_equal(xp[1:], xp[:-1], out=new[1:])
    if new.all():
        return xp, fp
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, len(xp)))
    return xp[starts], np.add.reduceat(fp, starts) / counts


def _random_rotations(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` random 3x3 orthogonal matrices (Haar-distributed, via QR of Gaussians)."""
    q, r = np.linalg.qr(rng.standard_normal((count, 3, 3)))
    signs = np.sign(np.diagonal(r, axis1=1, axis2=2))
    signs[signs == 0] = 1.0
    return (q * signs[:, None, :]).astype(np.float32)


def _sliced_setup(source: np.ndarray, target: np.ndarray, on: np.ndarray, seed: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.random.Generator]:
    """Shared start of idt / sot: float 0..1 images, a seeded in-mask subsample, LUT rows.

    Source and target share the mask, so one subsample of pixel indices serves both and the
    two sorted projections have equal counts: 1-D optimal transport is then rank to rank.
    """
    rng = np.random.default_rng(seed)
    sub = np.flatnonzero(on)
    if sub.size > MAX_SAMPLES:
        sub = np.sort(rng.choice(sub, MAX_SAMPLES, replace=False))
    current = source * _INV255                                        # float32 (H, W, 3)
    target_sub = target.reshape(-1, 3)[sub][:, None, :] * _INV255     # (n, 1, 3)
    h, w, _ = source.shape
    # remap row of each interleaved value: axis k of a pixel reads row k of the (3, G) LUT
    rows = np.tile(np.arange(3, dtype=np.float32), h * w).reshape(h, w * 3)
    return current, target_sub, sub, rows, rng


def _column_range(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column min and max (float64) of an (N, 3) array.

    numpy reduces along a strided axis ~15x slower than along contiguous rows, so the rows
    are first folded into wide rows (N / f, 3 f) and the f partial results reduced after.
    """
    fold = next(f for f in (64, 32, 16, 8, 4, 2, 1) if len(flat) % f == 0)
    wide = flat.reshape(-1, 3 * fold)
    lo = wide.min(axis=0).reshape(fold, 3).min(axis=0)
    hi = wide.max(axis=0).reshape(fold, 3).max(axis=0)
    return lo.astype(np.float64), hi.astype(np.float64)


def _axis_step(current: np.ndarray, target_sub: np.ndarray, sub: np.ndarray,
               basis: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """RGB displacement (H, W, 3) from 1-D quantile matching along the rows of ``basis``.

    The 1-D maps are learned from the in-mask subsample (sorted source projections against
    sorted target projections, at ``QUANTILES`` evenly spaced ranks) and evaluated at every
    pixel. np.interp costs ~100 ns per unsorted value, so each map's displacement f(x) - x is
    resampled on a uniform grid of ``LUT_SIZE`` points over the pixels' range instead and
    read back with cv2.remap (linear interpolation, no search).
    """
    proj = cv2.transform(current, basis)                              # rotated coordinates
    flat = proj.reshape(-1, 3)
    sorted_s = np.sort(flat[sub].T, axis=1)                           # (3, n) in-mask source
    sorted_t = np.sort(cv2.transform(target_sub, basis).reshape(-1, 3).T, axis=1)
    lo, hi = _column_range(flat)
    step = np.maximum(hi - lo, 1e-6) / (LUT_SIZE - 1)
    ramp = np.arange(LUT_SIZE, dtype=np.float64)
    count = sorted_s.shape[1]
    n_knots = min(QUANTILES, count)
    knots = np.arange(n_knots) * (count - 1) // max(n_knots - 1, 1)   # evenly spaced ranks
    lut = np.empty((3, LUT_SIZE), np.float32)
    for k in range(3):
        grid = lo[k] + step[k] * ramp
        xp, fp = _merge_ties(sorted_s[k, knots], sorted_t[k, knots])
        lut[k] = _interp_extrap(grid, xp, fp) - grid
    to_grid = np.hstack([np.diag(1.0 / step), (-lo / step)[:, None]])  # x -> LUT position
    pos = cv2.transform(proj, to_grid).reshape(rows.shape)
    shift = cv2.remap(lut, pos, rows, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.transform(shift.reshape(proj.shape), basis.T)          # back to RGB


# --------------------------------------------------------------------------- methods

def rct(source: np.ndarray, target: np.ndarray, on: np.ndarray, seed: int) -> np.ndarray:
    """Reinhard: L*a*b* is decorrelated enough that per-channel mean/std matching works."""
    mask8 = on.view(np.uint8)
    lab_s = cv2.cvtColor(source * _INV255, cv2.COLOR_RGB2Lab)
    lab_t = cv2.cvtColor(target * _INV255, cv2.COLOR_RGB2Lab)
    mean_s, std_s = (v.ravel() for v in cv2.meanStdDev(lab_s, mask=mask8))
    mean_t, std_t = (v.ravel() for v in cv2.meanStdDev(lab_t, mask=mask8))
    scale = np.where(std_s > LAB_STD_EPS, std_t / np.maximum(std_s, LAB_STD_EPS), 1.0)
    affine = np.hstack([np.diag(scale), (mean_t - scale * mean_s)[:, None]])
    rgb = cv2.cvtColor(cv2.transform(lab_s, affine), cv2.COLOR_Lab2RGB)
    return _to_uint8(rgb, 255.0)


def lct(source: np.ndarray, target: np.ndarray, on: np.ndarray, seed: int) -> np.ndarray:
    """Whiten with Cs^-1/2, colour with Ct^1/2: output mean and covariance equal the target's."""
    mean_s, cov_s = _mean_cov(source, on)
    mean_t, cov_t = _mean_cov(target, on)
    matrix = _sym_power(cov_t, 0.5) @ _sym_power(cov_s, -0.5)
    return _apply_affine(source, matrix, mean_s, mean_t)


def mkl(source: np.ndarray, target: np.ndarray, on: np.ndarray, seed: int) -> np.ndarray:
    """Monge-Kantorovich: of all linear maps giving the target covariance, the one moving
    colours least (L2), so no arbitrary rotation of the colour cloud as lct can introduce."""
    mean_s, cov_s = _mean_cov(source, on)
    mean_t, cov_t = _mean_cov(target, on)
    root_s = _sym_power(cov_s, 0.5)
    inv_root_s = _sym_power(cov_s, -0.5)
    middle = _sym_power(root_s @ cov_t @ root_s, 0.5)
    matrix = inv_root_s @ middle @ inv_root_s
    return _apply_affine(source, matrix, mean_s, mean_t)


def idt(source: np.ndarray, target: np.ndarray, on: np.ndarray, seed: int) -> np.ndarray:
    """Pitie's IDT: matching 1-D marginals along many random rotations converges to a map
    between the full 3-D colour distributions (not only their first two moments)."""
    current, target_sub, sub, rows, rng = _sliced_setup(source, target, on, seed)
    for basis in _random_rotations(rng, IDT_ITERATIONS):
        current += _axis_step(current, target_sub, sub, basis, rows)
    return _to_uint8(current, 255.0)


def sot(source: np.ndarray, target: np.ndarray, on: np.ndarray, seed: int) -> np.ndarray:
    """Sliced OT: averaging the 1-D transport steps of several bases per iteration gives a
    smoother descent on the sliced Wasserstein distance than IDT's single rotation."""
    current, target_sub, sub, rows, rng = _sliced_setup(source, target, on, seed)
    bases = _random_rotations(rng, SOT_ITERATIONS * SOT_BASES).reshape(
        SOT_ITERATIONS, SOT_BASES, 3, 3)
    for step_bases in bases:
        step = np.zeros_like(current)
        for basis in step_bases:
            step += _axis_step(current, target_sub, sub, basis, rows)
        current += step * np.float32(1.0 / SOT_BASES)
    return _to_uint8(current, 255.0)


def hist(source: np.ndarray, target: np.ndarray, on: np.ndarray, seed: int) -> np.ndarray:
    """Per-channel CDF matching: exact marginals, cheap as a 256-entry look-up table."""
    levels = np.arange(256, dtype=np.float64)
    mask8 = on.view(np.uint8)
    lut = np.empty((1, 256, 3), np.uint8)
    for c in range(3):
        hist_s = cv2.calcHist([source], [c], mask8, [256], [0, 256]).ravel()
        hist_t = cv2.calcHist([target], [c], mask8, [256], [0, 256]).ravel()
        # mid-rank CDFs (a level's pixels at the middle of its CDF step): matching is
        # symmetric, no half-step bias toward the upper neighbour; used levels only, so
        # equal histograms map every level onto itself
        cdf_s = (np.cumsum(hist_s, dtype=np.float64) - 0.5 * hist_s) / hist_s.sum()
        cdf_t = (np.cumsum(hist_t, dtype=np.float64) - 0.5 * hist_t) / hist_t.sum()
        used_s = np.flatnonzero(hist_s)
        used_t = np.flatnonzero(hist_t)
        mapped = np.interp(cdf_s[used_s], cdf_t[used_t], levels[used_t])
        # levels absent inside the mask: linear between used ones, shifted past the ends
        lut[0, :, c] = np.clip(_interp_extrap(levels, levels[used_s], mapped) + 0.5, 0, 255)
    return cv2.LUT(source, lut)


def none(source: np.ndarray, target: np.ndarray, on: np.ndarray, seed: int) -> np.ndarray:
    """The generated colours, unchanged."""
    return source.copy()
