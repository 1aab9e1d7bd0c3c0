"""DeepFaceLab's DF and LIAE autoencoders: shapes, recipes, augmentation, train -> resume -> convert."""
import json
import shutil

import cv2
import numpy as np
import pytest
import torch

import main
from pipeline.core import geometry
from pipeline.core.errors import UserError
from pipeline.core.video import FrameReader
from pipeline.models.autoencoder import DFModel, LIAEModel
from pipeline.models.autoencoder_net import build
from pipeline.models.autoencoder_options import PRESETS, AutoencoderOptions, resolve_widths
from pipeline.models.interface import count_parameters
from pipeline.models.store import load_model
from pipeline.workspace.store import Workspace
from tests.conftest import CLIP6, ROOT, clean_error, run_cli, snapshot
from train import autoencoder_augment as aug
from train.options import TrainOptions
from train.trainer import Trainer, with_default_lr

TINY = {"ae_dims": 16, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4}
TINY_CLI = ["--resolution", "64", "--ae-dims", "16", "--e-dims", "8", "--d-dims", "8", "--d-mask-dims", "4",
            "--batch-size", "2"]


# ---------------------------------------------------------------------- the networks


@pytest.mark.parametrize("kind", ["df", "liae"])
@pytest.mark.parametrize("resolution", [64, 96])
def test_both_layouts_give_a_face_and_a_mask(kind, resolution):
    torch.manual_seed(0)
    net = build(kind, resolution, **TINY)
    src, dst = torch.rand(2, 3, resolution, resolution), torch.rand(3, 3, resolution, resolution)
    with torch.no_grad():
        src_src, src_mask, dst_dst, dst_mask = net(src, dst)
        face, mask = net.swap(dst)
    assert src_src.shape == (2, 3, resolution, resolution) and src_mask.shape == (2, 1, resolution, resolution)
    assert dst_dst.shape == face.shape == (3, 3, resolution, resolution)
    assert dst_mask.shape == mask.shape == (3, 1, resolution, resolution)
    for t in (src_src, src_mask, dst_dst, dst_mask, face, mask):      # sigmoid outputs
        assert 0 <= float(t.min()) and float(t.max()) <= 1
    model = (DFModel if kind == "df" else LIAEModel)(net)
    assert model.resolution == resolution and model.architecture() == {"resolution": resolution, **TINY}
    assert not model.precision_supported(torch.device("cpu"), "int8")       # convert's auto takes float
    predictor = model.predictor(torch.device("cpu"), "float", [])
    with torch.no_grad():
        assert torch.equal(predictor(dst), face)
    got_face, got_mask = model.swap_with_mask(dst)
    assert torch.equal(got_face, face) and torch.equal(got_mask, mask)


@pytest.mark.parametrize("kind", ["df", "liae"])
def test_auto_precision_is_bfloat16_only_where_the_cpu_computes_it_and_stays_near_float(kind, monkeypatch):
    from pipeline.models import cpu_bfloat16
    torch.manual_seed(0)
    model = (DFModel if kind == "df" else LIAEModel)(build(kind, 64, **TINY))
    dst = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        face, mask = model.swap_with_mask(dst)
    monkeypatch.setattr(cpu_bfloat16, "native", lambda device: True)
    fast = model.predictor(torch.device("cpu"), "auto", [])
    assert "bfloat16" in fast.description
    assert model.predictor(torch.device("cpu"), "float", []).description == "float32"
    with torch.no_grad():
        got_face, got_mask = fast.with_mask(dst)
    assert got_face.dtype == got_mask.dtype == torch.float32
    assert not torch.equal(got_face, face)                                  # it did run in bfloat16
    assert (got_face - face).abs().max() < 2.0 / 255 and (got_mask - mask).abs().max() < 2.0 / 255
    monkeypatch.setattr(cpu_bfloat16, "native", lambda device: False)
    assert model.predictor(torch.device("cpu"), "auto", []).description == "float32"


def _changed(net, module, run) -> bool:
    """Whether perturbing ``module``'s weights changes what ``run(net)`` gives."""
    with torch.no_grad():
        before = [t.clone() for t in run(net)]
        for p in module.parameters():
            p.add_(0.5)
        after = run(net)
    return not all(torch.allclose(a, b) for a, b in zip(before, after))


def test_the_swap_goes_through_the_src_side_of_each_layout():
    torch.manual_seed(0)
    dst = torch.rand(2, 3, 64, 64)
    swap = lambda n: n.swap(dst)                                     # noqa: E731
    own = lambda n: n(dst, dst)[2:]                                   # noqa: E731 dst -> dst
    df = build("df", 64, **TINY)
    assert _changed(df, df.decoder_dst, own) and not _changed(df, df.decoder_dst, swap)
    assert _changed(df, df.decoder_src, swap)
    liae = build("liae", 64, **TINY)
    # LIAE: dst -> dst is decoder([inter_B(dst), inter_AB(dst)]), the swap decoder([inter_AB(dst)] * 2)
    assert _changed(liae, liae.inter_b, own) and not _changed(liae, liae.inter_b, swap)
    assert _changed(liae, liae.inter_ab, swap)


def test_the_presets_sizes():
    """The parameter counts the README gives; the cpu preset is far smaller than DeepFaceLab's defaults."""
    counts = {}
    for preset, widths in PRESETS.items():
        for kind in ("df", "liae"):
            with torch.device("meta"):
                counts[preset, kind] = count_parameters(build(kind, 128, *widths))
    print(counts)
    assert counts == {("cpu", "df"): 6_110_880, ("cpu", "liae"): 15_833_224,
                      ("gpu", "df"): 57_538_432, ("gpu", "liae"): 94_963_328}
    assert all(counts["cpu", kind] * 5 < counts["gpu", kind] for kind in ("df", "liae"))


def test_each_model_type_has_its_own_default_learning_rate():
    rates = lambda **kw: (lambda o: (o.lr, o.lr_end))(with_default_lr(TrainOptions(**kw)))  # noqa: E731
    assert rates(model="transform") == (1e-3, 1e-4)
    assert rates(model="df") == rates(model="liae") == (3e-4, 3e-5)
    assert rates(model="df", lr=1e-3) == (1e-3, 3e-5) and rates(model="df", lr_end=1e-6) == (3e-4, 1e-6)


def test_widths_come_from_the_preset_the_model_being_continued_or_the_device(tmp_path):
    assert resolve_widths(AutoencoderOptions(), "cpu", None) == (PRESETS["cpu"], "preset cpu")
    assert resolve_widths(AutoencoderOptions(), "cuda", None) == (PRESETS["gpu"], "preset gpu")
    widths, source = resolve_widths(AutoencoderOptions(preset="gpu", d_dims=48), "cpu", None)
    assert widths == PRESETS["gpu"]._replace(d_dims=48) and source == "preset gpu with d 48"
    (tmp_path / "options.json").write_text(json.dumps({"model_type": "liae", **TINY}))
    assert resolve_widths(AutoencoderOptions(), "cpu", tmp_path)[0] == tuple(TINY.values())
    assert resolve_widths(AutoencoderOptions(preset="cpu"), "cpu", tmp_path)[0] == PRESETS["cpu"]


# ---------------------------------------------------------------------- augmentation


def _faces(n: int = 3, r: int = 64) -> torch.Tensor:
    frames = [f for _, f in FrameReader(CLIP6, 256, 256)][:n]
    return torch.from_numpy(np.stack([cv2.resize(f[40:200, 48:208], (r, r)) for f in frames])).permute(
        0, 3, 1, 2).float() / 255


def test_random_warp_changes_the_input_and_leaves_the_target_unwarped():
    faces = _faces()
    plain = aug.draw(3, 64, torch.Generator().manual_seed(1), jitter=False, flip=False)
    target = plain.apply(faces, warp=False)
    assert torch.allclose(target, faces, atol=1e-5)                  # no jitter, no flip: the face itself
    warped = plain.apply(faces, warp=True)
    assert float((warped - faces).abs().mean()) > 0.01
    # with jitter and flips: the target is the same whether the warp is drawn or not, and the
    # input is that target warped (the same draws: a resumed run repeats them)
    with_warp = aug.draw(3, 64, torch.Generator().manual_seed(2))
    without = aug.draw(3, 64, torch.Generator().manual_seed(2), warp=False)
    assert torch.equal(with_warp.apply(faces, warp=False), without.apply(faces, warp=False))
    assert torch.equal(without.apply(faces, warp=True), without.apply(faces, warp=False))
    assert float((with_warp.apply(faces, warp=True) - with_warp.apply(faces, warp=False)).abs().mean()) > 0.01
    # masks stacked with the image move exactly with the target
    masks = (faces.mean(1, keepdim=True) > 0.5).float()
    both = with_warp.apply(torch.cat([faces, masks], 1), warp=False)
    assert torch.allclose(both[:, 3:], with_warp.apply(masks, warp=False))


def test_a_flip_mirrors_input_and_target_alike():
    faces = _faces(2)
    g = torch.Generator().manual_seed(0)
    a = aug.draw(64, 64, g, warp=False, jitter=False)
    mirrored = a.theta[:, 0, 0] < 0
    assert 10 < int(mirrored.sum()) < 54                             # about half
    i = int(torch.nonzero(mirrored)[0])
    one = aug.Augmentation(a.theta[i:i + 1].expand(2, 2, 3), a.offsets[:2])
    assert torch.allclose(one.apply(faces, warp=False), faces.flip(-1), atol=1e-5)


def test_eyes_and_mouth_masks_cover_the_eyes_and_the_mouth():
    w = Workspace(CLIP6.parents[1] / "workspace_v1")
    try:
        row = w.faces("dst")[0]
    finally:
        w.close()
    pts = geometry.transform_points(row.aligned_landmarks, geometry.resize_transform(row.size, 64))
    em = aug.eyes_mouth_masks(pts[None].astype(np.float32), 64)[0]
    for centre in (pts[36:42].mean(0), pts[42:48].mean(0), pts[48:60].mean(0)):
        x, y = np.round(centre).astype(int)
        assert em[y, x] > 200
    assert em[2, 2] == 0 and (em > 127).mean() < 0.15


# ---------------------------------------------------------------------- train, resume, convert


def _log(ws):
    return [json.loads(line) for line in (ws / "model" / "log.jsonl").read_text().splitlines()]


def _train(ws, *args):
    res = run_cli("train", "--workspace", ws, *TINY_CLI, *args)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _face_regions(ws) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per frame of the 6-frame clip: (far from the face, inside the face) at 512 px."""
    w = Workspace(ws)
    try:
        rows = sorted(w.faces("dst"), key=lambda r: r.frame_index)
    finally:
        w.close()
    out = []
    for row in rows:
        hull = geometry.hull_mask(row.landmarks, (512, 512))
        far = cv2.dilate(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (121, 121))) == 0
        out.append((far, cv2.erode(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (21, 21))) > 0))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["df", "liae"])
def test_train_resume_exactly_and_convert(kind, small_ws, tmp_path):
    shutil.rmtree(small_ws / "model")                     # the fixture's transformation network
    straight = tmp_path / "straight"
    shutil.copytree(small_ws, straight)
    _train(straight, "--model", kind, "--iterations", "6", "--save-every", "3", "--preview-every", "3")
    _train(small_ws, "--model", kind, "--iterations", "6", "--save-every", "3", "--preview-every", "3",
           "--stop-at", "3")
    res = _train(small_ws, "--model", kind, "--iterations", "6", "--save-every", "3", "--preview-every", "3")
    assert "resuming at iteration 3" in res.stderr and f"network: {kind.upper()} autoencoder 64x64" in res.stderr
    a = [r for r in _log(straight) if "loss" in r]
    b = [r for r in _log(small_ws) if "loss" in r]
    assert [r["iteration"] for r in b] == list(range(1, 7))
    for x, y in zip(a, b):
        for key in ("loss", "src", "dst", "dssim", "mse", "mask"):
            assert x[key] == pytest.approx(y[key], rel=1e-5, abs=1e-7), (key, x, y)

    model_dir = small_ws / "model"
    for name in ("weights.pt", "options.json", "checkpoint.pt", "preview.jpg", "history/preview_000006.jpg"):
        assert (model_dir / name).is_file(), name
    preview = cv2.imread(str(model_dir / "preview.jpg"))
    assert preview.shape[:2] == (4 * 64, 5 * 64)          # src | src->src | dst | dst->dst | dst->src
    model, options = load_model(model_dir)
    assert type(model) is (DFModel if kind == "df" else LIAEModel)
    assert options["model_type"] == kind and options["face_type"] == "full" and options["iteration"] == 6
    assert {k: options[k] for k in ("resolution", *TINY)} == {"resolution": 64, **TINY}
    assert (options["lr"], options["lr_end"]) == (3e-4, 3e-5)           # the autoencoders' own default
    face, mask = model.swap_with_mask(torch.rand(2, 3, 64, 64))
    assert face.shape == (2, 3, 64, 64) and mask.shape == (2, 1, 64, 64)

    out = tmp_path / "swapped.mp4"
    res = run_cli("convert", "--workspace", small_ws, "--output", out)
    assert res.returncode == 0, res.stderr[-3000:]
    from pipeline.models import cpu_bfloat16
    arithmetic = "bfloat16" if cpu_bfloat16.native(torch.device("cpu")) else "float32"    # what --precision auto picks
    assert "6 faces swapped" in res.stdout and arithmetic in res.stderr
    before = [f.astype(np.int16) for _, f in FrameReader(CLIP6, 512, 512)]
    after = [f.astype(np.int16) for _, f in FrameReader(out, 512, 512)]
    assert len(after) == 6
    for (far, inside), x, y in zip(_face_regions(small_ws), before, after):
        diff = np.abs(x - y).mean(axis=2)
        assert diff[far].mean() < 2.5 and diff[inside].mean() > 8, (diff[far].mean(), diff[inside].mean())


@pytest.mark.slow
def test_the_loss_falls_on_a_tiny_net(small_ws):
    shutil.rmtree(small_ws / "model")
    _train(small_ws, "--model", "df", "--iterations", "30", "--lr", "3e-3", "--lr-end", "1e-3",
           "--save-every", "30", "--preview-every", "30", "--eyes-mouth-prio")
    log = [r for r in _log(small_ws) if "loss" in r]
    assert len(log) == 30 and all("eyes_mouth" in r for r in log)
    first, last = ({k: np.mean([r[k] for r in part]) for k in ("loss", "mse", "mask")}
                   for part in (log[:5], log[-5:]))
    assert last["loss"] < 0.8 * first["loss"] and last["mse"] < first["mse"] and last["mask"] < first["mask"], \
        (first, last)


# ---------------------------------------------------------------------- bad input


def test_an_unknown_model_type_names_the_choices():
    res = run_cli("train", "--model", "nope")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "invalid choice: 'nope'" in errors[0], res.stderr
    assert all(f"'{name}'" in errors[0] for name in ("transform", "df", "liae"))
    with pytest.raises(UserError, match=r"unknown model type 'nope' \(--model\); choose one of: transform, df, liae"):
        Trainer(TrainOptions(workspace=CLIP6.parent, model="nope"))


@pytest.mark.slow
def test_resuming_another_type_or_architecture_needs_fresh(small_ws):
    shutil.rmtree(small_ws / "model")
    _train(small_ws, "--model", "df", "--iterations", "2")
    before = snapshot(small_ws / "model")
    for args, needles in ((["--model", "liae"], ("holds a 'df' model, not 'liae'", "--model df", "--fresh")),
                          (["--model", "df", "--ae-dims", "32"], ("ae_dims 16 -> 32", "--fresh")),
                          (["--model", "df", "--resolution", "80"], ("resolution 64 -> 80", "--fresh"))):
        res = run_cli("train", "--workspace", small_ws, *TINY_CLI, "--iterations", "4", *args)
        clean_error(res, *needles)
        assert snapshot(small_ws / "model") == before
    clean_error(run_cli("train", "--workspace", small_ws, "--model", "df", "--resolution", "100"),
                "--resolution 100: choose one of 64, 80, 96")
    clean_error(run_cli("train", "--workspace", small_ws, "--model", "transform", "--resolution", "96"),
                "--resolution 96: choose one of 128, 256")
    assert snapshot(small_ws / "model") == before


def test_the_shared_resolution_option_keeps_each_model_types_default():
    parser = main._parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    for argv, model, expected in ((["train"], "transform", 128), (["train", "--model", "df"], "df", 96),
                                  (["train", "--model", "liae", "--resolution", "112"], "liae", 112)):
        args = parser.parse_args(argv)
        from pipeline.core.options import from_namespace
        from pipeline.registries import MODEL_TYPES
        assert from_namespace(MODEL_TYPES.load(model, "options"), args).resolution == expected
    args = parser.parse_args(["train", "--model", "df", "--no-random-warp", "--eyes-mouth-prio"])
    opts = from_namespace(AutoencoderOptions, args)
    assert not opts.random_warp and opts.eyes_mouth_prio and opts.random_flip and opts.mask_loss
    text = " ".join(train.format_help().split())
    assert "For --model df, --model liae: side of the face" in text and "(default: 96)" in text
    assert "--random-warp, --no-random-warp" in text and "the same options as --model df above" in text


# ---------------------------------------------------------------------- convert --mask


def _write_df(model_dir, mask_bias: float) -> None:
    """An untrained tiny DF model whose swap mask is forced to ~0 or ~1 (the bias of its last layer)."""
    from pipeline.models.store import save_model
    torch.manual_seed(0)
    net = build("df", 64, **TINY)
    with torch.no_grad():
        net.decoder_src.mask[-1].bias.fill_(mask_bias)
    save_model(model_dir, DFModel(net), {"face_type": "full", "iteration": 1})


def _stills(ws, mask: str, **kw) -> dict[int, np.ndarray]:
    from convert.options import ConvertOptions
    from convert.runner import run_convert
    stills: dict[int, np.ndarray] = {}
    # no watermark: its payload names the model's weights, and these stills are compared across two models
    run_convert(ConvertOptions(workspace=ws, preview=2, mask=mask, workers=1, watermark=False, **kw), stills)
    assert len(stills) == 2
    return stills


def test_convert_mask_workspace_learned_or_both(small_ws):
    source = dict(FrameReader(CLIP6, 512, 512))
    regions = dict(zip(range(6), _face_regions(small_ws)))
    _write_df(small_ws / "model", -30.0)           # the model calls nothing face
    for mode in ("learned", "both"):
        for blend in ("alpha", "poisson"):
            for i, frame in _stills(small_ws, mode, blend=blend).items():
                assert np.array_equal(frame, source[i]), (mode, blend)          # nothing pasted
    workspace = _stills(small_ws, "workspace", blend="alpha")
    for i, frame in workspace.items():
        far, inside = regions[i]
        diff = np.abs(frame.astype(np.int16) - source[i]).mean(axis=2)
        assert diff[inside].mean() > 8 and diff[far].mean() < 1
    _write_df(small_ws / "model", 30.0)            # the model calls the whole crop face
    both = _stills(small_ws, "both", blend="alpha")
    assert all(np.array_equal(both[i], workspace[i]) for i in workspace)        # x 1 = the workspace's mask
    learned = _stills(small_ws, "learned", blend="alpha")
    for i, frame in learned.items():
        far, inside = regions[i]
        hull_ring = ~far & ~inside                  # around the face: pasted only with the learned mask
        grew = np.abs(frame.astype(np.int16) - source[i]).mean(axis=2)[hull_ring].mean()
        kept = np.abs(workspace[i].astype(np.int16) - source[i]).mean(axis=2)[hull_ring].mean()
        assert grew > kept + 5, (grew, kept)
    for mode in ("learned", "both"):               # the poisson path takes the learned mask too
        assert len(_stills(small_ws, mode)) == 2


def test_convert_mask_learned_needs_a_model_that_paints_one(small_ws):
    before = snapshot(small_ws)
    res = run_cli("convert", "--workspace", small_ws, "--mask", "learned")
    clean_error(res, "--mask learned needs a model that paints its own mask", "transform model", "--mask workspace")
    assert snapshot(small_ws) == before


@pytest.mark.parametrize("kind", ["df", "liae"])
def test_export_gives_the_dst_sides_mask_and_the_swaps_mask(kind, tmp_path):
    import onnxruntime as ort

    from export.dfm import onnx_bytes
    torch.manual_seed(1)
    net = build(kind, 64, **TINY)
    model = (DFModel if kind == "df" else LIAEModel)(net)
    data = onnx_bytes(model, 12)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    rgb = torch.rand(2, 3, 64, 64)
    bgr = rgb.permute(0, 2, 3, 1).numpy()[..., ::-1].copy()
    face_mask, celeb, celeb_mask = session.run(None, {"in_face:0": bgr})
    with torch.no_grad():
        want_face, want_mask = net.swap(rgb)
        dst_dst_mask = net(rgb, rgb)[3]          # the mask of dst -> dst: the dst side's
    assert np.abs(celeb - want_face.permute(0, 2, 3, 1).numpy()[..., ::-1]).max() < 1e-4
    assert np.abs(celeb_mask - want_mask.permute(0, 2, 3, 1).numpy()).max() < 1e-4
    assert np.abs(face_mask - dst_dst_mask.permute(0, 2, 3, 1).numpy()).max() < 1e-4   # dst->dst's mask
    assert np.abs(face_mask - celeb_mask).max() > 1e-3                                   # not the same one


# ---------------------------------------------------------------------- adversarial terms, mixed precision


@pytest.mark.slow
def test_adversarial_terms_train_and_resume_exactly(small_ws, tmp_path):
    shutil.rmtree(small_ws / "model")
    straight = tmp_path / "straight"
    shutil.copytree(small_ws, straight)
    args = ("--model", "df", "--iterations", "4", "--save-every", "2", "--true-face-power", "0.1",
            "--gan-power", "0.2")
    res = _train(straight, *args)
    assert "true face 0.1, GAN 0.2" in res.stderr
    _train(small_ws, *args, "--stop-at", "2")
    _train(small_ws, *args)
    a, b = ([r for r in _log(ws) if "loss" in r] for ws in (straight, small_ws))
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        for key in ("loss", "true_face", "gan", "d_code", "d_patch"):
            assert x[key] == pytest.approx(y[key], rel=1e-5, abs=1e-7), (key, x, y)
    first = a[0]
    # at the start the discriminators guess: log 2 = 0.693 per term, times its weight
    assert first["true_face"] == pytest.approx(0.1 * np.log(2), rel=0.3)
    assert first["gan"] == pytest.approx(0.2 * np.log(2), rel=0.3)
    state = torch.load(small_ws / "model" / "checkpoint.pt", weights_only=True)
    assert set(state["discriminators"]) == {"code", "patch"}
    # switched on later: the discriminator starts fresh, the autoencoder continues
    _train(straight, "--model", "df", "--iterations", "5", "--gan-power", "0.1")
    log = [r for r in _log(straight) if "loss" in r]
    assert log[-1]["iteration"] == 5 and "gan" in log[-1] and "true_face" not in log[-1]


def test_true_face_is_for_df_only(small_ws):
    before = snapshot(small_ws / "model")
    res = run_cli("train", "--workspace", small_ws, *TINY_CLI, "--model", "liae", "--true-face-power", "0.01",
                  "--iterations", "2")
    clean_error(res, "--true-face-power is for --model df only", "train --model df")
    assert snapshot(small_ws / "model") == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (mixed precision runs on CUDA only)")
@pytest.mark.parametrize("kind", ["df", "liae"])
def test_mixed_precision_on_cuda(kind, small_ws):
    shutil.rmtree(small_ws / "model")
    res = _train(small_ws, "--model", kind, "--iterations", "6", "--device", "cuda", "--gan-power", "0.1")
    assert "mixed precision (float16 autocast, scaled losses)" in res.stderr
    log = [r for r in _log(small_ws) if "loss" in r]
    assert len(log) == 6 and all(np.isfinite(r["loss"]) for r in log)
    model, _ = load_model(small_ws / "model")
    assert all(torch.isfinite(p).all() for p in model.network.parameters())
    assert all(p.dtype == torch.float32 for p in model.network.parameters())     # float32 master weights
    state = torch.load(small_ws / "model" / "checkpoint.pt", weights_only=True)
    assert set(state["scalers"]) == {"model", "patch"} and state["scalers"]["model"]["scale"] > 0


@pytest.mark.slow
def test_two_processes_under_torchrun_with_both_discriminators(small_ws):
    import os
    import subprocess
    import sys

    from tests.test_train import _free_port
    shutil.rmtree(small_ws / "model")
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                          "main.py", "train", "--workspace", str(small_ws), *TINY_CLI, "--model", "df",
                          "--iterations", "3", "--true-face-power", "0.1", "--gan-power", "0.1", "--no-mask-loss"],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
                         cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    log = _log(small_ws)
    assert [r["iteration"] for r in log if "loss" in r] == [1, 2, 3]
    assert log[-1] == {"iteration": 3, "world_size": 2, "ranks_in_sync": True}


def test_convert_refuses_an_autoencoder_of_another_face_type_or_too_large(small_ws):
    from pipeline.models.store import save_model
    torch.manual_seed(0)
    save_model(small_ws / "model", DFModel(build("df", 64, **TINY)), {"face_type": "whole", "iteration": 1})
    before = snapshot(small_ws)
    clean_error(run_cli("convert", "--workspace", small_ws), "trained on 'whole' faces", "'full'", "--fresh")
    assert snapshot(small_ws) == before
    save_model(small_ws / "model", LIAEModel(build("liae", 144, **TINY)), {"face_type": "full", "iteration": 1})
    before = snapshot(small_ws)
    clean_error(run_cli("convert", "--workspace", small_ws), "has resolution 144 but the dst faces are only 128 px",
                "--size 144")
    assert snapshot(small_ws) == before


def test_convert_chroma_smoothing_and_part_colour_defaults_by_model_type(small_ws):
    # the transformation network: chroma smoothing 8 px, as before; part colour on (issue 26)
    default = _stills(small_ws, "workspace")
    for key, same, other in (("chroma_smooth", 8.0, 0.0), ("part_colour", 1.0, 0.0)):
        assert all(np.array_equal(default[i], f) for i, f in _stills(small_ws, "workspace", **{key: same}).items())
        assert any(not np.array_equal(default[i], f) for i, f in _stills(small_ws, "workspace", **{key: other}).items())
    # an autoencoder paints the face anew: neither unless asked
    _write_df(small_ws / "model", 0.0)
    default = _stills(small_ws, "workspace")
    for key, same, other in (("chroma_smooth", 0.0, 8.0), ("part_colour", 0.0, 1.0)):
        assert all(np.array_equal(default[i], f) for i, f in _stills(small_ws, "workspace", **{key: same}).items())
        assert any(not np.array_equal(default[i], f) for i, f in _stills(small_ws, "workspace", **{key: other}).items())


def test_info_names_the_trained_model(small_ws):
    def model_line() -> str:
        res = run_cli("info", "--workspace", small_ws)
        assert res.returncode == 0, res.stderr
        return [ln for ln in res.stdout.splitlines() if ln.startswith("  model:")][0]

    assert model_line() == "  model: transform 128 px (width 4) on 'full' faces, iteration 0"
    _write_df(small_ws / "model", 0.0)
    assert model_line() == ("  model: df 64 px (ae_dims 16, e_dims 8, d_dims 8, d_mask_dims 4) on 'full' faces, "
                            "iteration 1")
    info = json.loads(run_cli("info", "--json", "--workspace", small_ws).stdout)
    assert info["model"]["type"] == "df" and info["model"]["size"] == TINY and info["model"]["weights"]
    (small_ws / "model" / "options.json").write_text("{oops")
    assert "options.json is unreadable" in model_line()
    shutil.rmtree(small_ws / "model")
    assert model_line() == "  model: none trained (python main.py train)"
