"""People, not faces (issue 27): grouping that does not chain, info's people, convert's whom-to-swap.

The real-footage tests use ``tests.material.two_person_clip``: 200 frames of Hill, then a
hard cut to 60 frames of Ocasio-Cortez in the same place (extract's tracker follows the
box across the cut, so one track holds both people).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.errors import UserError
from pipeline.faces.identity import cluster
from pipeline.faces.people import group
from tests.conftest import clean_error, run_cli
from tests.material import two_person_clip

RNG = np.random.default_rng(27)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _around(centre: np.ndarray, n: int, spread: float = 0.15) -> np.ndarray:
    """``n`` descriptors scattered about ``centre``, each about ``spread`` from it."""
    return centre + RNG.normal(scale=spread / np.sqrt(len(centre)), size=(n, len(centre)))


# ---------------------------------------------------------------------- grouping, synthetic


def test_a_chain_of_neighbours_does_not_merge_into_one_person():
    """A-B and B-C are 0.5 apart (under 0.6), A-C 1.0: average linkage must not join all three."""
    step = 0.5 * _unit(RNG.normal(size=128))
    a = np.zeros(128)
    faces = np.stack([a, a + step, a + 2 * step])
    assert len(set(cluster(faces))) >= 2
    # the same with groups of faces at each point of the chain
    faces = np.concatenate([_around(a, 8, 0.05), _around(a + step, 8, 0.05), _around(a + 2 * step, 8, 0.05)])
    labels = cluster(faces)
    assert len(set(labels)) >= 2 and labels[0] != labels[-1]


def test_two_tight_groups_apart_stay_two_largest_first():
    a, b = 0.4 * _unit(RNG.normal(size=128)), 0.4 * _unit(RNG.normal(size=128))    # ~0.57 ... 0.8 apart
    b = a + 0.8 * _unit(b - a)
    labels = cluster(np.concatenate([_around(b, 5, 0.1), _around(a, 9, 0.1)]))
    assert list(labels) == [1] * 5 + [0] * 9


def test_one_person_in_three_tracks_is_one_person():
    centre = 0.5 * _unit(RNG.normal(size=128))
    faces = np.concatenate([_around(centre + 0.15 * _unit(RNG.normal(size=128)), 30, 0.3) for _ in range(3)])
    tracks = [0] * 30 + [1] * 30 + [2] * 30
    assert set(group(faces, tracks, positions=np.arange(90))) == {0}


def test_a_track_that_crosses_a_cut_to_someone_else_is_split():
    a = np.zeros(128)
    b = a + 0.8 * _unit(RNG.normal(size=128))
    faces = np.concatenate([_around(a, 20, 0.25), _around(b, 12, 0.25)])
    labels = group(faces, [7] * 32, positions=np.arange(32))
    assert list(labels) == [0] * 20 + [1] * 12


def test_a_track_keeps_an_odd_face_and_photos_stand_alone():
    a = np.zeros(128)
    b = a + 0.9 * _unit(RNG.normal(size=128))
    track = _around(a, 20, 0.2)
    track[10] = b                       # one face of the track looks like someone else (pose, blur)
    photo = b[None, :]                  # a photo face (no track) of that someone else
    labels = group(np.concatenate([track, photo]), [3] * 20 + [None], positions=np.arange(21))
    assert set(labels[:20]) == {0} and labels[20] == 1


def test_bad_input_is_one_clear_error():
    with pytest.raises(UserError, match="track keys"):
        group(np.zeros((3, 128)), [0, 0])
    with pytest.raises(UserError, match="weights"):
        group(np.zeros((2, 128)), weights=np.array([1.0, -1.0]))


def test_thousands_of_faces_group_quickly():
    import time
    centres = 0.45 * np.stack([_unit(RNG.normal(size=128)) for _ in range(10)])
    who = RNG.integers(0, 10, 2000)
    faces = centres[who] + RNG.normal(scale=0.2 / np.sqrt(128), size=(2000, 128))
    t = time.perf_counter()
    labels = cluster(faces)
    seconds = time.perf_counter() - t
    assert len(set(labels)) == 10 and seconds < 5, seconds


# ---------------------------------------------------------------------- the two-person clip


@pytest.fixture(scope="module")
def two_person(tmp_path_factory) -> dict[str, Path]:
    """The clip (kept between runs beside pytest's numbered temp folders) extracted into a workspace."""
    clip = two_person_clip(tmp_path_factory.getbasetemp().parent / "material" / "hill200_aoc60.mp4")
    ws = tmp_path_factory.mktemp("people") / "ws"
    res = run_cli("extract", "--input", clip, "--workspace", ws)
    assert res.returncode == 0, res.stderr
    return {"clip": clip, "ws": ws}


def test_info_lists_the_two_people_of_the_clip(two_person):
    res = run_cli("info", "--workspace", two_person["ws"], "--json")
    assert res.returncode == 0, res.stderr
    dst = json.loads(res.stdout)["sets"]["dst"]
    found = [(p["person"], p["faces"], p["frames"], p["first_frame"], p["last_frame"]) for p in dst["people"]]
    assert found == [(1, 200, 200, 0, 199), (2, 60, 60, 200, 259)], found
    assert dst["identities"] == 2 and dst["identity_groups"] == [200, 60]
    for p in dst["people"]:
        assert (two_person["ws"] / p["thumbnail"]).is_file()
    text = run_cli("info", "--workspace", two_person["ws"]).stdout
    assert "person 1: 200 faces (200 frames, 0-199)" in text and "person 2: 60 faces (60 frames, 200-259)" in text


def _frames(path: Path) -> np.ndarray:
    from pipeline.core.video import FrameReader, probe
    info = probe(path)
    reader = FrameReader(path, info.width, info.height)
    try:
        return np.stack([f for _, f in reader]).astype(np.int16)
    finally:
        reader.close()


def _face_changes(ws: Path, before: np.ndarray, after: np.ndarray, first: int) -> np.ndarray:
    """Mean absolute change inside each frame's face box (frames ``first``... of the input)."""
    from pipeline.workspace.store import Workspace
    with Workspace(ws) as w:
        boxes = {r.frame_index: r.bbox.astype(int) for r in w.faces("dst")}
    out = []
    for k in range(len(after)):
        x0, y0, x1, y1 = np.maximum(boxes[first + k], 0)
        out.append(np.abs(before[first + k, y0:y1, x0:x1] - after[k, y0:y1, x0:x1]).mean())
    return np.array(out)


@pytest.fixture(scope="module")
def converting(two_person, tmp_path_factory) -> dict[str, Path]:
    """The workspace with a model whose output is plainly not its input.

    An untrained plain (``skip=False``) transformation net paints a face no one has, so a
    swapped face differs from the input far beyond codec noise; ``--crf 0`` keeps the noise
    of untouched frames near zero.
    """
    import torch

    from pipeline.models.store import save_model
    from pipeline.models.transform import TransformModel
    from pipeline.models.transform_net import TransformNet
    torch.manual_seed(0)
    save_model(two_person["ws"] / "model", TransformModel(TransformNet(128, width=4, skip=False)),
               {"face_type": "full", "iteration": 0})
    return {**two_person, "before": _frames(two_person["clip"])}    # type: ignore[dict-item]


def test_convert_swaps_only_the_main_person_and_says_so(converting, tmp_path):
    out = tmp_path / "out.mp4"
    res = run_cli("convert", "-w", converting["ws"], "-o", out, "--crf", "0", "--preset", "ultrafast")
    assert res.returncode == 0, res.stderr
    said = res.stdout + res.stderr
    assert "swapping person 1 (200 faces in 200 frames, 0-199), leaving 60 faces of 1 other person untouched" \
        in said, said
    change = _face_changes(converting["ws"], converting["before"], _frames(out), 0)
    print(f"face-box change: Hill min {change[:200].min():.2f} median {np.median(change[:200]):.2f}; "
          f"AOC max {change[200:].max():.3f} median {np.median(change[200:]):.3f}")
    assert len(change) == 260
    assert change[:200].min() > 5.0           # every Hill frame swapped (measured: min 13.7)
    assert change[200:].max() < 1.0           # the 60 AOC frames as they were (measured: max 0.14)


def test_convert_person_2_and_all_and_a_person_not_there(converting, tmp_path):
    ws, before = converting["ws"], converting["before"]
    out = tmp_path / "p2.mp4"
    res = run_cli("convert", "-w", ws, "-o", out, "--crf", "0", "--preset", "ultrafast", "--person", "2",
                  "--start", "190", "--end", "210")
    assert res.returncode == 0, res.stderr
    assert "swapping person 2 (60 faces in 60 frames, 200-259)" in res.stdout + res.stderr
    change = _face_changes(ws, before, _frames(out), 190)
    assert change[:10].max() < 1.0 and change[10:].min() > 5.0, change
    out = tmp_path / "all.mp4"
    res = run_cli("convert", "-w", ws, "-o", out, "--crf", "0", "--preset", "ultrafast", "--person", "all",
                  "--start", "195", "--end", "205")
    assert res.returncode == 0, res.stderr
    assert _face_changes(ws, before, _frames(out), 195).min() > 5.0
    clean_error(run_cli("convert", "-w", ws, "--person", "3"), "--person 3", "shows 2 people")


def test_convert_person_that_is_no_number_is_one_clear_error(tmp_path):
    clean_error(run_cli("convert", "-w", tmp_path, "--person", "two"), "--person two", "person's number")


def test_train_loads_the_chosen_dst_person_only(two_person):
    from pipeline.training.data import load_set
    from pipeline.workspace.store import Workspace
    with Workspace(two_person["ws"]) as ws:
        sizes = {p: len(load_set(ws, "dst", 32, writer=False, person=p)) for p in (1, 2, None)}
        assert sizes == {1: 200, 2: 60, None: 260}, sizes
        with pytest.raises(UserError, match="--person 3: the dst faces show 2 people"):
            load_set(ws, "dst", 32, writer=False, person=3)


def test_train_person_that_is_no_number_is_one_clear_error(tmp_path):
    clean_error(run_cli("train", "-w", tmp_path, "--person", "-1"), "--person -1", "person's number")
