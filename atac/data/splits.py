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

import warnings
from dataclasses import dataclass

import numpy as np

from .datasets import DatasetIndex, DataWarning, Sample

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
