"""The GPU-path code (channels-last, bf16 autocast, batched crop, asynchronous copies, compile flag)
gives the plain path's scores on CPU within float tolerance, and the CPU defaults stay float32."""

from __future__ import annotations

import torch

from atac.config import preset
from atac.cropping import attention_boxes, crop_and_resize
from atac.memory import cpu_allocator
from atac.models import build_model
from atac.precision import amp_dtype, amp_name, async_to, autocast
from atac.run import run


def _model(method="atac", size=96):
    cfg = preset("smoke")
    cfg.method, cfg.image_size = method, size
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    # a mapping layer with real weight so that scores are not all ~0 (random-weight smoke networks)
    with torch.no_grad():
        model.mapping.weight.normal_(0, 1.0)
    return model


def test_amp_resolution():
    assert amp_dtype("auto", "cpu") is None and amp_name("auto", "cpu") == "float32"
    assert amp_dtype("off", "cpu") is None
    assert amp_dtype("bf16", "cpu") is torch.bfloat16 and amp_name("bf16", "cpu") == "bfloat16"
    try:
        amp_dtype("fp8", "cpu")
    except ValueError as exc:
        assert "config field 'amp'" in str(exc)
    else:
        raise AssertionError("a bad amp value must be refused")


def test_channels_last_gives_the_same_scores():
    model = _model()
    x = torch.rand(5, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model(x)
        cl = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(plain.score, cl.score, rtol=1e-4, atol=1e-6)
    assert torch.equal(plain.zoom, cl.zoom) and torch.allclose(plain.boxes, cl.boxes)


def test_bf16_autocast_stays_close_to_float32_on_cpu():
    model = _model()
    x = torch.rand(6, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(x).score
        with autocast("bf16", "cpu"):
            low = model(x).score
    assert low.dtype in (torch.bfloat16, torch.float32)
    low = low.float()
    # bfloat16 keeps 8 bits of mantissa: a few per cent, and the ranking of clearly separated scores
    assert torch.allclose(low, ref, rtol=5e-2, atol=5e-2 * ref.abs().max().item())
    with autocast("auto", "cpu"):          # the CPU default is full precision, bit for bit
        same = model(x).score
    assert torch.equal(same, ref)


def test_batched_crop_equals_one_image_at_a_time():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 3, 64, 64, generator=g)
    attn = torch.rand(4, 8, 8, generator=g) ** 4
    boxes, zoom = attention_boxes(attn, (64, 64), 0.5, 0.95)
    batched = crop_and_resize(x, boxes, zoom)
    single = torch.cat([crop_and_resize(x[i:i + 1], boxes[i:i + 1], zoom[i:i + 1]) for i in range(4)])
    assert torch.allclose(batched, single, atol=1e-6)
    cl = crop_and_resize(x.contiguous(memory_format=torch.channels_last), boxes, zoom)
    assert torch.equal(batched, cl)  # the same crops bit for bit, whatever the input's layout


def test_async_copy_keeps_values():
    t = torch.arange(10)
    assert torch.equal(async_to(t, "cpu"), t)


def test_a_bf16_run_on_cpu_records_its_precision_and_stays_close(synth_root, tmp_path):
    def cfg(amp):
        c = preset("smoke")
        c.data_root, c.method, c.shots, c.amp = str(synth_root), "deviation", 2, amp
        c.device = "cpu"  # on CPU also where CUDA exists (the GPU check runs this file there)
        return c

    full = run(cfg("off"), tmp_path / "fp32", progress=False)
    low = run(cfg("bf16"), tmp_path / "bf16", progress=False)
    assert full.metrics["precision"] == "float32" and low.metrics["precision"] == "bfloat16"
    assert full.metrics["compiled"] is False
    assert full.metrics["cpu_allocator"] == cpu_allocator()  # atac.memory, as fit applied it
    a, b = full.predictions.scores, low.predictions.scores
    assert torch.allclose(a, b, rtol=1e-1, atol=1e-1 * a.abs().max().item())
    # amp is an execution choice: the record's config differs only there
    ca, cb = full.metrics["config"], low.metrics["config"]
    assert {k for k in ca if ca[k] != cb[k]} == {"amp"}


def test_scores_and_maps_stay_float32_under_bf16_autocast():
    model = _model()
    x = torch.rand(64, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad(), autocast("bf16", "cpu"):
        out = model(x)
    assert out.score.dtype == torch.float32 and out.attention.dtype == torch.float32
    assert len(torch.unique(out.score)) == 64          # no bf16 ties for AUROC to rank


def test_gradcam_zoom_evaluates_under_autocast_and_predict_keeps_the_model_trainable(synth_root, tmp_path):
    from atac.evaluate import predict

    c = preset("smoke")
    c.data_root, c.method, c.shots, c.amp = str(synth_root), "gradcam_zoom", 2, "bf16"
    res = run(c, tmp_path / "g", progress=False)          # Grad-CAM inside a bf16 predict
    assert res.metrics["precision"] == "bfloat16" and 0.0 <= res.metrics["image_auroc"] <= 1.0
    model = _model("deviation", 64)
    predict(model, (torch.rand(2, 3, 64, 64) * 255).to(torch.uint8))
    assert not any(p.is_inference() for p in model.parameters())
    model.train()
    model(torch.rand(2, 3, 64, 64)).score.sum().backward()   # still usable for training


def test_folded_attention_equals_the_explicit_block_with_gradients():
    from atac.models.atacnet import SelfAttention

    torch.manual_seed(5)
    sa = SelfAttention(64, 8)
    with torch.no_grad():
        sa.gamma.fill_(0.7)                   # a trained block, not the identity at init
    mapping = torch.nn.Conv2d(64, 1, 1)
    x = torch.randn(3, 64, 7, 7, requires_grad=True)

    def explicit():
        y = sa(x)
        return torch.cat([mapping(y), y.mean(dim=1, keepdim=True)], dim=1)

    def folded():
        w = torch.cat([mapping.weight.flatten(1), torch.full((1, 64), 1 / 64)])
        b = torch.cat([mapping.bias, torch.zeros(1)])
        return sa.project(x, w, b)

    a, f = explicit(), folded()
    assert torch.allclose(a, f, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(a)
    params = [x, sa.gamma, sa.value.weight, sa.value.bias, sa.query.weight, mapping.weight, mapping.bias]
    ga = torch.autograd.grad(a, params, g)
    gf = torch.autograd.grad(f, params, g)
    for u, v in zip(ga, gf):
        assert torch.allclose(u, v, rtol=1e-4, atol=1e-5)


def test_atac_score_pass_matches_the_explicit_attention_path():
    model = _model("atac", 96)
    with torch.no_grad():
        model.attention.gamma.fill_(0.5)
    x = torch.rand(4, 3, 96, 96, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        score, smap, attn = model.score_pass(x)
        feats = model.attention(model.backbone(model.normalize(x)))
        assert torch.allclose(smap, model.mapping(feats), rtol=1e-4, atol=1e-5)
        assert torch.allclose(attn, feats.mean(dim=1), rtol=1e-4, atol=1e-5)


def test_compile_on_cpu_says_first_that_it_takes_minutes(synth_root, tmp_path, monkeypatch, capsys):
    import yaml

    import atac.sweep
    import atac.run
    from atac.cli import main
    from atac.cli_run import CPU_COMPILE_NOTE

    def stop(*args, **kwargs):  # where training would start compiling
        raise ValueError("stopped before training")

    monkeypatch.setattr(atac.run, "run", stop)
    monkeypatch.setattr(atac.sweep, "run_sweep", stop)
    args = ["train", "--preset", "smoke", "--data-root", str(synth_root), "--device", "cpu", "--quiet",
            "--out", str(tmp_path / "r")]
    assert main(args + ["--compile", "true"]) == 2
    assert capsys.readouterr().err == f"{CPU_COMPILE_NOTE}\natac: error: stopped before training\n"
    assert "minutes" in CPU_COMPILE_NOTE and "gains little on CPU" in CPU_COMPILE_NOTE
    assert main(args) == 2
    assert CPU_COMPILE_NOTE not in capsys.readouterr().err
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"name": "s", "results": "s.jsonl", "grid": [{"seed": [0, 1]}],
                                     "base": {"preset": "smoke", "device": "cpu", "compile": True}}))
    assert main(["sweep", str(sweep), "--quiet"]) == 2
    assert capsys.readouterr().err.count(CPU_COMPILE_NOTE) == 1
