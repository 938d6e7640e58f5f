"""The ablation ladder (supplement §3, Table 1) as named recipes on one training road.

A recipe says which pieces the network has (self-attention block, zoom pass, classification head)
and which loss trains it; the model, the data and the training loop are shared. Step IV
(``gradcam_zoom``) is the one two-stage recipe: ``atac.run`` trains a step-III network, crops
every image around its Grad-CAM activations (:mod:`atac.gradcam`) and trains a second network of the
same recipe on the crops, with the same ``fit``.

Beside the ladder, ``dra`` is the lineage's baseline DRA (Ding, Pang, Shen, CVPR 2022) on the same
road: its own network (:class:`atac.models.dra.DRANet`, four heads on one backbone), trained by the
same ``fit`` on the same balanced batches, each head with the deviation loss.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    name: str
    step: str          # the supplement's ladder step ("baseline": a lineage method, not a ladder step)
    summary: str
    attention: bool    # SAGAN self-attention block σ before the anomaly mapping layer
    zoom: bool         # Algorithm 1: score the attention crop too, final score = mean of the two
    head: str          # "topk": top-k |score| (DevNet); "classifier": top-k pooled map + linear -> logit;
                       # "dra": DRA's four heads (atac.models.dra.DRANet)
    loss: str          # "deviation" | "bce" | "weighted_ce"
    two_stage: bool = False  # step IV: train, crop around Grad-CAM of the full-image score, retrain


METHODS: dict[str, Recipe] = {r.name: r for r in [
    Recipe("cutmix_bce", "I", "ResNet + anomaly mapping layer + classification head, CutMix "
           "pseudo-anomalies, binary cross-entropy", False, False, "classifier", "bce"),
    Recipe("weighted_ce", "II", "as I, with class-weighted cross-entropy (anomaly 20, genuine 0.5)",
           False, False, "classifier", "weighted_ce"),
    Recipe("deviation", "III", "classification head removed; top-k score of the mapping layer; "
           "deviation loss (= DevNet on this backbone)", False, False, "topk", "deviation"),
    Recipe("gradcam_zoom", "IV", "train III, crop every image around the Grad-CAM activations of its "
           "score, retrain a fresh III network on the crops; score = mean of the full-image and crop "
           "scores (not in Table 1)", False, False, "topk", "deviation", two_stage=True),
    Recipe("atac", "V", "ATAC-Net: self-attention block, attention crop (zoomed view) scored by the "
           "same network, mean of the two scores, deviation loss", True, True, "topk", "deviation"),
    Recipe("dra", "baseline", "DRA (CVPR 2022): one backbone, four heads (seen, pseudo and latent-residual "
           "abnormality, top-k scored; holistic normality), each trained with the deviation loss; score "
           "= seen + pseudo + residual - normality; not a ladder step", False, False, "dra", "deviation"),
]}


def get_method(name: str) -> Recipe:
    """The recipe called ``name``; ``ValueError`` listing the valid names otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method '{name}'; choose one of {', '.join(METHODS)}")
    return METHODS[name]
