"""Dataset readers: the MVTec AD folder layout, the Magnetic Tile set, and the synthetic default.

Every reader returns a :class:`DatasetIndex`: the sorted list of training normals and of test
images (normal and anomalous), each a :class:`Sample` with its label, defect type and mask path.
Sample conventions follow MVTec AD (Bergmann et al., CVPR 2019) as anomalib names them: label 0 is
normal ("good"), 1 anomalous; a mask is optional.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..paths import env_data_root, synthetic_root

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
MT_CLASSES = ("MT_Blowhole", "MT_Break", "MT_Crack", "MT_Fray", "MT_Uneven")


class DatasetLayoutError(ValueError):
    """A dataset folder does not have the expected layout; the message names the folder."""


class DataWarning(UserWarning):
    """The data can be used, but not all of it as the user may expect (the message says what)."""


@dataclass(frozen=True)
class Sample:
    """One image of a dataset.

    ``path`` is absolute; ``rel`` is relative to the dataset folder (used in records).
    ``defect_type`` is ``"good"`` for normal images.
    """

    path: str
    rel: str
    label: int
    defect_type: str
    mask_path: str | None = None


@dataclass
class DatasetIndex:
    """All images of one dataset category: ``train`` (normals) and ``test`` (normals + anomalies)."""

    dataset: str
    category: str
    root: Path
    train: list[Sample]
    test: list[Sample]

    @property
    def defect_types(self) -> list[str]:
        return sorted({s.defect_type for s in self.test if s.label == 1})

    def summary(self) -> dict:
        """Counts per part and defect type (for ``atac data info``)."""
        per_type: dict[str, int] = {}
        for s in self.test:
            per_type[s.defect_type] = per_type.get(s.defect_type, 0) + 1
        return {"dataset": self.dataset, "category": self.category, "root": str(self.root),
                "train_normal": len(self.train),
                "test_normal": sum(1 for s in self.test if s.label == 0),
                "test_anomalous": sum(1 for s in self.test if s.label == 1),
                "test_per_type": per_type,
                "masks": sum(1 for s in self.test if s.mask_path)}


def warn_missing_masks(folder: Path, looked_for: list[Path], n_anomalous: int, most: int = 10) -> None:
    """One :class:`DataWarning` for the anomalous images whose mask was not found (none: nothing),
    listing the mask paths looked for (the first ``most`` of them, then how many more)."""
    if looked_for:
        warnings.warn(f"{folder}: no mask found for {len(looked_for)} of its {n_anomalous} anomalous test "
                      f"images, so pixel metrics leave them out; looked for: {some(looked_for, most)}",
                      DataWarning, stacklevel=3)


def some(items: list, most: int = 10, sep: str = ", ") -> str:
    """The first ``most`` of ``items`` as text, then how many more (for warnings that name files)."""
    more = f" and {len(items) - most} more" if len(items) > most else ""
    return sep.join(map(str, items[:most])) + more


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS
                  and not p.name.startswith("."))


def read_mvtec(folder: str | Path, dataset: str = "mvtec_ad") -> DatasetIndex:
    """Read one category in the MVTec AD layout.

    Layout: ``train/good/*``, ``test/<type>/*`` (``good`` is normal), and optionally
    ``ground_truth/<type>/<stem>_mask.png``. Masks are optional: a missing mask is ``None``, and
    one :class:`DataWarning` lists the mask paths looked for (:func:`warn_missing_masks`).

    Raises:
        DatasetLayoutError: ``train/good`` or ``test`` missing or empty (the message names the path
            and shows the expected layout).
    """
    folder = Path(folder).resolve()
    expected = ("expected the MVTec AD layout <category>/train/good/*.png, <category>/test/<type>/*.png, "
                "<category>/ground_truth/<type>/<name>_mask.png")
    train_dir, test_dir = folder / "train" / "good", folder / "test"
    if not train_dir.is_dir():
        raise DatasetLayoutError(f"{train_dir} does not exist; {expected}")
    if not test_dir.is_dir():
        raise DatasetLayoutError(f"{test_dir} does not exist; {expected}")
    category = folder.name
    train = [Sample(str(p), str(p.relative_to(folder)), 0, "good") for p in _images_in(train_dir)]
    if not train:
        raise DatasetLayoutError(f"{train_dir} holds no images; {expected}")
    test: list[Sample] = []
    missing: list[Path] = []
    for type_dir in sorted(d for d in test_dir.iterdir() if d.is_dir()):
        dtype = type_dir.name
        for p in _images_in(type_dir):
            mask = None
            if dtype != "good":
                m = folder / "ground_truth" / dtype / f"{p.stem}_mask.png"
                mask = str(m) if m.is_file() else None
                if mask is None:
                    missing.append(m)
            test.append(Sample(str(p), str(p.relative_to(folder)), int(dtype != "good"), dtype, mask))
    if not test:
        raise DatasetLayoutError(f"{test_dir} holds no images; {expected}")
    warn_missing_masks(folder, missing, sum(s.label for s in test))
    return DatasetIndex(dataset, category, folder, train, test)


def read_magnetic_tile(folder: str | Path, test_normals: float = 0.2, split_seed: int = 0) -> DatasetIndex:
    """Adapt the Magnetic Tile defect set (Huang et al., The Visual Computer 2020) to train/test.

    Layout: ``MT_<Class>/Imgs/<name>.jpg`` with its mask ``<name>.png`` beside it. ``MT_Free`` is
    normal. Split (documented, seed-independent): MT_Free images sorted by name, shuffled with
    ``numpy.random.default_rng(split_seed)``, the first ``round(test_normals * n)`` become test
    normals and the rest training normals. Every defective image is a test image; defect type is the
    class name without ``MT_`` in lower case (``blowhole``, ``break``, ...). Masks are soft and are
    thresholded when read; a missing one is ``None``, and one :class:`DataWarning` lists the mask
    paths looked for.

    Raises:
        DatasetLayoutError: ``MT_Free/Imgs`` or every defect class missing.
    """
    folder = Path(folder).resolve()
    free = folder / "MT_Free" / "Imgs"
    if not free.is_dir():
        raise DatasetLayoutError(f"{free} does not exist; expected the Magnetic Tile layout "
                                 "MT_Free/Imgs/<name>.jpg (+ <name>.png masks), MT_<Defect>/Imgs/...")

    def jpgs(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))

    def mask_of(p: Path) -> str | None:
        m = p.with_suffix(".png")
        return str(m) if m.is_file() else None

    normals = jpgs(free)
    if len(normals) < 2:
        raise DatasetLayoutError(f"{free} holds {len(normals)} images; need at least 2")
    order = np.random.default_rng(split_seed).permutation(len(normals))
    n_test = max(1, int(round(test_normals * len(normals))))
    test_idx = set(order[:n_test].tolist())
    train = [Sample(str(p), str(p.relative_to(folder)), 0, "good")
             for i, p in enumerate(normals) if i not in test_idx]
    test = [Sample(str(p), str(p.relative_to(folder)), 0, "good")
            for i, p in enumerate(normals) if i in test_idx]
    found = False
    for cls in MT_CLASSES:
        d = folder / cls / "Imgs"
        if not d.is_dir():
            continue
        found = True
        dtype = cls[3:].lower()
        test += [Sample(str(p), str(p.relative_to(folder)), 1, dtype, mask_of(p)) for p in jpgs(d)]
    if not found:
        raise DatasetLayoutError(f"{folder} has no defect class folder ({', '.join(MT_CLASSES)})")
    anomalous = [s for s in test if s.label == 1]
    warn_missing_masks(folder, [Path(s.path).with_suffix(".png") for s in anomalous if not s.mask_path],
                       len(anomalous))
    return DatasetIndex("magnetic_tile", "magnetic_tile", folder, train, test)


def dataset_folder(dataset: str, category: str, data_root: str | Path | None) -> Path:
    """Resolve the folder of one dataset category.

    ``data_root`` (or ``$ATAC_DATA_ROOT``) may be the folder that holds ``mvtec_ad/``, the
    ``mvtec_ad`` folder itself, or the category folder. For ``synthetic`` the default root is the
    atac cache, and the category is generated there on first use (deterministic, seconds).

    Raises:
        DatasetLayoutError: no folder found (the message lists where it looked).
    """
    if dataset == "synthetic":
        from .synth import CATEGORIES, make_synthetic

        root = Path(data_root) if data_root else synthetic_root()
        if category not in CATEGORIES:
            raise DatasetLayoutError(f"unknown synthetic category '{category}'; "
                                     f"choose one of {', '.join(CATEGORIES)}")
        folder = root / "synthetic" / category
        if (folder / ".complete.json").is_file():  # generated before (any parameters): use it
            return folder
        return make_synthetic(root, [category]) / category
    root = Path(data_root) if data_root else env_data_root()
    if root is None:
        raise DatasetLayoutError(
            f"no data root for dataset '{dataset}': pass --data-root DIR or set ATAC_DATA_ROOT "
            f"(or get the data with `atac data download {dataset} --root DIR`)")
    root = root.expanduser()
    if dataset == "mvtec_ad":
        candidates = [root / "mvtec_ad" / category, root / category, root]
        for c in candidates:
            # the category's own folder (read_mvtec then explains any layout problem inside it)
            if c.is_dir() and c.name == category and ((c / "train").is_dir() or (c / "test").is_dir()):
                return c
    elif dataset == "magnetic_tile":
        candidates = [root / "magnetic_tile", root]
        for c in candidates:
            if (c / "MT_Free").is_dir():
                return c
        raise DatasetLayoutError("Magnetic Tile not found (a folder holding MT_Free/Imgs, "
                                 "MT_Blowhole/Imgs, ...); looked in: " + ", ".join(map(str, candidates)))
    else:
        raise DatasetLayoutError(f"unknown dataset '{dataset}'")
    raise DatasetLayoutError(f"dataset '{dataset}' category '{category}' not found; looked in: "
                             + ", ".join(str(c) for c in candidates))


# The real data sets the book shows when it is given a data root, in the order it shows them:
# MVTec AD grid (grayscale texture), MVTec AD metal_nut (RGB object, a class of the paper's tables;
# not in ../shared/data, built by ../shared/data/get_metal_nut.sh) and Magnetic Tile.
REAL_SOURCES: tuple[tuple[str, str], ...] = (("mvtec_ad", "grid"), ("mvtec_ad", "metal_nut"),
                                             ("magnetic_tile", "magnetic_tile"))
# How to get a real data set that a data root lacks (for messages), by (dataset, category).
HOW_TO_GET = {("mvtec_ad", "metal_nut"): "../shared/data/get_metal_nut.sh builds a data root with it; "
                                         "see ../shared/data/README.md"}


def find_sources(data_root: str | Path, sources=REAL_SOURCES) -> tuple[list[tuple[str, str]],
                                                                        list[tuple[str, str]]]:
    """Which of ``sources`` ((dataset, category) pairs) are under ``data_root``, as
    :func:`dataset_folder` finds them: ``(found, missing)``, each in the order of ``sources``.
    Nothing is read beyond the folder names (the layout inside is checked when an index is loaded)."""
    found, missing = [], []
    for dataset, category in sources:
        try:
            dataset_folder(dataset, category, data_root)
        except DatasetLayoutError:
            missing.append((dataset, category))
        else:
            found.append((dataset, category))
    return found, missing


def missing_note(missing: list[tuple[str, str]], data_root: str | Path) -> str:
    """A sentence naming the data sets that ``data_root`` lacks, with how to get each where known
    (:data:`HOW_TO_GET`); "" when none is missing."""
    if not missing:
        return ""
    parts = [f"{d}/{c}" + (f" ({HOW_TO_GET[(d, c)]})" if (d, c) in HOW_TO_GET else "") for d, c in missing]
    return f"Not under {data_root}, so not shown: {'; '.join(parts)}."


def real_data_note(data_root: str | Path | None, found: list[tuple[str, str]],
                   missing: list[tuple[str, str]]) -> str:
    """What a page was given of real data, as a sentence or two for the book: "No folder of real
    data was given ...", or "Real data from ROOT: mvtec_ad/grid, ..." and :func:`missing_note`."""
    if data_root is None:
        return "No folder of real data was given (the real_data_root parameter): synthetic data only."
    names = ", ".join(f"{d}/{c}" for d, c in found) or "none of the data sets asked for"
    return f"Real data from {data_root}: {names}. {missing_note(missing, data_root)}".strip()


def load_index(dataset: str, category: str, data_root: str | Path | None = None,
               mt_test_normals: float = 0.2, mt_split_seed: int = 0) -> DatasetIndex:
    """Find and read a dataset category (see :func:`dataset_folder`)."""
    folder = dataset_folder(dataset, category, data_root)
    if dataset == "magnetic_tile":
        return read_magnetic_tile(folder, mt_test_normals, mt_split_seed)
    return read_mvtec(folder, dataset)
