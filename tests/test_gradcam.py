"""Ladder step IV (gradcam_zoom): Grad-CAM maps, crops, and the two-stage run on the training road."""

import csv
import json

import pytest
import torch
import torch.nn.functional as F

import atac.train as train_mod
from atac.cli import main
from atac.config import preset
from atac.evaluate import predict
from atac.gradcam import GradCAMZoomNet, build_gradcam_zoom, crop_uint8, gradcam_boxes, gradcam_maps
from atac.methods import METHODS
from atac.models import build_model
from atac.run import run, stage2_seed
from conftest import count_training_steps

REQUIRED = ["method", "backbone", "weights_source", "dataset", "category", "setting", "shots", "seed",
            "image_auroc", "image_auprc", "pixel_auroc", "zoom_rate_normal", "zoom_rate_anomalous",
            "n_train_normal", "n_train_anomalous", "n_test_normal", "n_test_anomalous",
            "train_seconds", "gradcam_seconds", "stage1_train_seconds", "device", "git_commit", "config"]


def _cfg(synth_root=None, **kw):
    cfg = preset("smoke")  # mobilenet_v2, random weights, 64 px
    cfg.method = "gradcam_zoom"
    if synth_root is not None:
        cfg.data_root = str(synth_root)
    cfg.category = "weave"
    cfg.shots = 2
    cfg.epochs = 2
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model(_cfg())


def _images(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 64, 64), generator=g, dtype=torch.uint8)


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


def _manual_gradcam(model, images):
    """Grad-CAM by hand (Selvaraju et al.): d score / d activations of backbone[-1], channel means
    as weights, ReLU, per-image min-max, bilinear upsampling, min-max again (as the library does)."""
    model.eval()
    acts = []
    h = model.backbone[-1].register_forward_hook(lambda m, i, o: acts.append(o))
    x = images.float() / 255
    score, _, _ = model.score_pass(x)
    h.remove()
    a = acts[0]
    (g,) = torch.autograd.grad(score.sum(), a)
    cam = F.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1)).detach()  # (N, h, w)

    def minmax(c):
        c = c - c.flatten(1).amin(1)[:, None, None]
        return c / (1e-7 + c.flatten(1).amax(1)[:, None, None])

    up = F.interpolate(minmax(cam)[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return minmax(up)


def test_gradcam_maps_shape_range_and_value():
    model, images = _model(), _images()
    cams = gradcam_maps(model, images, "cpu", batch_size=2)
    assert cams.shape == (5, 64, 64) and cams.dtype == torch.float32 and cams.device.type == "cpu"
    assert cams.min() >= 0 and cams.max() <= 1 and torch.isfinite(cams).all()
    # per-image min-max normalisation: each non-empty map spans [0, 1]
    peaks = cams.flatten(1).amax(1)
    assert (peaks > 0).all()
    assert torch.allclose(peaks, torch.ones(5), atol=1e-4)
    assert torch.allclose(cams.flatten(1).amin(1), torch.zeros(5), atol=1e-6)
    # it is the Grad-CAM of the full-image score at the last backbone block
    assert torch.allclose(cams, _manual_gradcam(model, images), atol=1e-3)
    # batches do not interact (eval-mode BatchNorm, per-image targets)
    assert torch.allclose(cams, gradcam_maps(model, images, "cpu", batch_size=5), atol=1e-5)


def test_gradcam_restores_mode_releases_hooks_and_works_without_grad():
    model, images = _model(), _images(3)
    assert _hooks(model) == 0
    model.train()
    with torch.inference_mode():
        a = gradcam_maps(model, images, "cpu", 2)
    assert model.training  # mode restored (GradCAM switches to eval inside)
    assert all(m.training for m in model.modules())
    assert _hooks(model) == 0  # the library's hooks are gone
    assert all(p.grad is None for p in model.parameters())  # its backward left no .grad behind
    model.eval()
    with torch.no_grad():
        b = gradcam_maps(model, images, "cpu", 3)
    assert not model.training and _hooks(model) == 0
    assert torch.allclose(a, b, atol=1e-5)  # train mode did not leak into the CAM
    # channels-last input and a model moved inside inference_mode (inference-tensor weights)
    with torch.inference_mode():
        model.to(memory_format=torch.channels_last)
        assert any(t.is_inference() for t in model.buffers())
        c = gradcam_maps(model, images.contiguous(memory_format=torch.channels_last), "cpu", 2)
    assert torch.allclose(a, c, atol=1e-5)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="uint8"):
        gradcam_maps(_model(), _images().float(), "cpu")
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        gradcam_boxes(torch.zeros(2, 1, 8, 8))


def test_all_zero_cam_means_no_zoom():
    boxes, zoom = gradcam_boxes(torch.zeros(3, 64, 64), 0.5, 0.95)
    assert not zoom.any() and boxes.tolist() == [[0, 0, 64, 64]] * 3
    # a network whose score does not depend on the features: zero gradient -> zero CAM, no NaN
    model = _model()
    with torch.no_grad():
        model.mapping.weight.zero_()
        model.mapping.bias.fill_(0.3)
    images = _images(4)
    cams = gradcam_maps(model, images, "cpu", 4)
    assert torch.isfinite(cams).all() and (cams == 0).all()
    boxes, zoom = gradcam_boxes(cams)
    assert not zoom.any()
    assert torch.equal(crop_uint8(images, boxes, zoom), images)
    # and through the two-stage network: the crop is the image itself
    net = GradCAMZoomNet(model, _model(1)).eval()
    p = predict(net, images, "cpu", 2)
    assert not p.zoom.any() and torch.isfinite(p.scores).all()
    full = predict(_model(1).eval(), images, "cpu", 4)
    assert torch.allclose(p.score_zoom, full.scores, atol=1e-6)


def test_gradcam_boxes_follow_the_hot_region_and_crops_are_uint8():
    cams = torch.zeros(2, 64, 64)
    cams[0, 8:24, 40:60] = 1.0
    cams[1] = 1.0  # everything hot: the box is the whole image -> no zoom
    boxes, zoom = gradcam_boxes(cams, 0.5, 0.95)
    assert zoom.tolist() == [True, False]
    assert boxes[0].tolist() == [40, 8, 60, 24]
    images = torch.full((2, 3, 64, 64), 10, dtype=torch.uint8)
    images[:, :, 8:24, 40:60] = 200
    crops = crop_uint8(images, boxes, zoom)
    assert crops.dtype == torch.uint8 and crops.shape == images.shape
    assert (crops[0, :, 8:-8, 8:-8] == 200).all()  # the zoomed view is the hot region (edges blend)
    assert (crops[0] == 200).float().mean() > 0.8 and (crops[0] == 10).sum() == 0
    assert torch.equal(crops[1], images[1])


def test_methods_ladder_order_and_cli_lists_it(capsys):
    assert list(METHODS) == ["cutmix_bce", "weighted_ce", "deviation", "gradcam_zoom", "atac", "dra"]
    r = METHODS["gradcam_zoom"]
    assert r.step == "IV" and r.two_stage and not r.zoom and not r.attention and r.loss == "deviation"
    assert not any(m.two_stage for name, m in METHODS.items() if name != "gradcam_zoom")
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("gradcam_zoom"))
    assert "step IV" in line and "not implemented" not in out


def test_stage2_seed_is_derived_and_in_range():
    assert stage2_seed(0) == stage2_seed(0) and stage2_seed(0) != stage2_seed(1)
    assert stage2_seed(0) != 0 and 0 <= stage2_seed(2**32 - 1) < 2**32


@pytest.fixture(scope="module")
def reference_run(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("gradcam") / "r"
    return run(_cfg(synth_root), out, progress=False), out


@pytest.mark.slow
def test_smoke_run_writes_a_complete_record(reference_run, synth_root):
    res, out = reference_run
    m = json.loads((out / "metrics.json").read_text())
    for k in REQUIRED:
        assert m.get(k) is not None, k
    assert m["method"] == "gradcam_zoom" and 0 <= m["image_auroc"] <= 1 and 0 <= m["pixel_auroc"] <= 1
    assert 0 <= m["zoom_rate_normal"] <= 1 and 0 <= m["zoom_rate_anomalous"] <= 1
    assert m["train_seconds"] >= m["stage1_train_seconds"] > 0 and m["gradcam_seconds"] > 0
    assert len(m["epoch_losses"]) == 2 and len(m["stage1_epoch_losses"]) == 2
    assert m["stage2_seed"] == stage2_seed(0) and m["config"]["seed"] == 0
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert len(rows) == m["n_test_normal"] + m["n_test_anomalous"]
    for r in rows:
        assert r["zoomed"] in ("0", "1") and r["score_zoom"] != ""
        assert float(r["score"]) == pytest.approx((float(r["score_full"]) + float(r["score_zoom"])) / 2,
                                                  rel=1e-4, abs=1e-9)
    p = res.predictions
    assert p.attention.shape == (len(rows), 64, 64)  # the Grad-CAM maps, scored for pixel AUROC
    assert m["zoom_rate_normal"] == pytest.approx(float(p.zoom[res.data.test_labels == 0].float().mean()))
    # each view's own AUROC (stage 1 on the image, stage 2 on the crop)
    from sklearn.metrics import roc_auc_score

    y = res.data.test_labels.numpy()
    assert m["view_auroc"] == pytest.approx({"full": roc_auc_score(y, p.score_full.numpy()),
                                             "zoom": roc_auc_score(y, p.score_zoom.numpy())})
    state = torch.load(out / "model.pt", weights_only=False)
    keys = set(state["model"])
    assert any(k.startswith("stage1.") for k in keys) and any(k.startswith("stage2.") for k in keys)
    assert not (out / "checkpoint.pt").exists() and not (out / "stage1").exists()
    # stage 1 is step III on the same road: its scores are a deviation run's scores
    dev = run(_cfg(synth_root, method="deviation"), None, progress=False)
    assert torch.allclose(p.score_full, dev.predictions.scores, atol=1e-6)
    assert m["stage1_epoch_losses"] == dev.metrics["epoch_losses"]
    # stage 2 is a different network (own seed, crops), deterministic given the seed
    again = run(_cfg(synth_root), None, progress=False)
    assert torch.equal(again.predictions.scores, p.scores)
    assert not torch.allclose(p.score_zoom, p.score_full)


@pytest.mark.slow
def test_kill_after_stage1_and_resume_gives_the_same_result(reference_run, synth_root, tmp_path,
                                                             monkeypatch):
    ref, _ = reference_run
    out = tmp_path / "k"
    real_save = train_mod.atomic_torch_save

    def die_in_stage2(obj, path):
        real_save(obj, path)
        if path == out / "checkpoint.pt":
            raise KeyboardInterrupt  # killed right after stage 2's first epoch

    monkeypatch.setattr(train_mod, "atomic_torch_save", die_in_stage2)
    with pytest.raises(KeyboardInterrupt):
        run(_cfg(synth_root), out, progress=False)
    assert (out / "stage1" / "checkpoint.pt").is_file() and (out / "checkpoint.pt").is_file()
    assert not (out / "metrics.json").exists()
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1
    monkeypatch.setattr(train_mod, "atomic_torch_save", real_save)

    steps = count_training_steps(monkeypatch)
    res = run(_cfg(synth_root), out, progress=False)
    cfg = _cfg(synth_root)
    assert steps["n"] == cfg.steps_per_epoch  # stage 1 not retrained; stage 2's last epoch only
    assert torch.allclose(res.predictions.scores, ref.predictions.scores, atol=1e-5)
    assert torch.allclose(res.predictions.score_full, ref.predictions.score_full, atol=1e-5)
    assert torch.equal(res.predictions.zoom, ref.predictions.zoom)
    assert res.metrics["epoch_losses"] == ref.metrics["epoch_losses"]
    assert res.metrics["stage1_epoch_losses"] == ref.metrics["stage1_epoch_losses"]
    assert res.metrics["image_auroc"] == pytest.approx(ref.metrics["image_auroc"])


@pytest.mark.slow
def test_cli_evaluate_a_gradcam_zoom_model(reference_run, tmp_path, capsys):
    ref, out = reference_run
    assert main(["evaluate", str(out / "model.pt"), "--out", str(tmp_path / "ev"), "--quiet"]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["method"] == "gradcam_zoom"
    assert m["image_auroc"] == pytest.approx(ref.metrics["image_auroc"], abs=1e-6)
    assert m["zoom_rate_normal"] == pytest.approx(ref.metrics["zoom_rate_normal"])
    assert m["pixel_auroc"] == pytest.approx(ref.metrics["pixel_auroc"], abs=1e-4)
    rows = list(csv.DictReader(open(tmp_path / "ev" / "scores.csv")))
    ref_rows = list(csv.DictReader(open(out / "scores.csv")))
    assert [r["zoomed"] for r in rows] == [r["zoomed"] for r in ref_rows]
    for a, b in zip(rows, ref_rows):
        assert float(a["score"]) == pytest.approx(float(b["score"]), rel=1e-4, abs=1e-9)


def test_build_gradcam_zoom_holds_two_networks():
    net = build_gradcam_zoom(_cfg())
    assert net.stage1 is not net.stage2 and net.weights_source.startswith("none")
    assert {k.split(".")[0] for k in net.state_dict()} == {"stage1", "stage2"}
