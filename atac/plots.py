"""Figures of runs that the book uses: image grids, attention maps and zoomed crops, score maps,
ROC curves, score histograms, loss curves. Everything here draws; the text pieces that go with a
figure on a page are :mod:`atac.book`'s, charts of measured numbers :mod:`atac.charts`'.

Every figure function returns a :class:`matplotlib.figure.Figure` built without ``pyplot`` (no global
figure state, no ``plt.show``), so it works under any backend: a notebook displays the returned
figure, a script calls ``fig.savefig(path)``. Nothing here computes a metric or a crop of its own:
the crop is :func:`atac.cropping.crop_and_resize` (Algorithm 1 of the supplement), the upsampling
of attention maps is :func:`atac.evaluate.upsample_maps`, and the ROC curve is scikit-learn's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from sklearn.metrics import roc_auc_score, roc_curve

from .cropping import crop_and_resize
from .evaluate import upsample_maps

NORMAL_COLOR = "tab:blue"
ANOMALY_COLOR = "tab:red"
BOX_COLOR = "cyan"
MASK_COLOR = "lime"


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _labels(labels, n: int) -> np.ndarray:
    y = _np(labels).astype(int).ravel()
    if y.shape != (n,):
        raise ValueError(f"expected {n} labels, got {y.size}")
    return y


def _hwc(img: torch.Tensor) -> np.ndarray:
    """(3, S, S) uint8 tensor -> (S, S, 3) uint8 array for ``imshow``."""
    return img.permute(1, 2, 0).cpu().numpy()


def _uint8_images(images, what: str = "images") -> torch.Tensor:
    """(N, 3, S, S) uint8 or float-in-[0, 1] images -> uint8 tensor (N, 3, S, S)."""
    imgs = torch.as_tensor(_np(images))
    if imgs.ndim != 4 or imgs.shape[1] != 3 or len(imgs) == 0:
        raise ValueError(f"{what} must be (N>0, 3, S, S), got {tuple(imgs.shape)}")
    if imgs.is_floating_point():
        imgs = (imgs.clamp(0, 1) * 255).round().to(torch.uint8)
    return imgs


def _draw_box(ax, box, color: str = BOX_COLOR, lw: float = 1.5, ls: str = "-") -> None:
    x0, y0, x1, y1 = (float(v) for v in box)
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=color,
                           linewidth=lw, linestyle=ls))


def image_grid(images, titles: Sequence[str] | None = None, labels=None, ncols: int = 8,
               size: float = 1.6) -> Figure:
    """A plain grid of images (e.g. training normals, the M known anomalies, one training batch).

    Args:
        images: (N, 3, S, S) uint8, or float in [0, 1] (converted to uint8 for display).
        titles: N strings shown above the images, or None.
        labels: (N,) 0/1, or None; colours the titles (blue normal, red anomalous).
        ncols: images per row.
        size: inches per image.
    Returns:
        A Figure of ceil(N / ncols) rows; unused axes are hidden.
    Raises:
        ValueError: N is 0 or images are not (N, 3, S, S).
    """
    imgs = _uint8_images(images)
    n = len(imgs)
    y = _labels(labels, n) if labels is not None else None
    if titles is not None and len(titles) != n:
        raise ValueError(f"expected {n} titles, got {len(titles)}")
    cols = max(1, min(ncols, n))
    rows = -(-n // cols)
    fig = Figure(figsize=(size * cols, size * rows + (0.25 * rows if titles is not None else 0)),
                 layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n:
            ax.set_visible(False)
            continue
        ax.imshow(_hwc(imgs[k]))
        if titles is not None:
            ax.set_title(str(titles[k]), fontsize=8,
                         color="black" if y is None else (ANOMALY_COLOR if y[k] else NORMAL_COLOR))
    return fig


def _label_panel(ax, i: int, y, titles) -> None:
    """Title a column's top panel: "anomalous"/"normal" (coloured) and the column's own title."""
    parts = []
    if y is not None:
        parts.append("anomalous" if y[i] else "normal")
    if titles is not None:
        parts.append(str(titles[i]))
    ax.set_title("\n".join(parts), fontsize=8,
                 color="black" if y is None else (ANOMALY_COLOR if y[i] else NORMAL_COLOR))


def attention_grid(images, attention, boxes=None, labels=None, titles: Sequence[str] | None = None,
                   masks=None, zoom=None, map_name: str = "attention") -> Figure:
    """Per image: the input, its attention map with the crop box, and the zoomed crop.

    One column per image, three rows:

    1. the input image (with the ground-truth mask contour when ``masks`` is given);
    2. the attention map, bilinearly upsampled to the image size and divided by its maximum (the
       normalisation of Algorithm 1, so the colour scale 0..1 is the scale the crop threshold w is
       applied on), overlaid on the image, with the crop box drawn (and the mask contour);
    3. the zoomed view: the image cropped to the box and resized back to S×S with
       :func:`atac.cropping.crop_and_resize` — the input of the network's second pass. Where
       ``zoom`` says False (or there are no boxes) the image itself is shown, marked "no zoom".

    Args:
        images: uint8 (N, 3, S, S) tensor or array (grayscale images replicated to 3 channels).
        attention: (N, h, w) attention maps (any real values; e.g. ``Predictions.attention``).
        boxes: (N, 4) crop boxes ``(x0, y0, x1, y1)`` in pixel edges (``Predictions.boxes``), or
            None (no zoom pass: row 3 repeats the input).
        labels: (N,) 0 normal / 1 anomalous, or None; shown in the column titles and as the
            title colour (blue normal, red anomalous).
        titles: N strings (e.g. defect types or file names), or None.
        masks: bool (N, 1, S, S) or (N, S, S) ground-truth masks, or None; drawn as contours.
        zoom: bool (N,) (``Predictions.zoom``), or None: then every box is treated as a crop.
        map_name: what the maps are, for the row label (e.g. ``"Grad-CAM"`` for ladder step IV,
            whose ``Predictions.attention`` holds the Grad-CAM maps the crops come from).
    Returns:
        A Figure of 3 rows × N columns.
    Raises:
        ValueError: N is 0, or the arguments disagree on N, or images are not (N, 3, S, S).
    """
    imgs = torch.as_tensor(_np(images))
    if imgs.ndim != 4 or imgs.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, S, S), got {tuple(imgs.shape)}")
    n, _, S, W = imgs.shape
    if n == 0:
        raise ValueError("attention_grid needs at least one image")
    attn = torch.as_tensor(_np(attention)).float()
    if attn.ndim != 3 or attn.shape[0] != n:
        raise ValueError(f"attention must be (N={n}, h, w), got {tuple(attn.shape)}")
    if S != W:
        raise ValueError(f"images must be square, got {S}x{W}")
    y = _labels(labels, n) if labels is not None else None
    if titles is not None and len(titles) != n:
        raise ValueError(f"expected {n} titles, got {len(titles)}")
    m = None
    if masks is not None:
        m = _np(masks).astype(bool).reshape(n, S, S)

    # attention as Algorithm 1 sees it: upsampled, divided by its maximum (kept in [0, 1] for display)
    up = upsample_maps(attn, S)                                          # (N, S, S)
    peak = up.flatten(1).amax(dim=1).clamp(min=1e-12)[:, None, None]
    up = (up / peak).clamp(0, 1).numpy()

    if boxes is not None:
        b = torch.as_tensor(_np(boxes)).float()
        if b.shape != (n, 4):
            raise ValueError(f"boxes must be (N={n}, 4), got {tuple(b.shape)}")
        z = torch.ones(n, dtype=torch.bool) if zoom is None else torch.as_tensor(_np(zoom)).bool()
        crops = crop_and_resize(imgs, b, z)                              # (N, 3, S, S) uint8
    else:
        b, z, crops = None, torch.zeros(n, dtype=torch.bool), imgs

    fig = Figure(figsize=(2.1 * n, 6.6), layout="constrained")
    axes = fig.subplots(3, n, squeeze=False)
    im = None
    for i in range(n):
        top, mid, bot = axes[0, i], axes[1, i], axes[2, i]
        rgb = _hwc(imgs[i])
        top.imshow(rgb)
        mid.imshow(rgb)
        im = mid.imshow(up[i], cmap="inferno", alpha=0.55, vmin=0, vmax=1)
        if m is not None and m[i].any():
            for ax in (top, mid):
                ax.contour(m[i], levels=[0.5], colors=MASK_COLOR, linewidths=0.9)
        if b is not None and bool(z[i]):
            _draw_box(mid, b[i])
        bot.imshow(_hwc(crops[i]))
        if not bool(z[i]):
            bot.text(0.5, 0.04, "no zoom", transform=bot.transAxes, ha="center", va="bottom",
                     fontsize=8, color="white", bbox={"facecolor": "black", "alpha": 0.6, "pad": 2})
        _label_panel(top, i, y, titles)
        for ax in (top, mid, bot):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("input", fontsize=9)
    axes[1, 0].set_ylabel(f"{map_name} + crop box", fontsize=9)
    axes[2, 0].set_ylabel("zoomed view", fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=axes[1, :].tolist(), shrink=0.8, label="A / max A" if map_name == "attention"
                     else f"{map_name} / max")
    return fig


def roc_curve_figure(labels, scores, label: str = "score") -> Figure:
    """ROC curve(s) of image scores, with the AUROC in the legend.

    Args:
        labels: (N,) 0 normal / 1 anomalous.
        scores: (N,) scores (higher = more anomalous), or a mapping ``{name: (N,) scores}`` to draw
            several curves on one set of axes (e.g. full view, zoomed view, their mean).
        label: legend name when ``scores`` is a single array.
    Returns:
        A Figure with one axes: false-positive rate (x) against true-positive rate (y), and the
        chance diagonal. Curves from :func:`sklearn.metrics.roc_curve`.
    Raises:
        ValueError: the labels hold one class only (the ROC curve is undefined), or lengths differ.
    """
    curves = dict(scores) if isinstance(scores, Mapping) else {label: scores}
    fig = Figure(figsize=(4.2, 4.0), layout="constrained")
    ax = fig.subplots()
    styles = ["-", "--", ":", "-."]  # overlapping curves (equal rankings) stay visible
    for j, (name, s) in enumerate(curves.items()):
        s = _np(s).astype(np.float64).ravel()
        y = _labels(labels, s.size)
        if len(np.unique(y)) < 2:
            raise ValueError("ROC curve is undefined: the labels hold one class only")
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, lw=2.2 - 0.3 * (j % 4), ls=styles[j % 4],
                label=f"{name} (AUROC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def score_histogram(labels, scores, bins: int = 20, title: str | None = None) -> Figure:
    """Histograms of the image scores of normal and anomalous test images, on shared bins.

    Args:
        labels: (N,) 0 normal / 1 anomalous; scores: (N,) image scores.
        bins: number of bins spanning the range of all scores.
        title: optional axes title.
    Returns:
        A Figure with one axes: counts per score bin, normal (blue) and anomalous (red) overlaid.
    """
    s = _np(scores).astype(np.float64).ravel()
    y = _labels(labels, s.size)
    edges = np.histogram_bin_edges(s, bins=bins)
    fig = Figure(figsize=(5.0, 3.2), layout="constrained")
    ax = fig.subplots()
    for cls, name, color in ((0, "normal", NORMAL_COLOR), (1, "anomalous", ANOMALY_COLOR)):
        part = s[y == cls]
        if part.size:
            ax.hist(part, bins=edges, alpha=0.55, color=color, label=f"{name} (n={part.size})")
    ax.set_xlabel("image score")
    ax.set_ylabel("test images")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def loss_curve(epoch_losses: Sequence[float], title: str | None = None) -> Figure:
    """Mean training loss per epoch (``RunResult.losses`` / ``metrics["epoch_losses"]``).

    Args:
        epoch_losses: one value per epoch (epochs numbered from 1).
        title: optional axes title.
    Returns:
        A Figure with one axes: epoch (x) against mean loss (y).
    Raises:
        ValueError: no epochs.
    """
    v = np.asarray(list(epoch_losses), dtype=np.float64)
    if v.size == 0:
        raise ValueError("loss_curve needs at least one epoch")
    fig = Figure(figsize=(5.0, 3.0), layout="constrained")
    ax = fig.subplots()
    ep = np.arange(1, v.size + 1)
    ax.plot(ep, v, marker="o", ms=3, lw=1.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training loss")
    if v.size > 1:
        ax.set_xlim(0.8, v.size + 0.2)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def map_grid(images, maps, labels=None, titles: Sequence[str] | None = None, masks=None,
             map_name: str = "score map", cmap: str = "inferno") -> Figure:
    """Per image: the input, and a map of the network's over it (e.g. the anomaly mapping layer's
    score map of ladder steps I–III, which have no attention crop).

    Two rows: the input (with the ground-truth mask contour when ``masks`` is given), and the map,
    bilinearly upsampled to the image size (:func:`atac.evaluate.upsample_maps`) and overlaid.
    All maps share **one** colour scale (from the smallest to the largest value shown), so a map
    that is high everywhere looks high: a per-image scale would make every map look alike.

    Args:
        images: uint8 (N, 3, S, S) tensor or array.
        maps: (N, h, w) or (N, 1, h, w) real-valued maps (e.g. ``score_map[:, 0]`` of
            :meth:`atac.models.ATACNet.score_pass`, or its absolute value, which top-k scoring ranks).
        labels: (N,) 0 normal / 1 anomalous, or None (title colours, as in :func:`attention_grid`).
        titles: N strings, or None.
        masks: bool (N, 1, S, S) or (N, S, S) ground-truth masks, or None; drawn as contours.
        map_name: the colour bar's and the row's label.
        cmap: a matplotlib colour map name.
    Returns:
        A Figure of 2 rows × N columns and one colour bar.
    Raises:
        ValueError: N is 0, the arguments disagree on N, or images are not square (N, 3, S, S).
    """
    imgs = torch.as_tensor(_np(images))
    if imgs.ndim != 4 or imgs.shape[1] != 3 or imgs.shape[2] != imgs.shape[3]:
        raise ValueError(f"images must be square (N, 3, S, S), got {tuple(imgs.shape)}")
    n, S = imgs.shape[0], imgs.shape[2]
    if n == 0:
        raise ValueError("map_grid needs at least one image")
    mp = torch.as_tensor(_np(maps)).float()
    if mp.ndim == 4 and mp.shape[1] == 1:
        mp = mp[:, 0]
    if mp.ndim != 3 or mp.shape[0] != n:
        raise ValueError(f"maps must be (N={n}, h, w), got {tuple(mp.shape)}")
    y = _labels(labels, n) if labels is not None else None
    if titles is not None and len(titles) != n:
        raise ValueError(f"expected {n} titles, got {len(titles)}")
    m = _np(masks).astype(bool).reshape(n, S, S) if masks is not None else None
    up = upsample_maps(mp, S).numpy()                                    # (N, S, S)
    lo, hi = float(up.min()), float(up.max())
    if hi <= lo:
        hi = lo + 1e-6
    fig = Figure(figsize=(2.1 * n, 4.6), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    im = None
    for i in range(n):
        top, bot = axes[0, i], axes[1, i]
        rgb = _hwc(imgs[i])
        top.imshow(rgb)
        bot.imshow(rgb)
        im = bot.imshow(up[i], cmap=cmap, alpha=0.6, vmin=lo, vmax=hi)
        if m is not None and m[i].any():
            for ax in (top, bot):
                ax.contour(m[i], levels=[0.5], colors=MASK_COLOR, linewidths=0.9)
        _label_panel(top, i, y, titles)
        for ax in (top, bot):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("input", fontsize=9)
    axes[1, 0].set_ylabel(map_name, fontsize=9)
    fig.colorbar(im, ax=axes[1, :].tolist(), shrink=0.8, label=f"{map_name} (one scale for all)")
    return fig


# ------------------------------------------------------------------------------------------------
# Figures of the chapters "Data and pre-processing", "Pseudo-anomalies", "Figure 1, reproduced" and
# "The crop threshold w".

BOX_COLORS = ("cyan", "yellow", "magenta", "lime", "orange", "white")


def image_rows(rows: Mapping[str, object], titles: Sequence[str] | None = None,
               boxes: Mapping[str, object] | None = None, size: float = 1.7) -> Figure:
    """Rows of images that belong together column by column (e.g. one image before and after
    CLAHE; a normal image and the pseudo-anomalies made from it), each row named on its left.

    Args:
        rows: ``{row name: images}``, each an (N, 3, S, S) tensor/array or a sequence of N (3, H, W)
            images of any sizes (uint8, or float in [0, 1]); every row holds the same number N.
        titles: N column titles, or None.
        boxes: ``{row name: sequence of N boxes}``, each box ``(x0, y0, x1, y1)`` in pixel edges or
            None (nothing drawn), e.g. the boxes :func:`atac.data.pseudo.cutmix` pasted into; rows
            not named here get no boxes.
    Returns:
        A Figure of len(rows) rows × N columns.
    Raises:
        ValueError: no rows, rows of different lengths, or boxes/titles of the wrong length.
    """
    if not rows:
        raise ValueError("image_rows needs at least one row")
    data = {}
    for name, imgs in rows.items():
        if isinstance(imgs, (list, tuple)):
            data[name] = [_uint8_images(torch.as_tensor(_np(im))[None], f"row '{name}'")[0] for im in imgs]
        else:
            data[name] = list(_uint8_images(imgs, f"row '{name}'"))
    n = {len(v) for v in data.values()}
    if len(n) != 1:
        raise ValueError(f"every row must hold the same number of images, got {sorted(n)}")
    n = n.pop()
    if titles is not None and len(titles) != n:
        raise ValueError(f"expected {n} titles, got {len(titles)}")
    boxes = dict(boxes or {})
    for name, b in boxes.items():
        if name not in data or len(b) != n:
            raise ValueError(f"boxes for row '{name}': expected {n} boxes of an existing row")
    fig = Figure(figsize=(size * n + 0.8, size * len(data) + (0.25 if titles else 0)),
                 layout="constrained")
    axes = fig.subplots(len(data), n, squeeze=False)
    for r, (name, imgs) in enumerate(data.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(_hwc(imgs[c]))
            ax.set_xticks([])
            ax.set_yticks([])
            if name in boxes and boxes[name][c] is not None:
                _draw_box(ax, boxes[name][c])
            if r == 0 and titles is not None:
                ax.set_title(str(titles[c]), fontsize=8)
        axes[r, 0].set_ylabel(name, fontsize=9)
    return fig


def value_histograms(groups: Mapping[str, object], channel_names: Sequence[str] = ("R", "G", "B"),
                     bins: int = 64, xlabel: str = "value", title: str | None = None) -> Figure:
    """Per-channel histograms of several versions of the same images, overlaid (e.g. the network's
    input after the two sets of normalisation constants, or gray levels before and after CLAHE).

    Args:
        groups: ``{name: (N, C, H, W) values}`` (tensor or array; C = len(channel_names)).
        channel_names: one axes per channel, titled with these names.
        bins: histogram bins, shared by all groups of one channel (spanning all their values).
        xlabel: the x axis label; title: an optional figure title.
    Returns:
        A Figure with one axes per channel; each group is a step histogram (density) with its mean
        and standard deviation in the legend.
    Raises:
        ValueError: no groups, or a group's channel count differs from ``channel_names``.
    """
    if not groups:
        raise ValueError("value_histograms needs at least one group")
    arrays = {}
    for name, v in groups.items():
        a = _np(v).astype(np.float64)
        if a.ndim != 4 or a.shape[1] != len(channel_names):
            raise ValueError(f"group '{name}': expected (N, {len(channel_names)}, H, W), got {a.shape}")
        arrays[name] = a
    k = len(channel_names)
    fig = Figure(figsize=(3.4 * k, 2.9), layout="constrained")
    axes = fig.subplots(1, k, squeeze=False)[0]
    for c, ax in enumerate(axes):
        vals = {name: a[:, c].ravel() for name, a in arrays.items()}
        lo = min(float(v.min()) for v in vals.values())
        hi = max(float(v.max()) for v in vals.values())
        edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
        for name, v in vals.items():
            ax.hist(v, bins=edges, histtype="step", density=True, lw=1.4,
                    label=f"{name} (mean {v.mean():+.2f}, sd {v.std():.2f})")
        ax.set_title(str(channel_names[c]), fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.legend(fontsize=6.5, loc="upper right")
    axes[0].set_ylabel("density", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def map_comparison(images, maps: Mapping[str, object], boxes: Mapping[str, object] | None = None,
                   zoom: Mapping[str, object] | None = None, labels=None,
                   titles: Sequence[str] | None = None, masks=None) -> Figure:
    """Several maps of the same images side by side, each with the crop box it gives (the layout of
    the supplement's Fig. 1: ATAC-Net's attention next to Grad-CAM).

    Rows: the input (with the ground-truth mask contour), then one row per map, bilinearly upsampled
    to the image size (:func:`atac.evaluate.upsample_maps`) and divided by its maximum (the scale
    Algorithm 1 thresholds), overlaid on the image with its crop box (drawn where ``zoom`` is True;
    a row whose image is not zoomed is marked "no zoom").

    Args:
        images: uint8 (N, 3, S, S) (or float in [0, 1]).
        maps: ``{name: (N, h, w) maps}``, e.g. ``{"attention": ..., "Grad-CAM": ...}``.
        boxes: ``{name: (N, 4) boxes}`` (pixel edges), or None; zoom: ``{name: bool (N,)}``, or None
            (every box is drawn).
        labels: (N,) 0/1 or None; titles: N strings or None; masks: bool (N, [1,] S, S) or None.
    Returns:
        A Figure of 1 + len(maps) rows × N columns and one colour bar.
    Raises:
        ValueError: no maps, or shapes that disagree on N.
    """
    imgs = _uint8_images(images)
    n, S = imgs.shape[0], imgs.shape[-1]
    if not maps:
        raise ValueError("map_comparison needs at least one map")
    y = _labels(labels, n) if labels is not None else None
    if titles is not None and len(titles) != n:
        raise ValueError(f"expected {n} titles, got {len(titles)}")
    m = _np(masks).astype(bool).reshape(n, S, S) if masks is not None else None
    ups = {}
    for name, mp in maps.items():
        a = torch.as_tensor(_np(mp)).float()
        if a.ndim != 3 or a.shape[0] != n:
            raise ValueError(f"map '{name}' must be (N={n}, h, w), got {tuple(a.shape)}")
        up = upsample_maps(a, S)
        peak = up.flatten(1).amax(dim=1).clamp(min=1e-12)[:, None, None]
        ups[name] = (up / peak).clamp(0, 1).numpy()
    boxes, zoom = dict(boxes or {}), dict(zoom or {})
    fig = Figure(figsize=(2.0 * n + 0.9, 2.1 * (1 + len(ups))), layout="constrained")
    axes = fig.subplots(1 + len(ups), n, squeeze=False)
    im = None
    for i in range(n):
        rgb = _hwc(imgs[i])
        axes[0, i].imshow(rgb)
        for r, (name, up) in enumerate(ups.items(), start=1):
            ax = axes[r, i]
            ax.imshow(rgb)
            im = ax.imshow(up[i], cmap="inferno", alpha=0.55, vmin=0, vmax=1)
            if name in boxes and boxes[name] is not None:
                z = True if zoom.get(name) is None else bool(_np(zoom[name])[i])
                if z:
                    _draw_box(ax, _np(boxes[name])[i])
                else:
                    ax.text(0.5, 0.04, "no zoom", transform=ax.transAxes, ha="center", va="bottom",
                            fontsize=7, color="white",
                            bbox={"facecolor": "black", "alpha": 0.6, "pad": 2})
        if m is not None and m[i].any():
            for ax in axes[:, i]:
                ax.contour(m[i], levels=[0.5], colors=MASK_COLOR, linewidths=0.9)
        _label_panel(axes[0, i], i, y, titles)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("input", fontsize=9)
    for r, name in enumerate(ups, start=1):
        axes[r, 0].set_ylabel(f"{name} + crop box", fontsize=9)
    fig.colorbar(im, ax=axes[1:, :].ravel().tolist(), shrink=0.8, label="map / max")
    return fig


def threshold_boxes(images, attention, thresholds: Sequence[float], full_fraction: float = 0.95,
                    labels=None, titles: Sequence[str] | None = None, masks=None) -> Figure:
    """How the crop threshold w moves the crop box: per image, its attention map with one box per w.

    The boxes are Algorithm 1's (:func:`atac.cropping.attention_boxes`) at each threshold; a w that
    gives no zoom (an empty mask, or a box of at least ``full_fraction`` of the image) draws no box
    and is listed as "no zoom" in the panel.

    Args:
        images: uint8 (N, 3, S, S); attention: (N, h, w) attention maps (``Predictions.attention``).
        thresholds: the values of w to draw (at most 6; one colour each, in the legend).
        full_fraction: ``crop_full_fraction`` of the run.
        labels, titles, masks: as in :func:`attention_grid`.
    Returns:
        A Figure of one row × N columns.
    Raises:
        ValueError: no thresholds, more than 6, or shapes that disagree on N.
    """
    from .cropping import attention_boxes

    imgs = _uint8_images(images)
    n, S = imgs.shape[0], imgs.shape[-1]
    if not 0 < len(thresholds) <= len(BOX_COLORS):
        raise ValueError(f"threshold_boxes draws 1 to {len(BOX_COLORS)} thresholds, got {len(thresholds)}")
    attn = torch.as_tensor(_np(attention)).float()
    if attn.ndim != 3 or attn.shape[0] != n:
        raise ValueError(f"attention must be (N={n}, h, w), got {tuple(attn.shape)}")
    y = _labels(labels, n) if labels is not None else None
    m = _np(masks).astype(bool).reshape(n, S, S) if masks is not None else None
    up = upsample_maps(attn, S)
    up = (up / up.flatten(1).amax(dim=1).clamp(min=1e-12)[:, None, None]).clamp(0, 1).numpy()
    per_w = [attention_boxes(attn, (S, S), float(w), full_fraction) for w in thresholds]
    fig = Figure(figsize=(2.1 * n, 2.9), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for i, ax in enumerate(axes):
        ax.imshow(_hwc(imgs[i]))
        ax.imshow(up[i], cmap="inferno", alpha=0.5, vmin=0, vmax=1)
        if m is not None and m[i].any():
            ax.contour(m[i], levels=[0.5], colors=MASK_COLOR, linewidths=0.9)
        no_zoom = []
        for k, (w, (b, z)) in enumerate(zip(thresholds, per_w)):
            if bool(z[i]):
                _draw_box(ax, b[i], BOX_COLORS[k], lw=1.3)
            else:
                no_zoom.append(f"{w:g}")
        if no_zoom:
            ax.text(0.5, 0.03, "no zoom: w=" + ",".join(no_zoom), transform=ax.transAxes, ha="center",
                    va="bottom", fontsize=6.5, color="white",
                    bbox={"facecolor": "black", "alpha": 0.6, "pad": 1.5})
        _label_panel(ax, i, y, titles)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Rectangle((0, 0), 1, 1, fill=False, edgecolor=BOX_COLORS[k], label=f"w = {w:g}")
               for k, w in enumerate(thresholds)]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8)
    return fig
