import warnings

import cv2
import numpy as np
import pytest
from PIL import ExifTags, Image, PngImagePlugin

from atac.data import images
from atac.data.datasets import DataWarning
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


@pytest.fixture
def fresh_said(monkeypatch):
    """Forget which bit depths this process has already warned about."""
    monkeypatch.setattr(images, "_SAID", set())


def _png16(path, a, sbit=None):
    info = PngImagePlugin.PngInfo()
    if sbit is not None:
        info.add(b"sBIT", bytes([sbit]))
    Image.fromarray(a).save(path, pnginfo=info)


def test_12_bit_image_in_a_16_bit_file_uses_its_sbit_chunk(tmp_path, fresh_said):
    a = np.array([[0, 2048, 4095, 1000]], dtype=np.uint16)
    _png16(tmp_path / "s.png", a, sbit=12)
    assert images.png_header(tmp_path / "s.png") == (16, 0, b"\x0c")
    with pytest.warns(DataWarning, match=r"s\.png: a high-bit-depth image with 12 significant bits "
                                         r"\(its PNG sBIT chunk\), scaled to 8 bits from 12"):
        img = read_image(tmp_path / "s.png")
    assert img[0, :, 0].tolist() == [0, 128, 255, 62]        # round(v * 255 / 4095)
    _png16(tmp_path / "s10.png", a, sbit=10)                  # the chunk wins over the values
    with pytest.warns(DataWarning, match="10 significant bits"):
        assert read_image(tmp_path / "s10.png")[0, :, 0].tolist() == [0, 255, 255, 249]
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # said once per process
        read_image(tmp_path / "s.png")


def test_without_sbit_a_16_bit_file_is_scaled_from_its_own_range(tmp_path, fresh_said):
    _png16(tmp_path / "r.png", np.array([[0, 4000, 2000]], dtype=np.uint16))
    assert images.png_header(tmp_path / "r.png") == (16, 0, None)
    with pytest.warns(DataWarning, match=r"12 significant bits \(its largest value\)"):
        assert read_image(tmp_path / "r.png")[0, :, 0].tolist() == [0, 249, 125]
    assert images.significant_bits(np.array([1023], np.uint16), None) == (10, "its largest value")
    assert images.significant_bits(np.array([40000], np.uint16), None)[0] == 16
    assert images.significant_bits(np.array([70000], np.int32), None)[0] == 17
    assert images.significant_bits(np.array([1], np.uint16), b"\x0c\x0c\x0c\x01")[0] == 12  # alpha left out
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # the full 16-bit range: nothing to say
        _png16(tmp_path / "f.png", np.array([[0, 65535]], dtype=np.uint16))
        assert read_image(tmp_path / "f.png")[0, :, 0].tolist() == [0, 255]


def test_16_bit_colour_keeps_its_low_bits(tmp_path, fresh_said):
    rgb = np.zeros((2, 3, 3), np.uint16)
    rgb[0, 0] = (4095, 2048, 0)                               # a 12-bit camera's RGB in 16 bits
    rgb[1, 2] = (100, 200, 300)
    cv2.imwrite(str(tmp_path / "c.png"), rgb[..., ::-1])      # OpenCV writes BGR
    assert images.png_header(tmp_path / "c.png")[:2] == (16, 2)
    with pytest.warns(DataWarning, match="12 significant bits"):
        img = read_image(tmp_path / "c.png")
    assert img.shape == (2, 3, 3) and img[0, 0].tolist() == [255, 128, 0]
    assert img[1, 2].tolist() == [6, 12, 19]


def test_exif_orientation_is_applied_to_images_and_masks(tmp_path):
    a = np.zeros((4, 6, 3), np.uint8)
    a[0, 0] = 255                                             # the top-left corner as stored
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[ExifTags.Base.Orientation] = 6                       # "rotate 90 degrees clockwise to view"
    im.save(tmp_path / "o.png", exif=exif)
    img = read_image(tmp_path / "o.png")
    assert img.shape == (6, 4, 3) and img[0, 3].tolist() == [255, 255, 255]
    Image.fromarray(a[..., 0]).save(tmp_path / "o_mask.png", exif=exif)
    mask = read_mask(tmp_path / "o_mask.png", shape=(6, 4))
    assert mask.shape == (6, 4) and mask[0, 3] and mask.sum() == 1
    im.save(tmp_path / "o.jpg", exif=exif, quality=100)
    assert read_image(tmp_path / "o.jpg").shape == (6, 4, 3)
