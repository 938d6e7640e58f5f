"""Reading image and mask files robustly.

Anomaly-detection datasets mix 8-bit grayscale (MVTec grid, screw, zipper; Magnetic Tile), RGB,
RGBA, palette and occasionally 16-bit files. Everything becomes an 8-bit, 3-channel ``uint8`` array
(H, W, 3), turned as its EXIF orientation says; a file that cannot be decoded raises
:class:`ImageReadError` naming it.

A file of more than 8 bits per sample is scaled from its significant bits: those its PNG ``sBIT``
chunk gives, else the fewest of 8, 10, 12, 14 or 16 bits that hold its largest value (a 12-bit
camera image in a 16-bit file is scaled by 255 / 4095, not 255 / 65535). Each choice other than the
file type's own range is said once per process in a :class:`~atac.data.datasets.DataWarning`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from .datasets import DataWarning

DEPTHS = (8, 10, 12, 14, 16)  # the sample depths a file's largest value is matched to
_SAID: set[tuple[int, str]] = set()  # (bits, source) said in a warning by this process


class ImageReadError(ValueError):
    """An image or mask file is missing, corrupt, or in a form atac cannot use."""


def _open(path: Path) -> tuple[Image.Image, tuple[int, int, bytes | None] | None]:
    """The decoded image and, for a PNG file, its :func:`png_header`."""
    try:
        img = Image.open(path)
        img.load()  # force decoding now, so truncated files fail here and name the file
        return img, (png_header(path) if img.format == "PNG" else None)
    except FileNotFoundError as exc:
        raise ImageReadError(f"image file not found: {path}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot decode image file {path}: {exc}") from exc


def _turned(arr: np.ndarray, img: Image.Image) -> np.ndarray:
    """``arr`` (the ``uint8`` pixels of ``img``) turned as ``img``'s EXIF orientation says
    (Pillow's ``ImageOps.exif_transpose``); itself when there is nothing to turn."""
    exif = img.getexif()
    if exif.get(ExifTags.Base.Orientation, 1) == 1:
        return arr
    out = Image.fromarray(arr)
    out.info["exif"] = exif.tobytes()
    return np.asarray(ImageOps.exif_transpose(out))


def _colour_16bit(path: Path, sbit: bytes | None) -> np.ndarray:
    """A 16-bit colour PNG as RGB ``uint8`` (H, W, 3), read with OpenCV (Pillow keeps only the
    high 8 bits of each sample, which loses a 12-bit image) and scaled from its significant bits."""
    bgr = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None or bgr.dtype != np.uint16:
        raise ImageReadError(f"cannot decode the 16-bit colour image file {path}")
    return _to_uint8(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), path, sbit)


def png_header(path: str | Path) -> tuple[int, int, bytes | None]:
    """(bit depth, colour type, ``sBIT`` chunk or None) of a PNG file, read with Pillow's chunk
    reader (``sBIT``: one byte of significant bits per channel, PNG specification §11.3.3.4).

    Raises:
        OSError, SyntaxError: the file is not a whole PNG file.
    """
    with open(path, "rb") as fp:
        fp.read(8)  # the signature
        png = PngImagePlugin.PngStream(fp)
        cid, _, length = png.read()
        ihdr = fp.read(length)
        png.crc(cid, ihdr)
        if cid != b"IHDR" or len(ihdr) != 13:
            raise SyntaxError("the first chunk is not IHDR")
        while cid not in (b"IDAT", b"IEND"):  # sBIT comes before the image data
            cid, _, length = png.read()
            if cid == b"sBIT":
                return ihdr[8], ihdr[9], fp.read(length)
            fp.seek(length + 4, 1)
    return ihdr[8], ihdr[9], None


def significant_bits(arr: np.ndarray, sbit: bytes | None) -> tuple[int, str]:
    """The bits per sample an integer image uses, and where that comes from: the largest of its
    colour channels' ``sBIT`` values (alpha left out) when given, else the fewest of
    :data:`DEPTHS` that hold its largest value (more, for a larger value)."""
    if sbit:
        colour = sbit[:3] if len(sbit) >= 3 else sbit[:1]
        return max(1, max(colour)), "its PNG sBIT chunk"
    top = int(arr.max(initial=0))
    return next((b for b in DEPTHS if top < 2 ** b), top.bit_length()), "its largest value"


def _to_uint8(arr: np.ndarray, path: Path, sbit: bytes | None = None) -> np.ndarray:
    """Scale an integer or float array to uint8: integers by their significant bits
    (:func:`significant_bits`), floats by 1 or 255."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        bits, source = significant_bits(arr, sbit)
        if bits != 16 and (bits, source) not in _SAID:
            _SAID.add((bits, source))
            warnings.warn(f"{path}: a high-bit-depth image with {bits} significant bits ({source}), "
                          f"scaled to 8 bits from {bits}, not 16 (said once for such files)",
                          DataWarning, stacklevel=2)
        top = 2.0 ** bits - 1
        return np.clip(np.round(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        finite = arr[np.isfinite(arr)]
        if finite.size == 0:
            raise ImageReadError(f"image file {path} holds no finite pixel values")
        hi = 1.0 if finite.max() <= 1.0 else 255.0
        return np.clip(np.round(np.nan_to_num(arr) * (255.0 / hi)), 0, 255).astype(np.uint8)
    raise ImageReadError(f"image file {path}: unsupported pixel type {arr.dtype}")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB ``uint8`` of shape (H, W, 3), turned as its EXIF orientation says.

    Grayscale is replicated to three channels; an alpha channel is dropped; palette, CMYK and
    1-bit images are converted; images of more than 8 bits per sample are scaled to 8 bits from
    their significant bits (the module docstring says which).

    Raises:
        ImageReadError: the file is missing, corrupt/truncated, or has an unusable pixel type.
    """
    path = Path(path)
    img, png = _open(path)
    sbit = png[2] if png else None
    mode = img.mode
    if png and png[0] == 16 and png[1] in (2, 4, 6):  # 16-bit colour (RGB, gray + alpha, RGBA)
        arr = _colour_16bit(path, sbit)
    elif mode in ("RGB",):
        arr = np.asarray(img)
    elif mode in ("L", "1"):
        arr = np.asarray(img.convert("L"))
    elif mode in ("RGBA", "LA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        target = "L" if mode in ("LA",) else "RGB"
        arr = np.asarray(img.convert(target))
    elif mode.startswith("I") or mode == "F":
        arr = _to_uint8(np.asarray(img), path, sbit)
    else:
        raise ImageReadError(f"image file {path}: unsupported image mode {mode!r}")
    arr = _turned(_to_uint8(arr, path), img)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise ImageReadError(f"image file {path}: unexpected shape {arr.shape}")
    return np.ascontiguousarray(arr)


def read_mask(path: str | Path, threshold: int = 127, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a ground-truth mask as a ``bool`` array (H, W), turned as its EXIF orientation says.

    A two-valued mask ({0, 1}, {0, 255}, 16-bit {0, 65535}, ...) marks every non-zero pixel; any
    other mask (Magnetic Tile's have soft edges) marks pixels > ``threshold`` (0–255 scale, a
    high-bit-depth mask scaled from its significant bits).

    Raises:
        ImageReadError: unreadable file, or its size differs from ``shape`` (the image's (H, W)).
    """
    path = Path(path)
    img, png = _open(path)
    arr = np.asarray(img)
    if img.mode.startswith("I") or img.mode == "F":
        arr = _to_uint8(arr, path, png[2] if png else None)
    elif img.mode != "L":
        arr = np.asarray(img.convert("L"))
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    arr = _turned(arr, img)
    if shape is not None and tuple(arr.shape[:2]) != tuple(shape):
        raise ImageReadError(f"mask file {path} has size {arr.shape[1]}x{arr.shape[0]}, "
                             f"its image has {shape[1]}x{shape[0]}")
    values = np.unique(arr)
    if len(values) == 2 and values[0] == 0:
        return arr > 0  # a two-valued mask ({0, 1}, {0, 255}, ...): every non-zero pixel is a defect
    return arr > threshold
