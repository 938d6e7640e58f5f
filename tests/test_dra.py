"""DRA (method ``dra``): heads, score, per-head loss subsets, batch slots, runs on the training road,
and that the other recipes are unchanged by it."""

import csv
import json

import pytest
import torch
import torch.nn.functional as F

import atac.train as train_mod
from atac.cli import main
from atac.config import DRA_FIELDS, RunConfig, preset
from atac.losses import (DRA_HEADS, SLOT_ANOMALY, SLOT_NORMAL, SLOT_PSEUDO, deviation_loss,
                         dra_head_losses)
from atac.methods import METHODS
from atac.models import ATACNet, DRANet, build_model, topk_score
from atac.models.dra import reference_indices
from atac.run import run
from atac.train import Batch, BalancedBatches
from conftest import count_training_steps

REQUIRED = ["method", "backbone", "weights_source", "dataset", "category", "setting", "known_type",
            "shots", "seed", "image_auroc", "image_auprc", "pixel_auroc", "head_auroc",
            "n_train_normal", "n_train_anomalous", "n_test_normal", "n_test_anomalous",
            "train_seconds", "eval_seconds", "epoch_losses", "device", "git_commit", "config", "split"]


def _cfg(synth_root=None, **kw) -> RunConfig:
    cfg = preset("smoke")  # 64 px, random weights, batch 4, 2 steps per epoch
    cfg.method = "dra"
    cfg.backbone = "resnet18"  # DRA's backbone
    if synth_root is not None:
        cfg.data_root = str(synth_root)
    cfg.category = "weave"
    cfg.shots = 2
    cfg.epochs = 2
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def _images(n, seed=0, size=64):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def _model(**kw) -> DRANet:
    torch.manual_seed(0)
    model = build_model(_cfg(**kw))
    model.set_reference(_images(12, seed=1))
    return model


@pytest.fixture(scope="module")
def reference_run(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("dra") / "general"
    return run(_cfg(synth_root), out, progress=False), out


# --- network -------------------------------------------------------------------------------------
@pytest.mark.parametrize("scales", [1, 2])
def test_every_head_has_its_shape(scales):
    model = _model(dra_scales=scales).eval()
    assert isinstance(model, DRANet) and not isinstance(model, ATACNet)
    x = _images(3, seed=2).float() / 255
    with torch.no_grad():
        out = model(x)
    assert set(out.heads) == set(DRA_HEADS)
    for h in DRA_HEADS:
        assert out.heads[h].shape == (3,), h
    assert out.score.shape == (3,) and out.score_full is out.score and out.score_zoom is None
    assert out.score_map.shape == (3, 1, 2, 2) and out.attention.shape == (3, 2, 2)  # 64 px / 32
    assert out.boxes is None and out.zoom is None
    assert (out.heads["normality"] >= 0).all() and (out.heads["seen"] >= 0).all()
    with torch.no_grad():
        assert model(x[:1]).score.shape == (1,)  # a batch of one keeps its batch dim
    model.train()
    out = model(x, ref=_images(5, seed=3).float() / 255)  # training: the batch's own reference
    assert all(out.heads[h].shape == (3,) for h in DRA_HEADS)


def test_score_formula_and_scale_mean():
    """score = seen + pseudo + residual - normality; each head = mean of its scale scores."""
    model = _model(dra_scales=2).eval()
    x = _images(4, seed=4).float() / 255
    ref = model.reference.float() / 255
    with torch.no_grad():
        out = model(x)
        per = {h: [] for h in DRA_HEADS}
        for size in (64, 32):
            xs = F.interpolate(model.normalize(torch.cat([ref, x])), size=(size, size),
                               mode="bilinear", align_corners=False)
            f = model.backbone(xs)
            f_ref, f = f[:5], f[5:]
            per["seen"].append(topk_score(model.seen(f), 0.1))
            per["pseudo"].append(topk_score(model.pseudo(f), 0.1))
            per["residual"].append(topk_score(model.residual(f - f_ref.mean(0, keepdim=True)), 0.1))
            per["normality"].append(model.normality(f.mean(dim=(2, 3)))[:, 0].abs())
    for h in DRA_HEADS:
        assert torch.allclose(out.heads[h], (per[h][0] + per[h][1]) / 2, atol=1e-5), h
    hd = out.heads
    assert torch.allclose(out.score, hd["seen"] + hd["pseudo"] + hd["residual"] - hd["normality"])


def test_reference_set_is_a_fixed_seeded_draw():
    a, b = reference_indices(40, 5, seed=0), reference_indices(40, 5, seed=0)
    assert torch.equal(a, b) and len(set(a.tolist())) == 5 and a.tolist() == sorted(a.tolist())
    assert not torch.equal(a, reference_indices(40, 5, seed=1))
    normals = _images(12, seed=1)
    model = build_model(_cfg())
    with pytest.raises(RuntimeError, match="no reference set"):
        model.eval()(normals[:2].float() / 255)
    idx = model.set_reference(normals)
    assert torch.equal(model.reference, normals[idx]) and bool(model.has_reference)
    with pytest.raises(ValueError, match="dra_ref_size"):
        build_model(_cfg(dra_ref_size=20)).set_reference(normals)
    with pytest.raises(ValueError, match="uint8"):
        model.set_reference(normals.float())


def test_config_fields_preset_and_dict():
    cfg = preset("dra")
    assert (cfg.method, cfg.backbone, cfg.image_size, cfg.dra_scales, cfg.dra_ref_size) == \
        ("dra", "resnet18", 448, 2, 5)
    assert (cfg.epochs, cfg.steps_per_epoch, cfg.batch_size, cfg.lr, cfg.weight_decay) == (30, 20, 48, 2e-4, 1e-5)
    cfg.validate()
    assert set(DRA_FIELDS) <= set(cfg.to_dict())
    # other methods' config dicts (records, checkpoints, sweep ids) carry no DRA field
    assert not set(DRA_FIELDS) & set(RunConfig(method="atac").to_dict())
    assert RunConfig.from_dict(RunConfig().to_dict()) == RunConfig()
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="dra_scales"):
        _cfg(image_size=64, dra_scales=3).validate()  # 16 px at the smallest scale
    with pytest.raises(ValueError, match="dra_pyramid_resize"):
        _cfg(dra_pyramid_resize="lanczos").validate()
    r = METHODS["dra"]
    assert r.step == "baseline" and r.loss == "deviation" and r.head == "dra" and not r.two_stage


# --- batches and losses --------------------------------------------------------------------------
def _texture(n=6):
    normals = torch.full((n, 3, 32, 32), 100, dtype=torch.uint8)
    normals[:, :, ::2] = 200  # texture, so a pasted, jittered patch changes pixels
    normals += torch.arange(n, dtype=torch.uint8)[:, None, None, None]  # tell the images apart
    return normals, torch.zeros((2, 3, 32, 32), dtype=torch.uint8)


def test_pseudo_anomaly_slots_are_labelled_as_such():
    cfg = RunConfig(batch_size=8, pseudo_prob=1.0, image_size=32)
    normals, anomalies = _texture()
    b = BalancedBatches(normals, anomalies, cfg, torch.Generator().manual_seed(0)).next()
    assert isinstance(b, Batch) and b.ref is None
    assert b.slots.dtype == torch.long and b.slots.shape == (8,)
    assert b.slots[4:].tolist() == [SLOT_ANOMALY] * 4
    assert (b.slots[:4] == SLOT_PSEUDO).sum() >= 1
    # a pseudo-anomaly is anomalous (y = 1) and a normal slot normal, as before
    assert torch.equal(b.y, (b.slots != SLOT_NORMAL).float())
    cfg.pseudo_prob = 0.0
    b = BalancedBatches(normals, anomalies, cfg, torch.Generator().manual_seed(0)).next()
    assert b.slots.tolist() == [SLOT_NORMAL] * 4 + [SLOT_ANOMALY] * 4


def test_reference_normals_are_drawn_after_the_batch():
    cfg = RunConfig(batch_size=8, pseudo_prob=0.5, image_size=32)
    normals, anomalies = _texture()
    plain = BalancedBatches(normals, anomalies, cfg, torch.Generator().manual_seed(3))
    with_ref = BalancedBatches(normals, anomalies, cfg, torch.Generator().manual_seed(3), n_ref=5)
    a, b = plain.next(), with_ref.next()
    x, y = a  # unpacks as before
    assert torch.equal(x, b.x) and torch.equal(y, b.y) and torch.equal(a.slots, b.slots)
    assert b.ref.shape == (5, 3, 32, 32) and b.ref.dtype == torch.float32
    assert all(any(torch.equal(r, n.float() / 255) for n in normals) for r in b.ref)  # plain normals


def test_each_head_loss_sees_only_its_slots():
    slots = torch.tensor([SLOT_NORMAL, SLOT_PSEUDO, SLOT_NORMAL, SLOT_ANOMALY, SLOT_PSEUDO, SLOT_ANOMALY])
    heads = {h: torch.arange(6.0) + 10 * i for i, h in enumerate(DRA_HEADS)}
    calls = []

    def record(s, y):
        calls.append((s.tolist(), y.tolist()))
        return s.sum()

    parts = dra_head_losses(heads, slots, record)
    assert list(parts) == list(DRA_HEADS)
    seen, pseudo, residual, normality = calls
    assert seen == ([0.0, 2.0, 3.0, 5.0], [0.0, 0.0, 1.0, 1.0])          # no pseudo-anomaly
    assert pseudo == ([10.0, 11.0, 12.0, 14.0], [0.0, 1.0, 0.0, 1.0])    # no real anomaly
    assert residual == ([20.0, 21, 22, 23, 24, 25], [0.0, 1, 0, 1, 1, 1])  # any anomaly vs normal
    assert normality == ([30.0, 31, 32, 33, 34, 35], [1.0, 0, 1, 0, 0, 0])  # normal = 1

    # with the deviation loss: an excluded slot's score has no gradient in that head's loss
    ref = torch.randn(5000, generator=torch.Generator().manual_seed(0))
    heads = {h: torch.randn(6, requires_grad=True) for h in DRA_HEADS}
    parts = dra_head_losses(heads, slots, lambda s, y: deviation_loss(s, y, reference=ref))
    for name, excluded in (("seen", SLOT_PSEUDO), ("pseudo", SLOT_ANOMALY)):
        (g,) = torch.autograd.grad(parts[name], heads[name])
        assert (g[slots == excluded] == 0).all() and (g[slots != excluded] != 0).all(), name
    for name in ("residual", "normality"):
        (g,) = torch.autograd.grad(parts[name], heads[name])
        assert (g != 0).all(), name
    with pytest.raises(ValueError, match="normality"):
        dra_head_losses({h: heads[h] for h in DRA_HEADS[:3]}, slots, record)


def test_training_loss_is_the_sum_of_the_head_losses():
    model = _model().train()
    cfg = _cfg(batch_size=6, pseudo_prob=0.5)
    normals = _images(8, seed=5)
    b = BalancedBatches(normals, _images(2, seed=6), cfg, torch.Generator().manual_seed(0), n_ref=5).next()
    ref = torch.randn(5000, generator=torch.Generator().manual_seed(1))
    loss = lambda s, y: deviation_loss(s, y, reference=ref)  # noqa: E731
    torch.manual_seed(0)
    total, out_of_step = model.training_loss(b, loss)
    torch.manual_seed(0)
    out = model(b.x, ref=b.ref)
    parts = dra_head_losses(out.heads, b.slots, loss)
    assert total.ndim == 0 and torch.allclose(total, sum(parts.values()), atol=1e-5)
    assert torch.allclose(out_of_step.score, out.score, atol=1e-5)
    total.backward()
    for mod in (model.seen, model.pseudo, model.residual, model.normality):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in mod.parameters())
    with pytest.raises(ValueError, match="reference"):
        model.training_loss(Batch(b.x, b.y, b.slots, None), loss)


# --- runs on the training road -------------------------------------------------------------------
@pytest.mark.slow
def test_smoke_run_writes_a_complete_record(reference_run):
    res, out = reference_run
    m = json.loads((out / "metrics.json").read_text())
    for k in REQUIRED:
        assert k in m, k
    assert m["method"] == "dra" and m["backbone"] == "resnet18" and m["setting"] == "general"
    assert 0 <= m["image_auroc"] <= 1 and 0 <= m["pixel_auroc"] <= 1
    assert set(m["head_auroc"]) == set(DRA_HEADS) and all(0 <= v <= 1 for v in m["head_auroc"].values())
    assert len(m["epoch_losses"]) == 2 and m["n_train_anomalous"] == 2
    assert {k: m["config"][k] for k in DRA_FIELDS} == {k: getattr(_cfg(), k) for k in DRA_FIELDS}
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert len(rows) == m["n_test_normal"] + m["n_test_anomalous"]
    p = res.predictions
    for i, r in enumerate(rows):
        h = {k: float(r[f"score_{k}"]) for k in DRA_HEADS}
        assert float(r["score"]) == pytest.approx(h["seen"] + h["pseudo"] + h["residual"] - h["normality"],
                                                  rel=1e-4, abs=1e-5)
        assert r["score_zoom"] == "" and r["zoomed"] == ""
    assert set(p.heads) == set(DRA_HEADS) and p.heads["seen"].shape == p.scores.shape
    assert (out / "model.pt").is_file() and not (out / "checkpoint.pt").exists()
    state = torch.load(out / "model.pt", weights_only=False)
    assert bool(state["model"]["has_reference"]) and state["model"]["reference"].shape == (5, 3, 64, 64)


@pytest.mark.slow
def test_hard_setting_smoke_run(synth_root, tmp_path):
    res = run(_cfg(synth_root, setting="hard", known_type="scratch"), tmp_path / "hard", progress=False)
    m = json.loads((tmp_path / "hard" / "metrics.json").read_text())
    for k in REQUIRED:
        assert k in m, k
    assert m["setting"] == "hard" and m["known_type"] == "scratch" and set(m["head_auroc"]) == set(DRA_HEADS)
    rows = list(csv.DictReader(open(tmp_path / "hard" / "scores.csv")))
    assert "scratch" not in {r["defect_type"] for r in rows}  # the known type left the test set
    assert all("scratch" in p for p in m["split"]["train_anomalous"])
    assert torch.isfinite(res.predictions.scores).all()


@pytest.mark.slow
def test_same_seed_same_scores(reference_run, synth_root):
    ref, _ = reference_run
    again = run(_cfg(synth_root), None, progress=False)
    assert torch.equal(again.predictions.scores, ref.predictions.scores)
    assert again.metrics["epoch_losses"] == ref.metrics["epoch_losses"]
    other = run(_cfg(synth_root, seed=1), None, progress=False)
    assert not torch.equal(other.predictions.scores, ref.predictions.scores)


@pytest.mark.slow
def test_resume_after_interruption_equals_an_uninterrupted_run(reference_run, synth_root, tmp_path,
                                                                monkeypatch):
    ref, _ = reference_run
    out = tmp_path / "k"
    real_save = train_mod.atomic_torch_save

    def die_after_epoch_1(obj, path):
        real_save(obj, path)
        if path.name == "checkpoint.pt":
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "atomic_torch_save", die_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        run(_cfg(synth_root), out, progress=False)
    assert (out / "checkpoint.pt").is_file() and not (out / "metrics.json").exists()
    monkeypatch.setattr(train_mod, "atomic_torch_save", real_save)
    steps = count_training_steps(monkeypatch)
    res = run(_cfg(synth_root), out, progress=False)
    assert steps["n"] == _cfg().steps_per_epoch  # the second epoch only
    assert torch.allclose(res.predictions.scores, ref.predictions.scores, atol=1e-5)
    assert res.metrics["epoch_losses"] == ref.metrics["epoch_losses"]
    assert res.metrics["head_auroc"] == pytest.approx(ref.metrics["head_auroc"])


@pytest.mark.slow
def test_cli_evaluates_a_dra_model_and_lists_the_method(reference_run, tmp_path, capsys):
    ref, out = reference_run
    assert main(["evaluate", str(out / "model.pt"), "--out", str(tmp_path / "ev"), "--quiet"]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["method"] == "dra" and m["image_auroc"] == pytest.approx(ref.metrics["image_auroc"], abs=1e-6)
    assert m["head_auroc"] == pytest.approx(ref.metrics["head_auroc"])
    rows = list(csv.DictReader(open(tmp_path / "ev" / "scores.csv")))
    for a, b in zip(rows, csv.DictReader(open(out / "scores.csv"))):
        assert float(a["score"]) == pytest.approx(float(b["score"]), rel=1e-4, abs=1e-6)
    capsys.readouterr()
    assert main(["methods"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("dra "))
    assert "baseline" in line


# --- the other recipes are unchanged -------------------------------------------------------------
# Two runs in one process (same machine, same threads, so bit-identical is the right comparison):
# one from a config dict without the DRA fields, as every record and checkpoint written before DRA
# existed holds it, and one with every DRA field set to a value other than its default. A recipe
# other than DRA must not read any of them: same batches, losses, trained weights and scores.
OTHER_DRA_VALUES = {"dra_scales": 1, "dra_ref_size": 3, "dra_pyramid_resize": "nearest",
                    "dra_residual_conv": False, "dra_holistic_hidden": 16}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["deviation", "atac"])
def test_other_recipes_do_not_read_the_dra_fields(synth_root, method, monkeypatch):
    cfg = preset("smoke")
    cfg.data_root, cfg.category, cfg.shots, cfg.epochs, cfg.method = str(synth_root), "weave", 2, 2, method
    old = {k: v for k, v in cfg.to_dict().items() if k not in DRA_FIELDS}
    assert old == cfg.to_dict()  # a non-DRA config dict is what it was before DRA existed
    n_refs = []
    real_init = train_mod.BalancedBatches.__init__

    def spy(self, *args, n_ref=0, **kw):
        n_refs.append(n_ref)
        real_init(self, *args, n_ref=n_ref, **kw)

    monkeypatch.setattr(train_mod.BalancedBatches, "__init__", spy)
    a = run(RunConfig.from_dict(old), None, progress=False)
    b = run(RunConfig.from_dict({**old, **OTHER_DRA_VALUES}), None, progress=False)
    assert n_refs == [0, 0]  # no reference normals drawn: the batch stream is the pre-DRA one
    assert not isinstance(a.model, DRANet) and a.model.batch_reference_size == 0
    assert a.metrics["epoch_losses"] == b.metrics["epoch_losses"]
    assert torch.equal(a.predictions.scores, b.predictions.scores)
    assert a.metrics["image_auroc"] == b.metrics["image_auroc"]
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    for res in (a, b):
        assert "head_auroc" not in res.metrics and res.predictions.heads is None
        assert not set(DRA_FIELDS) & set(res.metrics["config"])
    assert a.metrics["config"] == b.metrics["config"]
