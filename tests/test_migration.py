"""A version-1 workspace (made by the code before schema 2, kept in tests/data) after migration.

Readers read it as it is and say it will be migrated; the first writer migrates it (with
backups); extract, train, convert and evaluate then work on it, with the artist's
deletions and repainted masks intact.
"""
import json
import sqlite3

import pytest

from tests.conftest import CLIP6, copy_v1_workspace, run_cli, snapshot

pytestmark = pytest.mark.slow

CLIP = CLIP6
TINY = ["--width", "4", "--batch-size", "2", "--n-best", "2", "--save-every", "2", "--preview-every", "2"]


@pytest.fixture
def v1(tmp_path):
    return copy_v1_workspace(tmp_path)


def test_readers_leave_a_version_1_workspace_as_it_is_and_say_so(v1):
    before = snapshot(v1)
    res = run_cli("info", "--json", "--workspace", v1)
    assert res.returncode == 0, res.stderr
    assert "uses schema 1" in res.stderr and "python main.py migrate" in res.stderr
    info = json.loads(res.stdout)
    assert info["schema_version"] == 1
    dst = info["sets"]["dst"]
    assert dst["dropped_by_reason"] == {"deleted": 1} and dst["masks"]["hand"] == 2 and dst["faces"] == 5
    res = run_cli("convert", "--workspace", v1)        # the legacy model, read-only on the index
    assert res.returncode == 0, res.stderr
    assert "1 face deleted by the artist" in res.stdout
    after = snapshot(v1)
    after.pop("result.mp4")
    assert after == before


def test_the_first_writer_migrates_and_every_stage_works(v1):
    masks_before = {p.name: p.read_bytes() for p in (v1 / "data_dst" / "masks").iterdir()}
    json_before = (v1 / "workspace.json").read_bytes()
    res = run_cli("extract", "--input", CLIP, "--size", "128", "--workspace", v1)
    assert res.returncode == 0, res.stderr
    assert "migrated from schema 1 to 4" in res.stderr
    assert "0 new, 6 already done" in res.stdout                      # nothing re-extracted
    meta = json.loads((v1 / "workspace.json").read_text())
    assert meta["schema_version"] == 4
    assert meta["sets"]["dst"]["extract"]["landmarker"] == "dlib" and meta["sets"]["src"]["extract"]["masker"] == "hull"
    assert {"landmarker", "dense_landmarks", "mask_model"} <= _columns_of(v1 / "faces.sqlite")
    assert (v1 / "workspace.json.v1.bak").read_bytes() == json_before
    assert "landmarker" not in _columns_of(v1 / "faces.sqlite.v1.bak")
    # the artist's work: the deleted face stays deleted, both repainted masks untouched and 'hand'
    assert not (v1 / "data_dst" / "aligned" / "000002_0.png").exists()
    assert {p.name: p.read_bytes() for p in (v1 / "data_dst" / "masks").iterdir()} == masks_before
    info = json.loads(run_cli("info", "--json", "--workspace", v1).stdout)
    assert info["schema_version"] == 4
    dst = info["sets"]["dst"]
    assert dst["dropped_by_reason"] == {"deleted": 1} and dst["masks"]["hand"] == 2 and dst["faces"] == 5

    res = run_cli("train", "--workspace", v1, *TINY, "--iterations", "4")   # resumes the legacy checkpoint
    assert res.returncode == 0, res.stderr
    assert "resuming at iteration 2" in res.stderr
    options = json.loads((v1 / "model" / "options.json").read_text())
    assert options["iteration"] == 4 and options["model_type"] == "transform"
    res = run_cli("convert", "--workspace", v1)
    assert res.returncode == 0, res.stderr
    assert "6 frames, 5 faces swapped, 1 frames passed through (1 face deleted by the artist)" in res.stdout
    res = run_cli("evaluate", "--workspace", v1, "--samples", "1")
    assert res.returncode == 0, res.stderr
    report = json.loads((v1 / "report" / "report.json").read_text())
    assert report["coverage"]["frames_compared"] == 6 and report["identity_to_dst"]["count"] == 6
    assert {p.name: p.read_bytes() for p in (v1 / "data_dst" / "masks").iterdir()} == masks_before


def test_migrate_command(v1):
    res = run_cli("migrate", "--workspace", v1)
    assert res.returncode == 0 and "migrated from schema 1 to 4" in res.stdout
    res = run_cli("migrate", "--workspace", v1)
    assert res.returncode == 0 and "already at schema 4" in res.stdout


def _columns_of(db):
    con = sqlite3.connect(db)
    try:
        return {r[1] for r in con.execute("PRAGMA table_info(faces)")}
    finally:
        con.close()
