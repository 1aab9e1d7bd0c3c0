"""``--encode-chunk``: a video encoded in independent pieces on a fixed grid and joined by stream copy."""
import re
import subprocess

import numpy as np
import pytest

from pipeline.core.chunked_video import ChunkedVideo, ChunkedWriter, chunk_edges, finished_chunks, join_chunks
from pipeline.core.video import FrameReader, audio_codec, probe
from tests.conftest import KATIE, ffmpeg

FRAMES = 30


@pytest.fixture(scope="module")
def frames():
    info = probe(KATIE)
    out = []
    for i, f in FrameReader(KATIE, info.width, info.height):
        if i >= FRAMES:
            break
        out.append(f[:128, :160].copy())
    return out


def _decoded(video):
    info = probe(video)
    return [f.copy() for _, f in FrameReader(video, info.width, info.height)]


def _keyframes(video) -> list[int]:
    res = subprocess.run([ffmpeg(), "-v", "info", "-i", str(video), "-map", "0:v", "-vf", "showinfo", "-f", "null",
                          "-"], capture_output=True, text=True)
    return [int(n) for n, key in re.findall(r"n:\s*(\d+) .*?iskey:(\d)", res.stderr) if key == "1"]


def test_pieces_lie_on_the_grid():
    assert chunk_edges(0, 25, 0, 10) == [(0, 10), (10, 20), (20, 25)]
    assert chunk_edges(15, 32, 5, 10) == [(15, 25), (25, 32)]     # a shard starting mid-grid ends on it
    assert chunk_edges(5, 5, 0, 10) == []


def test_a_video_in_pieces_is_its_pieces_joined_with_the_audio(frames, tmp_path):
    out = tmp_path / "out.mp4"
    video = ChunkedVideo(out, 160, 128, 25.0, 18, "medium", 12, 0, audio_from=KATIE, audio_duration=FRAMES / 25)
    for f in frames:
        video.put(f)
    video.close()
    decoded = _decoded(out)
    assert len(decoded) == FRAMES
    assert np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(decoded, frames)]) < 3
    assert _keyframes(out)[:3] == [0, 12, 24]           # a new encode at every piece
    assert audio_codec(out) is not None
    assert not any(p.name.endswith(".pieces") for p in tmp_path.iterdir()), "the pieces are removed once joined"


def test_pieces_made_apart_join_to_the_same_bytes(frames, tmp_path):
    """Two writers (two nodes) each encoding their own shard give the file one writer gives."""
    whole = tmp_path / "whole"
    apart = tmp_path / "apart"
    whole.mkdir(), apart.mkdir()
    one = ChunkedWriter(whole, 160, 128, 25.0, 18, "medium", 10, 0, 0)
    for f in frames:
        one.put(f)
    one.close()
    for a, b in ((0, 20), (20, FRAMES)):                # shards on the grid, written by separate writers
        w = ChunkedWriter(apart, 160, 128, 25.0, 18, "medium", 10, a, 0)
        for f in frames[a:b]:
            w.put(f)
        w.close()
    pieces_one, pieces_apart = finished_chunks(whole, 0, FRAMES), finished_chunks(apart, 0, FRAMES)
    assert list(pieces_one) == list(sorted(pieces_apart)) == [(0, 10), (10, 20), (20, 30)]
    for key, path in pieces_one.items():
        assert path.read_bytes() == pieces_apart[key].read_bytes(), key
    join_chunks([pieces_one[k] for k in sorted(pieces_one)], tmp_path / "a.mp4")
    join_chunks([pieces_apart[k] for k in sorted(pieces_apart)], tmp_path / "b.mp4")
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_an_aborted_piece_is_never_left_as_finished(frames, tmp_path):
    w = ChunkedWriter(tmp_path, 160, 128, 25.0, 18, "medium", 10, 0, 0)
    for f in frames[:15]:
        w.put(f)
    w.abort()
    assert list(finished_chunks(tmp_path, 0, FRAMES)) == [(0, 10)]       # the whole piece stays, the half is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk_00000000_00000010.mp4"]
