"""Models: backbones by name, the SAGAN self-attention block, the anomaly mapping layer, top-k
scoring, ATAC-Net with its zoom pass, and DRA's four-head network."""

from ..config import RunConfig
from ..methods import get_method
from .atacnet import ATACNet, Normalize, Output, SelfAttention, he_init, topk_score
from .backbones import BACKBONES, Backbone, build_backbone
from .dra import DRANet, DRAOutput


def build_model(cfg: RunConfig) -> "ATACNet | DRANet":
    """The network of ``cfg.method`` on ``cfg.backbone`` with ``cfg.weights``.

    :class:`DRANet` for the ``dra`` recipe (head ``"dra"``), :class:`ATACNet` for every other one.

    Raises:
        ValueError: unknown method or backbone; WeightsError: weights unavailable or unfit.
    """
    if get_method(cfg.method).head == "dra":
        return DRANet(cfg)
    return ATACNet(cfg)


__all__ = ["ATACNet", "BACKBONES", "Backbone", "DRANet", "DRAOutput", "Normalize", "Output",
           "SelfAttention", "build_backbone", "build_model", "he_init", "topk_score"]
