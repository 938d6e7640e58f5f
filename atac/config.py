"""Run configuration: one dataclass, YAML on disk, named presets.

Every choice the paper leaves open is a field here, with the default given in
``shared/paper/NOTES.md`` (the lineage: DevNet, arXiv 2108.00462; DRA, CVPR 2022). The defaults
are the paper's budget (preset ``paper``); ``cpu`` is a budget that finishes in minutes on two CPU
cores.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

DATASETS = ("synthetic", "mvtec_ad", "magnetic_tile")
BACKBONES = ("resnet50", "resnet18", "mobilenet_v2")
PYRAMID_RESIZE = ("bilinear", "nearest", "area")
# Fields read by the ``dra`` method only. ``to_dict`` writes them for DRA runs only, so that the
# config dict (records, checkpoints, sweep run ids) of every other method is what it was before
# these fields existed; ``from_dict`` fills them from the defaults when absent.
DRA_FIELDS = ("dra_scales", "dra_ref_size", "dra_pyramid_resize", "dra_residual_conv",
              "dra_holistic_hidden")
SETTINGS = ("general", "hard")
# Readings of what the supplement leaves open (NOTES.md, "Readings the supplement leaves open"), each
# a field whose default is the literal reading that every recorded run used. ``to_dict`` writes one
# only when it differs from its default, so the config dict (records, checkpoints, sweep run ids)
# of a run at the literal readings is what it was before these fields existed; an absent field in a
# record therefore means its default.
READING_FIELDS = {"zoom_loss": "mean", "batchnorm": "train", "augment": "none",
                  "batch_mix": "half_anomalies", "rng_streams": "legacy"}
READING_HELP = {
    "zoom_loss": "the loss of a zoom recipe: on the mean of the two scores (Algorithm 2, literal), on each "
                 "view (per_view), or on the full view plus the mean (full_plus_mean)",
    "batchnorm": "BatchNorm in training: train mode in every pass (literal; two batch statistics per step "
                 "in a zoom recipe) or frozen (the backbone's running statistics, as at test time)",
    "batch_mix": "what a batch holds: half real anomalies and half normals, of which pseudo_prob become "
                 "pseudo-anomalies (literal), or half normals (half_normals, as DevNet's batches)",
    "augment": "training augmentation: none (literal) or rotate (a random angle in [-180, 180) degrees, "
               "as DevNet's and DRA's code)",
    "rng_streams": "random streams of a seed: legacy (batches from seed, loss reference from seed + 1, so "
                   "seeds s and s + 1 share a stream) or independent (numpy SeedSequence(seed))",
}
BATCHNORMS = ("train", "frozen")
AUGMENTS = ("none", "rotate")
BATCH_MIXES = ("half_anomalies", "half_normals")
RNG_STREAMS = ("legacy", "independent")
# Fields that say where and how a run executes, not what it computes (see identity()).
EXECUTION_FIELDS = ("device", "eval_batch_size", "extra", "amp", "compile", "data_root")


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader with two changes for hand-written config and sweep files: a plain
    number in exponent form (``1e-3``, ``2E+4``, ``1.0e5``) is a float, as YAML 1.2 reads it
    (PyYAML follows YAML 1.1, which reads those as strings); a key given twice in one mapping is
    an error naming it (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges, then may override
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in first:
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping", node.start_mark,
                            f"found the key {key!r} twice (first on line {first[key] + 1})",
                            key_node.start_mark)
                    first[key] = key_node.start_mark.line
                except TypeError:  # an unhashable key: PyYAML's own error follows
                    continue
        return super().construct_mapping(node, deep)


StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"), list("-+.0123456789"))


def load_yaml(path: str | Path) -> Any:
    """The contents of a YAML file, read with :class:`StrictLoader`.

    Raises:
        OSError, UnicodeDecodeError: the file cannot be read as UTF-8 text.
        yaml.YAMLError: not valid YAML, or a key given twice (the message names the key, the file
            and both lines).
    """
    with open(path, encoding="utf-8") as f:  # a file, so that error marks name it
        return yaml.load(f, Loader=StrictLoader)


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs the same run: the config dict (:meth:`RunConfig.to_dict`) without the
    execution details, :data:`EXECUTION_FIELDS`.

    Identity: every field that changes what is computed — data, split, model, loss, schedule,
    pre-processing, seeds and readings. Execution details: ``device`` (a sweep worker's
    ``cuda:3``), ``data_root`` (where the same images are found), ``eval_batch_size``, ``extra``
    (notes), and ``amp`` and ``compile`` at their defaults (``auto``, false); a non-default ``amp``
    or ``compile`` is identity, since it changes the arithmetic and so the scores. The number of
    threads is no config field (a record's ``torch_threads``) and not identity either.

    The one test of "same run" (:func:`same_run`): a sweep's run ids (their hash) and its "already
    recorded" check, ``atac train``'s "this folder already holds this run" check, and resuming from
    a checkpoint (a config that differs in identity is refused; execution details may change).

    Raises:
        ValueError: ``config`` is not a mapping.
    """
    if not isinstance(config, dict):
        raise ValueError(f"a record's config must be a mapping of fields (got {type(config).__name__})")
    out = {k: v for k, v in config.items() if k not in EXECUTION_FIELDS}
    if config.get("amp", "auto") != "auto":
        out["amp"] = config["amp"]
    if config.get("compile", False):
        out["compile"] = True
    return out


def identity_key(config: dict[str, Any], without: tuple[str, ...] = ()) -> str:
    """:func:`identity` as text, the one spelling of it: JSON with sorted keys (a value JSON lacks,
    e.g. a set, as a list), the fields of ``without`` left out. Equal for two configs exactly when
    they are one run (:func:`same_run`; with ``without``, one run but for those fields). A sweep's
    run id hashes it, ``atac.reporting``'s groups and sweep progress compare it (raises
    :func:`identity`'s ``ValueError``)."""
    ident = identity(config)
    return json.dumps({k: v for k, v in ident.items() if k not in without}, sort_keys=True, default=list)


def same_run(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two config dicts are one run: equal :func:`identity` (raises its ``ValueError``)."""
    return identity(a) == identity(b)


def identity_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The fields, sorted, where the :func:`identity` of two config dicts differ (raises its
    ``ValueError``)."""
    ia, ib = identity(a), identity(b)
    return sorted(k for k in ia.keys() | ib.keys() if ia.get(k) != ib.get(k))


NORMALIZATIONS = {
    # Supplement §2 prints these and calls them ImageNet's; they are OpenAI CLIP's constants.
    "paper": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass
class RunConfig:
    """Everything one training + evaluation run depends on.

    Field groups: data and protocol, model, crop (Algorithm 1), loss, optimisation (Algorithm 2),
    pre-processing (supplement §2), pseudo-anomalies, and run control.
    """

    # --- data and few-shot protocol (NOTES.md "Evaluation protocol") ---
    dataset: str = "synthetic"          # synthetic | mvtec_ad | magnetic_tile
    category: str = "weave"             # MVTec category / synthetic category; ignored by magnetic_tile
    data_root: str | None = None        # folder holding <dataset>/...; None: $ATAC_DATA_ROOT or the cache
    setting: str = "general"            # general (M anomalies of any type) | hard (one known type)
    known_type: str | None = None       # hard setting: the defect type the M anomalies come from
    shots: int = 10                     # M, the number of real anomalies used for training
    mt_test_normals: float = 0.2        # magnetic_tile: fraction of MT_Free held out as test normals
    mt_split_seed: int = 0              # magnetic_tile: seed of that (fixed, seed-independent) split
    mask_threshold: int = 127           # masks: pixel > threshold is anomalous (Magnetic Tile is soft)

    # --- model ---
    method: str = "atac"                # a recipe of atac.methods (atac, deviation, ..., dra)
    backbone: str = "resnet50"          # resnet50 (paper) | resnet18 | mobilenet_v2
    weights: str = "imagenet"           # imagenet | none | path to a state-dict file
    topk_ratio: float = 0.1             # top-k scoring: mean of the top 10% |scores| (DevNet)
    attn_reduction: int = 8             # SAGAN query/key channel reduction

    # --- Algorithm 1: attention crop ---
    crop_threshold: float = 0.5         # w: keep pixels with A_up >= w * max(A); not printed by the paper
    crop_full_fraction: float = 0.95    # a box covering >= this fraction of the image means "no zoom"

    # --- loss ---
    dev_margin: float = 5.0             # deviation loss margin k
    dev_ref_size: int = 5000            # reference draws from N(0, 1)
    ce_weights: tuple[float, float] = (0.5, 20.0)  # weighted CE: (genuine, anomaly), supplement §3 step II
    zoom_loss: str = "mean"             # zoom recipes: loss on the mean of the two scores (Alg. 2, literal)
                                        # | per_view (mean of each view's loss) | full_plus_mean

    # --- Algorithm 2: optimisation (lineage defaults, DRA code) ---
    epochs: int = 30
    steps_per_epoch: int = 20
    batch_size: int = 48
    lr: float = 2e-4
    weight_decay: float = 1e-5
    lr_step: int = 10                   # StepLR step, in epochs
    lr_gamma: float = 0.1
    grad_clip: float = 1.0
    batchnorm: str = "train"            # train: every pass in train mode (literal; a zoom recipe's two passes
                                        # get two batch statistics) | frozen: the backbone's BatchNorm uses its
                                        # running (ImageNet) statistics in training too, and never updates them
    batch_mix: str = "half_anomalies"   # half_anomalies: half the slots real anomalies, half normals of which
                                        # pseudo_prob become pseudo-anomalies (literal) | half_normals: half
                                        # normals, half anomalies of which pseudo_prob are pseudo (DevNet's half)
    augment: str = "none"               # none (literal) | rotate: each training image turned by a random angle
                                        # in [-180, 180) degrees, as DevNet's and DRA's code do

    # --- DRA (method dra; Ding, Pang, Shen, CVPR 2022; see atac.models.dra) ---
    dra_scales: int = 2                 # feature-pyramid scales: input sizes S, S/2, ...; head scores averaged
    dra_ref_size: int = 5               # reference normals: drawn per batch (training), one fixed draw (test)
    dra_pyramid_resize: str = "bilinear"  # how the image is downsized for scale s > 0 (bilinear | nearest | area)
    dra_residual_conv: bool = True      # residual head: 3x3 conv + BN + ReLU before its 1x1 scoring layer
    dra_holistic_hidden: int = 256      # normality head: hidden width of its two-layer MLP on pooled features

    # --- pre-processing (supplement §2) ---
    image_size: int = 224
    clahe: bool = True
    clahe_clip: float = 2.0
    clahe_tile: int = 8
    normalization: str = "paper"        # paper (printed, = CLIP's) | imagenet

    # --- pseudo-anomalies (CutMix as DRA does it) ---
    pseudo_anomaly: bool = True
    pseudo_prob: float = 0.5            # each normal slot of a batch becomes a pseudo-anomaly w.p. p
    patch_source: str = "same"          # same (DRA's cut-and-paste) | other (Yun et al.'s CutMix)
    patch_area: tuple[float, float] = (0.02, 0.15)
    patch_ratio: tuple[float, float] = (0.3, 3.3)
    patch_jitter: float = 0.1

    # --- run control ---
    seed: int = 0
    rng_streams: str = "legacy"         # legacy: batches from seed, loss reference from seed + 1 (seed s + 1's
                                        # batches are seed s's references) | independent: SeedSequence(seed)
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    eval_batch_size: int = 32
    amp: str = "auto"                   # auto: bf16 autocast on CUDA, float32 on CPU | off | bf16
    compile: bool = False               # torch.compile the network for training (GPU path; optional)
    preset: str = "paper"               # the budget preset these values started from

    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes carried into the record

    # ------------------------------------------------------------------
    def _check_types(self) -> None:
        """Each field must have its default's type (ints may stand for floats); names the field."""
        optional_str = {"data_root", "known_type"}
        for f in fields(self):
            v, default = getattr(self, f.name), f.default
            if f.name == "extra":
                if not isinstance(v, dict):
                    raise ValueError(f"config field 'extra': must be a mapping (got {v!r})")
                continue
            if f.name in optional_str:
                ok, want = v is None or isinstance(v, str), "a string or null"
            elif isinstance(default, bool):
                ok, want = isinstance(v, bool), "true or false"
            elif isinstance(default, int):
                ok, want = isinstance(v, int) and not isinstance(v, bool), "a whole number"
            elif isinstance(default, float):
                ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                want = "a finite number"
            elif isinstance(default, tuple):
                ok = (isinstance(v, (tuple, list)) and len(v) == len(default)
                      and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                              and math.isfinite(x) for x in v))
                want = f"a list of {len(default)} finite numbers"
            else:
                ok, want = isinstance(v, str), "a string"
            if not ok:
                raise ValueError(f"config field '{f.name}': must be {want} (got {v!r})")

    def validate(self) -> "RunConfig":
        """Check field types and values; raise ``ValueError`` naming the field. Returns self."""
        self._check_types()

        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"config field '{name}': {why} (got {getattr(self, name)!r})")

        if self.dataset not in DATASETS:
            raise bad("dataset", f"must be one of {', '.join(DATASETS)}")
        if not self.category or self.category in (".", "..") or "/" in self.category:
            raise bad("category", "must be a category name (a folder name, no path)")
        if self.setting not in SETTINGS:
            raise bad("setting", "must be 'general' or 'hard'")
        if self.setting == "hard" and not self.known_type:
            raise ValueError("config field 'known_type': the hard setting needs --known-type TYPE")
        if self.setting == "general" and self.known_type:
            raise bad("known_type", "is only used with --setting hard")
        if self.shots < 1:
            raise bad("shots", "must be >= 1")
        if not 0 <= self.seed < 2**32:
            raise bad("seed", "must be in [0, 2**32)")
        if self.normalization not in NORMALIZATIONS:
            raise bad("normalization", f"must be one of {', '.join(NORMALIZATIONS)}")
        for name in ("crop_threshold", "crop_full_fraction", "topk_ratio", "lr_gamma"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise bad(name, "must be in (0, 1]")
        for name in ("epochs", "steps_per_epoch", "batch_size", "image_size", "eval_batch_size",
                     "lr_step", "attn_reduction", "clahe_tile"):
            if getattr(self, name) < 1:
                raise bad(name, "must be >= 1")
        for name in ("lr", "grad_clip", "dev_margin", "clahe_clip"):
            if getattr(self, name) <= 0:
                raise bad(name, "must be > 0")
        if self.weight_decay < 0:
            raise bad("weight_decay", "must be >= 0")
        if self.dev_ref_size < 2:
            raise bad("dev_ref_size", "must be >= 2 (a reference needs a spread)")
        if self.batch_size < 2:
            raise bad("batch_size", "must be >= 2 (a balanced batch holds normals and anomalies)")
        if self.image_size < 32:
            raise bad("image_size", "must be >= 32 pixels")
        if not 0 <= self.mask_threshold < 255:
            raise bad("mask_threshold", "must be in [0, 255) (0-255 scale)")
        if self.patch_source not in ("same", "other"):
            raise bad("patch_source", "must be 'same' or 'other'")
        if not 0.0 <= self.pseudo_prob <= 1.0:
            raise bad("pseudo_prob", "must be in [0, 1]")
        lo, hi = self.patch_area
        if not 0.0 < lo <= hi < 1.0:
            raise bad("patch_area", "must be [low, high] with 0 < low <= high < 1 (image-area fractions)")
        lo, hi = self.patch_ratio
        if not 0.0 < lo <= hi:
            raise bad("patch_ratio", "must be [low, high] with 0 < low <= high (aspect ratios)")
        if not 0.0 <= self.patch_jitter <= 0.5:
            raise bad("patch_jitter", "must be in [0, 0.5]")
        if any(w <= 0 for w in self.ce_weights):
            raise bad("ce_weights", "must be two positive weights (genuine, anomaly)")
        if not 0.0 < self.mt_test_normals < 1.0:
            raise bad("mt_test_normals", "must be in (0, 1)")
        if self.amp not in ("auto", "off", "bf16"):
            raise bad("amp", "must be auto, off or bf16")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise bad("device", "must be auto, cpu, cuda or cuda:N")
        if not 1 <= self.dra_scales <= 4:
            raise bad("dra_scales", "must be 1, 2, 3 or 4")
        for name in ("dra_ref_size", "dra_holistic_hidden"):
            if getattr(self, name) < 1:
                raise bad(name, "must be >= 1")
        for name, allowed in (("zoom_loss", ("mean", "per_view", "full_plus_mean")), ("batchnorm", BATCHNORMS), ("augment", AUGMENTS),
                              ("batch_mix", BATCH_MIXES), ("rng_streams", RNG_STREAMS)):
            if getattr(self, name) not in allowed:
                raise bad(name, f"must be one of {', '.join(allowed)}")
        if self.method == "dra" and self.batchnorm != "train":
            raise bad("batchnorm", "is not read by dra (its own network)")
        if self.method != "atac" and self.zoom_loss != "mean":
            raise bad("zoom_loss", "is read by a recipe with a zoomed view (atac) only")
        if self.dra_pyramid_resize not in PYRAMID_RESIZE:
            raise bad("dra_pyramid_resize", f"must be one of {', '.join(PYRAMID_RESIZE)}")
        if self.method == "dra" and self.image_size // 2 ** (self.dra_scales - 1) < 32:
            raise bad("dra_scales", f"the smallest pyramid scale of image_size={self.image_size} would "
                      "be under 32 pixels; use fewer scales or a larger image_size")
        return self

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML/JSON-safe dict (tuples become lists).

        The DRA-only fields (:data:`DRA_FIELDS`) are written for ``method == "dra"`` only, and the
        reading fields (:data:`READING_FIELDS`) only where they differ from the literal reading: a
        run's dict is the same as before those fields existed (same records, same resume checks,
        same sweep run ids); :meth:`from_dict` gives absent fields their defaults.
        """
        d = dataclasses.asdict(self)
        if self.method != "dra":
            d = {k: v for k, v in d.items() if k not in DRA_FIELDS}
        d = {k: v for k, v in d.items() if READING_FIELDS.get(k, object()) != v}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        """Build from a dict; unknown keys raise ``ValueError`` naming them."""
        names = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)}; "
                             f"valid fields: {', '.join(sorted(names))}")
        kwargs = {}
        if d.get("amp") is False:  # YAML reads an unquoted `off` as false
            d = {**d, "amp": "off"}
        for k, v in d.items():
            default = getattr(cls(), k)
            if isinstance(default, tuple) and isinstance(v, list):
                v = tuple(v)
            kwargs[k] = v
        return cls(**kwargs)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path, raw: bool = False) -> "RunConfig | dict[str, Any]":
        """Load a YAML file (same keys as the dataclass; dashes allowed for underscores), read with
        :func:`load_yaml` (``lr: 1e-3`` is a number; a key given twice is an error).

        Fields the file does not set come from its ``preset`` (default: the dataclass defaults).
        With ``raw=True`` return only the file's own (checked) keys as a dict.
        """
        path = Path(path)
        try:
            data = load_yaml(path) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read config file {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"config file {path}: expected a mapping of field: value")
        bad_keys = [k for k in data if not isinstance(k, str)]
        if bad_keys:
            raise ValueError(f"config file {path}: keys must be field names, got {bad_keys[0]!r}")
        names = [k.replace("-", "_") for k in data]
        twice = sorted({k for k in names if names.count(k) > 1})
        if twice:
            raise ValueError(f"config file {path}: the field '{twice[0]}' is given twice "
                             "(once with dashes, once with underscores)")
        data = {k.replace("-", "_"): v for k, v in data.items()}
        if "preset" in data and not isinstance(data["preset"], str):
            raise ValueError(f"config file {path}: 'preset' must be a name ({', '.join(PRESETS)})")
        if raw:
            cls.from_dict(data)  # reports unknown keys
            return data
        return merge(data.get("preset"), {k: v for k, v in data.items() if k != "preset"})


# Budget presets. "paper" is the dataclass defaults (lineage hyper-parameters, ResNet-50, 224 px).
# "cpu" keeps the paper's schedule (20 steps per epoch, learning rate divided by 10 after 10 epochs)
# cut to 15 epochs of batch 16, so that an ATAC-Net run with MobileNetV2 at 224 px (two backbone
# passes per step) fits in ten minutes on two CPU cores. It was fixed from that compute budget, not
# by watching test AUROC.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": {"epochs": 15, "steps_per_epoch": 20, "batch_size": 16, "lr_step": 10},
    # a few seconds, offline: for tests, the CI profile of the book and a first try (random weights)
    "smoke": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "image_size": 64,
              "eval_batch_size": 16, "backbone": "mobilenet_v2", "weights": "none"},
    # DRA as its paper ran it (Ding, Pang, Shen, CVPR 2022, implementation details; schedule and
    # optimiser as NOTES.md gives the lineage's): ResNet-18 (ImageNet) at 448 px with a two-scale
    # pyramid (448 and 224), five reference normals, ImageNet normalisation and no CLAHE (DRA's
    # pre-processing, not ATAC-Net's), 30 epochs of 20 steps of batch 48, Adam 2e-4 / weight decay
    # 1e-5 (its code; its text prints 1e-3 / 1e-2), learning rate / 10 after 10 epochs. The image
    # resize stays atac's (bicubic, Pillow); pseudo-anomalies, top-k and loss as in every recipe.
    "dra": {"method": "dra", "backbone": "resnet18", "image_size": 448, "normalization": "imagenet",
            "clahe": False, "epochs": 30, "steps_per_epoch": 20, "batch_size": 48, "lr": 2e-4,
            "weight_decay": 1e-5, "lr_step": 10, "lr_gamma": 0.1, "dra_scales": 2, "dra_ref_size": 5},
}


def preset(name: str) -> RunConfig:
    """The config of preset ``name`` (``paper``, ``cpu``, ``smoke``, ``dra``); ``ValueError`` if unknown."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    return RunConfig(preset=name, **PRESETS[name])


def given(**fields: Any) -> dict[str, Any]:
    """The fields whose value is not None, as a layer for :func:`merge`: a book chapter's parameters
    and a command line's flags leave a field at None to mean "the preset's".

    Example:
        >>> given(epochs=None, seed=3)
        {'seed': 3}
    """
    return {k: v for k, v in fields.items() if v is not None}


def merge(preset_name: str | None, *layers: dict[str, Any]) -> RunConfig:
    """A config in layers: the fields of preset ``preset_name`` (None: ``paper``), then each
    layer's fields over them in turn — a config file's, then overrides (command-line flags, the
    values of a sweep's grid block). ``preset`` names the preset unless a layer sets it (a sweep
    block's ``preset: dra`` only labels its runs). The result is not validated.

    Used by :meth:`RunConfig.load`, ``atac train`` (:func:`atac.cli.config_from_args`) and sweep
    expansion (:func:`atac.sweep.expand`).

    Raises:
        ValueError: an unknown preset or field (named).
    """
    d = preset(preset_name or "paper").to_dict()
    for layer in layers:
        d.update(layer)
    return RunConfig.from_dict(d)
