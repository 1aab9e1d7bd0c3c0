"""``convert --ray``: the video rendered in frame-range segments on a Ray cluster, joined here.

The driver (the process running the command) checks everything and smooths the face
tracks once, from the index, as a one-machine convert does; each shard is sent only the
plans of its own frames. A worker seeks to its range in the dst video, renders it with the
same per-face steps and network, and writes it to a lossless (Ut Video) segment file beside the
output (the workspace, the dst video and the output's folder must be at the same paths on
every node). The driver decodes the segments in order and encodes them once with the options
and audio of a one-machine convert (the same video as one machine's, not a stream-copy join
whose keyframe groups restart at every shard edge), then removes them. A segment that exists
is finished (written under a temp name, renamed when whole), so a rerun after a killed
driver renders only the missing ranges; the segments' folder is named after the options
(all but crf and preset, which only the final encode uses), the workspace's state and the
input, so a changed setting starts afresh.

The watermark key is read here and sent to the workers, so every segment carries the mark
of the key this command names (a worker never makes a key of its own).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convert.gaps import report as flicker_report
from convert.network_process import ModelFacts
from convert.options import ConvertOptions
from convert.renderer import LOAD_OPTIONS, FacePlan, Renderer, workspace_state
from convert.runner import ConvertSummary, _chunks, faces_of_chunk, network_threads, output_checks, remove_stale_outputs
from pipeline.cluster.ray_cluster import Lane, Shard
from pipeline.cluster.segments import SEGMENT_SUFFIX, SEGMENT_VIDEO_ARGS, segment_name
from pipeline.core.chunked_video import ChunkedWriter, chunk_video_args, finished_chunks, join_chunks
from pipeline.core.errors import UserError
from pipeline.core.files import commit_file, remove_quietly
from pipeline.core.profile import StepTimes
from pipeline.core.threads import pool_native_threads
from pipeline.core.video import FrameReader, FrameWriter
from pipeline.provenance.keys import load_key
from pipeline.provenance.watermark import Watermark
from pipeline.workspace import layout

log = logging.getLogger("convert")

#: Options that change no segment: where the work runs, how many threads, and the final encode's settings
#: (segments are lossless; crf and preset are applied once, by the driver).
_NOT_IN_FRAMES = ("ray", "shard_frames", "workers", "output", "preview", "crf", "preset")
#: Convert's shards are cheap (the worker keeps its model; a seek and a segment writer), and the final encode
#: takes the segments in frame order as they finish: smaller and more shards than extract's let it start sooner
#: (Hill clip on two one-core nodes, machine loaded: 25- and 50-frame shards left 2.5 s of the encode after the
#: last shard, 100-frame ones 4.1 s).
MIN_SHARD_FRAMES = 25
SHARDS_PER_CPU = 4


@dataclass
class SegmentSpec:
    """What every segment of one convert shares."""

    opts: ConvertOptions           # the driver's, model defaults filled in
    input_path: Path
    width: int
    height: int
    fps: float
    folder: Path                   # where the segments go
    key: bytes | None              # the watermark key, None without --watermark
    payload: bytes | None = None   # what the mark carries (``Renderer.watermark_payload``)
    chunk: int = 0                 # ``--encode-chunk``: H.264 pieces of this many frames on the grid from ``origin``
    origin: int = 0


@dataclass
class SegmentResult:
    frames: int = 0
    faces: int = 0
    passed: Counter = field(default_factory=Counter)
    setup_seconds: float = 0.0     # renderer built (0 when the worker had it) and first frame sought
    seconds: float = 0.0


#: A worker process keeps its renderer (model loaded) between shards: (workspace state, load options) -> renderer.
_RENDERERS: dict[tuple, Renderer] = {}


def _renderer(opts: ConvertOptions) -> Renderer:
    key = (workspace_state(Path(opts.workspace)), *(str(getattr(opts, k)) for k in LOAD_OPTIONS))
    renderer = _RENDERERS.get(key)
    if renderer is None:
        _RENDERERS.clear()
        renderer = _RENDERERS[key] = Renderer(opts)
    return renderer


def render_segment(spec: SegmentSpec, shard: Shard, plans: dict[int, list[FacePlan]],
                   excluded: dict[int, str]) -> SegmentResult:
    """Run on a worker: frames [shard.start, shard.end) rendered with the driver's ``plans`` into a segment file."""
    t0 = time.perf_counter()
    start, end = shard.start, shard.end
    opts = spec.opts
    renderer = _renderer(opts)
    work = renderer.work(dataclasses.replace(opts, watermark=False))
    if spec.key is not None:
        work.mark = Watermark(spec.key, spec.payload)
    network = renderer.network
    result = SegmentResult()
    final = spec.folder / segment_name(start, end)
    tmp = spec.folder / f".{final.stem}.{os.getpid()}.tmp{SEGMENT_SUFFIX}"
    times = StepTimes()
    reader = FrameReader(spec.input_path, spec.width, spec.height, times=times, start=start)
    writer: FrameWriter | ChunkedWriter = (
        ChunkedWriter(spec.folder, spec.width, spec.height, spec.fps, opts.crf, opts.preset, spec.chunk, start,
                      spec.origin, times) if spec.chunk else
        FrameWriter(tmp, spec.width, spec.height, spec.fps, times=times, video_args=SEGMENT_VIDEO_ARGS))
    pool = ThreadPoolExecutor(max(1, opts.workers), thread_name_prefix="convert")
    import torch
    torch.set_num_threads(network_threads(opts.workers))
    result.setup_seconds = time.perf_counter() - t0
    ok = False
    try:
        seen = [start]
        with pool_native_threads(opts.workers):
            for chunk in _chunks(reader, start, end, None, max(1, opts.batch_size), seen, times):
                per_frame = faces_of_chunk(chunk, plans, pool, work, network, opts.mask != "workspace", times)
                for i, frame in chunk:
                    faces = per_frame.get(i)
                    out: Future | np.ndarray
                    if faces:
                        result.faces += len(faces)
                        out = pool.submit(work.finish, frame, faces)
                    else:
                        result.passed[excluded.get(i, "no_face")] += 1
                        out = frame
                    writer.put(out)
                    result.frames += 1
        if result.frames < end - start:
            raise UserError(f"dst video {spec.input_path} ended after frame {seen[0] - 1} while frames {start}-{end} "
                            f"were rendered; check the file")
        writer.close()
        if not spec.chunk:         # pieces are renamed one by one as each is whole
            commit_file(tmp, final)
        ok = True
    finally:
        reader.close()
        if not ok:
            writer.abort()
            remove_quietly(tmp)
        pool.shutdown(wait=True)
    result.seconds = time.perf_counter() - t0
    return result


def run_convert_on_cluster(opts: ConvertOptions) -> ConvertSummary:
    """The whole video rendered on the cluster ``opts.ray`` names, joined into ``--output`` with the audio."""
    from pipeline.cluster.ray_cluster import check_address, connect, plan_shards
    from pipeline.cluster.segments import SegmentEncoder, finished_segments, job_key, missing_ranges, segments_root
    check_address(str(opts.ray))
    if opts.preview:
        raise UserError("--ray renders whole videos; make --preview stills without --ray")
    started = time.perf_counter()
    output = Path(opts.output) if opts.output is not None else layout.default_output(opts.workspace)
    # the joined video is signed here, as one machine's is
    span, before_model, material = output_checks(opts, output)

    with connect(str(opts.ray), opts.device) as cluster:
        t0 = time.perf_counter()
        # the model's facts only (no torch here): the workers load the network
        renderer = Renderer(opts, before_model, ModelFacts.read(layout.model_dir(Path(opts.workspace))))
        full, (start, end) = renderer.opts, span
        plans, excluded, person_line = renderer.plan(full)
        if person_line:
            log.info("%s", person_line)
        gaps = flicker_report(plans, excluded, start, end)
        key = load_key(full.watermark_key, create=True) if full.watermark else None
        if key is None:
            log.warning("convert: --no-watermark: nothing in the video will say that its faces were swapped")
        credentials = None
        if material is not None:
            from convert.credentials import Credentials
            credentials = Credentials(full, material, renderer.input_path, renderer.input_hashes,
                                      renderer.network.meta,
                                      Watermark(key, renderer.watermark_payload()) if key is not None else None)
            credentials.notices()
        else:
            log.warning("convert: --no-credentials: the video will carry no content credentials (C2PA) saying it "
                        "was made by a trained algorithm")
        video, input_path = renderer.video, renderer.input_path
        st = input_path.stat()
        chunk = full.encode_chunk
        # pieces in H.264 (--encode-chunk) depend on crf and preset too
        not_in = _NOT_IN_FRAMES if not chunk else tuple(k for k in _NOT_IN_FRAMES if k not in ("crf", "preset"))
        facts = {"options": {k: v for k, v in dataclasses.asdict(full).items() if k not in not_in},
                 "workspace": workspace_state(renderer.root), "input": [str(input_path), st.st_size, st.st_mtime_ns],
                 "watermark": None if key is None else Watermark(key).key_id,
                 "segments": ([SEGMENT_SUFFIX, *SEGMENT_VIDEO_ARGS] if not chunk else
                              ["pieces", start, *chunk_video_args(full.crf, full.preset)])}
        folder = segments_root(output) / job_key(facts)
        folder.mkdir(parents=True, exist_ok=True)
        for other in segments_root(output).iterdir():     # segments of other settings can never be used again
            if other.is_dir() and other != folder:
                shutil.rmtree(other, ignore_errors=True)
        stale = remove_stale_outputs(output)
        if stale:
            log.info("convert: removed %d temp video(s) left by an earlier convert that was killed", stale)
        kept = finished_segments(folder, start, end) if not chunk else finished_chunks(folder, start, end)
        for path in [*folder.glob(f".seg_*.tmp{SEGMENT_SUFFIX}"), *folder.glob(".chunk_*.tmp.mp4")]:
            remove_quietly(path)                   # a killed worker's unfinished segment or piece
        if chunk:
            shards = _shards_on_grid(missing_ranges(start, end, list(kept)), start, end, chunk, cluster.where.slots,
                                     full.shard_frames)
        else:
            shards = plan_shards(missing_ranges(start, end, list(kept)), cluster.where.slots, full.shard_frames,
                                 MIN_SHARD_FRAMES, SHARDS_PER_CPU)
        done_frames = sum(b - a for a, b in kept)
        log.info("ray: %d segments kept from an earlier run (%d frames), %d frames to render in %d shards on %s",
                 len(kept), done_frames, end - start - done_frames, len(shards), cluster.where.describe())
        t_plan = time.perf_counter()
        payload = renderer.watermark_payload() if key is not None else None

        def spec(lane: Lane) -> tuple:
            return (SegmentSpec(dataclasses.replace(full, workers=lane.threads, device=lane.device), input_path,
                                int(video["width"]), int(video["height"]), float(video["fps"]), folder, key, payload,
                                chunk, start),)
        summary = ConvertSummary(output=output, person=person_line, gaps=gaps)
        _count_kept(summary, kept, plans, excluded)
        setup = worker_s = 0.0

        def own_plans(shard: Shard) -> tuple:
            a, b = shard.start, shard.end
            return ({i: p for i, p in plans.items() if a <= i < b}, {i: r for i, r in excluded.items() if a <= i < b})

        fps = float(video["fps"])
        tmp = output.with_name(f".{output.stem}.{os.getpid()}.tmp{output.suffix}")
        joined = tmp
        # every segment in frame order; each is encoded once it and all before it are finished, beside the shards
        order = sorted([*kept, *((s.start, s.end) for s in shards)])
        ready, queued = set(kept), 0
        audio = {"audio_from": input_path, "audio_start": start / fps if fps else 0.0,
                 "audio_duration": (end - start) / fps if fps and (start > 0 or end < video["frames"]) else None}
        encoder: SegmentEncoder | None = None
        if chunk:
            log.info("ray: the nodes encode pieces of %d frames (crf %d, preset %s), joined here by stream copy",
                     chunk, full.crf, full.preset)
        else:
            log.info("ray: the final encode (crf %d, preset %s, as one machine's) takes each lossless segment in "
                     "frame order as soon as it is finished", full.crf, full.preset)
            encoder = SegmentEncoder(tmp, int(video["width"]), int(video["height"]), fps, full.crf, full.preset,
                                     **audio)

        try:
            while encoder is not None and queued < len(order) and order[queued] in ready:
                encoder.add(folder / segment_name(*order[queued]))
                queued += 1
            for shard, result in cluster.run(render_segment, shards, spec, "convert", end - start, done_frames,
                                             extra=own_plans):
                summary.faces += result.faces
                summary.passed.update(result.passed)
                setup, worker_s = setup + result.setup_seconds, worker_s + result.seconds
                ready.add((shard.start, shard.end))
                while encoder is not None and queued < len(order) and order[queued] in ready:
                    encoder.add(folder / segment_name(*order[queued]))
                    queued += 1
            t_shards = time.perf_counter()
            if encoder is None:
                _join_pieces(folder, start, end, tmp, audio)
            else:
                if queued < len(order):
                    raise UserError(f"segments of frames {order[queued:]} are missing in {folder} after the job; run "
                                    f"the same command again")
                size = sum((folder / segment_name(a, b)).stat().st_size for a, b in order)
                encoder.close()
                log.info("ray: encoded the %d frames of %d lossless segments (%.1f MB, %.0f kB a frame): %.1f s "
                         "feeding the encoder, %.1f s of the encode left after the last shard", end - start,
                         len(order), size / 1e6, size / 1e3 / max(1, end - start), encoder.busy_seconds,
                         time.perf_counter() - t_shards)
            if credentials is not None:
                joined = credentials.sign(tmp, output, end - start)
            commit_file(joined, output)
        except BaseException:
            if encoder is not None:
                encoder.abort()
            raise
        finally:
            remove_quietly(tmp)
            remove_quietly(joined)
            if credentials is not None:
                credentials.close()
        shutil.rmtree(segments_root(output), ignore_errors=True)
        log.info("ray: driver set-up (model, plans) %.1f s, shards %.1f s, final encode and mux %.1f s; "
                 "workers %.1f s, of which set-up (model load, first seek) %.1f s", t_plan - t0, t_shards - t_plan,
                 time.perf_counter() - t_shards, worker_s, setup)
    summary.frames = end - start
    summary.seconds = time.perf_counter() - started
    summary.timings = {"worker seconds": worker_s, "worker setup seconds": setup}
    return summary


def _count_kept(summary: ConvertSummary, kept: Iterable[tuple[int, int]], plans: dict[int, list[FacePlan]],
                excluded: dict[int, str]) -> None:
    """Faces swapped and frames passed through in segments kept from an earlier run, added to ``summary``.

    Why from the plans: a worker swaps every face the driver's plan gives a frame and passes the
    others through for the plan's reason, so the kept frames' counts are the plans' own; without
    them a resumed convert's line counted only the frames rendered this time.
    """
    for a, b in kept:
        for i in range(a, b):
            faces = len(plans.get(i, []))
            if faces:
                summary.faces += faces
            else:
                summary.passed[excluded.get(i, "no_face")] += 1


def _shards_on_grid(ranges: list[tuple[int, int]], start: int, end: int, chunk: int, cpus: int,
                    shard_frames: int | None) -> list[Shard]:
    """Shards over ``ranges`` whose edges lie on the ``chunk``-frame grid from ``start``: each piece is encoded
    whole by one worker, so it is the piece one machine encodes."""
    from pipeline.cluster.ray_cluster import plan_shards
    units = [((a - start) // chunk, -(-(b - start) // chunk)) for a, b in ranges]
    per_shard = None if shard_frames is None else max(1, round(shard_frames / chunk))
    out = []
    for s in plan_shards(units, cpus, per_shard, 1, SHARDS_PER_CPU):
        out.append(Shard(s.index, start + s.start * chunk, min(end, start + s.end * chunk)))
    return out


def _join_pieces(folder: Path, start: int, end: int, output: Path, audio: dict) -> None:
    """Every piece of [start, end) in ``folder`` joined into ``output`` with the audio; a gap is one line."""
    pieces = sorted(finished_chunks(folder, start, end).items())
    at = start
    for (a, b), _ in pieces:
        if a != at:
            break
        at = b
    if at != end:
        raise UserError(f"the encoded pieces in {folder} stop at frame {at} of {start}-{end} after the job; run the "
                        f"same command again")
    t0 = time.perf_counter()
    join_chunks([p for _, p in pieces], output, **audio)
    log.info("ray: joined %d pieces (%.1f MB) by stream copy in %.1f s", len(pieces),
             sum(p.stat().st_size for _, p in pieces) / 1e6, time.perf_counter() - t0)
