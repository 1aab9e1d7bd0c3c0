import numpy as np
import pytest

from pipeline.core import geometry as g


def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.radians(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(40, 2)) * 50
    m = _similarity(23.0, 1.7, 12.0, -40.0)
    est = g.umeyama(pts, g.transform_points(pts, m))
    assert np.abs(est - m).max() < 1e-9


def test_mean_face_is_symmetric_and_spans_unit_square():
    face = g.mean_face()
    mirrored = face[g.MIRROR_68].copy()
    mirrored[:, 0] = 1 - mirrored[:, 0]
    assert np.abs(mirrored - face).max() < 1e-9
    inner = face[17:]
    span = inner.max(axis=0) - inner.min(axis=0)
    assert abs(span.max() - 1.0) < 1e-9 and np.allclose((inner.max(0) + inner.min(0)) / 2, 0.5)


@pytest.mark.parametrize("face_type", ["full", "whole", "head"])
def test_alignment_undoes_any_similarity(face_type):
    base = g.mean_face() * 200 + 100
    expected = g.transform_points(base, g.face_transform(base, face_type, 256))
    moved = g.transform_points(base, _similarity(-31.0, 0.6, 300.0, 80.0))
    got = g.transform_points(moved, g.face_transform(moved, face_type, 256))
    assert np.abs(got - expected).max() < 1e-6
    # the face sits inside the crop, and larger face types show less of it
    assert expected.min() > 0 and expected.max() < 256


def test_face_types_zoom_out_in_order():
    base = g.mean_face() * 200
    widths = [np.ptp(g.transform_points(base, g.face_transform(base, t, 256))[:, 0]) for t in ("full", "whole", "head")]
    assert widths[0] > widths[1] > widths[2]


def _project(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """68 image points of the 3D mean face turned by the given angles (degrees)."""
    model = g._mean_face_3d()
    y, p, r = np.radians([-yaw, -pitch, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return ((rz @ ry @ rx) @ model.T).T[:, :2] * 300 + 400


@pytest.mark.parametrize("angles", [(0, 0, 0), (25, 0, 0), (-25, 0, 0), (0, 15, 0), (0, -15, 0), (0, 0, 20),
                                    (20, -10, 8)])
def test_head_pose_recovers_angles_of_a_turned_face(angles):
    est = g.head_pose(_project(*angles))
    assert np.abs(np.array(est) - np.array(angles)).max() < 1.0, est


def test_hull_mask_covers_the_face_and_the_forehead():
    size = 256
    pts = g.transform_points(g.mean_face(), g.crop_from_template("whole", size))
    mask = g.hull_mask(pts, size)
    assert set(np.unique(mask)) <= {0, 255}
    inner = np.round(pts[17:]).astype(int)
    assert (mask[inner[:, 1], inner[:, 0]] == 255).all()
    brow_top = int(pts[17:27, 1].min())
    eye_h = pts[36:48, 1].mean() - pts[17:27, 1].mean()
    above = mask[: brow_top - int(eye_h), int(pts[27, 0])]
    assert (above == 255).sum() > 0, "mask does not reach above the brows"
    corner = mask[: size // 10, : size // 10]
    assert (corner == 0).all()


def _centroid(image: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    w = image.astype(np.float64)
    return np.array([(xs * w).sum(), (ys * w).sum()]) / w.sum()


@pytest.mark.parametrize("src,dst", [(256, 128), (256, 192), (128, 256), (256, 64)])
def test_resize_transform_follows_cv2_resize(src, dst):
    """A blob's centre after cv2.resize is where resize_transform puts it; plain scaling misses.

    Measured: plain scaling is off by 0.25 px at 256 -> 128 (0.5 px of the 256 image) and
    by 0.375 px at 256 -> 64; the pivoted matrix is within 0.01 px.
    """
    import cv2
    yy, xx = np.mgrid[0:src, 0:src]
    centre = np.array([0.41 * src + 0.3, 0.57 * src - 0.2])
    blob = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * (0.06 * src) ** 2))
    interp = cv2.INTER_AREA if dst < src else cv2.INTER_LINEAR
    found = _centroid(cv2.resize(blob.astype(np.float32), (dst, dst), interpolation=interp))
    predicted = g.transform_points(centre[None], g.resize_transform(src, dst))[0]
    assert np.abs(found - predicted).max() < 0.02, (found, predicted)
    naive = centre * dst / src
    assert np.abs(found - naive).max() > 0.1          # the error this matrix exists to avoid
