"""The drawing code of the synthetic data set (:mod:`atac.data.synth` writes it to disk): three
procedurally drawn surfaces and their defects, one image at a time.

Categories (:data:`CATEGORIES`, defect types in generation order): ``weave`` (RGB woven fabric:
scratch, hole, stain, thread), ``dots`` (RGB embossed copper dots on brushed metal: scratch,
missing, deformed, stain), ``grid`` (grayscale wire mesh: broken, bent, glue, thread).

:func:`render` draws one image and its mask from a :class:`numpy.random.Generator`;
:func:`image_rng` gives each image its own generator, seeded by ``(seed, category, split, type,
index)`` (names turned into integers with CRC-32, never Python's salted ``hash``), so the same
arguments give the same pixels. Images are float32 in [0, 1] while drawn, uint8 when returned.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np

#: Category name -> its defect types (the ``test/<type>`` folder names), in generation order.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "weave": ("scratch", "hole", "stain", "thread"),
    "dots": ("scratch", "missing", "deformed", "stain"),
    "grid": ("broken", "bent", "glue", "thread"),
}

GRAYSCALE = frozenset({"grid"})  # categories drawn (and written) in one channel
GENERATOR_VERSION = 1            # bump when the drawing code changes what it writes
_F = np.float32

Array = np.ndarray


# --------------------------------------------------------------------------------------------
# small helpers


def _code(name: str) -> int:
    """A stable non-negative integer for a name (CRC-32; unlike ``hash`` it is not salted)."""
    return zlib.crc32(name.encode("utf-8"))


def image_rng(seed: int, category: str, split: str, kind: str, index: int) -> np.random.Generator:
    """The generator of one image: ``index`` of ``split`` (train, test) and ``kind`` (good or a
    defect type) of ``category`` at ``seed``, the same for the same arguments."""
    entropy = [GENERATOR_VERSION, seed, _code(category), _code(split), _code(kind), index]
    return np.random.default_rng(np.random.SeedSequence(entropy))


@lru_cache(maxsize=8)
def _coords(s: int) -> tuple[Array, Array]:
    """Pixel-centre coordinates ``(yy, xx)``, each ``(s, s)`` float32, read-only."""
    yy, xx = np.mgrid[0:s, 0:s].astype(_F)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def _smooth_noise(rng: np.random.Generator, s: int, cells: int, amp: float) -> Array:
    """A smooth random field ``(s, s)``: ``cells x cells`` normals, bicubically upsampled."""
    g = rng.standard_normal((cells, cells)).astype(_F)
    return cv2.resize(g, (s, s), interpolation=cv2.INTER_CUBIC) * _F(amp)


def _illumination(rng: np.random.Generator, s: int) -> Array:
    """Uneven lighting: a gentle linear gradient times a smooth bump field, around 1."""
    yy, xx = _coords(s)
    gx, gy = rng.uniform(-0.08, 0.08, 2)
    field = 1.0 + gx * (xx / s - 0.5) + gy * (yy / s - 0.5) + _smooth_noise(rng, s, 3, 0.03)
    return (field * rng.uniform(0.92, 1.08)).astype(_F)


def _rot(theta: float, s: int) -> tuple[Array, Array]:
    """Rotated coordinates about the image centre: ``(a, b)`` with a along x, b along y."""
    yy, xx = _coords(s)
    c, sn = np.cos(theta), np.sin(theta)
    x0, y0 = xx - s / 2, yy - s / 2
    return (x0 * c + y0 * sn + s / 2).astype(_F), (-x0 * sn + y0 * c + s / 2).astype(_F)


def _blob(rng: np.random.Generator, s: int, radius: float, margin: float | None = None) -> Array:
    """A filled irregular polygon (``(s, s)`` bool) of mean radius ``radius`` px, inside the image."""
    margin = radius * 1.3 + 2 if margin is None else margin
    cx, cy = rng.uniform(margin, s - margin, 2)
    n = 14
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    wobble = 1.0 + 0.22 * rng.standard_normal(n).clip(-2, 2)
    ry = radius * rng.uniform(0.7, 1.3)
    rx = radius * radius / ry
    pts = np.stack([cx + rx * wobble * np.cos(ang), cy + ry * wobble * np.sin(ang)], axis=1)
    m = np.zeros((s, s), np.uint8)
    cv2.fillPoly(m, [np.rint(pts).astype(np.int32)], 255, lineType=cv2.LINE_8)
    return m > 0


def _curve(rng: np.random.Generator, s: int, length: float, thickness: int, bend: float) -> Array:
    """A thin curved stroke (``(s, s)`` bool): a cubic Bezier of about ``length`` px."""
    margin = 3 + thickness
    for _ in range(20):
        p0 = rng.uniform(margin, s - margin, 2)
        ang = rng.uniform(0, 2 * np.pi)
        d = np.array([np.cos(ang), np.sin(ang)])
        p3 = p0 + length * d
        if np.all((p3 >= margin) & (p3 <= s - margin)):
            break
    else:  # rare: fall back to a stroke through the centre
        p0 = np.array([s / 2, s / 2]) - length / 2 * d
        p3 = p0 + length * d
    nrm = np.array([-d[1], d[0]])
    p1 = p0 + (p3 - p0) / 3 + nrm * length * rng.uniform(-bend, bend)
    p2 = p0 + 2 * (p3 - p0) / 3 + nrm * length * rng.uniform(-bend, bend)
    t = np.linspace(0, 1, 48)[:, None]
    pts = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
    pts = np.clip(pts, 1, s - 2)
    m = np.zeros((s, s), np.uint8)
    cv2.polylines(m, [np.rint(pts).astype(np.int32)], False, 255, thickness, lineType=cv2.LINE_8)
    return m > 0


def _soft_inside(mask: Array, sigma: float) -> Array:
    """1 deep inside ``mask``, falling towards ~0.5 at its edge, 0 outside (float32 ``(s, s)``)."""
    blur = cv2.GaussianBlur(mask.astype(_F), (0, 0), max(sigma, 0.5))
    return np.where(mask, np.clip(blur * 2, 0, 1), 0).astype(_F)


def _lerp(a: Array, b: Array | float, alpha: Array) -> Array:
    if a.ndim == 3 and alpha.ndim == 2:
        alpha = alpha[..., None]
    return (a * (1 - alpha) + np.asarray(b, _F) * alpha).astype(_F)


def _scratch(rng: np.random.Generator, img: Array, s: int, light: Array) -> tuple[Array, Array]:
    """A light, slightly curved scratch; ``light`` is the scratch colour (C,)."""
    thick = max(2, round(s / 50))
    mask = _curve(rng, s, rng.uniform(0.3, 0.6) * s, thick, 0.12)
    alpha = (rng.uniform(0.55, 0.8) * (1 + 0.15 * rng.standard_normal((s, s))).clip(0.7, 1.25)).astype(_F)
    return _lerp(img, light, np.where(mask, alpha, 0).astype(_F)), mask


def _stain(rng: np.random.Generator, img: Array, s: int) -> tuple[Array, Array]:
    """A tinted blot that multiplies the surface colour (texture stays visible)."""
    r = rng.uniform(0.07, 0.115) * s
    mask = _blob(rng, s, r)
    tints = np.array([[0.62, 0.55, 0.45],    # oil
                      [1.10, 0.75, 0.50],    # rust
                      [0.60, 0.72, 1.10]],   # ink
                     _F)
    tint = tints[rng.integers(len(tints))] * _F(rng.uniform(0.95, 1.05))
    alpha = _soft_inside(mask, r * 0.25) * _F(rng.uniform(0.55, 0.9))
    alpha = np.where(mask, np.maximum(alpha, 0.3), 0).astype(_F)
    return _lerp(img, img * tint, alpha), mask


# --------------------------------------------------------------------------------------------
# weave: plain-woven fabric (RGB)


def _weave_sample(rng: np.random.Generator, s: int) -> dict:
    n = 64
    return {
        "p": s / 12 * rng.uniform(0.94, 1.06),
        "theta": np.deg2rad(rng.uniform(-3, 3)),
        "phase": rng.uniform(0, 1, 2),
        "bu": (1 + 0.07 * rng.standard_normal(n)).astype(_F),
        "bv": (1 + 0.07 * rng.standard_normal(n)).astype(_F),
        "warp": (np.array([0.66, 0.53, 0.38]) * (1 + 0.04 * rng.standard_normal(3))
                 * rng.uniform(0.9, 1.1)).astype(_F),
        "weft": (np.array([0.58, 0.47, 0.35]) * (1 + 0.04 * rng.standard_normal(3))
                 * rng.uniform(0.9, 1.1)).astype(_F),
        "du": _smooth_noise(rng, s, 5, 0.07),
        "dv": _smooth_noise(rng, s, 5, 0.07),
        "illum": _illumination(rng, s),
    }


def _weave_render(P: dict, s: int, float_sel: Array | None = None) -> tuple[Array, dict]:
    a, b = _rot(P["theta"], s)
    u = a / P["p"] + P["phase"][0] + P["du"]
    v = b / P["p"] + P["phase"][1] + P["dv"]
    iu, iv = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    fu, fv = u - iu, v - iv
    top = ((iu + iv) & 1) == 0                                   # warp over weft
    su, sv = np.sin(np.pi * fu), np.sin(np.pi * fv)
    along_warp = 0.7 + 0.3 * sv
    bu = P["bu"][iu % len(P["bu"])]
    if float_sel is not None:                                    # a warp thread floating over wefts
        top = top | float_sel
        along_warp = np.where(float_sel, 0.93, along_warp)
        bu = np.where(float_sel, bu * 1.12, bu)
    warp_shade = su**0.7 * along_warp * bu
    weft_shade = sv**0.7 * (0.7 + 0.3 * su) * P["bv"][iv % len(P["bv"])]
    shade = np.where(top, warp_shade, weft_shade)
    col = np.where(top[..., None], P["warp"], P["weft"])
    img = col * (0.22 + 0.78 * shade)[..., None] * P["illum"][..., None]
    return img.astype(_F), {"u": u, "v": v, "iu": iu}


def _weave_defect(kind: str, rng: np.random.Generator, P: dict, s: int, clean: Array,
                  aux: dict) -> tuple[Array, Array]:
    if kind == "scratch":
        light = (P["warp"] * 1.12 + 0.05).clip(0, 1)
        return _scratch(rng, clean, s, light)
    if kind == "hole":
        r = rng.uniform(0.05, 0.085) * s
        mask = _blob(rng, s, r)
        depth = _soft_inside(mask, r * 0.3)
        fibres = 1 + _smooth_noise(rng, s, max(8, s // 6), 0.15)          # backing seen through
        dark = (P["weft"] * _F(rng.uniform(0.32, 0.42)))[None, None, :] * (fibres * (1 - 0.15 * depth))[..., None]
        frayed = _lerp(clean * 0.8, dark, np.clip(depth * 1.6, 0, 1))
        return np.where(mask[..., None], frayed, clean).astype(_F), mask
    if kind == "stain":
        return _stain(rng, clean, s)
    if kind == "thread":
        m = int(s * 0.2)
        y0, x0 = rng.integers(m, s - m, 2)
        k, vc = aux["iu"][y0, x0], aux["v"][y0, x0]
        length = rng.integers(4, 8)
        v0 = np.floor(vc - length / 2)
        sel = (aux["iu"] == k) & (aux["v"] >= v0) & (aux["v"] < v0 + length)
        img, _ = _weave_render(P, s, float_sel=sel)
        return np.where(sel[..., None], img, clean).astype(_F), sel
    raise AssertionError(kind)


# --------------------------------------------------------------------------------------------
# dots: embossed copper dots on a hexagonal lattice over brushed metal (RGB)

_LIGHT = np.array([-0.45, -0.55, 0.70]) / np.linalg.norm([-0.45, -0.55, 0.70])


def _dots_sample(rng: np.random.Generator, s: int) -> dict:
    n = 64
    d = s / 10 * rng.uniform(0.95, 1.05)
    streak = rng.standard_normal((s, 6)).astype(_F)
    return {
        "d": d,
        "theta": np.deg2rad(rng.uniform(-2, 2)),
        "phase": rng.uniform(0, 1, 2) * np.array([d, d * np.sqrt(3)]),
        "jx": (0.02 * rng.standard_normal((n, n))).clip(-0.04, 0.04).astype(_F),
        "jy": (0.02 * rng.standard_normal((n, n))).clip(-0.04, 0.04).astype(_F),
        "rr": (1 + 0.04 * rng.standard_normal((n, n))).clip(0.92, 1.08).astype(_F),
        "bright": (1 + 0.06 * rng.standard_normal((n, n))).astype(_F),
        "dot": (np.array([0.80, 0.52, 0.30]) * (1 + 0.04 * rng.standard_normal(3))
                * rng.uniform(0.9, 1.08)).astype(_F),
        "bg": (np.array([0.34, 0.39, 0.43]) * (1 + 0.04 * rng.standard_normal(3))
               * rng.uniform(0.9, 1.1)).astype(_F),
        "streak": cv2.resize(streak, (s, s), interpolation=cv2.INTER_LINEAR) * _F(0.045)
                  + _smooth_noise(rng, s, 4, 0.03),
        "illum": _illumination(rng, s),
    }


def _dots_geom(P: dict, s: int) -> dict:
    """Per pixel: offset ``(ex, ey)`` from its dot's centre, the dot's radius, id and brightness."""
    d = P["d"]
    dy = d * np.sqrt(3) / 2
    a, b = _rot(P["theta"], s)
    xr, yr = a + P["phase"][0], b + P["phase"][1]
    j = np.rint(yr / dy).astype(np.int64)
    off = (j & 1) * (d / 2)
    i = np.rint((xr - off) / d).astype(np.int64)
    n = P["jx"].shape[0]
    jm, im = j % n, i % n
    cx = i * d + off + P["jx"][jm, im] * d
    cy = j * dy + P["jy"][jm, im] * d
    return {"ex": (xr - cx).astype(_F), "ey": (yr - cy).astype(_F), "r": (0.28 * d * P["rr"][jm, im]).astype(_F),
            "id": j * 100_003 + i, "cx": cx, "cy": cy, "xr": xr, "yr": yr,
            "bright": P["bright"][jm, im]}


def _dots_render(P: dict, s: int, g: dict, removed: Array | None = None,
                 deform: tuple[Array, float, float, float] | None = None) -> tuple[Array, Array]:
    """Render the dots; returns the image and the per-pixel normalised distance used."""
    ex, ey, r = g["ex"], g["ey"], g["r"]
    if deform is not None:
        sel, sx, sy, phi = deform
        c, sn = np.cos(phi), np.sin(phi)
        ex2 = (ex * c + ey * sn) / sx
        ey2 = (-ex * sn + ey * c) / sy
        ex, ey = np.where(sel, ex2, ex), np.where(sel, ey2, ey)
    dist = np.hypot(ex, ey)
    alpha = np.clip(r - dist + 0.5, 0, 1)
    nx, ny = ex / r, ey / r
    nz = np.sqrt(np.clip(1 - nx * nx - ny * ny, 0, 1))
    diffuse = np.clip(nx * _LIGHT[0] + ny * _LIGHT[1] + nz * _LIGHT[2], 0, 1)
    spec = diffuse**24
    dot = P["dot"] * (g["bright"] * (0.3 + 0.7 * diffuse))[..., None] + (0.3 * spec)[..., None]
    dist_s = np.hypot(ex - 0.12 * r, ey - 0.12 * r)
    shadow = np.clip((1.15 * r - dist_s) / (0.3 * r), 0, 1) * 0.45
    if removed is not None:
        alpha = np.where(removed, 0, alpha)
        shadow = np.where(removed, 0, shadow)
    bg = P["bg"] * (1 + P["streak"])[..., None] * (1 - shadow)[..., None]
    img = _lerp(bg, dot, alpha) * P["illum"][..., None]
    return img.astype(_F), dist


def _dots_clean(P: dict, s: int) -> tuple[Array, dict]:
    g = _dots_geom(P, s)
    return _dots_render(P, s, g)[0], g


def _dots_defect(kind: str, rng: np.random.Generator, P: dict, s: int, clean: Array,
                 g: dict) -> tuple[Array, Array]:
    if kind == "scratch":
        light = P["bg"] * _F(rng.uniform(1.35, 1.55))
        return _scratch(rng, clean, s, light)
    if kind == "stain":
        return _stain(rng, clean, s)
    m = int(s * 0.2)
    y0, x0 = rng.integers(m, s - m, 2)
    d = P["d"]
    px = g["cx"][y0, x0] + rng.uniform(-0.5, 0.5) * d
    py = g["cy"][y0, x0] + rng.uniform(-0.5, 0.5) * d
    near = np.hypot(g["cx"] - px, g["cy"] - py) < rng.uniform(0.55, 1.15) * d
    sel = near | (g["id"] == g["id"][y0, x0])                      # at least the chosen dot
    reach = g["r"] * 1.35 + 1.5
    if kind == "missing":
        img, dist = _dots_render(P, s, g, removed=sel)
        mask = sel & (dist < reach)
    elif kind == "deformed":
        elong = rng.uniform(1.15, 1.3)
        squash = rng.uniform(0.5, 0.7)
        phi = rng.uniform(0, np.pi)
        img, dist = _dots_render(P, s, g, deform=(sel, elong, squash, phi))
        mask = sel & ((np.hypot(g["ex"], g["ey"]) < reach) | (dist < reach))
    else:
        raise AssertionError(kind)
    return np.where(mask[..., None], img, clean).astype(_F), mask


# --------------------------------------------------------------------------------------------
# grid: woven wire mesh (grayscale)


def _grid_sample(rng: np.random.Generator, s: int) -> dict:
    n = 64
    p = s / 7 * rng.uniform(0.95, 1.05)
    return {
        "p": p,
        "hw": 0.14 * p * rng.uniform(0.9, 1.1),
        "theta": np.deg2rad(rng.uniform(-2, 2)),
        "phase": rng.uniform(0, 1, 2) * p,
        "bu": (1 + 0.06 * rng.standard_normal(n)).astype(_F),
        "bv": (1 + 0.06 * rng.standard_normal(n)).astype(_F),
        "wu": _smooth_noise(rng, s, 5, 0.05 * p),
        "wv": _smooth_noise(rng, s, 5, 0.05 * p),
        "wire": rng.uniform(0.68, 0.8),
        "ground": (rng.uniform(0.12, 0.2) + _smooth_noise(rng, s, 6, 0.025)).astype(_F),
        "illum": _illumination(rng, s),
    }


def _grid_render(P: dict, s: int, disp: tuple[Array, Array] | None = None,
                 broken: Array | None = None, broken_vertical: bool = True) -> tuple[Array, dict]:
    a, b = _rot(P["theta"], s)
    xr = a + P["phase"][0] + P["wu"]
    yr = b + P["phase"][1] + P["wv"]
    if disp is not None:
        xr, yr = xr + disp[0], yr + disp[1]
    p, hw = P["p"], P["hw"]
    u, v = xr / p, yr / p
    iu, iv = np.rint(u).astype(np.int64), np.rint(v).astype(np.int64)
    du, dv = np.abs(u - iu) * p, np.abs(v - iv) * p            # px to the nearest vertical/horizontal wire
    a_v, a_h = np.clip(hw - du + 0.5, 0, 1), np.clip(hw - dv + 0.5, 0, 1)
    if broken is not None:
        if broken_vertical:
            a_v = np.where(broken, 0, a_v)
        else:
            a_h = np.where(broken, 0, a_h)
    prof_v = np.sqrt(np.clip(1 - (du / hw) ** 2, 0, 1))
    prof_h = np.sqrt(np.clip(1 - (dv / hw) ** 2, 0, 1))
    sh_v = P["wire"] * P["bu"][iu % len(P["bu"])] * (0.45 + 0.55 * prof_v)
    sh_h = P["wire"] * P["bv"][iv % len(P["bv"])] * (0.45 + 0.55 * prof_h)
    vtop = ((iu + iv) & 1) == 0
    a_under, s_under = np.where(vtop, a_h, a_v), np.where(vtop, sh_h, sh_v) * 0.8
    a_top, s_top = np.where(vtop, a_v, a_h), np.where(vtop, sh_v, sh_h)
    img = P["ground"] * (1 - a_under) + s_under * a_under
    img = img * (1 - a_top) + s_top * a_top
    img = img * P["illum"]
    return img.astype(_F)[..., None], {"u": u, "v": v, "iu": iu, "iv": iv, "du": du, "dv": dv,
                                        "wire": np.maximum(a_v, a_h) > 0}


def _grid_defect(kind: str, rng: np.random.Generator, P: dict, s: int, clean: Array,
                 aux: dict) -> tuple[Array, Array]:
    m = int(s * 0.22)
    if kind == "broken":
        y0, x0 = rng.integers(m, s - m, 2)
        vertical = bool(rng.integers(2))
        idx, along, across = (("iu", "v", "du") if vertical else ("iv", "u", "dv"))
        k, c = aux[idx][y0, x0], aux[along][y0, x0]
        length = rng.uniform(1.1, 1.9)
        wires = [k, k + 1] if rng.random() < 0.5 else [k]
        sel = np.isin(aux[idx], wires) & (np.abs(aux[along] - c) < length / 2)
        img, _ = _grid_render(P, s, broken=sel, broken_vertical=vertical)
        mask = sel & (aux[across] < P["hw"] + 1)
        return np.where(mask[..., None], img, clean).astype(_F), mask
    if kind == "bent":
        yy, xx = _coords(s)
        cy, cx = rng.uniform(m, s - m, 2)
        rad = rng.uniform(0.09, 0.13) * s
        bump = np.clip(1 - ((xx - cx) ** 2 + (yy - cy) ** 2) / rad**2, 0, 1) ** 2
        amp = rng.uniform(0.3, 0.45) * P["p"]
        phi = rng.uniform(0, 2 * np.pi)
        img, bent_aux = _grid_render(P, s, disp=(bump * amp * np.cos(phi), bump * amp * np.sin(phi)))
        mask = (bump > 0) & (aux["wire"] | bent_aux["wire"])
        return np.where(mask[..., None], img, clean).astype(_F), mask
    if kind == "glue":
        r = rng.uniform(0.07, 0.11) * s
        mask = _blob(rng, s, r)
        blurred = cv2.GaussianBlur(clean[..., 0], (0, 0), rng.uniform(1.5, 3.0))
        glue = 0.5 * blurred + 0.5 * rng.uniform(0.45, 0.7) + _smooth_noise(rng, s, 8, 0.03)
        alpha = _soft_inside(mask, r * 0.3) * _F(rng.uniform(0.65, 0.9))
        alpha = np.where(mask, np.maximum(alpha, 0.35), 0).astype(_F)
        return _lerp(clean, glue[..., None], alpha), mask
    if kind == "thread":
        thick = max(1, round(s / 64))
        mask = _curve(rng, s, rng.uniform(0.4, 0.7) * s, thick, 0.35)
        level = rng.uniform(0.55, 0.85)
        return np.where(mask[..., None], _lerp(clean, level, np.full((s, s), 0.9, _F)), clean).astype(_F), mask
    raise AssertionError(kind)


# --------------------------------------------------------------------------------------------
# one image


_Sampler = Callable[[np.random.Generator, int], dict]
_TEXTURES: dict[str, tuple[_Sampler, Callable, Callable, float]] = {
    # name: (sample params, render clean -> (img, aux), draw defect, sensor noise sigma)
    "weave": (_weave_sample, lambda P, s: _weave_render(P, s), _weave_defect, 0.018),
    "dots": (_dots_sample, _dots_clean, _dots_defect, 0.015),
    "grid": (_grid_sample, lambda P, s: _grid_render(P, s), _grid_defect, 0.02),
}


def _to_u8(img: Array) -> Array:
    out = np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return out[..., 0] if out.shape[-1] == 1 else out


def render(category: str, kind: str, rng: np.random.Generator, s: int) -> tuple[Array, Array, Array]:
    """Draw one image of ``category``, ``s`` pixels square, from ``rng`` (:func:`image_rng`);
    ``kind`` is ``"good"`` or a defect type.

    Returns ``(clean, image, mask)``: ``clean`` and ``image`` uint8, ``(s, s, 3)`` for colour or
    ``(s, s)`` for grayscale categories; ``mask`` bool ``(s, s)`` (all False for ``"good"``).
    ``clean`` is the normal surface the defect was drawn onto (equal to ``image`` for ``"good"``).
    """
    sample, draw_clean, defect, sigma = _TEXTURES[category]
    P = sample(rng, s)
    clean, aux = draw_clean(P, s)
    noise = rng.normal(0, sigma, clean.shape).astype(_F)
    if kind == "good":
        img, mask = clean, np.zeros((s, s), bool)
    else:
        img, mask = defect(kind, rng, P, s, clean, aux)
    clean8 = _to_u8(clean + noise)
    img8 = _to_u8(img + noise)
    if kind != "good":
        img8[~mask] = clean8[~mask]                          # exact outside the mask, by construction
    return clean8, img8, mask
