"""Models: backbones by name, the SAGAN self-attention block, the anomaly mapping layer, top-k
scoring, and ATAC-Net with its zoom pass."""

from .atacnet import ATACNet, Normalize, Output, SelfAttention, build_model, he_init, topk_score
from .backbones import BACKBONES, Backbone, build_backbone

__all__ = ["ATACNet", "BACKBONES", "Backbone", "Normalize", "Output", "SelfAttention", "build_backbone",
           "build_model", "he_init", "topk_score"]
