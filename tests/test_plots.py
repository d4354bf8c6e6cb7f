"""The report's figures: valid, non-blank PNGs written atomically, and clear errors on bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sugar.eval.plots import (
    plot_metric_bars,
    plot_pattern_bars,
    plot_position_curve,
    plot_similarity_matrices,
    plot_soft_alignment,
    plot_training_curves,
    read_training_log,
    training_curve_series,
)

HEADER = "step,loss,generative_loss,discriminative_loss,lr,samples_per_second,elapsed_seconds\n"


def assert_png(path: Path, out: Path) -> None:
    """`path` is `out`, a readable non-blank PNG, and the only file left in its folder."""
    assert path == out
    assert out.stat().st_size > 0
    with Image.open(out) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB")).astype(np.int32)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    packed = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    assert len(np.unique(packed)) > 10, "the image is (nearly) a single colour"
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name], "temporary files were left behind"


def write_log(path: Path, rows: list[tuple[float, ...]]) -> Path:
    lines = [HEADER] + [",".join("" if v is None else str(v) for v in row) + "\n" for row in rows]
    path.write_text("".join(lines))
    return path


def sugar_rows(steps: range, resume_offset: float = 0.0) -> list[tuple[float, ...]]:
    return [(s, 2.0 / s, 1.5 / s + resume_offset, 0.5 / s, 1e-4, 10.0, s * 0.1) for s in steps]


def test_read_training_log_keeps_the_last_row_of_a_repeated_step(tmp_path: Path) -> None:
    # Logged to step 30, resumed from the checkpoint at step 20: steps 30 is logged again.
    rows = sugar_rows(range(10, 40, 10)) + sugar_rows(range(30, 50, 10), resume_offset=1.0)
    table = read_training_log(write_log(tmp_path / "train_log.csv", rows))
    assert table["step"] == [10.0, 20.0, 30.0, 40.0]
    assert table["generative_loss"][2] == pytest.approx(1.5 / 30 + 1.0)
    assert table["generative_loss"][1] == pytest.approx(1.5 / 20)
    assert set(table) == set(HEADER.strip().split(","))


def test_read_training_log_reads_empty_and_nan_cells_as_nan(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(HEADER + "1,0.5,0.5,nan,0.001,,\n2,0.4,0.4,,0.001,3.0,1.0\n" + HEADER + "3,0.3\n")
    table = read_training_log(path)
    assert table["step"] == [1.0, 2.0, 3.0]
    assert all(math.isnan(v) for v in table["discriminative_loss"])
    assert math.isnan(table["samples_per_second"][0]) and table["samples_per_second"][1] == 3.0


def test_read_training_log_rejects_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        read_training_log(tmp_path / "missing.csv")
    (tmp_path / "nostep.csv").write_text("loss,lr\n1,2\n")
    with pytest.raises(ValueError, match="'step' column"):
        read_training_log(tmp_path / "nostep.csv")
    (tmp_path / "text.csv").write_text(HEADER + "1,abc,0.5,0.5,0.1,1,1\n")
    with pytest.raises(ValueError, match="'loss' is not a number"):
        read_training_log(tmp_path / "text.csv")


def test_training_curves_skip_runs_without_a_finite_discriminative_loss(tmp_path: Path) -> None:
    logs_dir = tmp_path / "logs"
    logs_dir.mkdir()
    sugar = write_log(logs_dir / "sugar.csv", sugar_rows(range(10, 210, 10)))
    base_rows = [(s, 1.0 / s, 1.0 / s, "nan", 1e-4, 10.0, s * 0.1) for s in range(10, 210, 10)]
    base = write_log(logs_dir / "base.csv", base_rows)
    logs = {"sugar": sugar, "base ($L_g$ only)": base}
    series = training_curve_series(logs)
    assert set(series["generative_loss"]) == {"sugar", "base ($L_g$ only)"}
    assert set(series["discriminative_loss"]) == {"sugar"}
    out = tmp_path / "figures" / "curves.png"
    assert_png(plot_training_curves(logs, out), out)


def test_training_curves_reject_empty_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="logs must be a non-empty dict"):
        plot_training_curves({}, tmp_path / "curves.png")
    empty = tmp_path / "empty.csv"
    empty.write_text(HEADER)
    with pytest.raises(ValueError, match="no run logged a finite"):
        plot_training_curves({"empty": empty}, tmp_path / "curves.png")
    with pytest.raises(ValueError, match=r"out must be a path ending in \.png"):
        plot_training_curves({"empty": empty}, tmp_path / "curves.jpg")


def test_similarity_matrices_from_tensors_and_arrays(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    r = torch.nn.functional.normalize(torch.randn(6, 8, generator=generator), dim=-1)
    model = (r @ r.T).requires_grad_(True)
    target = np.clip(model.detach().numpy() + 0.1, -1, 1)
    labels = [f"a fairly long caption number {i} about shapes" for i in range(6)]
    out = tmp_path / "sim" / "m.png"
    assert_png(plot_similarity_matrices(model, target, out, labels=labels, title="one batch"), out)
    big = tmp_path / "big" / "m.png"  # large batch: no cell values, no labels
    assert_png(plot_similarity_matrices(np.eye(16), np.eye(16) * 0.5, big), big)


def test_similarity_matrices_reject_bad_shapes(tmp_path: Path) -> None:
    out = tmp_path / "m.png"
    with pytest.raises(ValueError, match=r"model_similarity must be square \(n, n\), got shape \(3, 4\)"):
        plot_similarity_matrices(np.zeros((3, 4)), np.zeros((3, 4)), out)
    with pytest.raises(ValueError, match=r"target_similarity must have the same shape .*\(3, 3\).*\(4, 4\)"):
        plot_similarity_matrices(np.zeros((3, 3)), np.zeros((4, 4)), out)
    with pytest.raises(ValueError, match="model_similarity must be a non-empty 2-D matrix"):
        plot_similarity_matrices(np.zeros(3), np.zeros(3), out)
    with pytest.raises(ValueError, match=r"labels must have one entry per row \(n = 3\), got 2"):
        plot_similarity_matrices(np.eye(3), np.eye(3), out, labels=["a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        plot_similarity_matrices(np.full((2, 2), np.nan), np.eye(2), out)
    assert not out.exists()


def shape_image(colour: tuple[int, int, int], size: tuple[int, int] = (80, 60)) -> Image.Image:
    image = Image.new("RGB", size, (245, 245, 245))
    image.paste(colour, (10, 10, size[0] - 10, size[1] - 10))
    return image


def test_soft_alignment_over_images_and_sentences(tmp_path: Path) -> None:
    x_slices: list[str | Image.Image] = [
        shape_image((200, 30, 30)),
        "A red square sits on the left of the picture, next to a much smaller blue circle.",
        shape_image((30, 30, 200), (40, 90)),
        "Then the blue circle moves $5 to the right " + "and keeps going " * 12,
    ]
    y_slices: list[str | Image.Image] = [
        "A red square.",
        shape_image((200, 40, 40)),
        "Now a blue circle.",
        shape_image((40, 40, 210)).convert("L"),
        "The end.",
    ]
    alignment = torch.rand(4, 5, generator=torch.Generator().manual_seed(1))
    out = tmp_path / "align" / "a.png"
    assert_png(plot_soft_alignment(alignment, x_slices, y_slices, out, title="document 3 vs document 7"), out)


def test_soft_alignment_stays_drawable_at_twelve_slices(tmp_path: Path) -> None:
    slices: list[str | Image.Image] = [
        shape_image((20 * k, 100, 200 - 10 * k)) if k % 3 == 0 else f"Sentence {k} of the story, told at some length."
        for k in range(12)
    ]
    out = tmp_path / "twelve" / "a.png"
    assert_png(plot_soft_alignment(np.eye(12), slices, slices, out), out)


def test_soft_alignment_rejects_mismatched_slices(tmp_path: Path) -> None:
    out = tmp_path / "a.png"
    with pytest.raises(ValueError, match=r"x_slices must have one slice per alignment row \(3\), got 2"):
        plot_soft_alignment(np.zeros((3, 2)), ["a", "b"], ["c", "d"], out)
    with pytest.raises(ValueError, match=r"y_slices must have one slice per alignment column \(2\), got 3"):
        plot_soft_alignment(np.zeros((3, 2)), ["a", "b", "c"], ["c", "d", "e"], out)
    with pytest.raises(ValueError, match=r"alignment values must lie in \[0, 1\]"):
        plot_soft_alignment(np.full((1, 1), 2.0), ["a"], ["b"], out)
    with pytest.raises(ValueError, match=r"x_slices\[0\] must be a str or a PIL.Image.Image"):
        plot_soft_alignment(np.zeros((1, 1)), [3], ["b"], out)  # type: ignore[list-item]
    assert not out.exists()


def test_position_curve(tmp_path: Path) -> None:
    out = tmp_path / "pos" / "p.png"
    curves = {"base": [0.6, 0.5, 0.45, 0.4, 0.38, 0.35], "sugar": [0.7, 0.66, 0.6, 0.6, 0.55, 0.5]}
    assert_png(plot_position_curve(curves, out, chance=0.25), out)
    with pytest.raises(ValueError, match="accuracy_by_position must be a non-empty dict"):
        plot_position_curve({}, out)
    with pytest.raises(ValueError, match=r"accuracy_by_position\['x'\] is empty"):
        plot_position_curve({"x": []}, out)
    with pytest.raises(ValueError, match=r"accuracy_by_position\['x'\]\[1\] must be an accuracy in \[0, 1\]"):
        plot_position_curve({"x": [0.5, 1.5]}, out)
    with pytest.raises(ValueError, match="chance must be an accuracy"):
        plot_position_curve({"x": [0.5]}, out, chance=2.0)


def test_pattern_bars_take_the_union_of_patterns(tmp_path: Path) -> None:
    out = tmp_path / "mmvp" / "bars.png"
    per_pattern = {
        "base": {"orientation": 0.5, "color": 0.75, "quantity": 0.25},
        "sugar": {"orientation": 0.75, "color": 1.0, "position": 0.5},
    }
    assert_png(plot_pattern_bars(per_pattern, out), out)
    with pytest.raises(ValueError, match="per_pattern must be a non-empty dict"):
        plot_pattern_bars({}, out)
    with pytest.raises(ValueError, match=r"per_pattern\['base'\] must be a non-empty dict"):
        plot_pattern_bars({"base": {}}, out)
    with pytest.raises(ValueError, match=r"per_pattern\['base'\]\['color'\] must be an accuracy"):
        plot_pattern_bars({"base": {"color": -0.1}}, out)


def test_metric_bars_for_the_ablation(tmp_path: Path) -> None:
    out = tmp_path / "ablation" / "bars.png"
    variants = ["base", "sugar", "no GAK", "no Triple Kernel", "last token", "L_d only", "InfoNCE"]
    metrics = ["T->I R@5", "VIST R@5", "Winoground group", "POPE F1"]
    results = {
        v: {m: (0.1 + 0.1 * i + 0.02 * j, 0.03 if i != 1 else float("nan")) for j, m in enumerate(metrics)}
        for i, v in enumerate(variants)
    }
    assert_png(plot_metric_bars(results, out, title="Ablation (3 seeds)"), out)
    with pytest.raises(ValueError, match="results must be a non-empty dict"):
        plot_metric_bars({}, out, title="t")
    with pytest.raises(ValueError, match=r"results\['a'\]\['m'\] must be a \(mean, std\) pair"):
        plot_metric_bars({"a": {"m": 0.5}}, out, title="t")  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"results\['a'\]\['m'\] mean must be a number"):
        plot_metric_bars({"a": {"m": ("high", 0.1)}}, out, title="t")  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="std must be >= 0"):
        plot_metric_bars({"a": {"m": (0.5, -1.0)}}, out, title="t")


def test_an_existing_figure_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "p.png"
    out.write_bytes(b"old")
    plot_position_curve({"m": [0.5, 0.6]}, out)
    assert_png(out, out)


def test_a_failed_render_leaves_neither_a_figure_nor_a_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.figure import Figure

    def broken(self: Figure, *args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_position_curve({"m": [0.5]}, tmp_path / "p.png")
    assert list(tmp_path.iterdir()) == []
