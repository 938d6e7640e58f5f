"""Data: dataset readers, the few-shot protocol, pre-processing, pseudo-anomalies, downloads."""

from .datasets import DataWarning, DatasetIndex, DatasetLayoutError, Sample, load_index, read_magnetic_tile, read_mvtec
from .images import ImageReadError, read_image, read_mask
from .preprocess import Prepared, apply_clahe, prepare
from .pseudo import cutmix
from .splits import Split, SplitError, make_split

__all__ = [
    "DataWarning", "DatasetIndex", "DatasetLayoutError", "ImageReadError", "Prepared", "Sample", "Split", "SplitError",
    "apply_clahe", "cutmix", "load_index", "make_split", "prepare", "read_image",
    "read_magnetic_tile", "read_mask", "read_mvtec",
]
