"""``--ray``: extract and convert over a real two-node Ray cluster on loopback, against one machine.

The cluster is started by this module (``ray start --head`` on 127.0.0.1 and a second node
process, one CPU each, temp files under /tmp) and stopped at its end. Ray is in the dev lock,
so CI runs these; outside CI, FACESWAP_SKIP_RAY_TESTS=1 skips them where Ray is missing. The
tests that run commands are marked slow (about two and a half minutes together here).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.cluster.ray_cluster import MIN_SHARD_FRAMES, Shard, frame_ranges, plan_shards
from pipeline.cluster.segments import finished_segments, missing_ranges
from tests.conftest import CLIP6, KATIE, ROOT, clean_error, ffmpeg, snapshot, write_tiny_model
from tests.loopback_cluster import cli as _cli
from tests.loopback_cluster import free_port, loopback_cluster

FRAMES = 60                 # frames of the clip the cluster runs on: three shards of 20


# ---------------------------------------------------------------------- quick, no cluster


def test_shards_cover_every_frame_once_and_skip_frames_done():
    shards = plan_shards([(0, 1000)], cpus=4)
    assert [(s.start, s.end) for s in shards][:2] == [(0, 125), (125, 250)] and shards[-1].end == 1000
    assert all(a.end == b.start for a, b in zip(shards, shards[1:]))
    short = plan_shards([(0, 150)], cpus=8)
    assert len(short) == 2 and min(s.frames for s in short) >= MIN_SHARD_FRAMES // 2
    done_before = frame_ranges([i for i in range(200) if not 40 <= i < 90])
    assert done_before == [(0, 40), (90, 200)]
    shards = plan_shards(done_before, cpus=1, shard_frames=30)
    frames = [f for s in shards for f in range(s.start, s.end)]
    assert frames == [i for i in range(200) if not 40 <= i < 90]
    assert [s.index for s in shards] == list(range(len(shards)))
    assert missing_ranges(0, 100, [(0, 20), (40, 60)]) == [(20, 40), (60, 100)]


def test_finished_segments_are_whole_files_inside_the_range(tmp_path):
    for name in ("seg_00000000_00000020.mkv", "seg_00000020_00000040.mkv", "seg_00000030_00000050.mkv",
                 ".seg_00000040_00000060.123.tmp.mkv", "seg_00000060_00000080.mkv"):
        (tmp_path / name).write_bytes(b"x")
    kept = finished_segments(tmp_path, 0, 60)
    assert sorted(kept) == [(0, 20), (20, 40)]
    assert Shard(0, 5, 9).frames == 4


def test_evaluate_keeps_whole_shards_only(tmp_path):
    """What a killed evaluate driver leaves: whole shard files are kept as measured, a torn one is measured again."""
    import json

    from evaluate.cluster import _shard_file, _to_json, kept_shards
    from evaluate.runner import _Face, _Frame
    face = _Face((1.0, 2.0, 30.0, 40.0), np.arange(136, dtype=np.float32).reshape(68, 2) / 3, np.zeros((0,), np.uint8))
    from evaluate.runner import _Pair
    frames = []
    for i in range(20):
        ref = _Face((1.0, 2.0, 30.0, 40.0), face.landmarks + i, face.chip)
        frames.append(_Frame(i, [ref], [face], [_Pair(ref, face, 0.1, 2.0, (0.1, 0.2, 0.3), None, None, None, True)],
                             [0]))
    (tmp_path / _shard_file(0, 20)).write_text(json.dumps(_to_json(frames)))
    (tmp_path / _shard_file(20, 40)).write_text(json.dumps(_to_json(frames))[:-40])     # torn: not kept
    (tmp_path / _shard_file(10, 30)).write_text(json.dumps(_to_json(frames)))        # overlaps the first
    (tmp_path / _shard_file(40, 70)).write_text(json.dumps(_to_json(frames)))        # past the video's end
    kept = kept_shards(tmp_path, 60)
    assert list(kept) == [(0, 20)]
    back = kept[(0, 20)]
    assert [f.index for f in back] == list(range(20))
    assert back[5].ref_faces[0].landmarks.dtype == np.float32
    assert np.array_equal(back[5].ref_faces[0].landmarks, face.landmarks + 5) and back[5].ref_faces[0].box == face.box
    assert back[5].pairs[0].ref is back[5].ref_faces[0], "a pair's face is its frame's face (the report finds it so)"
    assert back[5].pairs[0].pose_diff == (0.1, 0.2, 0.3)
    assert not (tmp_path / _shard_file(20, 40)).exists(), "a torn shard file is removed"


def test_segment_encoder_takes_segments_in_order_and_removes_a_failed_video(tmp_path):
    from pipeline.cluster.segments import SEGMENT_VIDEO_ARGS, SegmentEncoder
    from pipeline.core.errors import UserError
    from pipeline.core.video import FrameReader, FrameWriter
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(6)]
    segments = []
    for n, part in enumerate((frames[:2], frames[2:])):
        path = tmp_path / f"seg{n}.mkv"
        writer = FrameWriter(path, 64, 48, 25.0, video_args=SEGMENT_VIDEO_ARGS)
        for f in part:
            writer.put(f)
        writer.close()
        back = [f.copy() for _, f in FrameReader(path, 64, 48)]
        assert all(np.array_equal(a, b) for a, b in zip(part, back)), "segments keep the RGB frames exactly"
        segments.append(path)
    encoder = SegmentEncoder(tmp_path / "out.mkv", 64, 48, 25.0, 18, "medium")
    for path in segments:
        encoder.add(path)
    assert encoder.close() == 6
    encoder = SegmentEncoder(tmp_path / "bad.mp4", 64, 48, 25.0, 18, "medium")
    encoder.add(segments[0])
    encoder.add(tmp_path / "missing.mkv")
    with pytest.raises(UserError, match="could not be read"):
        encoder.close()
    assert not (tmp_path / "bad.mp4").exists()


def test_bad_ray_address_is_one_line_and_changes_nothing(tmp_path):
    ws = tmp_path / "ws"
    res = _cli("extract", "--input", CLIP6, "-w", ws, "--ray", "somewhere")
    clean_error(res, "--ray 'somewhere'", "ray://HOST:PORT")
    assert not ws.exists()
    # a cluster that does not answer (Ray itself would wait minutes)
    res = _cli("extract", "--input", CLIP6, "-w", ws, "--ray", "auto", env={"RAY_ADDRESS": f"127.0.0.1:{free_port()}"})
    clean_error(res, "--ray auto", "does not answer")
    assert not ws.exists()
    # Ray missing: a module named ray that cannot be imported stands for it
    fake = tmp_path / "fake"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError('no ray here')\n")
    res = _cli("extract", "--input", CLIP6, "-w", ws, "--ray", "local", env={"PYTHONPATH": str(fake)})
    clean_error(res, "--ray needs Ray", "requirements-ray.txt")
    assert not ws.exists()


@pytest.mark.slow
def test_without_ray_option_ray_is_never_imported(tmp_path):
    code = ("import sys, main; rc = main.main(['extract', '--input', sys.argv[1], '-w', sys.argv[2], '--size', '128']);"
            "print('RAY', 'ray' in sys.modules, rc)")
    res = subprocess.run([sys.executable, "-c", code, str(CLIP6), str(tmp_path / "ws")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert "RAY False 0" in res.stdout, res.stdout + res.stderr


# ---------------------------------------------------------------------- a real cluster


@pytest.fixture(scope="module")
def cluster():
    """Two one-CPU Ray nodes on 127.0.0.1: the env for the CLI, with RAY_ADDRESS set."""
    with loopback_cluster() as env:
        yield env


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """The first 60 frames of the Hill clip, audio kept."""
    out = tmp_path_factory.mktemp("clip") / "hill_60.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-i", str(KATIE), "-frames:v", str(FRAMES), "-c:v", "mpeg4", "-q:v", "3",
                    "-c:a", "aac", "-shortest", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def one_machine(clip, tmp_path_factory) -> dict[str, Path]:
    """The clip extracted and converted without Ray, at the default settings (crf 18, preset medium)."""
    ws = tmp_path_factory.mktemp("one") / "ws"
    assert _cli("extract", "--input", clip, "-w", ws, "--size", "128").returncode == 0
    write_tiny_model(ws / "model")
    out = ws.parent / "one.mp4"
    res = _cli("convert", "-w", ws, "-o", out, "--no-credentials")
    assert res.returncode == 0, res.stderr
    return {"ws": ws, "video": out}


def _index(ws: Path) -> dict:
    from pipeline.workspace.store import Workspace
    with Workspace(ws) as w:
        return {"faces": {(r.frame_index, r.face_index): r for r in w.faces("dst")}, "done": w.done_frames("dst")}


def _same_index(a: Path, b: Path) -> None:
    ia, ib = _index(a), _index(b)
    assert ia["done"] == ib["done"] and len(ia["done"]) == FRAMES
    assert ia["faces"].keys() == ib["faces"].keys()
    for key, ra in ia["faces"].items():
        rb = ib["faces"][key]
        assert np.abs(ra.landmarks - rb.landmarks).max() <= 1e-3 + 1e-9, key
        assert (ra.track, ra.origin, ra.dropped) == (rb.track, rb.origin, rb.dropped), key
        assert (a / "data_dst" / "aligned" / ra.aligned_file).is_file()
        assert (b / "data_dst" / "aligned" / rb.aligned_file).is_file()


def _same_landmarks(a: Path, b: Path) -> bool:
    """Whether two workspaces' dst faces have bit-identical landmarks (what convert renders from)."""
    ia, ib = _index(a), _index(b)
    return ia["faces"].keys() == ib["faces"].keys() and all(
        np.array_equal(r.landmarks, ib["faces"][k].landmarks) for k, r in ia["faces"].items())


def _frames(video: Path) -> list[np.ndarray]:
    from pipeline.core.video import FrameReader, probe
    info = probe(video)
    return [f.copy() for _, f in FrameReader(video, info.width, info.height)]


def _same_video(a: Path, b: Path) -> float:
    """Asserts every decoded frame of ``b`` within PSNR 45 dB of ``a``'s (same count, audio kept); the worst PSNR."""
    from pipeline.core.video import audio_codec
    fa, fb = _frames(a), _frames(b)
    assert len(fa) == len(fb) == FRAMES
    worst = float("inf")
    for i, (x, y) in enumerate(zip(fa, fb)):
        mse = float(((x.astype(np.float64) - y) ** 2).mean())
        psnr = float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)
        assert psnr >= 45, (i, psnr)
        worst = min(worst, psnr)
    assert audio_codec(b) is not None
    return worst


def _extract_on_cluster(clip: Path, ws: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    return _cli("extract", "--input", clip, "-w", ws, "--size", "128", "--ray", "auto", "--shard-frames", "20",
                *extra, env=env)


@pytest.mark.slow
def test_extract_and_convert_on_two_nodes_match_one_machine(cluster, clip, one_machine, tmp_path):
    ws = tmp_path / "ws"
    res = _extract_on_cluster(clip, ws, cluster)
    assert res.returncode == 0, res.stderr
    assert "3 shards" in res.stderr and "2 nodes, 2 CPUs" in res.stderr
    _same_index(one_machine["ws"], ws)
    write_tiny_model(ws / "model")
    out = tmp_path / "two.mp4"
    res = _cli("convert", "-w", ws, "-o", out, "--no-credentials", "--ray", "auto", "--shard-frames", "20",
               env=cluster)               # the default crf 18: one encode of the joined frames, as one machine's
    assert res.returncode == 0, res.stderr
    # workers detect with the driver's thread setting, so on one CPU type the index is the same bytes (OpenCV's
    # dnn rounds differently on another thread count: one stored value's last digit flipped at frame 31, and x264
    # took that one-level render change to 43 dB on CI)
    assert _same_landmarks(one_machine["ws"], ws), "bit-identical landmarks on the same CPU"
    assert _same_video(one_machine["video"], out) == float("inf"), "the same frames as one machine's"
    assert not list(tmp_path.glob(".two.segments*")), "segments are removed once joined"


@pytest.mark.slow
def test_a_shard_builds_only_its_own_frames_and_reads_on_only_until_they_are_decided(clip, one_machine, monkeypatch):
    """In this process, no Ray: the worker's function on frames 20-40 of the 60-frame clip."""
    from extract import cluster as extract_cluster
    from extract.inputs import resolve_input
    from extract.options import ExtractOptions
    from extract.runner import _min_face, _with_backends
    from pipeline.cluster.ray_cluster import Shard
    opts = _with_backends(ExtractOptions(input=clip, size=128), None)
    built: list[int] = []
    looked: list[int] = []
    real_build, real_look = extract_cluster._ShardJob._build, extract_cluster._ShardJob._first_look

    def counting_build(self, image, faces):
        built.append(len(faces))
        return real_build(self, image, faces)

    def counting_look(self, item):
        looked.append(item.index)
        return real_look(self, item)
    monkeypatch.setattr(extract_cluster._ShardJob, "_build", counting_build)
    monkeypatch.setattr(extract_cluster._ShardJob, "_first_look", counting_look)
    extract_cluster._MODELS.clear()
    spec = extract_cluster.ShardSpec(opts, "dst", _min_face(opts, resolve_input(clip)), None)
    result = extract_cluster.extract_shard(spec, Shard(0, 20, 40))
    first, stop = extract_cluster.read_span(opts, 20, 40, FRAMES)
    assert (first, stop) == (8, 55)
    assert sorted(looked)[:13] == list(range(8, 21))
    assert 40 <= max(looked) < stop - 5, "stopped reading soon after frame 39 was decided"
    assert len(built) == 20, "frames 8-19 and those after 39 were detected, not built"
    stored = _index(one_machine["ws"])["faces"]
    assert [f.index for f in result.frames] == list(range(20, 40))
    for frame in result.frames:
        for k, rec in enumerate(frame.records):
            row = stored[(frame.index, k)]
            assert np.abs(rec.face.landmarks - row.landmarks).max() <= 1e-3
            assert np.abs(rec.descriptor - row.descriptor).max() <= 1e-5
    edge = [(r.track, r.landmarks) for (i, _), r in stored.items() if i == 19]
    assert len(result.edge) == len(edge) == 1
    assert np.abs(result.edge[0][1] - edge[0][1]).max() <= 1e-3


def _ray_worker_pids(task: str) -> list[int]:
    """Processes running the Ray task ``task`` now (Ray names a busy worker 'ray::TASK')."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if cmdline.startswith(f"ray::{task}"):
                pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_a_worker_killed_mid_shard_loses_nothing(cluster, clip, one_machine, tmp_path):
    ws = tmp_path / "ws"
    cmd = [sys.executable, str(ROOT / "main.py"), "extract", "--input", str(clip), "-w", str(ws), "--size", "128",
           "--ray", "auto", "--shard-frames", "30"]
    driver = subprocess.Popen(cmd, cwd=ROOT, env=cluster, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and driver.poll() is None and time.monotonic() < deadline:
        pids = _ray_worker_pids("extract_shard")
        if pids:
            time.sleep(1.0)                      # mid-shard: models loaded, frames under way
            if pids[0] in _ray_worker_pids("extract_shard"):
                os.kill(pids[0], signal.SIGKILL)
                killed = pids[0]
        time.sleep(0.1)
    out, err = driver.communicate(timeout=300)
    assert killed is not None, "no worker was seen running a shard"
    assert driver.returncode == 0, err
    assert "60 frames (60 new, 0 already done)" in out
    _same_index(one_machine["ws"], ws)


def _kill_driver_once_seen(cmd: list[str], env: dict, folder: Path, pattern: str) -> None:
    """Run ``cmd`` and SIGKILL it as soon as a file matching ``pattern`` exists in ``folder`` (a finished segment
    or piece); asserts it was killed, not finished."""
    driver = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and driver.poll() is None:
        if list(folder.glob(pattern)):
            driver.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    driver.wait(timeout=60)
    assert driver.returncode == -signal.SIGKILL, f"the driver finished before {pattern} was seen"


@pytest.mark.slow
def test_convert_rerun_after_a_killed_driver_keeps_finished_segments(cluster, one_machine, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(one_machine["ws"], ws)
    out = tmp_path / "two.mp4"
    cmd = [sys.executable, str(ROOT / "main.py"), "convert", "-w", str(ws), "-o", str(out), "--no-credentials",
           "--ray", "auto", "--shard-frames", "20"]
    before = snapshot(ws)
    _kill_driver_once_seen(cmd, cluster, tmp_path, ".two.segments/*/seg_*.mkv")
    assert not out.exists()
    kept = len(list(tmp_path.glob(".two.segments/*/seg_*.mkv")))
    assert 1 <= kept < 3
    res = _cli(*cmd[2:], env=cluster)
    assert res.returncode == 0, res.stderr
    match = re.search(r"ray: (\d+) segments kept from an earlier run \((\d+) frames\), (\d+) frames to render",
                      res.stderr)
    assert match and int(match.group(1)) >= kept and int(match.group(3)) == FRAMES - int(match.group(2)), res.stderr
    # the summary counts the kept segments' frames too: every frame swapped or passed through once
    line = re.search(r"convert: (\d+) frames, (\d+) faces swapped, (\d+) frames passed through", res.stdout)
    assert line and int(line[1]) == FRAMES and int(line[2]) + int(line[3]) == FRAMES, res.stdout
    assert _same_video(one_machine["video"], out) == float("inf"), "one machine's workspace: the same frames"
    assert snapshot(ws) == before, "convert only reads the workspace"


@pytest.mark.slow
def test_convert_in_pieces_on_two_nodes_is_one_machines_file(cluster, one_machine, tmp_path):
    """--encode-chunk: the nodes encode their own pieces and the driver joins them: the .mp4 is one machine's, byte
    for byte, also after the driver was killed and the command run again (finished pieces kept)."""
    ws = tmp_path / "ws"
    shutil.copytree(one_machine["ws"], ws)
    single = tmp_path / "one.mp4"
    res = _cli("convert", "-w", ws, "-o", single, "--no-credentials", "--encode-chunk", "10")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "two.mp4"
    cmd = [sys.executable, str(ROOT / "main.py"), "convert", "-w", str(ws), "-o", str(out), "--no-credentials",
           "--ray", "auto", "--shard-frames", "20", "--encode-chunk", "10"]
    _kill_driver_once_seen(cmd, cluster, tmp_path, ".two.segments/*/chunk_*.mp4")
    kept = len(list(tmp_path.glob(".two.segments/*/chunk_*.mp4")))
    assert 1 <= kept < FRAMES // 10
    res = _cli(*cmd[2:], env=cluster)
    assert res.returncode == 0, res.stderr
    match = re.search(r"ray: (\d+) segments kept from an earlier run", res.stderr)
    assert match and int(match.group(1)) >= kept, res.stderr
    assert "joined 6 pieces" in res.stderr
    assert out.read_bytes() == single.read_bytes(), "the same file as one machine's"
    assert len(_frames(out)) == FRAMES
    assert not list(tmp_path.glob(".two.segments*")), "pieces are removed once joined"


@pytest.mark.slow
def test_extract_rerun_after_a_killed_driver_does_only_the_rest(cluster, clip, one_machine, tmp_path):
    from pipeline.workspace.store import Workspace
    ws = tmp_path / "ws"
    cmd = [sys.executable, str(ROOT / "main.py"), "extract", "--input", str(clip), "-w", str(ws), "--size", "128",
           "--ray", "auto", "--shard-frames", "20"]
    driver = subprocess.Popen(cmd, cwd=ROOT, env=cluster, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    done = 0
    while time.monotonic() < deadline and driver.poll() is None:
        try:
            with Workspace(ws) as w:
                done = len(w.done_frames("dst")) if w.exists else 0
        except Exception:                        # noqa: BLE001 - not made yet, or mid-write
            done = 0
        if done:
            driver.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    driver.wait(timeout=60)
    assert driver.returncode == -signal.SIGKILL and 0 < done < FRAMES
    res = _extract_on_cluster(clip, ws, cluster)
    assert res.returncode == 0, res.stderr
    match = re.search(r"(\d+) frames \((\d+) new, (\d+) already done\)", res.stdout)
    assert match and int(match.group(1)) == FRAMES and int(match.group(3)) >= done, res.stdout
    assert int(match.group(2)) == FRAMES - int(match.group(3))
    _same_index(one_machine["ws"], ws)


@pytest.mark.slow
def test_extract_through_ray_client(cluster, tmp_path):
    ws = tmp_path / "ws"
    env = {k: v for k, v in cluster.items() if k != "RAY_ADDRESS"}
    res = _cli("extract", "--input", CLIP6, "-w", ws, "--size", "128", "--ray", cluster["TEST_RAY_CLIENT"], env=env)
    assert res.returncode == 0, res.stderr
    assert "6 frames (6 new, 0 already done)" in res.stdout and "2 nodes, 2 CPUs" in res.stderr


@pytest.mark.slow
def test_masks_apply_on_two_nodes_matches_one_machine(cluster, tmp_path):
    from masks.options import MaskTrainOptions
    from masks.training import run_mask_train
    from tests.conftest import copy_v1_workspace
    one = copy_v1_workspace(tmp_path)
    run_mask_train(MaskTrainOptions(workspace=one, iterations=2, resolution=64, width=4, batch_size=2, save_every=2,
                                    preview_every=2))
    two = tmp_path / "two"
    shutil.copytree(one, two)
    res = _cli("masks", "apply", "-w", one)
    assert res.returncode == 0, res.stderr
    res = _cli("masks", "apply", "-w", two, "--ray", "auto", "--shard-frames", "3", env=cluster)
    assert res.returncode == 0, res.stderr
    assert "2 nodes, 2 CPUs" in res.stderr
    import sqlite3

    def rows(ws: Path) -> dict:
        db = sqlite3.connect(ws / "faces.sqlite")
        try:
            return {r[0]: r[1:] for r in db.execute(
                "SELECT id, mask_file, mask_origin, mask_model, mask_hash FROM faces WHERE dropped=0")}
        finally:
            db.close()
    assert rows(one) == rows(two) and any(r[1] == "learned" for r in rows(one).values())
    for folder in ("data_dst/masks", "data_src/masks"):
        assert {p.name: p.read_bytes() for p in (one / folder).iterdir()} == \
            {p.name: p.read_bytes() for p in (two / folder).iterdir()}, folder


def _close(a, b, path: str = "") -> None:
    """Two report values equal, numbers within 1e-3 (relative or absolute: thread counts move the last digits)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert abs(a - b) <= 1e-3 * max(1.0, abs(a)), (path, a, b)
    else:
        assert a == b, (path, a, b)


def _evaluated_on_one_machine(one_machine, tmp_path) -> tuple[Path, dict]:
    """A copy of the one-machine workspace, evaluated there without a cluster: (workspace, its report)."""
    import json
    ws = tmp_path / "ws"
    shutil.copytree(one_machine["ws"], ws)
    res = _cli("evaluate", "-w", ws, "--video", one_machine["video"], "--samples", "0")
    assert res.returncode == 0, res.stderr
    return ws, json.loads((ws / "report" / "report.json").read_text())


@pytest.mark.slow
def test_evaluate_on_two_nodes_matches_one_machine(cluster, one_machine, tmp_path):
    import json
    ws, one = _evaluated_on_one_machine(one_machine, tmp_path)
    res = _cli("evaluate", "-w", ws, "--video", one_machine["video"], "--samples", "0", "--ray", "auto",
               "--shard-frames", "20", env=cluster)
    assert res.returncode == 0, res.stderr
    assert "2 nodes, 2 CPUs" in res.stderr
    two = json.loads((ws / "report" / "report.json").read_text())
    assert len(two["per_frame"]) == FRAMES
    _close(one["per_frame"], two["per_frame"], "per_frame")


@pytest.mark.slow
def test_evaluate_rerun_after_a_killed_driver_measures_only_the_rest(cluster, one_machine, tmp_path):
    import json
    ws, one = _evaluated_on_one_machine(one_machine, tmp_path)
    (ws / "report" / "report.json").unlink()
    cmd = [sys.executable, str(ROOT / "main.py"), "evaluate", "-w", str(ws), "--video", str(one_machine["video"]),
           "--samples", "0", "--ray", "auto", "--shard-frames", "20"]
    driver = subprocess.Popen(cmd, cwd=ROOT, env=cluster, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        if list((ws / "report").glob(".cluster/*/frames_*.json")):
            driver.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    driver.wait(timeout=60)
    assert driver.returncode == -signal.SIGKILL, "the driver finished before a shard was stored"
    assert not (ws / "report" / "report.json").exists()
    kept = len(list((ws / "report").glob(".cluster/*/frames_*.json")))
    assert 1 <= kept < 3
    res = _cli(*cmd[2:], env=cluster)
    assert res.returncode == 0, res.stderr
    match = re.search(r"ray: (\d+) shards kept from an earlier run \((\d+) frames\), (\d+) frames to measure",
                      res.stderr)
    assert match and int(match.group(1)) >= kept and int(match.group(2)) >= 20, res.stderr
    assert int(match.group(3)) == FRAMES - int(match.group(2)), res.stderr
    two = json.loads((ws / "report" / "report.json").read_text())
    assert len(two["per_frame"]) == FRAMES
    _close(one["per_frame"], two["per_frame"], "per_frame")
    assert not (ws / "report" / ".cluster").exists(), "the kept shards go once the report is made"


class _FlakyClientRay:
    """A stand-in for the ray module whose ``init`` raises ``errors`` in turn, then joins."""

    def __init__(self, *errors: Exception) -> None:
        self.errors, self.calls, self.shutdowns = list(errors), 0, 0

    def init(self, address, **kwargs):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "joined"

    def shutdown(self):
        self.shutdowns += 1


def test_ray_client_tries_once_more_only_when_the_server_failed_to_start_the_session(monkeypatch, caplog):
    from pipeline.cluster import ray_cluster
    monkeypatch.setattr(ray_cluster, "CLIENT_RETRY_PAUSE", 0.0)
    failed = ConnectionError("Initialization failure from server:\ndetails")
    ray = _FlakyClientRay(failed)
    assert ray_cluster._client_init(ray, "ray://127.0.0.1:1", {}) == "joined"
    assert ray.calls == 2 and ray.shutdowns == 1 and "trying once more" in caplog.text
    ray = _FlakyClientRay(failed, ConnectionError("Initialization failure from server: again"))
    with pytest.raises(ConnectionError, match="again"):
        ray_cluster._client_init(ray, "ray://127.0.0.1:1", {})
    assert ray.calls == 2
    ray = _FlakyClientRay(ConnectionError("connection refused"))
    with pytest.raises(ConnectionError, match="refused"):
        ray_cluster._client_init(ray, "ray://127.0.0.1:1", {})
    assert ray.calls == 1 and ray.shutdowns == 0


def _nodes(*shape: tuple[int, int]):
    from pipeline.cluster.ray_cluster import NodeResources
    return [NodeResources(f"node{k}", cpus, gpus) for k, (cpus, gpus) in enumerate(shape)]


def test_shards_ask_for_a_gpu_each_on_a_cluster_with_gpus():
    from pipeline.cluster.ray_cluster import Lane, placement
    from pipeline.core.errors import UserError
    # no GPUs: one CPU a shard, one shard a CPU, the command's device as it is
    p = placement("auto", _nodes((4, 0), (4, 0)))
    assert p.lanes == (Lane(cpus=1, gpus=0, slots=8, device="auto", threads=1),) and p.slots == 8
    # GPUs: a GPU and the node's CPUs over its GPUs a shard, as many at once as GPUs, the worker on its own GPU
    p = placement("auto", _nodes((8, 1), (8, 1)))
    assert p.lanes == (Lane(cpus=8, gpus=1, slots=2, device="auto", threads=8),)
    assert placement("cuda", _nodes((8, 1), (8, 1))) == p and placement("cuda:1", _nodes((8, 1), (8, 1))) == p
    assert "2 GPUs" in p.describe()
    # more GPUs than CPUs: still one CPU a shard
    assert placement("auto", _nodes((2, 4))).lanes[0].cpus == 1
    # GPU nodes of different shapes: a shard must fit on every one of them (the smallest CPUs-per-GPU)
    p = placement("auto", _nodes((16, 1), (8, 4)))
    assert p.lanes == (Lane(cpus=2, gpus=1, slots=5, device="auto", threads=2),)
    # --device cpu keeps to the CPUs even where there are GPUs
    p = placement("cpu", _nodes((8, 1), (8, 1)))
    assert p.lanes == (Lane(cpus=1, gpus=0, slots=16, device="cpu", threads=1),)
    # cuda asked of a cluster without GPUs: one line saying what to do
    with pytest.raises(UserError, match=r"--device cuda: the Ray cluster has no GPUs .*--device auto or cpu"):
        placement("cuda", _nodes((4, 0)))


def test_a_cluster_mixing_gpu_and_cpu_nodes_uses_both_with_auto():
    from pipeline.cluster.ray_cluster import Lane, placement
    nodes = _nodes((16, 1), (32, 0), (8, 0))
    p = placement("auto", nodes)
    # the GPU shard asks for its node's CPUs, not the cluster's 56 (which no node has: Ray would never start it)
    assert p.lanes[0] == Lane(cpus=16, gpus=1, slots=1, device="auto", threads=16)
    # the CPU-only nodes take shards on the CPU, one a CPU, kept to those nodes
    assert p.lanes[1] == Lane(cpus=1, gpus=0, slots=40, device="cpu", threads=1, nodes=(("node1", 32), ("node2", 8)))
    assert p.slots == 41 and "40 CPUs of CPU-only nodes" in p.describe()
    # --device cuda keeps to the GPUs; --device cpu to the CPUs everywhere
    assert placement("cuda", nodes).lanes == p.lanes[:1]
    assert placement("cpu", nodes).lanes == (Lane(cpus=1, gpus=0, slots=56, device="cpu", threads=1),)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="Ray would find this machine's GPUs")
def test_cuda_on_a_cluster_without_gpus_is_one_line_and_changes_nothing(tmp_path):
    ws = tmp_path / "ws"
    res = _cli("extract", "--input", CLIP6, "-w", ws, "--ray", "local", "--device", "cuda")
    clean_error(res, "--device cuda: the Ray cluster has no GPUs", "--device auto or cpu")
    assert not ws.exists()
