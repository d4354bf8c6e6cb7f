"""results/video.md: clip retrieval and temporal grounding of the ablation's rows over seeds.

The clips benchmark is one of the ablation's benchmarks, so its rows (base, Sugar, the `mean`
target structure, the teacher) come from the same trainings as the rest of the table; this file
only reads them out at full detail (R@1/5/10 both ways, grounding accuracy and IoU) with the
per-seed values, which a claim about video needs beside its mean.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sugar.curve import value_at
from sugar.fileio import atomic_write_text
from sugar.seeds import cell_text, mean_std, seeds_label

COLUMNS: dict[str, tuple[str, ...]] = {
    "T->V R@1": ("t2v", "r@1"),
    "T->V R@5": ("t2v", "r@5"),
    "T->V R@10": ("t2v", "r@10"),
    "V->T R@1": ("v2t", "r@1"),
    "V->T R@5": ("v2t", "r@5"),
    "V->T R@10": ("v2t", "r@10"),
    "ground acc": ("grounding", "accuracy"),
    "ground IoU": ("grounding", "mean_iou"),
    "localise acc": ("localisation", "accuracy"),
}


def clip_rows(
    per_seed: dict[int, dict[str, dict[str, Any]]], row_order: Sequence[str]
) -> dict[str, dict[int, dict[str, Any]]]:
    """{row: {seed: clips results}} for every row of `row_order` that ran the clips benchmark; the teacher from
    the sugar row, and the equal split (each sentence given an equal share of the frames: the
    grounding floor) from any row, since it depends on the world alone."""
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    for seed, results in sorted(per_seed.items()):
        for row in row_order:
            clips = results.get(row, {}).get("clips")
            if not isinstance(clips, dict):
                continue
            rows.setdefault(row, {})[seed] = clips
            if row == "sugar" and isinstance(clips.get("teacher"), dict):
                rows.setdefault("teacher", {})[seed] = clips["teacher"]
            if isinstance(clips.get("uniform_grounding"), dict):
                # its localisation cell is the chance level: the same clips, no model
                chance = (clips.get("localisation") or {}).get("chance")
                floor = {"grounding": clips["uniform_grounding"], **({"localisation": {"accuracy": chance}} if chance is not None else {})}
                rows.setdefault("equal split", {})[seed] = floor
    return rows


def write_video_results(
    per_seed: dict[int, dict[str, dict[str, Any]]], row_order: Sequence[str], command: str, path: Path
) -> Path | None:
    """Write `path` (markdown) and its .json beside it, rows in the ablation's order; None when no
    row ran the clips benchmark."""
    rows = clip_rows(per_seed, row_order)
    if not rows:
        return None
    summary = {
        row: {
            column: vars(mean_std(values))
            for column, key in COLUMNS.items()
            if (values := [v for v in (value_at(clips, key) for clips in seeds.values()) if v is not None])
        }
        for row, seeds in rows.items()
    }
    sampling = next(iter(rows["sugar" if "sugar" in rows else next(iter(rows))].values())).get("sampling", {})
    frames = f"{sampling.get('clip_frames', 'all')} frames (stride {sampling.get('frame_stride', 1)})"
    lines = [
        "# Video as slices: clip retrieval and temporal grounding (test split)",
        "",
        f"Made by `{command}` (the clips benchmark of the ablation; seeds "
        f"{sorted({seed for seeds in rows.values() for seed in seeds})}). Each world clip is {frames} "
        "as image slices and its 2-5 narration sentences as text slices. T->V: a narration (all its "
        "sentences, one document) finds its clip among the test clips; V->T the reverse. Grounding: "
        "`soft_alignment` between a clip's frame embeddings and its sentence embeddings; accuracy counts "
        "sentences whose most-aligned frame lies in the sentence's true span, IoU compares the span each "
        "sentence aligns to with the true one. The teacher reads a clip as the mean of its frames' "
        "CLIP-style embeddings; the equal split gives each sentence an equal share of the frames in order "
        "(no model: the floor a temporal prior alone reaches). Localisation drops the alignment and the order: "
        "each sentence, embedded alone, picks the nearest frame, embedded alone (cosine); a hit when it lies in "
        "the sentence's span; the equal split's cell there is chance (the mean share of a clip a span covers). "
        "Cells: mean +- std over seeds, in %.",
        "",
        "| row | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    seeds_in_all = len({seed for seeds in rows.values() for seed in seeds})
    for row, cells in summary.items():
        text = [cell_text(cells.get(c), len(rows[row])) for c in COLUMNS]
        label = row if row == "equal split" else seeds_label(row, len(rows[row]), seeds_in_all)
        lines.append(f"| {label} | " + " | ".join(text) + " |")
    shown = ("T->V R@5", "V->T R@5", "ground acc", "ground IoU", "localise acc")
    lines += ["", "## Per seed", "", "| row | seed | " + " | ".join(shown) + " |", "|---|---|" + "---|" * len(shown)]
    for row, seeds in rows.items():
        for seed, clips in seeds.items():
            values = [value_at(clips, COLUMNS[c]) for c in shown]
            lines.append(f"| {row} | {seed} | " + " | ".join("" if v is None else f"{100 * v:.1f}" for v in values) + " |")
    lines.append("")
    atomic_write_text(path, "\n".join(lines))
    values = {
        row: {str(seed): {c: value_at(clips, key) for c, key in COLUMNS.items()} for seed, clips in seeds.items()}
        for row, seeds in rows.items()
    }
    record = {"command": command, "sampling": sampling, "summary": summary, "per_seed": values}
    atomic_write_text(path.with_suffix(".json"), json.dumps(record, indent=2))
    return path
