"""A picture of the worst failing case of each failing layer: ``ours - ref`` as a heat map.

``Collector`` keeps, per (judge, layer), the failing row that used the most of its tolerance (the
row's ``budget``; a non-finite ours counts as past every bound) and, of that case, the tensor that
shows the most (dx, else out, else a parameter gradient). A judge makes one per run, calls
``offer(evidence, row)`` for each failing row (thread-safe; outside ``collector.around(...)`` it is a
no-op, so other callers of a judge's ``run_case`` are unaffected) and writes the PNGs with the
run's reports (``collector.write(out)``; ``heatmaps.csv`` says which picture is which). The
shrinker (reference.judges.shrink) hands in the picture of each layer's smallest failing input
(``collector.add``; ``kind`` smallest, ``heatmap-<layer>-smallest.png``), caught with ``Snapshots``.

``draw`` is a pure function of arrays: the discrepancy over the tensor's spatial axes (NHWC: one
sample, a few channels side by side; 2-D: the matrix), a diverging colormap with limits symmetric
about 0, a colorbar, and the case's kinks marked (exact ties and near-ties of max-pool windows,
exact zeros of a ReLU input) with the pooling windows drawn as grid lines; a smallest input's
picture adds the input and prints each cell's number. ``kink_cells`` finds the kinks. The judged implementation is never imported here: its arrays were fetched as data.
"""

from __future__ import annotations

import contextvars
import math
import textwrap
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reference.layers import KINDS as LAYER_KINDS

NEAR = 1e-5  # a near-tie: within NEAR * max(1, |window max|) of the maximum (the grid's near_ties: gaps < 1e-5)
MAX_PANELS = 4  # channels (or output channels of a kernel gradient) side by side
PREFERENCE = ("dx", "out", "probs", "dlogits", "loss")  # what shows a layer's bug best; parameter grads after
COLUMNS = ["file", "judge", "layer", "case", "dtype", "tensor", "max_abs_err", "budget", "panels", "ties", "near_ties",
           "zeros", "kind"]  # fmt: skip
KINDS = ("worst", "smallest")  # the worst failing case of a layer; its smallest failing input (reference.judges.shrink)
NUMBERS_UP_TO = 64  # cells of a panel that get their numbers printed in them (a shrunk case's, small)


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def window(config: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(kernel, stride) of a pooling case; the stride defaults to the kernel."""
    k = _pair(config.get("kernel_size", 2))
    return k, (k if config.get("stride") is None else _pair(config["stride"]))


# --- where the kinks are ----------------------------------------------------------------------------


def kink_cells(
    layer: str, config: dict[str, Any], x: np.ndarray | None, shape: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Boolean masks of ``shape`` (the drawn tensor's: the input's for dx, the output's for out):

    - ``tie``: max pool, an element equal to its window's maximum in a window where the maximum is
      attained more than once (for out: the window's output cell);
    - ``near_tie``: max pool, an element within NEAR (relative, at least absolute) of its window's
      maximum without being it, or being it with such a rival (for out: the output cell);
    - ``zero``: ReLU, an exact zero of the input.

    Empty masks where the layer has no kink, or the shapes do not fit the input."""
    shape = tuple(shape)
    none = np.zeros(shape, dtype=bool)
    masks = {"tie": none, "near_tie": none.copy(), "zero": none.copy()}
    if x is None:
        return masks
    x = np.asarray(x, dtype=np.float64)
    declared = LAYER_KINDS.get(layer)
    if declared is not None and "zeros" in declared.kink_needs and x.shape == shape:  # its kink: x == 0
        masks["zero"] = x == 0
    if declared is None or not declared.window_max or x.ndim != 4:
        return masks
    (kh, kw), (sh, sw) = window(config)
    m, H, W, C = x.shape
    if H < kh or W < kw:
        return masks
    Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
    tie_in, near_in = np.zeros(x.shape, dtype=bool), np.zeros(x.shape, dtype=bool)
    tie_out, near_out = np.zeros((m, Ho, Wo, C), dtype=bool), np.zeros((m, Ho, Wo, C), dtype=bool)
    for i in range(Ho):
        for j in range(Wo):
            rows, cols = slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)
            w = x[:, rows, cols, :]
            top = w.max(axis=(1, 2), keepdims=True)
            exact = w == top
            close = np.abs(w - top) <= NEAR * np.maximum(1.0, np.abs(top))
            tied = exact.sum(axis=(1, 2), keepdims=True) > 1
            near = close.sum(axis=(1, 2), keepdims=True) > exact.sum(axis=(1, 2), keepdims=True)
            tie_in[:, rows, cols, :] |= exact & tied
            near_in[:, rows, cols, :] |= close & near & ~(exact & tied)
            tie_out[:, i, j, :] = tied[:, 0, 0, :]
            near_out[:, i, j, :] = near[:, 0, 0, :] & ~tied[:, 0, 0, :]
    if shape == x.shape:
        masks["tie"], masks["near_tie"] = tie_in, near_in & ~tie_in
    elif shape == tie_out.shape:
        masks["tie"], masks["near_tie"] = tie_out, near_out
    return masks


def window_lines(
    layer: str, config: dict[str, Any], x: np.ndarray | None, shape: tuple[int, ...]
) -> tuple[list[int], list[int]]:
    """Row and column boundaries of the pooling windows in the input's space (for dx of a pool), else none."""
    pooled = layer in LAYER_KINDS and LAYER_KINDS[layer].windows is not None
    if not pooled or x is None or np.ndim(x) != 4 or tuple(np.shape(x)) != tuple(shape):
        return [], []
    (kh, kw), (sh, sw) = window(config)
    H, W = np.shape(x)[1:3]
    if H < kh or W < kw:
        return [], []
    rows = sorted({b for i in range((H - kh) // sh + 1) for b in (i * sh, i * sh + kh)})
    cols = sorted({b for j in range((W - kw) // sw + 1) for b in (j * sw, j * sw + kw)})
    return rows, cols


# --- which 2-D slices are drawn -------------------------------------------------------------------------


def panels(diff: np.ndarray, tensor: str) -> list[tuple[str, tuple[Any, ...]]]:
    """(label, index into the tensor) of each 2-D panel: NHWC activations (dx, out): the sample
    holding the largest |ours - ref|, its worst channels (at most MAX_PANELS, in channel order); a
    kernel gradient (kh, kw, cin, cout): the worst input channel's worst output channels; 2-D: the
    matrix; 1-D: one row; a scalar: one cell."""
    size = np.where(np.isfinite(diff), np.abs(diff), np.inf)
    if diff.ndim <= 2:
        return [("", (...,))]
    if diff.ndim == 3:  # (m, H, W): no channel axis
        worst = int(np.unravel_index(int(np.argmax(size)), size.shape)[0])
        return [(f"sample {worst}", (worst, slice(None), slice(None)))]
    if diff.ndim != 4:
        return [("flattened", (...,))]
    param = tensor not in ("dx", "out")
    first = 2 if param else 0  # the fixed axis (input channel, sample); the last axis goes side by side
    fixed = int(np.unravel_index(int(np.argmax(size)), size.shape)[first])
    per = np.take(size, fixed, axis=first).max(axis=(0, 1))
    chosen = sorted(np.argsort(-per, kind="stable")[:MAX_PANELS].tolist())
    out = []
    for c in chosen:
        if param:
            out.append((f"in {fixed}, out {c}", (slice(None), slice(None), fixed, int(c))))
        else:
            out.append((f"sample {fixed}, channel {c}", (fixed, slice(None), slice(None), int(c))))
    return out


def _plane(a: np.ndarray, index: tuple[Any, ...]) -> np.ndarray:
    p = np.asarray(a)[index]
    return p.reshape(1, -1) if p.ndim <= 1 else p.reshape(p.shape[0], -1)


# --- the drawing ------------------------------------------------------------------------------------------


@dataclass
class Picture:
    """What one heat map shows: a snapshot of a failing row's evidence (arrays are copies)."""

    judge: str
    layer: str
    case: str
    tensor: str
    dtype: str
    ours: np.ndarray
    ref: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)
    x: np.ndarray | None = None
    budget: float = math.inf
    diagnosis: str = ""
    kind: str = "worst"  # one of KINDS: a shrunk case's picture shows its input and every number in the cells

    @property
    def diff(self) -> np.ndarray:
        with np.errstate(invalid="ignore", over="ignore"):
            return self.ours.astype(np.float64) - self.ref.astype(np.float64)


KINK_STYLES = {"tie": ("o", "exact tie of the window maximum"), "near_tie": ("^", "near-tie of the window maximum"),
               "zero": ("s", "input exactly 0 (ReLU kink)")}  # fmt: skip


def draw(pic: Picture, path: Path) -> dict[str, Any]:
    """Write ``path`` (a PNG) and return what it shows (panels and counts of marked kinks). Top row:
    ``ours - ref`` with the kinks marked; below, ours and the reference on one scale of their own
    (so a shifted or mirrored pattern shows as the same picture moved). A shrunk case's picture
    (``kind`` smallest) starts with its input where it has the drawn tensor's shape (dx), and where a
    panel is small (at most NUMBERS_UP_TO cells) every cell carries its number."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    diff = pic.diff
    chosen = panels(diff, pic.tensor)
    marks = kink_cells(pic.layer, pic.config, pic.x, diff.shape)
    lines = window_lines(pic.layer, pic.config, pic.x, diff.shape)
    whole = diff[np.isfinite(diff)]
    max_err = float(np.abs(whole).max()) if whole.size else math.nan
    rows = _rows(pic, diff)
    first = len(rows) - 3  # the row of ours - ref: the kinks are marked there
    planes = [[_plane(a, idx) for _, idx in chosen] for _, a, _ in rows]
    shared = _limit(planes[first + 1] + planes[first + 2])
    limits = [_limit(p) for p in planes[: first + 1]] + [shared, shared]
    layout = _Layout.of(planes[0][0].shape, len(chosen), len(rows), pic.kind == "smallest")
    fig = Figure(figsize=layout.figsize, dpi=100, layout="compressed")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), len(chosen), squeeze=False)
    counts = {k: 0 for k in marks}
    for r, ((name, _, cmap_name), row_planes, vmax) in enumerate(zip(rows, planes, limits, strict=True)):
        _draw_row(fig, axes[r], name, cmap_name, row_planes, vmax, chosen=chosen, layout=layout, tensor=pic.tensor,
                  lines=lines, marks=marks if r == first else None, counts=counts, top=r == 0,
                  bottom=r == len(rows) - 1)  # fmt: skip
    _legend(fig, marks, counts, lines, diff)
    fig.suptitle(_title(pic, max_err), fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return {"panels": "; ".join(label or "all" for label, _ in chosen), "max_abs_err": max_err,
            "ties": counts["tie"], "near_ties": counts["near_tie"], "zeros": counts["zero"]}  # fmt: skip


def _rows(pic: Picture, diff: np.ndarray) -> list[tuple[str, np.ndarray, str]]:
    """(name, array, colormap) of each row of the figure: ours - ref, ours, ref; a shrunk case's input
    first where it has the drawn tensor's shape."""
    rows = [("ours - ref", diff, "RdBu_r"), ("ours", pic.ours.astype(np.float64), "PuOr_r"),
            ("ref", pic.ref.astype(np.float64), "PuOr_r")]  # fmt: skip
    if pic.kind == "smallest" and pic.x is not None and np.shape(pic.x) == diff.shape:
        rows.insert(0, ("input x", np.asarray(pic.x, dtype=np.float64), "PuOr_r"))
    return rows


@dataclass
class _Layout:
    """The figure's geometry: a panel's cells (h, w) and size in inches, the figure's size, a cell's
    size in points and the kink markers' area."""

    h: int
    w: int
    wide: bool  # a long matrix (m, n) or a vector: stretched cells, not square ones
    numbers: bool  # every cell carries its number
    panel_w: float
    panel_h: float
    figsize: tuple[float, float]
    cell: float  # points per cell
    size: float  # the kink markers' area (points squared)

    @classmethod
    def of(cls, shape: tuple[int, ...], n: int, n_rows: int, smallest: bool) -> _Layout:
        """The layout of ``n_rows`` rows of ``n`` panels of ``shape`` (cells)."""
        h, w = shape
        numbers = smallest and h * w <= NUMBERS_UP_TO
        wide = w / max(h, 1) > 4
        panel_w = 7.0 if wide else min(3.4, max(2.2, 0.22 * w + 0.8))
        panel_h = min(1.8, 0.4 * h + 0.6) if wide else panel_w * h / max(w, 1)
        figsize = (max(8.0, min(16.0, panel_w * n + 2.0)), n_rows * panel_h + 2.4)
        cell = 72 * min(panel_w / max(w, 1), panel_h / max(h, 1))
        size = max(9.0, min(100.0, (0.55 * cell) ** 2))
        if numbers:  # a ring around the cell's number, not over it
            size = max(size, min(2500.0, (0.85 * cell) ** 2))
        return cls(h, w, wide, numbers, panel_w, panel_h, figsize, cell, size)


def _draw_row(fig: Any, axes_row: Any, name: str, cmap_name: str, row_planes: list[np.ndarray], vmax: float, *,
              chosen: list[tuple[str, tuple[Any, ...]]], layout: _Layout, tensor: str,
              lines: tuple[list[int], list[int]], marks: dict[str, np.ndarray] | None, counts: dict[str, int],
              top: bool, bottom: bool) -> None:  # fmt: skip
    """One row of panels on one colour scale symmetric about 0, with its colorbar; the kinks marked
    (and counted) where ``marks`` is given."""
    from matplotlib.colors import TwoSlopeNorm

    norm = TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax)
    image = None
    for ax, (label, idx), plane in zip(axes_row, chosen, row_planes, strict=True):
        image = ax.imshow(np.ma.masked_invalid(plane), cmap=_cmap(cmap_name), norm=norm, interpolation="nearest",
                          aspect="auto" if layout.wide else "equal")  # fmt: skip
        if marks is not None:
            _mark_kinks(ax, marks, idx, counts, layout.size)
        if top:
            ax.set_title(label, fontsize=9)
        if layout.numbers:
            write_numbers(ax, plane, norm, layout.cell)
        _panel_axes(ax, lines, layout, tensor, bottom)
    axes_row[0].set_ylabel(f"{name}\n{'row' if tensor in ('dx', 'out') or layout.wide else 'kh'}", fontsize=8)
    bar = fig.colorbar(image, ax=list(axes_row), shrink=0.9, pad=0.02)
    bar.set_label(name, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def _mark_kinks(ax: Any, marks: dict[str, np.ndarray], idx: tuple[Any, ...], counts: dict[str, int],
                size: float) -> None:  # fmt: skip
    """Ring the panel's kink cells, one marker per kind (KINK_STYLES), adding them to ``counts``."""
    for kind, mask in marks.items():
        ys, xs = np.nonzero(_plane(mask, idx))
        counts[kind] += len(ys)
        if len(ys):
            ax.scatter(xs, ys, marker=KINK_STYLES[kind][0], s=size, facecolors="none", edgecolors="black",
                       linewidths=1.0 if size < 40 else 1.4)  # fmt: skip


def _panel_axes(ax: Any, lines: tuple[list[int], list[int]], layout: _Layout, tensor: str, bottom: bool) -> None:
    """A panel's pooling window boundaries (dashed), ticks, and its x label in the bottom row."""
    hlines, vlines = lines
    h, w = layout.h, layout.w
    for y in hlines:
        ax.axhline(y - 0.5, color="0.25", linewidth=0.9, linestyle="--")
    for x in vlines:
        ax.axvline(x - 0.5, color="0.25", linewidth=0.9, linestyle="--")
    ax.tick_params(labelsize=7)
    ax.set_yticks(range(0, h, max(1, math.ceil(h / 8))))
    if not layout.wide:
        ax.set_xticks(range(0, w, max(1, math.ceil(w / 8))))
    spatial = tensor in ("dx", "out") or layout.wide
    if bottom:
        ax.set_xlabel("column" if spatial else "kw", fontsize=8)


def _legend(fig: Any, marks: dict[str, np.ndarray], counts: dict[str, int], lines: tuple[list[int], list[int]],
            diff: np.ndarray) -> None:  # fmt: skip
    """The figure's legend: each kind of kink marked (with its count), the window boundaries, the
    non-finite cells; none where there is nothing to explain."""
    from matplotlib.lines import Line2D

    hlines, vlines = lines
    legend = [Line2D([], [], marker=KINK_STYLES[k][0], linestyle="none", markerfacecolor="none", markeredgecolor="black",
                     label=f"{KINK_STYLES[k][1]} ({counts[k]})") for k in marks if counts[k]]  # fmt: skip
    if hlines or vlines:
        legend.append(Line2D([], [], color="0.25", linestyle="--", label="pooling window boundaries"))
    if not np.all(np.isfinite(diff)):
        legend.append(Line2D([], [], marker="s", linestyle="none", color="0.85", label="non-finite (grey)"))
    if legend:
        fig.legend(handles=legend, loc="outside lower center", ncols=min(3, len(legend)), fontsize=8, frameon=False)


def _title(pic: Picture, max_err: float) -> str:
    """The figure's title: the layer, tensor, dtype, largest error and share of tolerance; the case below."""
    title = (f"{pic.layer}: {pic.tensor} ({pic.dtype}); max |ours - ref| = {max_err:.3g}"
             + (f", {pic.budget:.3g}x its tolerance" if math.isfinite(pic.budget) else ""))  # fmt: skip
    if pic.kind == "smallest":
        title = f"the smallest failing input. {title}"
    case = textwrap.fill(f"{pic.judge} case {pic.case}", 110)
    return f"{title}\n{case}"


def cell_text(v: float) -> str:
    """A number short enough for a cell: an integer as such, else 3 significant digits."""
    if not math.isfinite(v):
        return str(v)
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e6 else f"{v:.3g}"


def write_numbers(ax: Any, plane: np.ndarray, norm: Any, cell: float) -> None:
    """Each cell's number in it, black on light cells and white on dark ones, sized to the cell."""
    texts = [[cell_text(float(v)) for v in row] for row in plane]
    longest = max((len(t) for row in texts for t in row), default=1)
    fontsize = max(4.0, min(11.0, 1.5 * cell / max(longest, 2)))
    for i, row in enumerate(texts):
        for j, text in enumerate(row):
            v = float(plane[i, j])
            dark = math.isfinite(v) and abs(float(norm(v)) - 0.5) > 0.3
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color="white" if dark else "black")


def _limit(planes: list[np.ndarray]) -> float:
    """The colour scale's half-width: the largest finite magnitude shown (1 where there is none)."""
    finite = np.concatenate([p[np.isfinite(p)].ravel() for p in planes] + [np.zeros(1)])
    return float(np.abs(finite).max()) or 1.0


def _cmap(name: str = "RdBu_r") -> Any:
    from matplotlib import colormaps

    # RdBu_r on ours - ref: red where ours is above ref, blue below, white equal; non-finite cells grey
    return colormaps[name].with_extremes(bad="0.85")


# --- collecting the worst case per layer ----------------------------------------------------------------


_ACTIVE: contextvars.ContextVar[Collector | Snapshots | None] = contextvars.ContextVar(
    "heatmap_collector", default=None
)


def offer(ev: Any, row: dict[str, Any]) -> None:
    """Hand a failing row's evidence to the collector of the judge running in this thread (if any)."""
    collector = _ACTIVE.get()
    if collector is not None:
        try:
            collector.offer(ev, row)
        except Exception:  # noqa: BLE001 - a picture is a courtesy: whatever ours is, the row stands as judged
            pass


def _rank(tensor: str) -> int:
    return PREFERENCE.index(tensor) if tensor in PREFERENCE else len(PREFERENCE)


def _score(ev: Any, row: dict[str, Any]) -> tuple[float, int, int]:
    """(order of magnitude of the row's budget, failing elements, elements): the worst row used the
    most of its tolerance; among rows within a factor of 10 of each other, the one with more to see.
    A row without a budget (non-finite ours) is past every bound."""
    budget = pd.to_numeric(pd.Series([row.get("budget")]), errors="coerce").iloc[0]
    if pd.isna(budget) or budget == math.inf:
        magnitude = math.inf
    else:
        magnitude = math.floor(math.log10(budget)) if budget > 0 else -math.inf
    try:
        n_bad = int(np.count_nonzero(ev.bad()))
    except Exception:  # noqa: BLE001 - an evidence-like object without bad(): count nothing
        n_bad = 0
    return (float(magnitude), n_bad, int(np.size(ev.ref)))


def _budget(row: dict[str, Any]) -> float:
    budget = pd.to_numeric(pd.Series([row.get("budget")]), errors="coerce").iloc[0]
    return math.inf if pd.isna(budget) else float(budget)


def drawable(ev: Any, row: dict[str, Any]) -> bool:
    """A failing row whose tensor can be subtracted from the reference's (a shape or type mismatch is
    told by the row, not drawn)."""
    if row.get("status") != "fail" or ev.ours is None:
        return False
    ours, ref = np.asarray(ev.ours), np.asarray(ev.ref)
    return ours.shape == ref.shape and ref.size > 0 and ours.dtype.kind in "fiub"


def picture_of(ev: Any, row: dict[str, Any], kind: str = "worst") -> Picture:
    """A snapshot of a drawable failing row's evidence (copies of its arrays)."""
    return Picture(str(row.get("judge", "")), str(ev.layer), str(row.get("case", "")), str(ev.tensor), str(ev.dtype),
                   np.array(ev.ours), np.array(ev.ref), dict(ev.config or {}), None if ev.x is None else np.array(ev.x),
                   _budget(row), str(row.get("diagnosis") or ""), kind)  # fmt: skip


class Snapshots:
    """Every drawable failing row offered while ``around(fn)`` runs, as pictures of ``kind`` (the
    shrinker's: of the case it tried, it keeps the picture of the tensor it follows)."""

    def __init__(self, kind: str = "smallest") -> None:
        self.kind = kind
        self.taken: list[Picture] = []

    def around(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kw: Any) -> Any:
            token = _ACTIVE.set(self)
            try:
                return fn(*args, **kw)
            finally:
                _ACTIVE.reset(token)

        return wrapped

    def offer(self, ev: Any, row: dict[str, Any]) -> None:
        if drawable(ev, row):
            self.taken.append(picture_of(ev, row, self.kind))

    def picture(self, tensor: str, dtype: str) -> Picture | None:
        return next((p for p in self.taken if p.tensor == tensor and p.dtype == dtype), None)


class Collector:
    """Per (judge, layer): the worst failing case (see ``_score``) and its most telling drawable tensor."""

    def __init__(self, judge: str = "autograd") -> None:
        self.judge = judge  # whose earlier pictures in an --out folder this run's replace
        self._lock = threading.Lock()
        self._best: dict[tuple[str, str], tuple[tuple[str, str], tuple[float, int, int], int, Picture]] = {}
        self._added: dict[tuple[str, str, str], Picture] = {}  # (judge, layer, kind): pictures handed in whole

    def add(self, pic: Picture) -> None:
        """A picture made elsewhere (a shrunk case's), drawn with the others; one per judge, layer and kind."""
        with self._lock:
            self._added[(pic.judge, pic.layer, pic.kind)] = pic

    def around(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` with this collector receiving ``offer``s while it runs (in whatever thread calls it)."""

        def wrapped(*args: Any, **kw: Any) -> Any:
            token = _ACTIVE.set(self)
            try:
                return fn(*args, **kw)
            finally:
                _ACTIVE.reset(token)

        return wrapped

    def offer(self, ev: Any, row: dict[str, Any]) -> None:
        if not drawable(ev, row):
            return
        key = (str(row.get("judge", "")), str(ev.layer))
        case = (str(row.get("case", "")), str(ev.dtype))
        score, rank = _score(ev, row), _rank(str(ev.tensor))
        with self._lock:
            best = self._best.get(key)
            if best is not None and best[0] == case:
                if rank >= best[2]:
                    self._best[key] = (case, max(best[1], score), best[2], best[3])
                    return
                score = max(best[1], score)
            elif best is not None and score <= best[1]:
                return
        pic = picture_of(ev, row)
        with self._lock:
            best = self._best.get(key)
            if best is None or (best[0] == case and rank < best[2]) or (best[0] != case and score > best[1]):
                self._best[key] = (case, score, rank, pic)

    def pictures(self) -> list[Picture]:
        with self._lock:
            pics = [self._best[k][3] for k in sorted(self._best)] + list(self._added.values())
        return sorted(pics, key=lambda p: (p.judge, p.layer, KINDS.index(p.kind) if p.kind in KINDS else len(KINDS)))

    def __len__(self) -> int:
        return len(self._best) + len(self._added)

    def write(self, out: Path) -> list[Path]:
        """Draw every picture into ``out`` (``heatmap-<layer>.png``, other judges ``heatmap-<judge>-<layer>.png``;
        a shrunk case's with ``-smallest`` before ``.png``) and list them in ``heatmaps.csv``; a picture that cannot be drawn is left out, never fatal. The
        pictures an earlier run of this judge left in ``out`` (a reused --out) are removed first."""
        from reference.report.tables import write_atomic

        kept = load_index(out)
        judges = {self.judge} | {p.judge for p in self.pictures()}
        for old in kept[kept["judge"].isin(judges)]["file"]:
            (out / Path(str(old)).name).unlink(missing_ok=True)
        kept = kept[~kept["judge"].isin(judges)]
        rows, paths = [], []
        for pic in self.pictures():
            name = file_name(pic)
            try:
                shown = draw(pic, out / name)
            except Exception:  # noqa: BLE001 - a figure is a courtesy; the CSVs are the verdict
                (out / name).unlink(missing_ok=True)
                continue
            paths.append(out / name)
            rows.append({"file": name, "judge": pic.judge, "layer": pic.layer, "case": pic.case, "dtype": pic.dtype,
                         "tensor": pic.tensor, "budget": pic.budget, **shown, "kind": pic.kind})  # fmt: skip
        table = pd.concat([kept, pd.DataFrame(rows, columns=COLUMNS)], ignore_index=True) if len(kept) else None
        table = pd.DataFrame(rows, columns=COLUMNS) if table is None else table
        if len(table):
            write_atomic(out / "heatmaps.csv", table.to_csv(index=False))
        else:
            (out / "heatmaps.csv").unlink(missing_ok=True)
        return paths


def file_name(pic: Picture) -> str:
    stem = f"heatmap-{pic.layer}" if pic.judge == "autograd" else f"heatmap-{pic.judge}-{pic.layer}"
    return f"{stem}.png" if pic.kind == "worst" else f"{stem}-{pic.kind}.png"


def load_index(run_dir: Path) -> pd.DataFrame:
    """heatmaps.csv of a run (the pictures that exist), or an empty table; ``kind`` worst where a
    table written before that column has none."""
    path = run_dir / "heatmaps.csv"
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    df = pd.read_csv(path)
    if "kind" not in df.columns:
        df["kind"] = "worst"
    df["kind"] = df["kind"].fillna("worst")
    return df[[(run_dir / f).is_file() for f in df["file"]]] if len(df) else df
