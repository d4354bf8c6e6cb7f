"""Figures for the report: training curves, similarity matrices, soft alignments, result bars.

Numbers in a table say *what*; these pictures say *where* and *how*: whether L_d still falls,
which pairs the model ranks differently from its teacher, which slices the alignment matches,
how accuracy drops with the relevant document's position. Everything uses matplotlib's object
API with the Agg canvas (no screen, no global pyplot state), and every file is written
atomically so a report never embeds a half-written PNG.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from PIL import Image

if TYPE_CHECKING:
    import torch

DPI = 120
LOSS_PANELS: tuple[tuple[str, str], ...] = (
    ("generative_loss", "L_g (generative loss)"),
    ("discriminative_loss", "L_d (discriminative loss)"),
)
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


# ----------------------------------------------------------------------------- shared helpers


def _plain(text: str) -> str:
    """Escape `$` so user text is never parsed as mathtext."""
    return text.replace("$", r"\$")


def _shorten(text: str, width: int) -> str:
    """One line of at most `width` characters, ending with an ellipsis when cut."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


def _wrap(text: str, width: int, max_lines: int) -> str:
    """Wrap to `width` characters per line, keeping at most `max_lines` lines (ellipsis when cut)."""
    text = " ".join(text.split()) or "(empty)"
    lines = textwrap.wrap(text, width=max(width, 4))
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(width - 1, 1)].rstrip() + "…"
    return _plain("\n".join(lines))


def _check_out(out: str | Path) -> Path:
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"out must be a path ending in .png, got {str(out)!r}")
    return out


def _save(figure: Figure, out: Path) -> Path:
    """Render to a temporary file next to `out`, then rename over it; always release the figure."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        FigureCanvasAgg(figure)
        descriptor, temp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                figure.savefig(handle, format="png", dpi=DPI)
            os.replace(temp_name, out)
        except BaseException:
            if os.path.exists(temp_name):
                os.unlink(temp_name)
            raise
    finally:
        figure.clear()
    return out


def _as_matrix(value: Any, name: str) -> np.ndarray:
    """A torch tensor or array-like as a finite float64 (rows, cols) array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().float().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric (rows, cols) matrix: {error}") from None
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D matrix, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _as_float(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def _check_unit(value: float, name: str) -> float:
    value = _as_float(value, name)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be an accuracy in [0, 1], got {value}")
    return value


def _colours(count: int) -> list[Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return [palette(i % palette.N) for i in range(count)]


# ----------------------------------------------------------------------------- training curves


def _number(text: str | None, path: Path, line: int, column: str) -> float:
    if text is None or text.strip() == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{path}:{line}: column {column!r} is not a number: {text!r}") from None


def read_training_log(path: str | Path) -> dict[str, list[float]]:
    """Read a trainer CSV into columns sorted by step.

    A resumed run re-logs the steps after its last checkpoint, so a step can appear twice:
    the last occurrence wins (it is the run that continued). Empty cells and `nan` become NaN;
    a row without a step (a line cut by a crash) is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"training log {str(path)!r} does not exist")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [name.strip() for name in (reader.fieldnames or [])]
        if "step" not in columns:
            raise ValueError(f"{path}: the header must contain a 'step' column, got {columns}")
        reader.fieldnames = columns
        by_step: dict[float, dict[str, float]] = {}
        for row in reader:
            line = reader.line_num
            if all((row.get(name) or "").strip() == name for name in columns):
                continue  # a header repeated by concatenated logs
            values = {name: _number(row.get(name), path, line, name) for name in columns}
            step = values["step"]
            if math.isnan(step):
                continue
            by_step.pop(step, None)  # re-insert so the last occurrence also holds the latest position
            by_step[step] = values
    ordered = [by_step[step] for step in sorted(by_step)]
    return {name: [row[name] for row in ordered] for name in columns}


def training_curve_series(
    logs: Mapping[str, str | Path],
) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """What `plot_training_curves` draws: panel column -> run name -> (steps, finite values).

    A run appears in a panel only if it logged at least one finite value there (a
    generative-only run has no L_d line).
    """
    if not isinstance(logs, Mapping) or len(logs) == 0:
        raise ValueError("logs must be a non-empty dict of run name -> training log CSV path")
    series: dict[str, dict[str, tuple[list[float], list[float]]]] = {column: {} for column, _ in LOSS_PANELS}
    for run, path in logs.items():
        table = read_training_log(path)
        steps = table["step"]
        for column, _ in LOSS_PANELS:
            values = table.get(column, [math.nan] * len(steps))
            points = [(s, v) for s, v in zip(steps, values) if math.isfinite(v)]
            if points:
                series[column][str(run)] = ([s for s, _ in points], [v for _, v in points])
    return series


def plot_training_curves(logs: dict[str, str | Path], out: Path) -> Path:
    """L_g and L_d against step, one line per run: shows whether both losses still fall together."""
    out = _check_out(out)
    series = training_curve_series(logs)
    if not any(series.values()):
        raise ValueError("logs: no run logged a finite generative_loss or discriminative_loss")
    runs = list(dict.fromkeys(str(run) for run in logs))
    colour = dict(zip(runs, _colours(len(runs))))
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    axes = figure.subplots(1, len(LOSS_PANELS))
    for ax, (column, label) in zip(axes, LOSS_PANELS):
        panel = series[column]
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if not panel:
            ax.text(0.5, 0.5, "no run logged this loss", ha="center", va="center", transform=ax.transAxes, color="grey")
            continue
        for run, (steps, values) in panel.items():
            marker = "o" if len(steps) <= 25 else None
            ax.plot(steps, values, label=_plain(run), color=colour[run], marker=marker, markersize=3, linewidth=1.5)
        finite = np.concatenate([np.asarray(values) for _, values in panel.values()])
        low, high = float(finite.min()), float(finite.max())
        if low > 0 and high / low > 100:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    return _save(figure, out)


# ----------------------------------------------------------------------------- similarity matrices


def _annotate_cells(ax: Axes, matrix: np.ndarray, fmt: str, dark: np.ndarray) -> None:
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            label = ax.text(j, i, format(matrix[i, j] + 0.0, fmt), ha="center", va="center", fontsize=6.5,
                            color="white" if dark[i, j] else "black")
            label.set_in_layout(False)  # inside the axes anyway; keeps constrained layout fast


def plot_similarity_matrices(
    model_similarity: torch.Tensor | np.ndarray,
    target_similarity: torch.Tensor | np.ndarray,
    out: Path,
    labels: list[str] | None = None,
    title: str = "",
) -> Path:
    """M_r beside M_l on one colour scale, plus M_r - M_l: where the model disagrees with its teacher."""
    out = _check_out(out)
    model = _as_matrix(model_similarity, "model_similarity")
    target = _as_matrix(target_similarity, "target_similarity")
    if model.shape[0] != model.shape[1]:
        raise ValueError(f"model_similarity must be square (n, n), got shape {model.shape}")
    if target.shape != model.shape:
        raise ValueError(
            f"target_similarity must have the same shape as model_similarity {model.shape}, got {target.shape}"
        )
    n = model.shape[0]
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels must have one entry per row (n = {n}), got {len(labels)}")
    vmax = 1.0
    vmin = float(min(model.min(), target.min()))
    if vmin >= vmax:
        vmin = 0.0
    difference = model - target
    limit = max(float(np.abs(difference).max()), 1e-6)
    panel = min(4.5, max(3.4, 0.32 * n))
    figure = Figure(figsize=(3 * panel + 1.6, panel + 0.9), layout="constrained")
    axes = figure.subplots(1, 3)
    shared = None
    for ax, matrix, name in zip(axes[:2], (model, target), ("M_r (model cosine similarity)", "M_l (teacher target)")):
        shared = ax.imshow(matrix, cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        if n <= 10:
            _annotate_cells(ax, matrix, ".2f", matrix < vmin + 0.5 * (vmax - vmin))
    diff_image = axes[2].imshow(
        difference, cmap="RdBu_r", norm=TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit), interpolation="nearest"
    )
    axes[2].set_title("M_r - M_l", fontsize=10)
    if n <= 10:
        _annotate_cells(axes[2], difference, ".2f", np.abs(difference) > 0.6 * limit)
    for ax in axes:
        if labels is not None and n <= 40:
            short = [_plain(_shorten(f"{k + 1}. {label}", 18)) for k, label in enumerate(labels)]
            ax.set_xticks(range(n), short, rotation=60, ha="right", rotation_mode="anchor", fontsize=7)
            ax.set_yticks(range(n), short, fontsize=7)
        else:
            ax.tick_params(labelsize=7)
    figure.colorbar(shared, ax=list(axes[:2]), shrink=0.85, label="cosine similarity")
    figure.colorbar(diff_image, ax=axes[2], shrink=0.85, label="difference")
    if title:
        figure.suptitle(_plain(title))
    return _save(figure, out)


# ----------------------------------------------------------------------------- soft alignment


def _check_slices(slices: Sequence[Any], name: str, expected: int, axis: str) -> None:
    if len(slices) != expected:
        raise ValueError(
            f"{name} must have one slice per alignment {axis} ({expected}), got {len(slices)} slices"
        )
    for k, item in enumerate(slices):
        if not isinstance(item, (str, Image.Image)):
            raise ValueError(f"{name}[{k}] must be a str or a PIL.Image.Image, got {type(item).__name__}")


def _thumbnail(image: Image.Image, size_pt: float) -> OffsetImage:
    """An OffsetImage whose longer side is `size_pt` points."""
    picture = image.convert("RGB")
    picture.thumbnail((96, 96))
    return OffsetImage(np.asarray(picture), zoom=size_pt / max(picture.size))


def plot_soft_alignment(
    alignment: torch.Tensor | np.ndarray,
    x_slices: list[str | Image.Image],
    y_slices: list[str | Image.Image],
    out: Path,
    title: str = "",
) -> Path:
    """The GAK expected alignment drawn over the two documents' slices: which slice matched which.

    Row i is x slice i (drawn on the left), column j is y slice j (drawn on top); images appear
    as thumbnails, sentences as wrapped and, if long, truncated text.
    """
    out = _check_out(out)
    matrix = _as_matrix(alignment, "alignment")
    n, m = matrix.shape
    _check_slices(x_slices, "x_slices", n, "row")
    _check_slices(y_slices, "y_slices", m, "column")
    if matrix.min() < -1e-4 or matrix.max() > 1 + 1e-4:
        raise ValueError(
            f"alignment values must lie in [0, 1] (expected alignment), got [{matrix.min():.4g}, {matrix.max():.4g}]"
        )
    matrix = np.clip(matrix, 0.0, 1.0)

    cell = min(0.8, max(0.4, 9.0 / max(n, m)))  # inches per heatmap cell
    cell_pt = cell * 72
    thumb_pt = 0.85 * cell_pt
    row_font, col_font = 7.0, 6.5
    left, right, bottom = 2.7, 1.5, 0.55
    # Character budgets from DejaVu Sans' average advance (about 0.52 em), with some slack.
    row_width = int((left * 72 - 10) / (0.55 * row_font))
    row_lines = max(1, int(cell_pt / (row_font * 1.25)))
    col_width = int((cell_pt - 6) / (0.55 * col_font))
    row_text = {i: _wrap(item, row_width, row_lines) for i, item in enumerate(x_slices) if isinstance(item, str)}
    col_text = {j: _wrap(item, col_width, 7) for j, item in enumerate(y_slices) if isinstance(item, str)}
    label_pt = max([text.count("\n") + 1 for text in col_text.values()], default=0) * col_font * 1.25
    if len(col_text) < m:
        label_pt = max(label_pt, thumb_pt)
    top = (label_pt + 8) / 72 + 0.45
    width, height = left + m * cell + right, top + n * cell + bottom
    figure = Figure(figsize=(width, height))
    ax = figure.add_axes((left / width, bottom / height, m * cell / width, n * cell / height))
    image = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
    ax.set_xticks(range(m), [str(j + 1) for j in range(m)], fontsize=7)
    ax.set_yticks(range(n), [str(i + 1) for i in range(n)], fontsize=7)
    ax.yaxis.tick_right()
    ax.yaxis.set_label_position("right")
    ax.set_ylabel("x slice", fontsize=8)
    ax.set_xlabel("y slice", fontsize=8)
    ax.tick_params(length=2)
    if cell >= 0.5:
        for i in range(n):
            for j in range(m):
                if matrix[i, j] >= 0.05:
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6.5,
                            color="white" if matrix[i, j] > 0.55 else "black")

    for i, item in enumerate(x_slices):
        if isinstance(item, Image.Image):
            box = AnnotationBbox(_thumbnail(item, thumb_pt), (0, i), xycoords=("axes fraction", "data"),
                                 xybox=(-(thumb_pt / 2 + 4), 0), boxcoords="offset points", frameon=False)
            ax.add_artist(box)
        else:
            ax.annotate(row_text[i], (0, i), xycoords=("axes fraction", "data"), xytext=(-4, 0),
                        textcoords="offset points", ha="right", va="center", multialignment="left",
                        fontsize=row_font)
    for j, item in enumerate(y_slices):
        if isinstance(item, Image.Image):
            box = AnnotationBbox(_thumbnail(item, thumb_pt), (j, 1), xycoords=("data", "axes fraction"),
                                 xybox=(0, thumb_pt / 2 + 4), boxcoords="offset points", frameon=False)
            ax.add_artist(box)
        else:
            ax.annotate(col_text[j], (j, 1), xycoords=("data", "axes fraction"), xytext=(0, 4),
                        textcoords="offset points", ha="center", va="bottom", multialignment="left",
                        fontsize=col_font)
    colour_axes = figure.add_axes(((left + m * cell + 0.55) / width, bottom / height, 0.18 / width, n * cell / height))
    figure.colorbar(image, cax=colour_axes, label="expected alignment")
    heading = _plain(title) if title else "Soft alignment (GAK expected path)"
    figure.text(0.5, 1 - 0.12 / height, heading, ha="center", va="top", fontsize=10)
    return _save(figure, out)


# ----------------------------------------------------------------------------- result plots


def plot_position_curve(
    accuracy_by_position: dict[str, list[float]], out: Path, chance: float | None = None
) -> Path:
    """Accuracy against the position (1..k) of the relevant document: is the model position-robust?"""
    out = _check_out(out)
    if not isinstance(accuracy_by_position, Mapping) or len(accuracy_by_position) == 0:
        raise ValueError("accuracy_by_position must be a non-empty dict of model name -> list of accuracies")
    curves: dict[str, list[float]] = {}
    for model, values in accuracy_by_position.items():
        if len(values) == 0:
            raise ValueError(f"accuracy_by_position[{model!r}] is empty: expected one accuracy per position")
        curves[str(model)] = [_check_unit(v, f"accuracy_by_position[{model!r}][{k}]") for k, v in enumerate(values)]
    if chance is not None:
        chance = _check_unit(chance, "chance")
    longest = max(len(values) for values in curves.values())
    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = figure.subplots()
    for k, ((model, values), colour) in enumerate(zip(curves.items(), _colours(len(curves)))):
        positions = list(range(1, len(values) + 1))
        ax.plot(positions, values, marker=_MARKERS[k % len(_MARKERS)], color=colour, label=_plain(model), linewidth=1.6)
    if chance is not None:
        ax.axhline(chance, linestyle="--", color="grey", linewidth=1.2, label=f"chance ({chance:.2f})")
    ax.set_xticks(range(1, longest + 1))
    ax.set_xlim(0.7, longest + 0.3)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("position of the relevant document")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy by position of the relevant document")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(figure, out)


def _grouped_bars(
    ax: Axes,
    groups: list[str],
    series: dict[str, list[float]],
    errors: dict[str, list[float]] | None,
    label_fmt: str,
) -> None:
    """Bars for each group on x, one bar per series; missing values (NaN) get no bar."""
    count = len(series)
    width = 0.8 / count
    x = np.arange(len(groups), dtype=float)
    for k, ((name, values), colour) in enumerate(zip(series.items(), _colours(count))):
        offset = x - 0.4 + width * (k + 0.5)
        heights = np.asarray(values, dtype=float)
        present = np.isfinite(heights)
        yerr = None
        if errors is not None:
            spread = np.asarray(errors[name], dtype=float)  # NaN (one seed): no error bar
            yerr = spread[present]
        ax.bar(offset[present], heights[present], width=width * 0.95, color=colour, label=_plain(name),
               yerr=yerr, capsize=2 if yerr is not None else 0, error_kw={"linewidth": 0.8})
        top = heights + (np.nan_to_num(np.asarray(errors[name], dtype=float)) if errors is not None else 0.0)
        many = len(groups) * count > 24
        for position, value, above, shown in zip(offset, heights, top, present):
            if shown:
                ax.text(position, max(above, value, 0.0) + 0.01, format(value, label_fmt), ha="center", va="bottom",
                        fontsize=6 if many else 7, rotation=90 if many else 0)
    ax.set_xticks(x, [_plain(_shorten(g, 22)) for g in groups], rotation=25 if len(groups) > 4 else 0,
                  ha="right" if len(groups) > 4 else "center", rotation_mode="anchor")
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def plot_pattern_bars(
    per_pattern: dict[str, dict[str, float]],
    out: Path,
    title: str = "MMVP-style accuracy by visual pattern",
) -> Path:
    """Per-pattern accuracy, one bar per model: which visual patterns each model still misses.

    `per_pattern` maps model name -> pattern -> accuracy in [0, 1]; patterns are the union of
    keys in first-seen order, and a model without a pattern gets no bar there.
    """
    out = _check_out(out)
    if not isinstance(per_pattern, Mapping) or len(per_pattern) == 0:
        raise ValueError("per_pattern must be a non-empty dict of model name -> {pattern: accuracy}")
    patterns: list[str] = []
    for model, scores in per_pattern.items():
        if not isinstance(scores, Mapping) or len(scores) == 0:
            raise ValueError(f"per_pattern[{model!r}] must be a non-empty dict of pattern -> accuracy")
        for pattern, value in scores.items():
            _check_unit(value, f"per_pattern[{model!r}][{pattern!r}]")
            if str(pattern) not in patterns:
                patterns.append(str(pattern))
    series: dict[str, list[float]] = {}
    for model, scores in per_pattern.items():
        by_name = {str(pattern): float(value) for pattern, value in scores.items()}
        series[str(model)] = [by_name.get(pattern, math.nan) for pattern in patterns]
    figure = Figure(figsize=(max(6.4, 1.0 + 0.35 * len(patterns) * (len(series) + 1)), 4.6), layout="constrained")
    ax = figure.subplots()
    _grouped_bars(ax, patterns, series, None, ".2f")
    ax.set_ylim(0.0, 1.12)
    ax.set_ylabel("accuracy")
    ax.set_title(_plain(title))
    figure.legend(fontsize=8, loc="outside right upper")
    return _save(figure, out)


def plot_metric_bars(results: dict[str, dict[str, tuple[float, float]]], out: Path, title: str) -> Path:
    """Ablation bars: for each metric one bar per variant, mean with a +-std error bar over seeds.

    `results` maps variant name -> metric -> (mean, std); metrics are the union of keys in
    first-seen order. A NaN std (a single seed) draws no error bar.
    """
    out = _check_out(out)
    if not isinstance(results, Mapping) or len(results) == 0:
        raise ValueError("results must be a non-empty dict of variant name -> {metric: (mean, std)}")
    metrics: list[str] = []
    cleaned: dict[str, dict[str, tuple[float, float]]] = {}
    for variant, scores in results.items():
        if not isinstance(scores, Mapping) or len(scores) == 0:
            raise ValueError(f"results[{variant!r}] must be a non-empty dict of metric -> (mean, std)")
        cleaned[str(variant)] = {}
        for metric, value in scores.items():
            where = f"results[{variant!r}][{metric!r}]"
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
                raise ValueError(f"{where} must be a (mean, std) pair, got {value!r}")
            mean, std = _as_float(value[0], f"{where} mean"), _as_float(value[1], f"{where} std")
            if not math.isfinite(mean):
                raise ValueError(f"{where}: mean must be finite, got {mean}")
            if std < 0 or math.isinf(std):
                raise ValueError(f"{where}: std must be >= 0 (or NaN for one seed), got {std}")
            cleaned[str(variant)][str(metric)] = (mean, std)
            if str(metric) not in metrics:
                metrics.append(str(metric))
    means = {v: [s[m][0] if m in s else math.nan for m in metrics] for v, s in cleaned.items()}
    stds = {v: [s[m][1] if m in s else math.nan for m in metrics] for v, s in cleaned.items()}
    figure = Figure(figsize=(max(6.4, 1.0 + 0.3 * len(metrics) * (len(cleaned) + 1)), 4.8), layout="constrained")
    ax = figure.subplots()
    _grouped_bars(ax, metrics, means, stds, ".2f")
    highest = max(
        (mean + (0.0 if math.isnan(std) else std) for s in cleaned.values() for mean, std in s.values()), default=1.0
    )
    lowest = min((mean for s in cleaned.values() for mean, _ in s.values()), default=0.0)
    if 0.0 <= lowest and highest <= 1.0:
        ax.set_ylim(0.0, 1.15)
    ax.set_ylabel("mean ± std over seeds")
    ax.set_title(_plain(title))
    figure.legend(fontsize=8, loc="outside right upper")
    return _save(figure, out)


# ----------------------------------------------------------------------------- learning curves

CURVE_PANELS: tuple[str, ...] = ("T->I R@5", "VIST 5c+4i R@5", "VQA acc", "POPE F1")


def plot_learning_curves(
    scores: Mapping[str, Mapping[int, Mapping[str, float | None]]],
    teacher: Mapping[str, float],
    losses: Mapping[str, Mapping[str, Sequence[float]]],
    out: Path,
) -> Path:
    """Val scores against Sugar steps (one line per variant, the teacher dashed), and L_g beside
    alpha * L_d: where the curve flattens is where more steps stop paying."""
    out = _check_out(out)
    if not scores:
        raise ValueError("scores: no variant to draw")
    variants = list(scores)
    colour = dict(zip(variants, _colours(len(variants))))
    figure = Figure(figsize=(4.0 * (len(CURVE_PANELS) + 1), 3.8), layout="constrained")
    axes = figure.subplots(1, len(CURVE_PANELS) + 1)
    for ax, metric in zip(axes, CURVE_PANELS):
        ax.set_title(f"val {metric} (%)")
        ax.set_xlabel("Sugar steps")
        ax.grid(True, alpha=0.3)
        for variant, rows in scores.items():
            points = sorted((step, row.get(metric)) for step, row in rows.items() if row.get(metric) is not None)
            if points:
                ax.plot([p for p, _ in points], [100 * v for _, v in points], marker="o", markersize=3,
                        color=colour[variant], label=_plain(variant))
        if metric in teacher:
            ax.axhline(100 * teacher[metric], color="grey", linestyle="--", linewidth=1, label="teacher")
        ax.legend(fontsize=8)
    ax = axes[-1]
    ax.set_title("L_g and alpha * L_d (train)")
    ax.set_xlabel("Sugar steps")
    ax.grid(True, alpha=0.3)
    for variant, series in losses.items():
        steps = list(series.get("step", []))
        for name, style in (("L_g", "-"), ("alpha L_d", ":")):
            values = list(series.get(name, []))
            if steps and values:
                ax.plot(steps, values, linestyle=style, color=colour.get(variant, "black"), label=_plain(f"{variant} {name}"))
    if ax.lines:
        ax.legend(fontsize=7)
    return _save(figure, out)


def plot_tradeoff(
    points: Mapping[str, Mapping[str, float | None]],
    base: Mapping[str, float | None],
    panels: Sequence[tuple[str, str]],
    out: Path,
) -> Path:
    """One panel per (generation metric, retrieval metric): a point per setting, base as a star.
    Up and to the right is better on both; a setting left of base paid generation for retrieval."""
    out = _check_out(out)
    if not points:
        raise ValueError("points: no setting to draw")
    names = list(points)
    colour = dict(zip(names, _colours(len(names))))
    figure = Figure(figsize=(4.2 * len(panels), 4.0), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(panels)))
    for ax, (x_metric, y_metric) in zip(axes, panels):
        ax.set_xlabel(f"{x_metric} (generation)")
        ax.set_ylabel(f"{y_metric} (retrieval)")
        ax.grid(True, alpha=0.3)
        for name, row in points.items():
            x, y = row.get(x_metric), row.get(y_metric)
            if x is not None and y is not None:
                ax.scatter([100 * x], [100 * y], color=colour[name], s=30, label=_plain(name), zorder=3)
        x, y = base.get(x_metric), base.get(y_metric)
        if x is not None and y is not None:
            ax.scatter([100 * x], [100 * y], color="black", marker="*", s=120, label="base", zorder=4)
        ax.legend(fontsize=7)
    return _save(figure, out)
