"""Synthetic industrial textures in the MVTec AD folder layout: atac's embedded default data.

Why this exists: the real benchmarks (MVTec AD, Magnetic Tile) are large downloads under their own
licences. So that the book, the tests and a first ``atac`` run work offline and in seconds, atac
*generates* a small dataset instead: three procedurally drawn surfaces, each with a few defect
types, written exactly like an MVTec AD category::

    <root>/synthetic/<category>/train/good/000.png ...
    <root>/synthetic/<category>/test/good/000.png ...
    <root>/synthetic/<category>/test/<type>/000.png ...
    <root>/synthetic/<category>/ground_truth/<type>/000_mask.png ...

The categories (see :data:`CATEGORIES`):

* ``weave`` (RGB): a plain-woven fabric, warp and weft threads with per-thread colour, wobble and
  illumination jitter. Defects: ``scratch`` (a light abraded line), ``hole`` (a dark frayed
  opening), ``stain`` (a tinted blot that keeps the weave visible), ``thread`` (a warp thread that
  floats over several wefts instead of interlacing).
* ``dots`` (RGB): embossed copper dots on a hexagonal lattice over brushed metal. Defects:
  ``scratch``, ``missing`` (one to a few dots absent), ``deformed`` (a few dots squashed into
  ellipses), ``stain``.
* ``grid`` (grayscale, like MVTec's ``grid``): a woven wire mesh on a dark ground. Defects:
  ``broken`` (wire segments missing), ``bent`` (wires pushed aside locally), ``glue`` (a translucent
  smear), ``thread`` (a loose fibre lying on the mesh).

Every normal image differs (lattice phase, small rotation, per-thread/per-dot jitter, colour,
illumination, sensor noise). Defects cover roughly 0.5-6 % of the image, are drawn with intensities
inside the normal range (no single pixel threshold finds them), and each anomalous image has a
binary mask (0/255) that is exactly the region the defect was drawn into: outside the mask the
anomalous image equals the normal image it was made from, pixel for pixel.

This is *not* a benchmark of real-world performance. It is a fixture: big enough for a small CNN
to learn something from ~10 labelled anomalies, small enough to make in a few seconds. Numbers
measured on it say that the code runs, not how well a method works on real defects.

Generation is deterministic: each image draws from its own :class:`numpy.random.Generator` seeded
by ``(seed, category, split, type, index)`` (names turned into integers with CRC-32, never Python's
salted ``hash``), so the same arguments give byte-identical files on the same platform and library
versions (floating-point library routines may differ across CPUs/versions, which can move a pixel
by one grey level). A category is built in a temporary folder and moved into place only when
complete, with a ``.complete.json`` marker recording the parameters; a later call with the same
parameters skips it.

The drawing code (surfaces, defects, one image's generator) is :mod:`atac.data.textures`; this
module writes the data set.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .textures import CATEGORIES, GENERATOR_VERSION, GRAYSCALE, Array, image_rng, render

__all__ = ["CATEGORIES", "make_synthetic"]

_MARKER = ".complete.json"
_MIN_SIZE = 32


# --------------------------------------------------------------------------------------------
# writing


def _params(category: str, seed: int, image_size: int, n_train: int, n_test_good: int,
            n_test_per_type: int) -> dict:
    return {"format": "atac-synthetic", "generator_version": GENERATOR_VERSION,
            "category": category, "defect_types": list(CATEGORIES[category]),
            "mode": "L" if category in GRAYSCALE else "RGB",
            "seed": seed, "image_size": image_size, "n_train": n_train,
            "n_test_good": n_test_good, "n_test_per_type": n_test_per_type}


def _read_marker(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _save_png(arr: Array, path: Path) -> None:
    Image.fromarray(arr).save(path, format="PNG", compress_level=6)


def _fresh_dir(parent: Path, prefix: str) -> Path:
    """A new, uniquely named folder in ``parent`` (``mkdir`` honours the umask, unlike mkdtemp)."""
    while True:
        path = parent / f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def _build(category: str, out: Path, params: dict, bar) -> None:
    """Generate one category into a temporary folder, then move it to ``out/category``."""
    s, seed = params["image_size"], params["seed"]
    final = out / category
    tmp = _fresh_dir(out, f".{category}.partial-")
    try:
        jobs = [("train", "good", params["n_train"]), ("test", "good", params["n_test_good"])]
        jobs += [("test", t, params["n_test_per_type"]) for t in CATEGORIES[category]]
        for split, kind, count in jobs:
            (tmp / split / kind).mkdir(parents=True, exist_ok=True)
            if kind != "good":
                (tmp / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                _, img, mask = render(category, kind, image_rng(seed, category, split, kind, i), s)
                _save_png(img, tmp / split / kind / f"{i:03d}.png")
                if kind != "good":
                    _save_png(mask.astype(np.uint8) * 255, tmp / "ground_truth" / kind / f"{i:03d}_mask.png")
                bar.update(1)
        counts = {"train/good": params["n_train"], "test/good": params["n_test_good"],
                  **{f"test/{t}": params["n_test_per_type"] for t in CATEGORIES[category]}}
        (tmp / _MARKER).write_text(json.dumps({**params, "counts": counts}, indent=2, sort_keys=True) + "\n",
                                   encoding="utf-8")                       # the marker comes last
        old = None
        if final.exists():
            old = _fresh_dir(out, f".{category}.old-")
            os.replace(final, old / category)
        try:
            os.replace(tmp, final)
        except OSError:
            # Another process finished the same category between our check and now.
            done = _read_marker(final / _MARKER)
            if done is None or {k: done.get(k) for k in params} != params:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def make_synthetic(root: str | os.PathLike, categories: Sequence[str] | None = None, *, seed: int = 0,
                   image_size: int = 128, n_train: int = 60, n_test_good: int = 20,
                   n_test_per_type: int = 8, overwrite: bool = False, progress: bool = False) -> Path:
    """Generate the synthetic dataset under ``<root>/synthetic`` in the MVTec AD layout.

    For each category writes ``train/good/NNN.png`` (``n_train`` normals), ``test/good/NNN.png``
    (``n_test_good``), ``test/<type>/NNN.png`` and ``ground_truth/<type>/NNN_mask.png``
    (``n_test_per_type`` per defect type), then ``.complete.json`` with the parameters. Images are
    ``image_size x image_size`` pixels, 8-bit, RGB (``weave``, ``dots``) or grayscale mode ``L``
    (``grid``); masks are mode ``L`` with values {0, 255}, non-empty for every anomalous image.
    At the defaults (3 categories, 128 px, 60 + 20 + 4 x 8 images each) this takes a few seconds.

    Args:
        root: folder that will hold ``synthetic/`` (created if missing).
        categories: names from :data:`CATEGORIES` (a single name is accepted too); None = all.
        seed: non-negative integer; the same arguments give byte-identical files.
        image_size: side length in pixels, >= 32.
        n_train, n_test_good, n_test_per_type: image counts (n_train >= 1, the others >= 0).
        overwrite: regenerate categories whose folder exists with other parameters (or without a
            completion marker) instead of raising.
        progress: show a tqdm progress bar.

    Returns:
        The path ``<root>/synthetic``.

    Raises:
        ValueError: an unknown category (the message lists the valid ones) or a bad count/size/seed.
        FileExistsError: a category folder exists with different parameters, or without a
            ``.complete.json`` marker, and ``overwrite`` is False (the message names the folder).

    A category whose marker records the same parameters is skipped, so repeated calls are cheap.
    Each category is built in a hidden temporary folder next to it and moved into place only when
    complete, marker included; an interrupted run leaves no half-written category behind.
    """
    if categories is None:
        names = list(CATEGORIES)
    else:
        names = [categories] if isinstance(categories, str) else list(categories)
        unknown = [c for c in names if c not in CATEGORIES]
        if unknown:
            raise ValueError(f"unknown synthetic categor{'y' if len(unknown) == 1 else 'ies'} "
                             f"{', '.join(map(repr, unknown))}; valid names: {', '.join(CATEGORIES)}")
        names = list(dict.fromkeys(names))
    seed = _check_int("seed", seed, 0)
    image_size = _check_int("image_size", image_size, _MIN_SIZE)
    n_train = _check_int("n_train", n_train, 1)
    n_test_good = _check_int("n_test_good", n_test_good, 0)
    n_test_per_type = _check_int("n_test_per_type", n_test_per_type, 0)

    out = Path(root).expanduser() / "synthetic"
    todo: list[tuple[str, dict]] = []
    for cat in names:
        params = _params(cat, seed, image_size, n_train, n_test_good, n_test_per_type)
        folder = out / cat
        if folder.exists():
            found = _read_marker(folder / _MARKER)
            if found is not None and {k: found.get(k) for k in params} == params:
                continue
            if not overwrite:
                if found is None:
                    why = f"exists but has no valid {_MARKER} marker (not a completed synthetic category)"
                else:
                    diff = {k: (found.get(k), v) for k, v in params.items() if found.get(k) != v}
                    why = "was generated with different parameters (" + ", ".join(
                        f"{k}: {a!r} there, {b!r} asked" for k, (a, b) in diff.items()) + ")"
                raise FileExistsError(f"{folder} {why}; pass overwrite=True to regenerate it")
        todo.append((cat, params))
    out.mkdir(parents=True, exist_ok=True)
    if not todo:
        return out

    from tqdm import tqdm

    total = sum(n_train + n_test_good + n_test_per_type * len(CATEGORIES[c]) for c, _ in todo)
    with tqdm(total=total, disable=not progress, desc="synthetic data", unit="img") as bar:
        for cat, params in todo:
            bar.set_postfix_str(cat)
            _build(cat, out, params, bar)
    return out
