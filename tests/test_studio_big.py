"""The face browser on a set of 2,000 faces, in headless Chromium.

The issue asks that the browser open a set of 2,000 faces in under 2 s once its thumbnails
are cached, and scroll without loading every image at once. The workspace is the one of
``benchmarks/studio_big_set.py`` (a real extraction of 12 frames of each shared clip, made
into 2,000 dst faces of two people); the visits are those of ``benchmarks/studio_open.py``:
a first visit that scrolls through everything (every thumbnail made), then fresh visits
(no browser cache) that are timed, thumbnail requests counted on the server.
"""
import pytest

from benchmarks.studio_big_set import build_big_workspace
from benchmarks.studio_open import measure, report
from pipeline.workspace.store import Workspace
from tests.test_studio import _browser

pytestmark = pytest.mark.slow

FACES = 2000
#: The issue's bound on opening the set, seconds (the quickest of three later visits, so that
#: another program busy on the machine for a moment does not decide it).
OPEN_LIMIT = 2.0
#: About a screenful: 72 thumbnails are in view at 1280x800, and Chromium's lazy loading also
#: fetches those within 1,250 px (2,500 px where it rates the connection slower) below: 192 here,
#: at most about 340; anything near 2,000 means eager loading.
SCREENFUL = 400


def test_two_thousand_faces_open_in_under_two_seconds_and_thumbnails_load_lazily(tmp_path):
    exe = _browser()[1]
    ws = build_big_workspace(tmp_path, FACES)
    with Workspace(ws) as w:
        ids = {r.id for r in w.faces("dst", kept=True)}
    assert len(ids) == FACES

    r = measure(ws, FACES, exe, visits=3)
    summary = report(r)
    assert r["first_visit"]["thumbs"] >= FACES and r["thumbs_cached"] == FACES, summary   # every thumbnail made
    for visit in r["later_visits"]:
        assert visit["cells"] == FACES and set(visit["grid_ids"]) == ids, summary          # every face in the grid
        assert 0 < visit["thumbs_at_open"] < SCREENFUL, summary                            # lazily: a screenful
        assert visit["thumbs_after_bottom"] < 2 * SCREENFUL, summary                       # and the bottom's
    assert r["thumbs_new"] == 0 and r["thumbs_rewritten"] == 0, summary                    # all from the cache
    assert r["second_visit"]["seconds"] < OPEN_LIMIT, summary
