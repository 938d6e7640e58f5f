"""Reading image and mask files robustly.

Anomaly-detection datasets mix 8-bit grayscale (MVTec grid, screw, zipper; Magnetic Tile), RGB,
RGBA, palette and occasionally 16-bit files. Everything becomes an 8-bit, 3-channel ``uint8`` array
(H, W, 3); a file that cannot be decoded raises :class:`ImageReadError` naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageReadError(ValueError):
    """An image or mask file is missing, corrupt, or in a form atac cannot use."""


def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()  # force decoding now, so truncated files fail here and name the file
    except FileNotFoundError as exc:
        raise ImageReadError(f"image file not found: {path}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot decode image file {path}: {exc}") from exc
    return img


def _to_uint8(arr: np.ndarray, path: Path) -> np.ndarray:
    """Scale an integer or float array to uint8 by its type's range (16-bit: /257)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        # 16-bit PNGs open as int32 ("I") or uint16 ("I;16"): scale the 16-bit range to 8 bits.
        top = 65535 if arr.max(initial=0) > 255 or arr.dtype in (np.uint16, np.int32) else 255
        return np.clip(np.round(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        finite = arr[np.isfinite(arr)]
        if finite.size == 0:
            raise ImageReadError(f"image file {path} holds no finite pixel values")
        hi = 1.0 if finite.max() <= 1.0 else 255.0
        return np.clip(np.round(np.nan_to_num(arr) * (255.0 / hi)), 0, 255).astype(np.uint8)
    raise ImageReadError(f"image file {path}: unsupported pixel type {arr.dtype}")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB ``uint8`` of shape (H, W, 3).

    Grayscale is replicated to three channels; an alpha channel is dropped; palette, CMYK and
    1-bit images are converted; 16-bit images are scaled to 8 bits (value / 257).

    Raises:
        ImageReadError: the file is missing, corrupt/truncated, or has an unusable pixel type.
    """
    path = Path(path)
    img = _open(path)
    mode = img.mode
    if mode in ("RGB",):
        arr = np.asarray(img)
    elif mode in ("L", "1"):
        arr = np.asarray(img.convert("L"))
    elif mode in ("RGBA", "LA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        target = "L" if mode in ("LA",) else "RGB"
        arr = np.asarray(img.convert(target))
    elif mode.startswith("I") or mode == "F":
        arr = _to_uint8(np.asarray(img), path)
    else:
        raise ImageReadError(f"image file {path}: unsupported image mode {mode!r}")
    arr = _to_uint8(arr, path)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise ImageReadError(f"image file {path}: unexpected shape {arr.shape}")
    return np.ascontiguousarray(arr)


def read_mask(path: str | Path, threshold: int = 127, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a ground-truth mask as a ``bool`` array (H, W).

    A two-valued mask ({0, 1}, {0, 255}, 16-bit {0, 65535}, ...) marks every non-zero pixel; any
    other mask (Magnetic Tile's have soft edges) marks pixels > ``threshold`` (0–255 scale).

    Raises:
        ImageReadError: unreadable file, or its size differs from ``shape`` (the image's (H, W)).
    """
    path = Path(path)
    img = _open(path)
    arr = np.asarray(img)
    if img.mode.startswith("I") or img.mode == "F":
        arr = _to_uint8(arr, path)
    elif img.mode != "L":
        arr = np.asarray(img.convert("L"))
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if shape is not None and tuple(arr.shape[:2]) != tuple(shape):
        raise ImageReadError(f"mask file {path} has size {arr.shape[1]}x{arr.shape[0]}, "
                             f"its image has {shape[1]}x{shape[0]}")
    values = np.unique(arr)
    if len(values) == 2 and values[0] == 0:
        return arr > 0  # a two-valued mask ({0, 1}, {0, 255}, ...): every non-zero pixel is a defect
    return arr > threshold
