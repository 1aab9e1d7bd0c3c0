"""frame_at: one frame by seeking, the same pixels FrameReader gives at that index."""
import subprocess
import time

import numpy as np
import pytest

from pipeline.core.errors import UserError
from pipeline.core.video import FrameReader, frame_at, frames_at, probe
from tests.conftest import AOC, KATIE, ffmpeg


def _all_frames(video) -> list[np.ndarray]:
    info = probe(video)
    return [frame.copy() for _, frame in FrameReader(video, info.width, info.height)]


@pytest.mark.parametrize("video", [KATIE, AOC], ids=["katie", "aoc"])
def test_frame_at_is_the_frame_reader_frame(video):
    frames = _all_frames(video)
    last = len(frames) - 1
    # 11, 12, 13: either side of a keyframe (every 12th frame in these files)
    for index in (0, 1, 11, 12, 13, len(frames) // 2, last):
        got = frame_at(video, index)
        assert got.dtype == np.uint8 and got.shape == frames[index].shape
        assert np.array_equal(got, frames[index]), f"frame {index}: max diff " \
            f"{np.abs(got.astype(int) - frames[index]).max()}"
    with pytest.raises(UserError, match=rf"frame {len(frames)} is outside .*{video.name}"):
        frame_at(video, len(frames))
    with pytest.raises(UserError, match="frame -1 is outside"):
        frame_at(video, -1)


def test_frame_at_counts_from_the_video_streams_start(tmp_path):
    """A video stream that starts after the audio: seeking by index / fps alone lands frames early."""
    late = tmp_path / "late_video.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-itsoffset", "0.1", "-i", str(KATIE), "-i", str(KATIE),
                    "-map", "0:v:0", "-map", "1:a:0", "-t", "1", "-c:v", "libx264", "-preset", "ultrafast",
                    "-g", "10", "-bf", "2", "-c:a", "aac", str(late)], check=True)
    frames = _all_frames(late)
    for index in (0, 1, 2, 3, 9, 10, 11, len(frames) - 1):
        assert np.array_equal(frame_at(late, index), frames[index]), index


def test_frame_at_bad_files(tmp_path):
    with pytest.raises(UserError, match=r"video .*gone\.mp4 not found"):
        frame_at(tmp_path / "gone.mp4", 0)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(UserError, match=r"cannot read .*junk\.mp4"):
        frame_at(junk, 0)


def test_frame_at_is_faster_than_decoding_from_the_start(capsys):
    index = probe(KATIE).frames - 1
    frame_at(KATIE, 0)                                    # probe facts cached, as a studio session has them
    t0 = time.perf_counter()
    seeked = frame_at(KATIE, index)
    t_seek = time.perf_counter() - t0
    t0 = time.perf_counter()
    decoded = frames_at(KATIE, {index})[index]
    t_decode = time.perf_counter() - t0
    assert np.array_equal(seeked, decoded)
    with capsys.disabled():
        print(f"\nframe {index} of {KATIE.name}: frame_at {t_seek * 1000:.0f} ms, frames_at {t_decode * 1000:.0f} ms")
    assert t_seek < t_decode


def test_frames_are_counted_when_ffmpeg_reports_no_count_for_a_stream_copy(monkeypatch):
    """ffmpeg 7.0 (imageio-ffmpeg 0.6.0) prints no ``frame=`` line for a stream copy: the
    count then comes from a packet listing, not 0 (which made every frame 'outside' the video)."""
    from pipeline.core import video as video_module
    real_run = subprocess.run
    calls = []

    def run(cmd, *args, **kwargs):
        res = real_run(cmd, *args, **kwargs)
        calls.append(cmd)
        if "-progress" in cmd:                      # what ffmpeg 7.0 says: progress without a frame count
            res.stdout = "\n".join(ln for ln in res.stdout.splitlines() if not ln.startswith("frame="))
        return res
    monkeypatch.setattr(video_module.subprocess, "run", run)
    assert video_module.count_frames(KATIE) == 200
    assert any("framecrc" in c for c in calls)
