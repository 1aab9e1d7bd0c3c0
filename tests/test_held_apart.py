"""The held-apart identity network: what it says on the shared data, and that training never reaches it."""
import ast
import re
from pathlib import Path

import numpy as np
import pytest

from evaluate import held_apart
from pipeline.core.video import FrameReader, probe
from tests.conftest import AOC, KATIE, ROOT


@pytest.fixture(scope="module")
def judge():
    return held_apart.FaceNetJudge()


def _frames(video, wanted):
    info = probe(video)
    return {i: f for i, f in FrameReader(video, info.width, info.height) if i in wanted}


def test_same_person_is_within_the_threshold_and_another_is_beyond(judge):
    from pipeline.faces.analyser import FaceAnalyser
    find = FaceAnalyser("retinaface", "mediapipe", "auto", 80)
    emb = {}
    for name, video in (("hill", KATIE), ("aoc", AOC)):
        for i, frame in _frames(video, {0, 120}).items():
            faces = find(frame)
            assert len(faces) == 1
            emb[name, i] = judge.describe(frame, faces[0].box)
    for v in emb.values():
        assert v.shape == (512,) and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-6)
    same = [np.linalg.norm(emb[p, 0] - emb[p, 120]) for p in ("hill", "aoc")]
    other = [np.linalg.norm(emb["hill", i] - emb["aoc", j]) for i in (0, 120) for j in (0, 120)]
    assert max(same) < held_apart.SAME_PERSON < min(other)


def test_the_crop_is_the_box_with_its_margin_and_edges_replicated():
    image = np.zeros((200, 300, 3), np.uint8)
    image[50:150, 100:200] = 255                          # the face box, white
    chip = held_apart.crop(image, (100, 50, 200, 150))
    assert chip.shape == (160, 160, 3)
    # box 100 px + 20 % a side = 140 px -> 160: the white square fills 100/140 of the chip
    white = (chip[..., 0] > 127).mean()
    assert white == pytest.approx((100 / 140) ** 2, abs=0.02)
    corner = held_apart.crop(image, (-20, -20, 40, 40))   # off the top-left edge: replicated, no error
    assert corner.shape == (160, 160, 3)
    with pytest.raises(ValueError):
        held_apart.crop(image, (400, 400, 500, 500))


def _project_imports(path: Path) -> set[str]:
    """Modules of this project that a file imports (absolute imports, at any depth of the file)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n.split(".")[0] in {"pipeline", "train", "evaluate", "convert", "extract"}}


def _module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_nothing_training_imports_reaches_the_held_apart_network():
    """The import graph from every train/ module, followed through the project: no evaluate
    module, and no module that names the held-apart network or its registry."""
    seen: set[Path] = set()
    todo = sorted((ROOT / "train").glob("*.py"))
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _project_imports(path):
            found = _module_file(name)
            if found is not None and found not in seen:
                todo.append(found)
    reached = {p.relative_to(ROOT).as_posix() for p in seen}
    assert {"train/trainer.py", "pipeline/training/loop.py", "train/features.py",
            "pipeline/faces/face_net.py"} <= reached
    assert not any(p.startswith("evaluate/") for p in reached), sorted(reached)
    # the weight list names its file (as text); nothing else training reaches may (its registry is evaluate's)
    allowed = {"pipeline/core/weights.py"}
    for rel in reached - allowed:
        text = (ROOT / rel).read_text().lower()
        for word in ("facenet", "held_apart", "judges", "readnetfromtensorflow"):
            assert not re.search(rf"\b{word}\b", text), f"{rel} mentions {word}"


def test_a_swap_that_fools_only_the_trained_network_is_flagged():
    from evaluate.runner import _held_apart_summary

    def frame(dlib_src, facenet_src):
        return {"identity_to_src": dlib_src, "identity_to_dst": 0.8, "held_apart_to_src": facenet_src,
                "held_apart_to_dst": 1.0}
    notes: list[str] = []
    fooled = _held_apart_summary([frame(0.3, 1.1)] * 6 + [frame(0.3, 0.5)] * 4, notes)
    assert fooled["share_closer_to_src"] == pytest.approx(0.4) and fooled["trained_network_fooled"]
    assert fooled["to_src"]["count"] == 10 and fooled["to_dst"]["worst"] == pytest.approx(1.0)
    assert len(notes) == 1 and "100%" in notes[0] and "40%" in notes[0]
    notes.clear()
    agreed = _held_apart_summary([frame(0.3, 0.5)] * 9 + [frame(0.3, 1.1)], notes)
    assert agreed["share_closer_to_src"] == pytest.approx(0.9) and not agreed["trained_network_fooled"]
    assert notes == []
