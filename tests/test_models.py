import pytest
import torch

from atac.config import RunConfig
from atac.methods import METHODS, get_method
from atac.models import ATACNet, SelfAttention, build_backbone, topk_score
from atac.weights import WeightsError


def test_topk_batch_of_one_keeps_batch_dim():
    m = torch.zeros(1, 1, 10, 10)
    m[0, 0, 0, :10] = torch.arange(10.0) - 20  # |.| = 20..11
    s = topk_score(m, ratio=0.1)
    assert s.shape == (1,)
    assert s.item() == pytest.approx(sum(range(11, 21)) / 10)
    assert topk_score(torch.ones(1, 2, 2), ratio=0.01).shape == (1,)  # k >= 1


def test_self_attention_shape_and_identity_at_init():
    sa = SelfAttention(16, reduction=8)
    x = torch.randn(2, 16, 5, 4)
    y = sa(x)
    assert y.shape == x.shape and torch.equal(y, x)  # gamma starts at 0
    with torch.no_grad():
        sa.gamma.fill_(1.0)
    assert not torch.allclose(sa(x), x)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_recipe_forward_shapes(method):
    cfg = RunConfig(method=method, backbone="mobilenet_v2", weights="none", image_size=64)
    model = ATACNet(cfg).eval()
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
    assert out.score.shape == (3,) and out.attention.shape == (3, 2, 2)
    assert out.score_map.shape == (3, 1, 2, 2)
    recipe = get_method(method)
    assert (out.boxes is not None) == recipe.zoom
    if recipe.zoom:
        assert torch.allclose(out.score, (out.score_full + out.score_zoom) / 2)
        assert out.boxes.shape == (3, 4) and out.zoom.dtype == torch.bool
    with torch.no_grad():
        assert model(x[:1]).score.shape == (1,)


def test_gradients_flow_through_both_passes():
    cfg = RunConfig(method="atac", backbone="resnet18", weights="none", image_size=64, crop_threshold=0.9)
    model = ATACNet(cfg).train()
    with torch.no_grad():
        model.attention.gamma.fill_(0.5)
    out = model(torch.rand(4, 3, 64, 64))
    out.score_zoom.sum().backward()
    assert model.mapping.weight.grad is not None and model.mapping.weight.grad.abs().sum() > 0


def test_unknown_backbone_and_method():
    with pytest.raises(ValueError, match="resnet50"):
        build_backbone("vgg16", "none")
    with pytest.raises(ValueError, match="atac"):
        get_method("padim")


def test_weights_from_file_and_missing_file(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18()
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    bb = build_backbone("resnet18", str(tmp_path / "r18.pth"))
    assert torch.equal(bb.features[0].weight, ref.conv1.weight)
    assert "r18.pth" in bb.weights_source
    with pytest.raises(WeightsError, match="not found"):
        build_backbone("resnet18", str(tmp_path / "none.pth"))
    torch.save({"x": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="do not fit"):
        build_backbone("resnet18", str(tmp_path / "bad.pth"))


def test_resnet_imagenet_offline_says_how_to_provide_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torchvision cache
    monkeypatch.setenv("ATAC_TRY_TORCHVISION_DOWNLOAD", "0")
    with pytest.raises(WeightsError, match=r"--weights .*resnet50-"):
        build_backbone("resnet50", "imagenet")
