"""The convert stage: every dst frame with its faces replaced, encoded with the audio.

Flow, streaming (memory does not grow with the video's length):
- before anything is decoded, each face track's landmarks are smoothed over time and
  every face gets its smoothed transform; the artist's deletions and masks are read;
- ffmpeg decodes ahead in a thread; frames come in chunks of ``batch_size``;
- per face (thread pool): the aligned crop, cut with the smoothed transform the same
  way extract cut the training faces, and its mask (hand-painted when there is one);
- the network runs on the chunk's faces in one batch;
- per frame (thread pool): colour transfer, warp back, blend;
- a writer thread feeds the frames, in order, to ffmpeg's H.264 encoder.
The video goes to a temp file renamed over ``--output`` only when complete, so a failed
or interrupted run never leaves a half video where a good one was.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from convert.gaps import report as flicker_report
from convert.network import Network
from convert.network_process import NetworkProcess
from convert.options import ConvertOptions
from convert.renderer import REASONS, FacePlan, Renderer, _FaceWork, before_after
from pipeline.core.chunked_video import ChunkedVideo
from pipeline.core.errors import UserError
from pipeline.core.files import DiskFullError, commit_file, is_disk_full, pid_alive, remove_quietly, write_atomic
from pipeline.core.images import encode
from pipeline.core.options import check
from pipeline.core.profile import StepTimes
from pipeline.core.threads import pool_native_threads
from pipeline.core.video import FrameReader, FrameWriter
from pipeline.faces.people import parse_person
from pipeline.provenance.keys import default_key_path
from pipeline.workspace import layout

if TYPE_CHECKING:
    from convert.credentials import Credentials

log = logging.getLogger("convert")

@dataclass
class ConvertSummary:
    frames: int = 0
    faces: int = 0
    passed: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    output: Path | None = None
    previews: list[Path] = field(default_factory=list)
    timings: dict = field(default_factory=dict)     # seconds per step, summed over threads (and ffmpeg's CPU)
    wall: dict = field(default_factory=dict)        # seconds per step during which some thread was in it
    person: str | None = None          # whom convert swapped, when the dst video shows several people
    gaps: list[tuple[int, int]] = field(default_factory=list)   # ``convert.gaps``: where the swapped face flickers

    def line(self) -> str:
        fps = self.frames / self.seconds if self.seconds > 0 else 0.0
        passed = sum(self.passed.values())
        why = ", ".join(f"{n} {REASONS.get(k, k)}" for k, n in sorted(self.passed.items()))
        head = (f"convert: {self.frames} frames, {self.faces} faces swapped, {passed} frames passed through"
                + (f" ({why})" if why else "") + f", {self.seconds:.1f} s ({fps:.1f} fps)")
        if self.previews:
            return head + f"; {len(self.previews)} previews in {self.previews[0].parent}"
        return head + f" -> {self.output}"


# ---------------------------------------------------------------------- checks


def _check_output(path: Path, input_path: Path) -> None:
    if path.exists() and path.is_dir():
        raise UserError(f"--output {path} is a folder; give a file name such as {path / 'result.mp4'}")
    if path.resolve() == input_path.resolve():
        raise UserError(f"--output {path} is the dst input itself; write the result to another file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: folder {parent} does not exist; create it or choose another --output")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"cannot write {path}: permission denied; choose another --output")
    if path.suffix.lower() not in (".mp4", ".mov", ".mkv", ".m4v"):
        raise UserError(f"--output {path}: use a .mp4, .mov, .mkv or .m4v file name")


def remove_stale_outputs(output: Path) -> int:
    """Temp videos of earlier converts to ``output`` that were killed (their process is gone)."""
    count = 0
    for tmp in output.parent.glob(f".{output.stem}.*.tmp{output.suffix}"):
        pid = tmp.name[len(output.stem) + 2:-len(f".tmp{output.suffix}")].removesuffix(".signed")
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            remove_quietly(tmp)
            count += 1
    for folder in output.parent.glob(f"..{output.stem}.*.tmp{output.suffix}.pieces"):     # ``--encode-chunk``'s
        pid = folder.name[len(output.stem) + 3:-len(f".tmp{output.suffix}.pieces")]
        if folder.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            count += 1
    return count


# ---------------------------------------------------------------------- the run


def _chunks(reader: FrameReader, start: int, end: int, wanted: set[int] | None, size: int,
            seen: list[int], times: StepTimes) -> Iterator[list[tuple[int, np.ndarray]]]:
    """Chunks of (index, frame) in [start, end); ``seen[0]`` counts the frames decoded; the waits for a
    decoded frame are ``times``' 'waiting'."""
    chunk: list[tuple[int, np.ndarray]] = []
    frames = iter(reader)
    while True:
        t0 = time.perf_counter()
        got = next(frames, None)
        times.add("waiting", t0, time.perf_counter())
        if got is None:
            break
        index, frame = got
        seen[0] = index + 1
        if index >= end:
            break
        if index < start or (wanted is not None and index not in wanted):
            continue
        chunk.append((index, frame))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _preview_frames(plans: dict[int, list[FacePlan]], start: int, end: int, count: int) -> list[int]:
    candidates = sorted(f for f in plans if start <= f < end)
    if not candidates:
        return []
    picks = np.linspace(0, len(candidates) - 1, min(count, len(candidates)))
    return sorted({candidates[int(round(p))] for p in picks})


def run_convert(opts: ConvertOptions, stills: dict[int, np.ndarray] | None = None) -> ConvertSummary:
    """Check everything, then render the video (or the preview stills). Raises UserError.

    With ``stills`` (for benchmarks and tools), the ``--preview`` frames are rendered as
    preview does and put in that dict by frame index instead of written as files. A full
    disk (under the output, or under the index SQLite reads) is one line saying what was
    kept: the previous ``--output`` and the workspace, which convert only reads.
    """
    check(opts)
    parse_person(opts.person)
    if opts.ray is not None and stills is None:
        from convert.cluster import run_convert_on_cluster
        return run_convert_on_cluster(opts)
    output = Path(opts.output) if opts.output is not None else layout.default_output(opts.workspace)
    kept = ("the preview stills written so far are kept" if opts.preview else
            f"{output} is as it was before this convert and its unfinished temp file was removed")
    kept += "; the workspace is unchanged (convert only reads it)"
    try:
        return _convert(opts, stills)
    except DiskFullError as exc:
        raise exc.keeping(kept) from exc.__cause__
    except OSError as exc:             # e.g. the rename or flush of the finished video
        if not is_disk_full(exc, output.parent):
            raise
        raise DiskFullError(output.parent, kept, output.name) from exc


def network_threads(workers: int) -> int:
    """Torch's CPU threads for the network while the frames render: half the workers, at least one.

    Why: the network shares the cores with the per-face work in the pool and with x264, so
    they are oversubscribed, and torch's OpenMP threads then wait on each other at every
    layer for a thread the system has descheduled. On the 2-core machine, loaded, the int8
    network took 66.9 ms of CPU a face with 2 threads against 16.9 ms with one; one thread
    leaves the other core to the pool and the encoder. Int8 results do not depend on the
    thread count; the float calibration's ranges do, so it keeps torch's own count.
    """
    return max(1, workers // 2)


def output_checks(opts: ConvertOptions, output: Path) -> tuple[list[int], Any, Any]:
    """What convert checks before the model loads, shared by one machine and the cluster.

    Returns the frame span (filled in once the video is probed), the hook ``Renderer`` calls
    with the probed video (an empty ``--start``/``--end`` range or an output that would
    overwrite the input is one line before a second is spent on the model), and the signing
    material (the key and certificate tried first, for the same reason), or None.
    """
    span: list[int] = []
    material = None
    if not opts.preview and opts.credentials:
        from convert.credentials import signing_material
        material = signing_material(opts, output)

    def before_model(input_path: Path, video: dict) -> None:
        total = int(video["frames"])
        start, end = max(0, opts.start), total if opts.end is None else min(opts.end, total)
        if end <= start:
            raise UserError(f"--start {opts.start} --end {opts.end}: empty range (the video has {total} frames)")
        span.extend((start, end))
        if not opts.preview:
            _check_output(output, input_path)
    return span, before_model, material


def faces_of_chunk(chunk: list, plans: dict, pool: ThreadPoolExecutor, work: Any, network: Any,
                   learned_masks: bool, times: Any) -> dict[int, list]:
    """A chunk's faces made: crops prepared on the pool, one network call for all of them.

    Returns each frame's (prepared crop, generated face, learned mask) in plan order; frames
    without a face to swap are absent.
    """
    jobs = [(i, frame, plan) for i, frame in chunk for plan in plans.get(i, [])]
    with times.step("waiting"):
        prepared = list(pool.map(lambda job: work.prepare(job[1], job[2]), jobs))
    generated, learned = network([p.net_input for p in prepared], masks=learned_masks)
    per_frame: dict[int, list] = defaultdict(list)
    for (i, _, _), prep, gen, lm in zip(jobs, prepared, generated, learned):
        per_frame[i].append((prep, gen, lm))
    return per_frame


#: memory for the frames and crops made while the network loads (``faces_ahead``'s ``ahead``)
AHEAD_BYTES = 192 << 20


def chunks_ahead(width: int, height: int, size: int, resolution: int, batch: int) -> int:
    """How many chunks of ``batch`` frames ``faces_ahead`` may make ready while the network loads: as many as
    fit in ``AHEAD_BYTES`` (a frame, and for its face the aligned mask, the float blend mask and the network's
    crop), at least one: about 20 for a 512 px clip (170 frames), 1 for a 4K one."""
    per_frame = width * height * 3 + size * size * 5 + resolution * resolution * 4
    return max(1, AHEAD_BYTES // (max(1, batch) * per_frame))


def faces_ahead(chunks: Iterator[list[tuple[int, np.ndarray]]], plans: dict, pool: ThreadPoolExecutor, work: Any,
                network: Any, learned_masks: bool, times: Any,
                ahead: int = 1) -> Iterator[tuple[list[tuple[int, np.ndarray]], dict[int, list]]]:
    """(chunk, its faces as ``faces_of_chunk`` gives them) for every chunk, the next chunk's crops queued on the
    pool before the caller queues this chunk's finishing work.

    Why: the pool runs its jobs in order, so the next chunk's crops queued after this chunk's
    blends waited for all of them, and the network (one thread, the main one) then ran while
    the pool sat idle, and the pool while the network did. Queued first, the crops are ready
    as soon as the network is free, and the network's next batch runs beside the pool's
    blends of this one. Every face is computed as before: the video is the same.

    While the network is not ready yet (``NetworkProcess.ready``: the model still loading in
    its own process, about 1.4 s on the 2-core machine), up to ``ahead`` chunks are decoded
    and their crops made, on a core that would otherwise wait.
    """
    def start(chunk: list[tuple[int, np.ndarray]]) -> tuple[list, list, list[Future]]:
        jobs = [(i, frame, plan) for i, frame in chunk for plan in plans.get(i, [])]
        return chunk, jobs, [pool.submit(work.prepare, frame, plan) for _, frame, plan in jobs]

    source = iter(chunks)
    started: deque[tuple[list, list, list[Future]]] = deque()

    def top_up(count: int) -> bool:
        """At least ``count`` chunks started; False once the video has no more."""
        while len(started) < count:
            following = next(source, None)
            if following is None:
                return False
            started.append(start(following))
        return True

    top_up(1)
    # while the network is still loading (its own process), more chunks' crops are made, up to ``ahead``:
    # the pool would otherwise sit idle until the first network call returns
    ready = getattr(network, "ready", None)
    while ready is not None and len(started) < ahead and not ready() and top_up(len(started) + 1):
        pass
    while started:
        chunk, jobs, futures = started.popleft()
        with times.step("waiting"):
            prepared = [f.result() for f in futures]
        generated, learned = network([p.net_input for p in prepared], masks=learned_masks)
        top_up(1)
        per_frame: dict[int, list] = defaultdict(list)
        for (i, _, _), prep, gen, lm in zip(jobs, prepared, generated, learned):
            per_frame[i].append((prep, gen, lm))
        yield chunk, per_frame


#: convert's run holds its network in a child process (``convert.network_process``); tests that replace
#: ``Network.__call__`` in this process set it to False
NETWORK_PROCESS = True


def _convert(opts: ConvertOptions, stills: dict[int, np.ndarray] | None) -> ConvertSummary:
    network = (NetworkProcess.start(layout.model_dir(Path(opts.workspace)), opts.device, opts.batch_size)
               if NETWORK_PROCESS else None)
    try:
        return _convert_with(opts, stills, network)
    finally:
        if network is not None:
            network.close()


def _convert_with(opts: ConvertOptions, stills: dict[int, np.ndarray] | None,
                  network: NetworkProcess | None) -> ConvertSummary:
    output = Path(opts.output) if opts.output is not None else layout.default_output(opts.workspace)
    span, before_model, material = output_checks(opts, output)
    renderer = Renderer(opts, before_model, network)
    opts, (start, end) = renderer.opts, span
    plans, excluded, person_line = renderer.plan(opts)
    log.info("convert: %s -> %s; smoothing %s, colour %s (chroma smoothing %g px), blend %s, mask %s, erode %d "
             "blur %d",
             renderer.input_path, "previews" if opts.preview else output,
             f"sigma {opts.smooth:g} frames" if opts.smooth > 0 else "off", opts.color, opts.chroma_smooth, opts.blend,
             {"workspace": "the workspace's", "learned": "the model's learned", "both": "workspace x learned"}[
                 opts.mask],
             opts.mask_erode, opts.mask_blur)
    if person_line:
        log.info("%s", person_line)
    gaps = [] if opts.preview else flicker_report(plans, excluded, start, end)
    work = renderer.work(opts)
    credentials = None
    if material is not None:
        from convert.credentials import Credentials
        credentials = Credentials(opts, material, renderer.input_path, renderer.input_hashes,
                                  renderer.network.meta, work.mark)
        credentials.notices()
    elif not opts.preview:
        log.warning("convert: --no-credentials: the video will carry no content credentials (C2PA) saying it was "
                    "made by a trained algorithm")
    if work.mark is not None:
        log.info("convert: watermark in every swapped face, key %s (%s), payload %s (this model on this video); "
                 "'python main.py verify VIDEO' finds it", work.mark.key_id, opts.watermark_key or default_key_path(),
                 (work.mark.payload or b"").hex())
    else:
        log.warning("convert: --no-watermark: nothing in the video will say that its faces were swapped")
    if opts.part_colour > 0:
        log.info("convert: brows, nose and lips in the src person's colours against the skin (amount %g)%s",
                 opts.part_colour, "" if work.src_parts else ": no src faces in the workspace, left as they are")
    threads = network_threads(opts.workers)          # used when the network runs on the CPU
    # the pool's threads are the parallelism of the per-face work: OpenCV's and OpenBLAS's own on top only add
    # hand-offs and spinning threads
    with renderer.network.threads(threads), pool_native_threads(opts.workers):
        if opts.preview:
            summary = _render(opts, renderer.input_path, renderer.video, renderer.network, work, plans, excluded,
                              start, end, None, renderer.root / "preview", stills)
        else:
            stale = remove_stale_outputs(output)
            if stale:
                log.info("convert: removed %d temp video(s) left by an earlier convert that was killed", stale)
            try:
                summary = _render(opts, renderer.input_path, renderer.video, renderer.network, work, plans,
                                  excluded, start, end, output, None, credentials=credentials)
            finally:
                if credentials is not None:
                    credentials.close()
    summary.person, summary.gaps = person_line, gaps
    return summary


def _render(opts: ConvertOptions, input_path: Path, video: dict, network: Network | NetworkProcess, work: _FaceWork,
            plans: dict[int, list[FacePlan]], excluded: dict[int, str], start: int, end: int,
            output: Path | None, preview_dir: Path | None,
            stills: dict[int, np.ndarray] | None = None, credentials: Credentials | None = None) -> ConvertSummary:
    summary = ConvertSummary(output=output)
    width, height, fps = int(video["width"]), int(video["height"]), float(video["fps"])
    wanted = None
    if preview_dir is not None:
        wanted = set(_preview_frames(plans, start, end, opts.preview))
        if not wanted:
            raise UserError(f"no faces to preview between frames {start} and {end}")
        if stills is None:
            preview_dir.mkdir(parents=True, exist_ok=True)
            for old in preview_dir.glob("frame_*.jpg"):
                remove_quietly(old)
    tmp: Path | None = None
    writer: FrameWriter | ChunkedVideo | None = None
    times = StepTimes()                 # decode, encode and the main thread's waits
    if output is not None:
        tmp = output.with_name(f".{output.stem}.{os.getpid()}.tmp{output.suffix}")
        audio = {"audio_from": input_path, "audio_start": start / fps if fps else 0.0,
                 "audio_duration": (end - start) / fps if fps and (start > 0 or end < video["frames"]) else None}
        writer = (ChunkedVideo(tmp, width, height, fps, opts.crf, opts.preset, opts.encode_chunk, start, times=times,
                               **audio) if opts.encode_chunk > 0 else
                  FrameWriter(tmp, width, height, fps, crf=opts.crf, preset=opts.preset, times=times, **audio))
    t_start = time.perf_counter()
    reader = FrameReader(input_path, width, height, times=times)
    bar = tqdm(total=len(wanted) if wanted is not None else end - start, unit="frame", desc="convert",
               dynamic_ncols=True, mininterval=0.5)
    pool = ThreadPoolExecutor(max(1, opts.workers), thread_name_prefix="convert")
    ok = False
    try:
        seen = [0]
        chunks = _chunks(reader, start, end, wanted, max(1, opts.batch_size), seen, times)
        ahead = chunks_ahead(width, height, work.size, work.resolution, opts.batch_size)
        for chunk, per_frame in faces_ahead(chunks, plans, pool, work, network, opts.mask != "workspace", times,
                                            ahead):
            for i, frame in chunk:
                faces = per_frame.get(i)
                if faces:
                    summary.faces += len(faces)
                    result: Future | np.ndarray = pool.submit(work.finish, frame, faces)
                else:
                    summary.passed[excluded.get(i, "no_face")] += 1
                    result = frame
                if writer is not None:
                    with times.step("waiting"):
                        writer.put(result)
                elif stills is not None:
                    stills[i] = result.result() if isinstance(result, Future) else result
                else:
                    _write_preview(preview_dir, i, frame, result)
                    summary.previews.append(preview_dir / f"frame_{i:06d}.jpg")
                summary.frames += 1
                bar.update(1)
        if seen[0] < end:
            raise UserError(f"dst video {input_path} ended after {seen[0]} of {video['frames']} "
                            f"frames ({reader.error_text.splitlines()[-1] if reader.error_text else 'unreadable'}); "
                            f"check the file")
        if writer is not None:
            with times.step("waiting"):
                writer.close()
            if credentials is not None and tmp is not None and output is not None:
                with times.step("credentials"):
                    tmp = credentials.sign(tmp, output, summary.frames)
            commit_file(tmp, output)
        ok = True
    finally:
        bar.close()
        reader.close()
        if not ok and writer is not None:
            writer.abort()
        pool.shutdown(wait=True)
        if not ok and tmp is not None:
            remove_quietly(tmp)
    summary.seconds = time.perf_counter() - t_start
    times.merge(network.times)
    times.merge(work.times)
    summary.timings, summary.wall = times.summed(), times.wall()
    return summary


def _write_preview(folder: Path, index: int, before: np.ndarray, after: Future | np.ndarray) -> None:
    image = after.result() if isinstance(after, Future) else after
    write_atomic(folder / f"frame_{index:06d}.jpg", encode(before_after(before, image), ".jpg"))
