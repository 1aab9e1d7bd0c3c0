"""convert.part_colour: brows, nose and lips moved to the src person's colours against the skin."""
import cv2
import numpy as np
import pytest

from convert import part_colour
from pipeline.core.geometry import eye_distance
from pipeline.core.images import read_rgb, to_lab
from pipeline.faces.regions import region_masks
from pipeline.workspace.store import Workspace


def _faces(ws_root, count=24):
    with Workspace(ws_root) as ws:
        rows = ws.faces("dst", kept=True)
        picks = [rows[i] for i in np.linspace(0, len(rows) - 1, count).round().astype(int)]
        return [(read_rgb(ws.aligned_path(r)), r.aligned_landmarks) for r in picks]


@pytest.fixture(scope="module")
def people(extracted_clips):
    """Aligned faces of Hill (the face to change) and Ocasio-Cortez (whose parts' colours it takes)."""
    return _faces(extracted_clips["katie"]), _faces(extracted_clips["aoc"])


def test_the_parts_take_the_src_persons_colour_against_the_skin(people):
    hill, aoc = people
    src = part_colour.relations(aoc)
    own = part_colour.relations(hill)
    assert np.linalg.norm(own["lips"] - src["lips"]) > 5          # the two people's lips differ to begin with
    for image, lm in hill[:6]:
        moved = part_colour.match(image, lm, src, 1.0)
        after = part_colour.part_colours(moved, lm)
        before = part_colour.part_colours(image, lm)
        for name in ("nose", "lips"):
            gap_after = np.linalg.norm(after[name] - after["cheeks"] - src[name])
            gap_before = np.linalg.norm(before[name] - before["cheeks"] - src[name])
            assert gap_after < 0.5 * gap_before, (name, gap_before, gap_after)
        # brows: lightness as a difference (a thin line: the feather keeps it short of the full way, as it
        # does the lips), chroma as the src person's ratio to the skin
        light_after = abs((after["brows"] - after["cheeks"])[0] - src["brows"][0])
        light_before = abs((before["brows"] - before["cheeks"])[0] - src["brows"][0])
        assert light_after < 0.6 * light_before
        target = part_colour.chroma_by_ratio(before["cheeks"][1:], src["cheeks"][1:], src["brows"][1:])
        gap_after = np.linalg.norm(after["brows"][1:] - target)
        gap_before = np.linalg.norm(before["brows"][1:] - target)
        assert gap_after < 0.6 * gap_before, (gap_before, gap_after)
        assert (after["brows"][1:] > 0).all()       # on the skin's (warm) side of neutral


def test_brow_chroma_as_a_ratio_never_crosses_neutral():
    """Near-neutral brows on warm skin, carried to a paler skin: as a difference they land on the cool side
    (blue-grey, what the main job showed); as a ratio they keep the skin's side and the src's scale."""
    src_skin, src_brows_diff = np.array([18.0, 24.0]), np.array([-15.0, -18.0])    # brows at (3, 6)
    pale_skin = np.array([9.0, 12.0])
    assert ((pale_skin + src_brows_diff) < 0).all()                                # the difference: cool
    got = part_colour.chroma_by_ratio(pale_skin, src_skin, src_brows_diff)
    assert np.allclose(got, pale_skin * np.array([3 / 18, 6 / 24]))
    assert (got > 0).all()
    # a greyish src skin does not blow the ratio up, and the ratio is capped
    assert (part_colour.chroma_by_ratio(pale_skin, np.array([0.5, 0.5]), np.array([9.5, 9.5]))
            <= pale_skin * part_colour.MOST_RATIO).all()


def test_nothing_moves_away_from_the_parts_or_with_amount_zero(people):
    hill, aoc = people
    src = part_colour.relations(aoc)
    image, lm = hill[0]
    assert part_colour.match(image, lm, src, 0.0) is image
    assert part_colour.match(image, lm, None, 1.0) is image
    moved = part_colour.match(image, lm, src, 1.0)
    masks = region_masks(lm, image.shape)
    near = np.zeros(image.shape[:2], np.uint8)
    for name in part_colour.PARTS:
        near |= masks[name]
    reach = int(np.ceil(4 * part_colour.FEATHER * eye_distance(lm))) + 2     # the feather's Gaussian tail
    near = cv2.dilate(near, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)) > 0
    assert np.array_equal(moved[~near], image[~near])
    assert np.abs(moved[near].astype(int) - image[near]).max() > 10


def _match_whole_crop(face, landmarks, src, amount):
    """The feathered shift made over the whole crop and every pixel a part reaches taken back from CIELAB:
    what ``match`` computes in the parts' boxes (its speed-up must not change a pixel)."""
    masks = region_masks(landmarks, face.shape)
    lab = to_lab(face)
    skin = lab[masks["cheeks"] > 0].mean(axis=0)
    sigma = max(part_colour.FEATHER * eye_distance(landmarks), 0.5)
    shift = np.zeros_like(lab)
    touched = np.zeros(face.shape[:2], bool)
    for name in part_colour.PARTS:
        inside = masks[name] > 0
        if not inside.any():
            continue
        here = lab[inside].mean(axis=0)
        delta = (skin + src[name]) - here
        if name in part_colour.CHROMA_BY_RATIO:
            delta[1:] = part_colour.chroma_by_ratio(skin[1:], src["cheeks"][1:], src[name][1:]) - here[1:]
        size = float(np.linalg.norm(delta))
        if size > part_colour.MOST:
            delta *= part_colour.MOST / size
        weight = cv2.GaussianBlur(masks[name].astype(np.float32) / 255.0, (0, 0), sigma)
        shift += weight[..., None] * (amount * delta)[None, None, :]
        touched |= weight > 1e-3
    out = face.copy()
    moved = cv2.cvtColor(lab + shift, cv2.COLOR_Lab2RGB)
    out[touched] = np.clip(moved[touched] * 255.0, 0, 255).round().astype(np.uint8)
    return out


def test_the_parts_boxes_give_the_whole_crops_result(people):
    """Same bytes as the whole-crop computation, on faces at the network's size and on crops that cut the mouth
    and a brow at the image's edge (where the box's blur must reflect as the whole image's does)."""
    hill, aoc = people
    src = part_colour.relations(aoc)
    cases = []
    for image, lm in hill[::3]:
        small = cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA)
        cases.append((small, lm * 128 / image.shape[0]))
        bottom = int(lm[57, 1]) + 1                  # cut just under the lower lip's middle
        left = int(lm[17, 0]) + 2                    # cut through the left brow
        cases.append((np.ascontiguousarray(image[:bottom, left:]), lm - [left, 0]))
    for face, lm in cases:
        for amount in (1.0, 0.4):
            assert np.array_equal(part_colour.match(face, lm, src, amount),
                                  _match_whole_crop(face, lm, src, amount))
