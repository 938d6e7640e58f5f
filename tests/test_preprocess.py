import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from atac.data.datasets import DataWarning, Sample
from atac.data.images import ImageReadError
from atac.data.preprocess import apply_clahe, prepare, resize_image, resize_mask


def _low_contrast(rgb: bool):
    rng = np.random.default_rng(0)
    g = (100 + rng.integers(0, 20, (64, 64))).astype(np.uint8)
    if not rgb:
        return g
    return np.stack([g, (g * 0.5).astype(np.uint8), (g * 0.8).astype(np.uint8)], 2)


def test_clahe_gray_stretches_contrast_and_stays_gray():
    g = _low_contrast(False)
    out = apply_clahe(g)
    assert out.shape == g.shape and out.std() > 2 * g.std()
    g3 = np.repeat(g[..., None], 3, 2)
    out3 = apply_clahe(g3)
    assert (out3[..., 0] == out).all() and (out3[..., 0] == out3[..., 2]).all()


def test_clahe_colour_works_on_lightness_only():
    img = _low_contrast(True)
    out = apply_clahe(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert out.astype(float).std() > img.astype(float).std()
    # channel order of brightness is kept (it equalises L, not each channel)
    means = out.reshape(-1, 3).mean(0)
    assert means[0] > means[2] > means[1]
    with pytest.raises(ValueError, match="uint8"):
        apply_clahe(img.astype(np.float32))


def test_resize_is_bicubic_to_square():
    img = np.zeros((30, 50, 3), np.uint8)
    img[:, 25:] = 255
    out = resize_image(img, 16)
    assert out.shape == (16, 16, 3)
    assert ((out > 0) & (out < 255)).any()  # interpolated, not nearest


def _samples(tmp_path, n=3):
    out = []
    for i in range(n):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.full((20, 20), 40 * i, np.uint8)).save(p)
        out.append(Sample(str(p), p.name, 0, "good"))
    return out


def test_prepare_caches_and_keys_on_settings(tmp_path):
    samples = _samples(tmp_path)
    a = prepare(samples, 32, progress=False)
    assert a.images.shape == (3, 3, 32, 32) and a.images.dtype == torch.uint8
    assert not a.has_mask.any()
    cached = list((tmp_path.parent).glob("**/prep/*.pt"))
    assert cached, "a cache file is written"
    b = prepare(samples, 32, progress=False)
    assert torch.equal(a.images, b.images)
    c = prepare(samples, 16, progress=False)
    assert c.images.shape[-1] == 16


def test_prepare_names_a_corrupt_file_and_caches_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("ATAC_CACHE", str(tmp_path / "cache"))
    samples = _samples(tmp_path)
    (tmp_path / "1.png").write_bytes(b"garbage")
    with pytest.raises(ImageReadError, match="1.png"):
        prepare(samples, 32, progress=False)
    assert not list((tmp_path / "cache").glob("prep/*.pt"))


def _with_masks(tmp_path, n=2, size=20):
    out = []
    for i in range(n):
        p, m = tmp_path / f"d{i}.png", tmp_path / f"d{i}_mask.png"
        Image.fromarray(np.full((size, size), 100, np.uint8)).save(p)
        mask = np.zeros((size, size), np.uint8)
        mask[:size // 2] = 255
        Image.fromarray(mask).save(m)
        out.append(Sample(str(p), p.name, 1, "crack", str(m)))
    return out


def test_an_edited_mask_is_pre_processed_again(tmp_path):
    samples = _with_masks(tmp_path)
    a = prepare(samples, 32, progress=False)
    assert a.masks[0, 0, :16].all() and not a.masks[0, 0, 16:].any()
    m = tmp_path / "d0_mask.png"
    stamp = m.stat()
    mask = np.zeros((20, 20), np.uint8)
    mask[10:] = 255  # the other half: same size on disk, and its modification time put back
    Image.fromarray(mask).save(m)
    os.utime(m, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    b = prepare(samples, 32, progress=False)
    assert torch.equal(b.masks, prepare(samples, 32, use_cache=False, progress=False).masks)
    assert b.masks[0, 0, 16:].all() and not b.masks[0, 0, :16].any()
    assert torch.equal(b.masks[1], a.masks[1])


def test_a_mask_that_became_the_wrong_size_is_an_error_naming_it(tmp_path):
    samples = _with_masks(tmp_path)
    prepare(samples, 32, progress=False)
    Image.fromarray(np.full((10, 20), 255, np.uint8)).save(tmp_path / "d1_mask.png")
    with pytest.raises(ImageReadError, match=r"mask file .*d1_mask\.png has size 20x10, its image has 20x20"):
        prepare(samples, 32, progress=False)
    (tmp_path / "d1_mask.png").unlink()
    with pytest.raises(ImageReadError, match=r"not found: .*d1_mask\.png"):
        prepare(samples, 32, progress=False)


def test_a_small_defect_survives_downsampling_and_an_empty_mask_stays_empty():
    mask = np.zeros((1024, 1024), bool)
    mask[500:503, 700:703] = True            # 3x3 pixels: nearest-neighbour to 224 kept none of them
    out = resize_mask(mask, 224)
    assert out.shape == (224, 224) and 1 <= out.sum() <= 4
    ys, xs = np.nonzero(out)
    assert set(ys) <= {109, 110} and set(xs) <= {153, 154}   # where 500-502 and 700-702 fall
    assert not resize_mask(np.zeros((1024, 1024), bool), 224).any()
    tall = np.zeros((300, 100), bool)         # one side shrinks, the other grows
    tall[150, 40] = True
    out = resize_mask(tall, 200)
    assert out.shape == (200, 200) and out[100].any() and out.sum() == 2  # one row, two columns
    small = np.zeros((4, 4), bool)
    small[1, 2] = True                        # growing: nearest-neighbour, as before
    assert resize_mask(small, 8).sum() == 4 and resize_mask(small, 8)[2:4, 4:6].all()
    assert resize_mask(mask, 1024) is mask or np.array_equal(resize_mask(mask, 1024), mask)


def test_an_anomalous_image_with_an_empty_mask_is_warned_about_and_left_out(tmp_path):
    samples = _with_masks(tmp_path, n=3)
    tiny = np.zeros((20, 20), np.uint8)
    Image.fromarray(tiny).save(tmp_path / "d1_mask.png")   # empty
    for cache in (True, False, True):                      # fresh, uncached, from the cache
        with pytest.warns(DataWarning, match=r"1 anomalous image\(s\) have an empty ground-truth "
                                             r"mask .*d1\.png \(mask .*d1_mask\.png\)"):
            p = prepare(samples, 32, use_cache=cache, progress=False)
        assert p.empty_mask.tolist() == [False, True, False]
        assert p.has_mask.tolist() == [True, False, True]
    normal = [Sample(s.path, s.rel, 0, "good", s.mask_path) for s in samples]
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # a normal image's empty mask is fine
        p = prepare(normal, 32, progress=False)
    assert p.has_mask.all() and not p.empty_mask.any()


def _nearest(mask: np.ndarray, size: int) -> np.ndarray:  # the resize masks had before
    m = Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(m) > 127


@pytest.mark.slow
def test_mask_downsampling_changes_pixel_metrics_only(tmp_path, monkeypatch):
    import atac.data.preprocess as prep_mod
    from atac.config import preset
    from atac.data.synth import make_synthetic
    from atac.run import run

    make_synthetic(tmp_path, ["weave"], image_size=128, n_train=12, n_test_good=6, n_test_per_type=3)
    cfg = preset("smoke")  # 64 px: every 128 px mask shrinks
    cfg.data_root, cfg.category, cfg.shots = str(tmp_path), "weave", 2
    monkeypatch.setenv("ATAC_NO_PREP_CACHE", "1")
    new = run(cfg, None, progress=False)
    monkeypatch.setattr(prep_mod, "resize_mask", _nearest)
    old = run(cfg, None, progress=False)
    assert torch.equal(new.data.test_images, old.data.test_images)
    assert torch.equal(new.predictions.scores, old.predictions.scores)
    for k in ("image_auroc", "image_auprc", "epoch_losses"):
        assert new.metrics[k] == old.metrics[k], k
    assert not torch.equal(new.data.test_masks, old.data.test_masks)
    assert (new.data.test_masks | ~old.data.test_masks).all()  # every old defect pixel is kept
