import numpy as np
import pytest
from PIL import Image

from atac.data.images import ImageReadError, read_image, read_mask


def test_grayscale_becomes_three_equal_channels(tmp_path):
    g = (np.arange(64 * 48) % 256).astype(np.uint8).reshape(48, 64)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    assert (img[..., 0] == g).all() and (img[..., 1] == g).all() and (img[..., 2] == g).all()


def test_16bit_is_scaled_to_8bit(tmp_path):
    a = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "d.png")
    img = read_image(tmp_path / "d.png")
    assert img.dtype == np.uint8 and img[0, :, 0].tolist() == [0, 100, 255]


def test_rgba_drops_alpha_and_palette_converts(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.shape == (8, 8, 3) and (img[..., 0] == 200).all()
    Image.fromarray(rgba[..., :3], "RGB").convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (8, 8, 3)


def test_corrupt_truncated_and_missing_files_name_the_file(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="junk.png"):
        read_image(tmp_path / "junk.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="t.png"):
        read_image(tmp_path / "t.png")
    with pytest.raises(ImageReadError, match="nope.png"):
        read_image(tmp_path / "nope.png")


def test_mask_threshold_and_size_check(tmp_path):
    m = np.array([[0, 100, 128, 255]], np.uint8)
    Image.fromarray(m, "L").save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").tolist() == [[False, False, True, True]]
    assert read_mask(tmp_path / "m.png", threshold=50).tolist() == [[False, True, True, True]]
    with pytest.raises(ImageReadError, match="m.png"):
        read_mask(tmp_path / "m.png", shape=(2, 4))


def test_two_valued_masks_mark_every_nonzero_pixel(tmp_path):
    Image.fromarray(np.array([[0, 1, 1, 0]], np.uint8), "L").save(tmp_path / "m01.png")
    assert read_mask(tmp_path / "m01.png").tolist() == [[False, True, True, False]]
    Image.fromarray(np.array([[0, 65535]], np.uint16)).save(tmp_path / "m16.png")
    assert read_mask(tmp_path / "m16.png").tolist() == [[False, True]]


def test_decompression_bomb_is_a_clear_error(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageReadError, match="big.png"):
        read_image(tmp_path / "big.png")
