"""The readings the supplement leaves open (config fields), the eval-mode crop skip and the zoom
diagnostics: each reading at its default is today's computation, each other value does what it says."""

import dataclasses

import numpy as np
import pytest
import torch

import atac.models.atacnet as atacnet
from atac.config import READING_FIELDS, RunConfig, preset
from atac.cropping import crop_and_resize
from atac.diagnostics import ZoomTelemetry
from atac.losses import SLOT_ANOMALY, SLOT_NORMAL, SLOT_PSEUDO, zoom_loss
from atac.models import ATACNet, Output
from atac.run import run
from atac.train import BalancedBatches, stream_seeds


def test_reading_fields_default_to_the_literal_reading_and_stay_out_of_old_dicts():
    cfg = RunConfig()
    for name, literal in READING_FIELDS.items():
        assert getattr(cfg, name) == literal
    d = cfg.to_dict()
    assert not set(READING_FIELDS) & set(d)          # a literal run's dict is what it always was
    other = dataclasses.replace(cfg, zoom_loss="per_view", rng_streams="independent")
    d2 = other.to_dict()
    assert d2["zoom_loss"] == "per_view" and d2["rng_streams"] == "independent" and "batchnorm" not in d2
    assert RunConfig.from_dict(d2) == other and RunConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="batchnorm"):
        dataclasses.replace(cfg, batchnorm="sync").validate()


def test_legacy_streams_are_todays_and_independent_ones_share_nothing_between_seeds():
    cfg = RunConfig(seed=3)
    assert stream_seeds(cfg) == {"init": 3, "batches": 3, "reference": 4}
    s3 = stream_seeds(dataclasses.replace(cfg, rng_streams="independent"))
    s4 = stream_seeds(dataclasses.replace(cfg, seed=4, rng_streams="independent"))
    assert len(set(s3.values()) | set(s4.values())) == 6   # seed 4's batches are not seed 3's reference
    assert all(0 <= v < 2**63 for v in s3.values())
    assert s3 == stream_seeds(dataclasses.replace(cfg, rng_streams="independent"))


def _batches(cfg, n_norm=12, n_anom=3, seed=0):
    g = torch.Generator().manual_seed(1)
    normals = (torch.rand(n_norm, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    anomalies = (torch.rand(n_anom, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    return BalancedBatches(normals, anomalies, cfg, torch.Generator().manual_seed(seed))


def test_half_normals_mix_keeps_half_the_slots_normal():
    cfg = RunConfig(batch_size=16, image_size=32, batch_mix="half_normals", pseudo_prob=0.5)
    seen_pseudo = seen_real = 0
    batches = _batches(cfg)
    for _ in range(10):
        b = batches.next()
        assert (b.slots[:8] == SLOT_NORMAL).all() and (b.y[:8] == 0).all()
        assert torch.equal(b.y[8:] == 1, b.slots[8:] != SLOT_NORMAL)
        seen_pseudo += int((b.slots == SLOT_PSEUDO).sum())
        seen_real += int((b.slots == SLOT_ANOMALY).sum())
    assert seen_pseudo > 0 and seen_real > 0
    literal = _batches(dataclasses.replace(cfg, batch_mix="half_anomalies")).next()
    assert (literal.slots[8:] == SLOT_ANOMALY).all()   # today's: half the slots real anomalies


def test_rotation_turns_images_and_is_off_by_default():
    cfg = RunConfig(batch_size=8, image_size=32, pseudo_prob=0.0)
    flat = torch.full((4, 3, 32, 32), 200, dtype=torch.uint8)
    plain = BalancedBatches(flat, flat, cfg, torch.Generator().manual_seed(0)).next()
    turned = BalancedBatches(flat, flat, dataclasses.replace(cfg, augment="rotate"),
                             torch.Generator().manual_seed(0)).next()
    assert (plain.x == 200 / 255).all()                       # off by default: images as drawn
    assert torch.allclose(turned.x[:, :, 12:20, 12:20], plain.x[:, :, 12:20, 12:20])  # the centre stays
    corners = turned.x[:, 0, 0, 0]
    assert (corners < 0.5).sum() >= 4                          # turned: the corners come from outside


def test_zoom_loss_modes():
    def loss(s, y):
        return (s - y).abs().mean()

    a1, a2, y = torch.tensor([1.0, 3.0]), torch.tensor([3.0, 5.0]), torch.tensor([0.0, 1.0])
    a = (a1 + a2) / 2
    assert zoom_loss(a, a1, a2, y, loss, "mean") == loss(a, y)
    assert zoom_loss(a, a1, a2, y, loss, "per_view") == (loss(a1, y) + loss(a2, y)) / 2
    assert zoom_loss(a, a1, a2, y, loss, "full_plus_mean") == (loss(a1, y) + loss(a, y)) / 2
    assert zoom_loss(a1, a1, None, y, loss, "per_view") == loss(a1, y)   # no zoom pass
    with pytest.raises(ValueError, match="zoom_loss"):
        zoom_loss(a, a1, a2, y, loss, "sum")


def _model(**kw):
    cfg = RunConfig(method="atac", backbone="mobilenet_v2", weights="none", image_size=64, **kw)
    torch.manual_seed(0)
    model = ATACNet(cfg)
    with torch.no_grad():
        model.attention.gamma.fill_(0.3)
    return model.to(memory_format=torch.channels_last)


@pytest.mark.parametrize("case", ["all", "none", "mixed", "one"])
def test_eval_mode_crop_skip_gives_the_scores_of_a_crop_pass_over_every_image(case, monkeypatch):
    model = _model().eval()
    n = 1 if case == "one" else 5
    zoom = {"all": [True] * 5, "none": [False] * 5, "mixed": [True, False, False, True, False],
            "one": [True]}[case]
    zoom = torch.tensor(zoom)
    boxes = torch.tensor([[8.0, 4.0, 40.0, 50.0]]).repeat(n, 1)
    boxes[~zoom] = torch.tensor([0.0, 0.0, 64.0, 64.0])
    monkeypatch.setattr(atacnet, "attention_boxes", lambda *a, **k: (boxes, zoom))
    x = torch.rand(n, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = model(x)
        crops = crop_and_resize(x, boxes, zoom).contiguous(memory_format=torch.channels_last)
        every = model.score_pass(crops)[0]
    assert torch.equal(out.score_zoom, every)                           # bit for bit
    assert torch.equal(out.score_zoom[~zoom], out.score_full[~zoom])    # no zoom: the image's own score


def test_frozen_batchnorm_keeps_running_statistics_and_trains_the_rest():
    model = _model(batchnorm="frozen").train()
    bn = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    assert not bn.training and model.mapping.training
    out = model(torch.rand(4, 3, 64, 64).contiguous(memory_format=torch.channels_last))
    out.score.sum().backward()
    assert torch.equal(bn.running_mean, before)
    assert bn.weight.grad is not None and model.mapping.weight.grad.abs().sum() > 0
    literal = _model().train()
    bn2 = next(m for m in literal.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    literal(torch.rand(4, 3, 64, 64))
    assert bn2.training and not torch.equal(bn2.running_mean, before)


def test_telemetry_counts_by_slot():
    tel = ZoomTelemetry(margin=5.0)
    out = Output(score=torch.zeros(4), score_full=torch.tensor([0.0, 6.0, 1.0, 2.0]),
                 score_zoom=torch.tensor([0.0, 7.0, 6.0, 2.0]), score_map=torch.zeros(4, 1, 2, 2),
                 attention=torch.zeros(4, 2, 2), zoom=torch.tensor([False, True, True, False]),
                 sigma_share=torch.tensor([0.1, 0.02]))
    slots = torch.tensor([SLOT_NORMAL, SLOT_ANOMALY, SLOT_ANOMALY, SLOT_PSEUDO])
    tel.update(out, slots)
    tel.update(out, slots)

    class M(torch.nn.Module):
        attention = type("A", (), {"gamma": torch.tensor([0.25])})()

    e = tel.end_epoch(M())
    assert e["zoom_rate_normal"] == 0 and e["zoom_rate_anomalous"] == 1 and e["zoom_rate_pseudo"] == 0
    assert e["score_full_anomalous"] == pytest.approx(3.5) and e["score_crop_anomalous"] == pytest.approx(6.5)
    assert e["margin_met_full_anomalous"] == 0.5 and e["margin_met_full_pseudo"] == 0
    assert e["margin_met_crop_zoomed"] == 1.0 and e["gamma"] == 0.25
    assert e["sigma_share_score_map"] == pytest.approx(0.1) and e["sigma_share_crop_map"] == pytest.approx(0.02)
    assert tel.end_epoch(M())["zoom_rate_normal"] is None   # an epoch without steps


def test_a_zoom_run_records_its_telemetry_and_test_diagnostics(synth_root):
    cfg = dataclasses.replace(preset("smoke"), method="atac", epochs=2, data_root=str(synth_root),
                              crop_threshold=0.9, rng_streams="independent", batchnorm="frozen")
    rec = run(cfg, None, progress=False).metrics
    assert [e["epoch"] for e in rec["train_telemetry"]] == [1, 2]
    assert {"zoom_rate_normal", "zoom_rate_pseudo", "zoom_rate_anomalous", "gamma",
            "sigma_share_crop_map", "margin_met_full_anomalous"} <= set(rec["train_telemetry"][0])
    diag = rec["zoom_diagnostics"]
    assert {"auroc_zoomed_anomalies", "auroc_unzoomed_anomalies", "box_coverage", "forced_zoom",
            "batchnorm"} <= set(diag)
    assert diag["n_zoomed_anomalies"] + diag["n_unzoomed_anomalies"] == rec["n_test_anomalous"]
    assert -1 <= diag["batchnorm"]["spearman_vs_recorded"] <= 1
    plain = run(dataclasses.replace(cfg, method="deviation"), None, progress=False).metrics
    assert "train_telemetry" not in plain and "zoom_diagnostics" not in plain


def test_batchnorm_input_shift_reads_the_running_statistics():
    import torch

    from atac.config import RunConfig
    from atac.diagnostics import batchnorm_input_shift
    from atac.models import build_model

    torch.manual_seed(0)
    model = build_model(RunConfig(method="deviation", backbone="mobilenet_v2", weights="none", image_size=64))
    images = torch.randint(0, 256, (6, 3, 64, 64), dtype=torch.uint8)
    rows = batchnorm_input_shift(model, images, batch_size=4)
    bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(rows) == len(bns) and [r["layer"] for r in rows] == list(range(len(bns)))
    assert all(m.num_batches_tracked.item() == 0 for m in bns)          # nothing was updated
    # fresh BatchNorm has running mean 0 and variance 1: the first layer's ratio is its input's variance
    first = rows[0]
    seen = []
    h = bns[0].register_forward_hook(lambda m, i, o: seen.append(i[0].double().clone()))
    model.eval()
    with torch.no_grad():
        model.backbone(model.normalize(images.float() / 255))
    h.remove()
    expect = seen[0].var(dim=(0, 2, 3), unbiased=False).median().item()
    assert abs(first["var_ratio"] - expect) < 1e-4 * max(1.0, expect)
    bns[0].running_var.fill_(4.0)
    assert abs(batchnorm_input_shift(model, images)[0]["var_ratio"] - expect / 4) < 1e-4 * max(1.0, expect)
    with pytest.raises(ValueError, match="no images"):
        batchnorm_input_shift(model, images[:0])


def test_diagnostics_summary_names_columns_in_words():
    import pandas as pd

    from atac import study

    d = pd.DataFrame({"arm": ["a", "a", "b"], "category": ["grid"] * 3, "zoom_rate_normal": [0.1, 0.3, 0.5],
                      "box_coverage.mean": [0.5, 0.7, 0.9]})
    out = study.diagnostics_summary(d)
    assert list(out.columns) == ["zoom rate, normal", "defect in box"] and out.index.names == ["arm", "class"]
    assert out.loc[("a", "grid"), "zoom rate, normal"] == 0.2


def test_batchnorm_shift_figure_draws_a_record():
    from matplotlib.figure import Figure

    from atac.study_figures import batchnorm_shift_figure, batchnorm_shift_frame

    record = {"classes": [{"category": c, "layers": [{"layer": k, "name": f"{k}.1", "var_ratio": v * (k + 1),
                                                        "mean_shift": 0.1} for k in range(4)]}
                          for c, v in (("grid", 0.1), ("metal_nut", 0.5))]}
    frame = batchnorm_shift_frame(record)
    assert len(frame) == 8 and set(frame["category"]) == {"grid", "metal_nut"}
    assert frame.loc[(frame.category == "grid") & (frame.layer == 3), "var_ratio"].item() == pytest.approx(0.4)
    assert isinstance(batchnorm_shift_figure(record), Figure)
    with pytest.raises(ValueError, match="no BatchNorm"):
        batchnorm_shift_figure({"classes": []})
