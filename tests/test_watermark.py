"""The face watermark (issue 30): found where it was put, with the right key, and nowhere
else; invisible to 45 dB."""
import numpy as np
import pytest

from pipeline.core.video import FrameReader, frame_at, probe
from pipeline.faces.analyser import FaceAnalyser
from pipeline.provenance.watermark import THRESHOLD, Watermark, window_scores
from tests.conftest import ROOT, clean_error, run_cli

HILL = ROOT.parent / "shared" / "data" / "videos" / "WDA_KatieHill_000.mp4"


@pytest.fixture(scope="module")
def frames_and_faces():
    analyser = FaceAnalyser("retinaface", "mediapipe")
    frames = [frame_at(HILL, i) for i in range(40, 49)]
    return frames, [analyser(f)[0].landmarks for f in frames]


def test_the_mark_is_found_with_its_key_and_not_without(frames_and_faces):
    frames, faces = frames_and_faces
    mark, other = Watermark(b"k" * 32), Watermark(b"x" * 32)
    marked, clean, wrong = {}, {}, {}
    psnr = []
    for i, (frame, lm) in enumerate(zip(frames, faces)):
        m = frame.copy()
        mark.embed(m, lm, 40 + i)
        diff = m.astype(np.float32) - frame
        region = np.abs(diff).max(axis=2) > 0
        psnr.append(10 * np.log10(255.0 ** 2 / (diff[region] ** 2).mean()))
        # found again from landmarks of the marked frame itself, as verify would
        lm2 = FaceAnalyser("retinaface", "mediapipe")(m)[0].landmarks
        marked[40 + i] = mark.score(m, lm2, 40 + i)
        clean[40 + i] = mark.score(frame, lm, 40 + i)
        wrong[40 + i] = other.score(m, lm2, 40 + i)
    assert min(psnr) >= 45.0, psnr
    # each face alone (its cells against their neighbours, verify's fallback): a few standard deviations a frame,
    # found over the 9 frames (the window's edges hold 5 frames only)
    assert np.median(list(marked.values())) >= 2.5, marked
    assert window_scores(marked)[44] >= THRESHOLD and np.median(list(window_scores(marked).values())) >= THRESHOLD
    assert max(abs(z) for z in window_scores(clean).values()) < THRESHOLD, clean
    assert max(abs(z) for z in window_scores(wrong).values()) < THRESHOLD, wrong
    # another frame index's pattern is another pattern
    assert abs(mark.score(frames[0], faces[0], 41)) < THRESHOLD


def test_frame_scorer_takes_the_face_out_with_the_frames_around(frames_and_faces, tmp_path):
    """Scored against the same face in the neighbouring frames, the mark stands out more after a crf 28 re-encode
    than scored alone, and unmarked frames (or another key) stay near zero."""
    from pipeline.core.video import FrameWriter
    from pipeline.provenance.watermark import FrameScorer, face_cells
    frames, faces = frames_and_faces
    mark, other = Watermark(b"k" * 32), Watermark(b"x" * 32)
    video = tmp_path / "marked.mp4"
    writer = FrameWriter(video, frames[0].shape[1], frames[0].shape[0], 25.0, crf=28)
    for i, (frame, lm) in enumerate(zip(frames, faces)):
        m = frame.copy()
        mark.embed(m, lm, 40 + i)
        writer.put(m)
    writer.close()
    analyser = FaceAnalyser("retinaface", "mediapipe")
    scorers = {name: FrameScorer(w) for name, w in (("marked", mark), ("clean", mark), ("wrong", other))}
    alone = []
    for i, (m, frame) in enumerate(zip(_frames(video), frames)):
        lm = analyser(m)[0].landmarks
        scorers["marked"].add(40 + i, [face_cells(m, lm)])
        scorers["wrong"].add(40 + i, [face_cells(m, lm)])
        scorers["clean"].add(40 + i, [face_cells(frame, faces[i])])
        alone.append(mark.score(m, lm, 40 + i))
    marked, clean, wrong = (scorers[k].finish() for k in ("marked", "clean", "wrong"))
    assert sorted(marked) == list(range(40, 49))
    assert np.median(list(marked.values())) > np.median(alone) + 0.5, (marked, alone)
    assert min(window_scores(marked).values()) >= THRESHOLD, marked
    assert max(abs(z) for z in window_scores(clean).values()) < THRESHOLD, clean
    assert max(abs(z) for z in window_scores(wrong).values()) < THRESHOLD, wrong


def test_window_scores_stay_standard_normal_without_a_mark():
    rng = np.random.default_rng(0)
    scores = {i: float(z) for i, z in enumerate(rng.normal(size=4000))}
    windowed = np.array(list(window_scores(scores).values()))
    assert abs(windowed.std() - 1.0) < 0.05 and abs(windowed.mean()) < 0.1


# ---------------------------------------------------------------------- convert marks, verify finds


def _frames(path):
    info = probe(path)
    return [f for _, f in FrameReader(path, info.width, info.height)]


def test_convert_marks_every_swapped_face_and_no_watermark_leaves_it_out(small_ws, tmp_path):
    from pipeline.provenance.keys import load_key
    from pipeline.workspace.store import Workspace
    marked_res = run_cli("convert", "--workspace", small_ws, "--crf", "0")
    assert marked_res.returncode == 0, marked_res.stderr
    assert "watermark in every swapped face, key" in marked_res.stderr
    plain = tmp_path / "plain.mp4"
    plain_res = run_cli("convert", "--workspace", small_ws, "--no-watermark", "--crf", "0", "--output", plain)
    assert plain_res.returncode == 0 and "--no-watermark: nothing in the video" in plain_res.stderr
    mark = Watermark(load_key())
    with Workspace(small_ws) as ws:
        landmarks = {r.frame_index: r.landmarks for r in ws.faces_as_edited("dst") if not r.dropped}
    marked, unmarked = _frames(small_ws / "result.mp4"), _frames(plain)
    assert len(marked) == len(unmarked) == 6
    with_mark = {i: mark.score(f, landmarks[i], i) for i, f in enumerate(marked)}
    without = {i: mark.score(f, landmarks[i], i) for i, f in enumerate(unmarked)}
    assert min(window_scores(with_mark).values()) >= THRESHOLD, with_mark
    assert max(abs(z) for z in window_scores(without).values()) < THRESHOLD, without
    # the mark is faint: lossless encodes of the two differ by less than 2 grey levels on average where they differ
    diff = np.abs(np.stack(marked).astype(np.int16) - np.stack(unmarked))
    assert 0 < diff[diff > 0].mean() < 2.0


@pytest.fixture(scope="module")
def marked_clip(tmp_path_factory, frames_and_faces):
    """The 9 frames of ``frames_and_faces`` marked with a key of their own, encoded as convert encodes."""
    folder = tmp_path_factory.mktemp("marked")
    key_file = folder / "key"
    key_file.write_text("ab" * 32 + "\n")
    from pipeline.core.video import FrameWriter
    from pipeline.provenance.keys import load_key
    mark = Watermark(load_key(key_file))
    frames, faces = frames_and_faces
    video = folder / "marked.mp4"
    writer = FrameWriter(video, frames[0].shape[1], frames[0].shape[0], 25.0, crf=18)
    for i, (frame, lm) in enumerate(zip(frames, faces)):
        f = frame.copy()
        mark.embed(f, lm, i)
        writer.put(f)
    writer.close()
    unmarked = folder / "unmarked.mp4"
    writer = FrameWriter(unmarked, frames[0].shape[1], frames[0].shape[0], 25.0, crf=18)
    for frame in frames:
        writer.put(frame)
    writer.close()
    return video, unmarked, key_file


def test_verify_says_marked_with_the_key_and_not_marked_otherwise(marked_clip, tmp_path):
    import json

    video, unmarked, key = marked_clip
    res = run_cli("verify", video, "--key", key, "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["verdict"] == "marked" and report["frames_marked"] == report["frames_with_face"] == 9
    other = tmp_path / "other.key"
    other.write_text("cd" * 32)
    res = run_cli("verify", video, "--key", other)
    assert res.returncode == 1 and "not marked" in res.stdout and "0 of 9 frames" in res.stdout
    res = run_cli("verify", unmarked, "--key", key)
    assert res.returncode == 1 and "not marked" in res.stdout


@pytest.mark.parametrize("args, message", [
    (["missing.mp4"], "is not a file"),
    (["VIDEO", "--key", "KEY_BAD"], "is unreadable or not 64 hex digits"),
    (["VIDEO", "--key", "KEY_SHORT"], "holds 2 bytes, not 32"),
    (["VIDEO", "--key", "NO_KEY"], "no watermark key at"),
])
def test_verify_bad_input_is_one_line(marked_clip, tmp_path, args, message):
    video, _, _ = marked_clip
    (tmp_path / "bad").write_text("not hex at all")
    (tmp_path / "short").write_text("abcd")
    swap = {"VIDEO": str(video), "KEY_BAD": str(tmp_path / "bad"), "KEY_SHORT": str(tmp_path / "short"),
            "NO_KEY": str(tmp_path / "none"), "missing.mp4": str(tmp_path / "missing.mp4")}
    clean_error(run_cli("verify", *[swap.get(a, a) for a in args]), message)


# ---------------------------------------------------------------------- the payload


def test_payload_bits_round_trip_and_a_flipped_bit_is_caught():
    from pipeline.provenance.watermark import SLOTS, bits_payload, payload_bits, render_payload
    payload = render_payload("a" * 64, "b" * 64)
    assert len(payload) == 4 and payload != render_payload("a" * 64, "c" * 64)
    bits = payload_bits(payload)
    assert bits.shape == (SLOTS,) and bits_payload(bits) == payload
    for i in range(SLOTS):
        flipped = bits.copy()
        flipped[i] ^= 1
        assert bits_payload(flipped) is None, i
    assert bits_payload(np.zeros(SLOTS, np.uint8)) is None       # no payload is not a payload of zeros
    # frames carrying the same bit show different patterns (else the face's own detail reads alike in both)
    from math import gcd

    from pipeline.provenance.watermark import PERIOD
    assert gcd(PERIOD, SLOTS) == 1
    with pytest.raises(ValueError):
        Watermark(b"k" * 32, b"abc")


@pytest.fixture(scope="module")
def payload_clip(tmp_path_factory):
    """60 frames of the Hill clip marked with a payload, as convert marks and encodes: (video, unmarked frames,
    payload, key file)."""
    from pipeline.core.video import FrameWriter
    from pipeline.provenance.keys import load_key
    from pipeline.provenance.watermark import render_payload
    folder = tmp_path_factory.mktemp("payload")
    key_file = folder / "key"
    key_file.write_text("5e" * 32 + "\n")
    payload = render_payload("d" * 64, "e" * 64)
    mark = Watermark(load_key(key_file), payload)
    analyser = FaceAnalyser("retinaface", "mediapipe")
    info = probe(HILL)
    video = folder / "marked.mp4"
    writer = FrameWriter(video, info.width, info.height, 25.0, crf=18)
    originals = []
    for index, frame in FrameReader(HILL, info.width, info.height):
        if index >= 60:
            break
        originals.append(frame)
        marked_frame = frame.copy()
        mark.embed(marked_frame, analyser(frame)[0].landmarks, index)
        writer.put(marked_frame)
    writer.close()
    return video, originals, payload, key_file


def test_the_payload_reads_back_from_a_clip_and_not_from_an_unmarked_one(payload_clip):
    """The finder reads the payload back, and with it every frame scores higher than by the pilot alone; the same
    clip unmarked reads no payload and no mark."""
    from pipeline.provenance.keys import load_key
    from pipeline.provenance.watermark import FrameScorer, face_cells
    video, originals, payload, key_file = payload_clip
    finder = Watermark(load_key(key_file))
    analyser = FaceAnalyser("retinaface", "mediapipe")
    found, clean = FrameScorer(finder), FrameScorer(finder)
    for index, (frame, original) in enumerate(zip(_frames(video), originals)):
        found.add(index, [face_cells(frame, analyser(frame)[0].landmarks)])
        clean.add(index, [face_cells(original, analyser(original)[0].landmarks)])
    marked, unmarked = found.finish(), clean.finish()
    assert found.payload == payload
    assert clean.payload is None
    assert min(window_scores(marked).values()) >= THRESHOLD
    assert max(abs(z) for z in window_scores(unmarked).values()) < THRESHOLD
    # the payload known, the data cells count too: more than the pilot alone
    pilot = {i: p.score(None) for i, p in found.parts.items()}
    assert np.median(list(marked.values())) > np.median(list(pilot.values())) * 1.05


def test_a_trimmed_clip_is_found_with_its_payload(payload_clip, tmp_path):
    """The first 7 frames cut off (a trimmed delivery, or a ``convert --start`` render): the patterns are found
    shifted, and the payload still reads."""
    import subprocess

    from pipeline.core.video import ffmpeg_exe
    video, _, payload, key = payload_clip
    trimmed = tmp_path / "trimmed.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", video, "-vf", "select=gte(n\\,7),setpts=N/FRAME_RATE/TB",
                    "-c:v", "libx264", "-crf", "18", trimmed], check=True)
    res = run_cli("verify", trimmed, "--key", key, "--json")
    import json
    report = json.loads(res.stdout)
    assert res.returncode == 0 and report["frames_with_face"] == 53, res.stderr
    assert report["frames_marked"] == 53 and report["payload"] == payload.hex()


def test_verify_judges_a_weak_mark_over_longer_windows_and_an_unmarked_video_never():
    from pipeline.provenance.watermark import WINDOWS, judge
    rng = np.random.default_rng(3)
    weak = {i: float(z) for i, z in enumerate(rng.normal(0.8, 1.0, 300))}    # a resized copy's mark
    window, marked = judge(weak)
    assert window > WINDOWS[0] and len(marked) * 2 >= len(weak)
    assert len(judge(weak, WINDOWS[0])[1]) * 2 < len(weak)                  # --window 25 as asked
    for seed in range(5):
        clean = {i: float(z) for i, z in enumerate(np.random.default_rng(seed).normal(0.0, 1.0, 300))}
        assert judge(clean)[1] == [], seed
