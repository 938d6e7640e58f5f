"""The few-shot protocol: which anomalies are known at training time, and what is left to test.

General setting (DevNet, Pang et al. 2021; DRA, Ding et al. 2022): the anomalous test images are
sorted by path, shuffled with ``numpy.random.default_rng(seed)``, and the first ``max(M, 10)`` are
drawn and removed from the test set; the first M of them are the training anomalies. So the one-shot
run uses the first anomaly of the ten-shot draw and both share one test set (NOTES.md).

Small categories: when a category has fewer anomalies than that draw needs (``max(M, 10) + 1``, so
that one is left to test), the draw shrinks to the M training anomalies — they leave the test set,
the others stay (the same M as the full draw's first M; test sets then differ between shots). The
split record says so (``draw``, written only then) and a :class:`~atac.data.datasets.DataWarning`
says so. The benchmark categories (MVTec AD, Magnetic Tile, the synthetic data) have enough
anomalies: their splits are the shared draw's.

Hard setting (DRA's "hard" protocol, supplement Table 2): the drawn anomalies all come from one
known defect type, and that whole type is removed from the test set.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass

import numpy as np

from .datasets import DatasetIndex, DataWarning, Sample, some

DRAW = 10  # size of the shared draw: one-shot takes the first of the ten-shot draw


class SplitError(ValueError):
    """The few-shot split cannot be made (too few anomalies, unknown type, one-class test set)."""


@dataclass
class Split:
    """A few-shot split: training normals, the M training anomalies, and the test set.

    ``draw``: the number of anomalies drawn out of the test set when it is not the protocol's
    ``max(shots, DRAW)`` (a small category: ``shots``), else None.
    """

    train_normal: list[Sample]
    train_anomalous: list[Sample]
    test: list[Sample]
    setting: str
    shots: int
    seed: int
    known_type: str | None = None
    draw: int | None = None

    def record(self) -> dict:
        """The files used, relative to the dataset folder (goes into metrics.json); ``draw`` only
        when the draw shrank (so that every other record is what it always was)."""
        return {"setting": self.setting, "shots": self.shots, "seed": self.seed,
                "known_type": self.known_type,
                **({"draw": self.draw} if self.draw is not None else {}),
                "train_normal": [s.rel for s in self.train_normal],
                "train_anomalous": [s.rel for s in self.train_anomalous],
                "test": [s.rel for s in self.test]}


def make_split(index: DatasetIndex, shots: int, seed: int, setting: str = "general",
               known_type: str | None = None) -> Split:
    """Draw the few-shot split (see the module docstring).

    Warns:
        DataWarning: the draw shrank to the shots (a small category; see the module docstring).
    Raises:
        SplitError: ``shots`` larger than the anomalies available (names the category and type),
            an unknown ``known_type`` (lists the types), or a test set left with one class only.
    """
    if shots < 1:
        raise SplitError(f"shots must be >= 1, got {shots}")
    anomalies = sorted((s for s in index.test if s.label == 1), key=lambda s: s.path)
    normals = [s for s in index.test if s.label == 0]
    where = f"{index.dataset}/{index.category}"
    if setting == "general":
        pool = anomalies
    elif setting == "hard":
        types = index.defect_types
        if known_type not in types:
            raise SplitError(f"known_type '{known_type}' is not a defect type of {where}; "
                             f"its types are: {', '.join(types)}")
        pool = [s for s in anomalies if s.defect_type == known_type]
    else:
        raise SplitError(f"setting must be 'general' or 'hard', got '{setting}'")
    if len(pool) < shots:
        what = f"of type '{known_type}' " if setting == "hard" else ""
        raise SplitError(f"shots={shots} but {where} has only {len(pool)} anomalous test images "
                         f"{what}to draw from")
    n_draw = min(max(shots, DRAW), len(pool))
    shrunk = setting == "general" and len(pool) < max(shots, DRAW) + 1
    if shrunk:
        n_draw = shots
    order = np.random.default_rng(seed).permutation(len(pool))
    drawn = [pool[i] for i in order[:n_draw]]
    if setting == "hard":
        removed = {s.path for s in pool}  # the whole known type leaves the test set
    else:
        removed = {s.path for s in drawn}
    test = normals + [s for s in anomalies if s.path not in removed]
    test.sort(key=lambda s: s.path)
    n_anom = sum(s.label for s in test)
    if n_anom == 0 or n_anom == len(test):
        only = "normal" if n_anom == 0 else "anomalous"
        why = (f"the whole type '{known_type}' leaves the test set" if setting == "hard" else
               f"its {len(pool)} anomalies are all training anomalies" if shrunk else
               f"the protocol draws max(shots, {DRAW}) = {n_draw} of its {len(pool)} anomalies out of "
               "the test set")
        raise SplitError(f"the test set of {where} ({setting} setting, shots={shots}) would hold only "
                         f"{only} images ({why}); AUROC is undefined on one class")
    if shrunk:
        warnings.warn(f"{where} has {len(pool)} anomalous test images, fewer than the shared draw of "
                      f"max(shots, {DRAW}) + 1 = {max(shots, DRAW) + 1} needs: the draw shrinks to the "
                      f"{shots} training anomalies and the other {len(pool) - shots} stay in the test set "
                      f"(the split records draw = {shots})", DataWarning, stacklevel=2)
    split = Split(list(index.train), drawn[:shots], test, setting, shots, seed, known_type,
                  n_draw if shrunk else None)
    train_paths = {s.path for s in split.train_normal} | {s.path for s in split.train_anomalous}
    assert not train_paths & {s.path for s in test}, "a file is both in training and test"
    return split


def split_from_record(index: DatasetIndex, record: dict, where: str) -> Split:
    """The split that a record names (:meth:`Split.record`: files relative to the dataset folder),
    its files looked up in ``index``.

    Raises:
        SplitError: the record has no file lists, or ``index`` lacks some of its files (names them,
            the dataset folder and ``where``, the file the record came from).
    """
    by_rel = {s.rel: s for s in index.train + index.test}
    lists = {k: record.get(k) for k in ("train_normal", "train_anomalous", "test")}
    if not all(isinstance(v, list) for v in lists.values()) or "setting" not in record:
        raise SplitError(f"{where}: the recorded split has no setting or file lists")
    missing = [rel for files in lists.values() for rel in files if rel not in by_rel]
    if missing:
        raise SplitError(f"{where}: {len(missing)} file(s) of the recorded split are not in "
                         f"{index.root}: {some(missing)}")
    return Split(*([by_rel[rel] for rel in lists[k]] for k in ("train_normal", "train_anomalous", "test")),
                 record["setting"], record["shots"], record["seed"], record.get("known_type"),
                 record.get("draw"))


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprints(samples: list[Sample]) -> list[dict]:
    """What identifies each file, wherever it is later found: ``rel`` (relative to its dataset
    folder), ``path`` (absolute, symlinks resolved), ``size`` (bytes) and ``sha256`` (of its bytes).

    Raises:
        OSError: a file cannot be read.
    """
    return [{"rel": s.rel, "path": os.path.realpath(s.path), "size": os.path.getsize(s.path),
             "sha256": _sha256(s.path)} for s in samples]


def same_files(test: list[Sample], known: list[dict]) -> list[tuple[Sample, dict, str]]:
    """The files of ``test`` that are files of ``known`` (:func:`fingerprints`): ``(sample, known
    file, how)``, ``how`` being ``"the same file"`` (equal paths once symlinks are resolved) or ``"a
    byte-identical copy"`` (equal size and SHA-256; only files of a known size are read).

    Raises:
        OSError: a test file cannot be read.
    """
    by_path = {k["path"]: k for k in known}
    by_size: dict[int, list[dict]] = {}
    for k in known:
        by_size.setdefault(k["size"], []).append(k)
    found = []
    for s in test:
        real = os.path.realpath(s.path)
        if real in by_path:
            found.append((s, by_path[real], "the same file"))
            continue
        candidates = by_size.get(os.path.getsize(real), [])
        if candidates:
            digest = _sha256(real)
            match = next((k for k in candidates if k["sha256"] == digest), None)
            if match is not None:
                found.append((s, match, "a byte-identical copy"))
    return found
