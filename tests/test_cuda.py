"""The CUDA path on a GPU: channels-last, bf16 autocast, data on the device, no host-device
synchronisation in a training step, a whole run. Skipped where CUDA is not available (CI, the
development machines); ``benchmarks/gpu_check.py`` runs this file on a GPU machine (its ``tests``
step) next to tests/test_gpu_path.py, which checks the same code on CPU."""

from __future__ import annotations

import pytest
import torch

from atac.config import preset
from atac.cropping import attention_boxes, crop_and_resize
from atac.models import build_model
from atac.precision import amp_dtype, async_to, autocast

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def _model(method="atac", size=96):
    cfg = preset("smoke")
    cfg.method, cfg.image_size = method, size
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # a mapping layer with real weight: scores are not all ~0
        model.mapping.weight.normal_(0, 1.0)
        if model.attention is not None:
            model.attention.gamma.fill_(0.5)
    return model


def test_float32_scores_on_cuda_match_cpu():
    model = _model()
    x = torch.rand(6, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
        gpu = model.to(CUDA, memory_format=torch.channels_last)(
            x.to(CUDA).contiguous(memory_format=torch.channels_last))
    # cuDNN may use TF32 for float32 convolutions: about 1e-3 relative, not 1e-6
    assert torch.allclose(gpu.score.cpu(), ref.score, rtol=2e-2, atol=2e-2 * ref.score.abs().max().item())
    assert gpu.score.dtype == torch.float32


def test_bf16_is_the_default_on_cuda_and_scores_stay_float32():
    assert amp_dtype("auto", "cuda") is (torch.bfloat16 if torch.cuda.is_bf16_supported() else None)
    model = _model().to(CUDA, memory_format=torch.channels_last)
    x = torch.rand(64, 3, 96, 96, generator=torch.Generator().manual_seed(2)).to(CUDA)
    with torch.no_grad():
        ref = model(x).score
        with autocast("auto", "cuda"):
            out = model(x.contiguous(memory_format=torch.channels_last))
    assert out.score.dtype == torch.float32 and out.attention.dtype == torch.float32
    assert torch.allclose(out.score, ref, rtol=5e-2, atol=5e-2 * ref.abs().max().item())
    assert len(torch.unique(out.score)) == 64          # no bf16 ties for AUROC to rank


def test_crop_on_cuda_matches_cpu():
    g = torch.Generator().manual_seed(3)
    x, attn = torch.rand(4, 3, 64, 64, generator=g), torch.rand(4, 8, 8, generator=g) ** 4
    got = {}
    for dev in ("cpu", "cuda"):  # boxes from the attention, then the crops, all on one device
        boxes, zoom = attention_boxes(attn.to(dev), (64, 64), 0.5, 0.95)
        crops = crop_and_resize(x.to(dev).contiguous(memory_format=torch.channels_last), boxes, zoom)
        got[dev] = [t.cpu() for t in (boxes, zoom, crops)]
    (b0, z0, c0), (b1, z1, c1) = got["cpu"], got["cuda"]
    assert torch.equal(z1, z0) and torch.allclose(b1, b0) and torch.allclose(c1, c0, atol=1e-5)


def test_async_copy_and_batches_on_cuda_equal_cpu():
    from atac.train import BalancedBatches

    t = torch.arange(10)
    assert torch.equal(async_to(t, CUDA).cpu(), t)
    cfg = preset("smoke")
    cfg.batch_size = 8
    g = torch.Generator().manual_seed(4)
    normals = (torch.rand(6, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    anomalies = (torch.rand(3, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    on_cpu = BalancedBatches(normals, anomalies, cfg, torch.Generator().manual_seed(5)).next()
    on_gpu = BalancedBatches(normals.to(CUDA), anomalies.to(CUDA), cfg, torch.Generator().manual_seed(5)).next()
    assert on_gpu.x.device.type == "cuda"
    assert torch.equal(on_gpu.y.cpu(), on_cpu.y) and torch.equal(on_gpu.slots.cpu(), on_cpu.slots)
    assert torch.allclose(on_gpu.x.cpu(), on_cpu.x, atol=1e-4)   # CutMix's jitter, up to float rounding


@pytest.mark.parametrize("method", ["deviation", "atac"])
def test_a_training_step_on_cuda_never_waits_for_the_gpu(method):
    """The step as atac.train.fit runs it (batch, bf16 forward, loss, backward, clipping, Adam)
    under ``torch.cuda.set_sync_debug_mode("error")``: any host-device synchronisation raises."""
    from atac.train import BalancedBatches, make_loss

    cfg = preset("smoke")
    cfg.method, cfg.batch_size, cfg.image_size = method, 8, 64
    torch.manual_seed(0)
    model = build_model(cfg).to(CUDA, memory_format=torch.channels_last).train()
    g = torch.Generator().manual_seed(6)
    normals = (torch.rand(6, 3, 64, 64, generator=g) * 255).to(torch.uint8).to(CUDA)
    anomalies = (torch.rand(3, 3, 64, 64, generator=g) * 255).to(torch.uint8).to(CUDA)
    batches = BalancedBatches(normals, anomalies, cfg, torch.Generator().manual_seed(7))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = make_loss(cfg, torch.Generator().manual_seed(8))

    def step():
        x, y = batches.next()
        with autocast("auto", CUDA):
            loss = loss_fn(model(x.contiguous(memory_format=torch.channels_last)).score.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        return loss.detach()

    step()  # first step: lazy initialisation (cuDNN, Adam state) may synchronise once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        losses = [step() for _ in range(2)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.isfinite(v).item() for v in losses)


def test_a_smoke_run_on_cuda_records_the_gpu(synth_root, tmp_path):
    from atac.run import run

    c = preset("smoke")
    c.data_root, c.method, c.shots, c.device = str(synth_root), "atac", 2, "cuda"
    res = run(c, tmp_path / "run", progress=False)
    m = res.metrics
    assert m["device"].startswith("cuda") and torch.cuda.get_device_name(0) in m["device"]
    assert m["precision"] == ("bfloat16" if torch.cuda.is_bf16_supported() else "float32")
    assert 0.0 <= m["image_auroc"] <= 1.0 and (tmp_path / "run" / "model.pt").is_file()
    assert res.predictions.scores.device.type == "cpu" and torch.isfinite(res.predictions.scores).all()
