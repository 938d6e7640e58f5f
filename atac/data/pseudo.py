"""Pseudo-anomalies: CutMix as the DevNet/DRA lineage does it.

DRA (Ding, Pang, Shen, CVPR 2022, its code) calls it CutMix but cuts a rectangle of 2–15% of the
image area (aspect ratio log-uniform in [0.3, 3.3]) out of a *normal* image, colour-jitters it
(0.1 on brightness, contrast, saturation, hue) and pastes it at another random place of the same
image. Yun et al.'s CutMix (ICCV 2019) pastes from a different image: ``source="other"``.
"""

from __future__ import annotations

import math

import torch
from torchvision.transforms import ColorJitter


def _rand(gen: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * torch.rand((), generator=gen).item()


def cutpaste_box(height: int, width: int, area: tuple[float, float], ratio: tuple[float, float],
                 gen: torch.Generator) -> tuple[int, int]:
    """Patch (h, w) in pixels: area fraction ~ U(area), aspect h/w log-uniform in ``ratio``.

    The patch is clipped to the image; it may be 0 pixels on a tiny image (then nothing is pasted).
    """
    frac = _rand(gen, *area)
    aspect = math.exp(_rand(gen, math.log(ratio[0]), math.log(ratio[1])))
    target = frac * height * width
    h = int(round(math.sqrt(target * aspect)))
    w = int(round(math.sqrt(target / aspect)))
    return min(h, height), min(w, width)


def cutmix(image: torch.Tensor, gen: torch.Generator, source: torch.Tensor | None = None,
           area: tuple[float, float] = (0.02, 0.15), ratio: tuple[float, float] = (0.3, 3.3),
           jitter: float = 0.1) -> tuple[torch.Tensor, tuple[int, int, int, int] | None]:
    """Make one pseudo-anomaly.

    Args:
        image: float (3, H, W) in [0, 1], the normal image to paste into.
        gen: the random generator (all randomness, the jitter's included, comes from it).
        source: the image the patch is cut from (default ``image``: DRA's same-image cut-and-paste).
    Returns:
        (new image (3, H, W), pasted box ``(x0, y0, x1, y1)`` in pixels) — or the unchanged image and
        ``None`` when the patch has zero area or the paste changed no pixel (the same place of the
        same image, a uniform region): the caller must then not label it anomalous. Either way the
        generator is advanced by the same draws.
    """
    src = image if source is None else source
    _, H, W = image.shape
    h, w = cutpaste_box(H, W, area, ratio, gen)
    if h < 1 or w < 1:
        return image, None
    sy = int(torch.randint(0, H - h + 1, (), generator=gen))
    sx = int(torch.randint(0, W - w + 1, (), generator=gen))
    ty = int(torch.randint(0, H - h + 1, (), generator=gen))
    tx = int(torch.randint(0, W - w + 1, (), generator=gen))
    patch = src[:, sy:sy + h, sx:sx + w]
    if jitter > 0:
        # ColorJitter draws from the global RNG; fork it from our generator so runs stay seeded.
        seed = int(torch.randint(0, 2**31 - 1, (), generator=gen))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            patch = ColorJitter(jitter, jitter, jitter, min(jitter, 0.5))(patch)
    out = image.clone()
    out[:, ty:ty + h, tx:tx + w] = patch.clamp(0, 1)
    if not _changed(out, image):
        return image, None
    return out, (tx, ty, tx + w, ty + h)


def _changed(new: torch.Tensor, old: torch.Tensor) -> bool:
    """Does the pasted image differ from the original in any pixel?"""
    return not torch.equal(new, old)
