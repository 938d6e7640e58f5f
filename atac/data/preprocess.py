"""Pre-processing (supplement §2) and the shared on-disk cache of pre-processed images.

Order, as the supplement gives it: contrast-limited adaptive histogram equalisation (CLAHE,
OpenCV; on the lightness channel of LAB for colour images, directly on grayscale), bicubic resize
to ``image_size`` (Pillow), scale to [0, 1]; channel-wise normalisation is done by the model
(:class:`atac.models.Normalize`) so that crops and plots work on [0, 1] images. Masks are resized
so that no defect vanishes (:func:`resize_mask`).

Decoding, CLAHE and resizing are done once per (dataset folder, files and their content identity
— images and masks, see :func:`file_identity` — and pre-processing settings):
the result, ``uint8`` tensors (N, 3, S, S) and ``bool`` masks (N, 1, S, S), is cached under
``<cache>/prep/<hash>.pt`` and reused by every run (writes are atomic, so concurrent workers are
safe; a per-key lock file makes a second worker wait for the first one's result instead of
decoding the same images again).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from ..locks import locked
from ..paths import cache_dir
from ..results import atomic_torch_save
from .datasets import DataWarning, Sample, some
from .images import read_image, read_mask

CACHE_VERSION = 2


def is_grayscale(img: np.ndarray) -> bool:
    """True when an (H, W, 3) image has three equal channels (a replicated grayscale image)."""
    return bool((img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all())


def apply_clahe(img: np.ndarray, clip_limit: float = 2.0, tile: int = 8) -> np.ndarray:
    """CLAHE (Zuiderveld 1994) with OpenCV: LAB lightness for colour, directly for gray.

    Args:
        img: ``uint8`` (H, W, 3) RGB or (H, W) gray.
    Returns:
        ``uint8`` array of the same shape.
    Raises:
        ValueError: not ``uint8`` or wrong number of dimensions.
    """
    if img.dtype != np.uint8:
        raise ValueError(f"apply_clahe expects uint8, got {img.dtype}")
    clahe = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(int(tile), int(tile)))
    if img.ndim == 2:
        return clahe.apply(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"apply_clahe expects (H, W) or (H, W, 3), got {img.shape}")
    if is_grayscale(img):
        g = clahe.apply(np.ascontiguousarray(img[..., 0]))
        return np.repeat(g[:, :, None], 3, axis=2)
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB)
    lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def resize_image(img: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize (Pillow) of a ``uint8`` (H, W, 3) image to (size, size, 3)."""
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BICUBIC))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a ``bool`` (H, W) mask to (size, size) without losing a defect.

    Along a side that shrinks, a target pixel is a defect when any source pixel of its area is one
    (adaptive max-pooling: integer bin edges, exact); along a side that grows, nearest-neighbour
    (Pillow). So a defect of any size keeps at least one pixel, and an empty mask stays empty.
    """
    h, w = mask.shape
    if h > size or w > size:
        t = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.uint8))[None, None]
        mask = F.adaptive_max_pool2d(t.float(), (min(h, size), min(w, size)))[0, 0].numpy() > 0
    if mask.shape == (size, size):
        return mask
    m = Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(m) > 127


@dataclass
class Prepared:
    """Pre-processed images of a list of samples, in that order.

    ``images``: ``uint8`` (N, 3, S, S); ``masks``: ``bool`` (N, 1, S, S) (all False without a mask);
    ``has_mask``: ``bool`` (N,), a usable ground truth: a mask was read and, for an anomalous
    image, marks at least one pixel; ``empty_mask``: ``bool`` (N,), an anomalous image whose mask
    marks no pixel (``has_mask`` False, so pixel metrics leave it out; :func:`prepare` warns).
    """

    paths: list[str]
    images: torch.Tensor
    masks: torch.Tensor
    has_mask: torch.Tensor
    empty_mask: torch.Tensor

    def warn_empty_masks(self, samples: list[Sample]) -> None:
        """One :class:`~atac.data.datasets.DataWarning` naming the anomalous images (and their
        masks) whose mask is empty, if any (the first ten, then how many more)."""
        empty = [f"{s.path} (mask {s.mask_path})" for s, e in zip(samples, self.empty_mask.tolist()) if e]
        if empty:
            warnings.warn(f"{len(empty)} anomalous image(s) have an empty ground-truth mask and are "
                          f"left out of pixel metrics: {some(empty, sep='; ')}", DataWarning, stacklevel=3)


def file_identity(path: str | None) -> str:
    """What identifies a file's content without reading it: size, modification and status-change
    times in ns (any write changes the status-change time, even one that resets the modification
    time); ``"-"`` for no file, ``"missing"`` for a path that does not exist (reading it then
    raises the error that names it)."""
    if path is None:
        return "-"
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _cache_key(samples: list[Sample], size: int, clahe: bool, clip: float, tile: int,
               mask_threshold: int) -> str:
    """The cache entry of these samples and settings: every image's and mask's path and
    :func:`file_identity` (so that an edited image or mask is pre-processed again), and its label
    (an anomalous image's empty mask is no ground truth, a normal image's is)."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "size": size, "clahe": clahe, "clip": clip,
                         "tile": tile, "mask_threshold": mask_threshold}).encode())
    for s in samples:
        h.update(f"{s.path}|{file_identity(s.path)}|{s.mask_path}|{file_identity(s.mask_path)}|"
                 f"{s.label}\n".encode())
    return h.hexdigest()[:24]


def prepare(samples: list[Sample], size: int, clahe: bool = True, clip: float = 2.0, tile: int = 8,
            mask_threshold: int = 127, use_cache: bool = True, progress: bool = True) -> Prepared:
    """Decode, CLAHE, resize every sample once; cached on disk (see the module docstring).

    The cache is bypassed when ``use_cache`` is False or the environment sets
    ``ATAC_NO_PREP_CACHE=1`` (``atac sweep --no-prep-cache``, to measure what the cache saves).

    An anomalous image whose mask is empty is left out of pixel metrics (``has_mask`` False,
    ``empty_mask`` True) and named in one :class:`~atac.data.datasets.DataWarning`.

    Raises:
        ImageReadError: an image or mask cannot be read, or a mask's size differs from its
            image's (names the file); nothing is cached then.
        WriteError: the cache file cannot be written (a full disk: names it and the cause).
    """
    key = _cache_key(samples, size, clahe, clip, tile, mask_threshold)
    path = cache_dir() / "prep" / f"{key}.pt"
    if not use_cache or os.environ.get("ATAC_NO_PREP_CACHE") == "1":
        prepared = _prepare(samples, size, clahe, clip, tile, mask_threshold, None, progress)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked(path.with_suffix(".lock")):
            prepared = _prepare(samples, size, clahe, clip, tile, mask_threshold, path, progress)
    prepared.warn_empty_masks(samples)
    return prepared


def _prepare(samples, size, clahe, clip, tile, mask_threshold, path, progress) -> Prepared:
    use_cache = path is not None
    if use_cache and path.is_file():
        try:
            data = torch.load(path, weights_only=True)
            if data["paths"] == [s.path for s in samples]:
                return Prepared(data["paths"], data["images"], data["masks"], data["has_mask"],
                                data["empty_mask"])
        except Exception:  # a damaged cache file is rebuilt, never trusted
            pass
    n = len(samples)
    images = torch.empty((n, 3, size, size), dtype=torch.uint8)
    masks = torch.zeros((n, 1, size, size), dtype=torch.bool)
    has_mask = torch.zeros(n, dtype=torch.bool)
    empty_mask = torch.zeros(n, dtype=torch.bool)
    for i, s in enumerate(tqdm(samples, desc="pre-processing", unit="img", disable=not progress,
                               leave=False)):
        raw = read_image(s.path)
        img = apply_clahe(raw, clip, tile) if clahe else raw
        images[i] = torch.from_numpy(np.array(resize_image(img, size))).permute(2, 0, 1)
        if s.mask_path:
            m = read_mask(s.mask_path, mask_threshold, shape=raw.shape[:2])
            masks[i, 0] = torch.from_numpy(resize_mask(m, size))
            empty_mask[i] = s.label == 1 and not masks[i].any()
            has_mask[i] = not empty_mask[i]
    prepared = Prepared([s.path for s in samples], images, masks, has_mask, empty_mask)
    if use_cache:
        atomic_torch_save({"paths": prepared.paths, "images": images, "masks": masks,
                           "has_mask": has_mask, "empty_mask": empty_mask}, path)
    return prepared
