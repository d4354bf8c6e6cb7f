"""`sugar seeds`: the demo's headline numbers over several seeds, mean +- std.

    sugar demo --out runs/demo --seed 0
    sugar demo --out runs/seed1 --seed 1
    sugar demo --out runs/seed2 --seed 2
    sugar seeds runs/demo runs/seed1 runs/seed2      # -> results/demo-seeds.md, .json

Each argument is one finished `sugar demo`: its folder, or its metrics.json kept elsewhere (a run
folder need not outlive its numbers: `results/demo-seed0/metrics.json`); a seed changes the world
and the training. The runs must share one recipe: a summary over different recipes would be no seed
spread at all, so a differing setting is an error that names it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sugar.checks import UsageError
from sugar.curve import value_at
from sugar.fileio import atomic_write_text

MODELS = ("base", "sugar", "teacher")
# column -> dotted path into metrics.json's models.<model>
COLUMNS: dict[str, str] = {
    "T->I R@1": "retrieval.t2i.r@1",
    "T->I R@5": "retrieval.t2i.r@5",
    "I->T R@5": "retrieval.i2t.r@5",
    "VIST 5c R@5": "interleaved.5c.r@5",
    "VIST 5c+4i R@5": "interleaved.5c4i.r@5",
    "Wino text": "winoground.text",
    "Wino image": "winoground.image",
    "Wino group": "winoground.group",
    "VQA": "qa.accuracy",
    "POPE F1": "pope.f1",
    "POPE acc": "pope.accuracy",
    "RAG none": "rag.none.accuracy",
    "RAG self k=1": "rag.self_k1.accuracy",
    "RAG self k=3": "rag.self_k3.accuracy",
    "RAG teacher k=1": "rag.teacher_k1.accuracy",
    "RAG oracle": "rag.oracle.accuracy",
    "self hit@1": "rag.self_k1.hit@1",
    "teacher hit@1": "rag.teacher_k1.hit@1",
}
# settings of the sugar stage that differ between seeds by construction
PER_RUN_KEYS = {"seed", "output_dir", "init_from", "vision_cache_dir", "world", "teachers"}


@dataclass
class SeedRun:
    folder: Path
    metrics: dict[str, Any]
    source: Path | None = None  # what was given on the command line (the folder or its metrics.json)

    @property
    def seed(self) -> int:
        return int(self.metrics["seeds"]["training"])


@dataclass
class MeanStd:
    mean: float
    std: float  # sample standard deviation (n - 1); 0 for one value
    values: list[float] = field(default_factory=list)


def mean_std(values: list[float]) -> MeanStd:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return MeanStd(mean, std, list(values))


def seeds_label(row: str, seeds: int, total: int) -> str:
    """A row some seeds still lack says so in every table."""
    return row if seeds >= total else f"{row} ({seeds} of {total} seeds)"


def cell_text(cell: dict[str, Any] | None, seeds: int) -> str:
    """'mean +- std' in %, and how many seeds when fewer than the row's measured it."""
    if cell is None:
        return ""
    if len(cell["values"]) == 1:  # one seed has no spread: a '+- 0.0' would read as a measured one
        text = f"{100 * cell['mean']:.1f}"
    else:
        text = f"{100 * cell['mean']:.1f} +- {100 * cell['std']:.1f}"
    return text if len(cell["values"]) >= seeds else f"{text} (n={len(cell['values'])})"


def dig(tree: dict[str, Any], dotted: str) -> float | None:
    return value_at(tree, tuple(dotted.split(".")))


def load_runs(folders: list[Path]) -> list[SeedRun]:
    """The finished demos in `folders` (demo folders or their metrics.json files), checked to be
    distinct seeds of one recipe."""
    if len(folders) < 2:
        raise UsageError(f"sugar seeds needs at least two demo folders, got {len(folders)}")
    runs: list[SeedRun] = []
    for given in folders:
        path = given if given.suffix == ".json" else given / "metrics.json"
        folder = path.parent
        if not path.is_file():
            raise UsageError(f"{path}: not found; expected a finished `sugar demo --out {folder}`")
        try:
            metrics = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
        for key in ("models", "seeds", "config", "quick"):
            if key not in metrics:
                raise UsageError(f"{path}: missing the field {key!r} of a demo's metrics.json")
        runs.append(SeedRun(folder, metrics, given))
    first = runs[0]
    seen: dict[int, Path] = {}
    for run in runs:
        if run.seed in seen:
            raise UsageError(f"{run.folder} and {seen[run.seed]} are both seed {run.seed}; expected distinct seeds")
        seen[run.seed] = run.folder
        for key in sorted(set(first.metrics["config"]) | set(run.metrics["config"])):
            if key in PER_RUN_KEYS:
                continue
            if key not in first.metrics["config"] or key not in run.metrics["config"]:
                continue  # a setting an older version did not record: listed by `unrecorded_settings`
            a, b = first.metrics["config"][key], run.metrics["config"][key]
            if a != b:
                raise UsageError(
                    f"{run.folder}/metrics.json: sugar-stage setting {key!r} is {b!r}, but {a!r} in "
                    f"{first.folder}/metrics.json; seeds must share one recipe"
                )
        if run.metrics["quick"] != first.metrics["quick"]:
            raise UsageError(f"{run.folder}: a {'quick' if run.metrics['quick'] else 'full'} demo among other kinds")
    return sorted(runs, key=lambda run: run.seed)


def unrecorded_settings(runs: list[SeedRun]) -> dict[str, dict[int, Any]]:
    """{setting: {seed: value}} for sugar-stage settings that only some runs record (a run made by
    an older version, before the setting existed): shown beside the summary, not compared."""
    keys = set().union(*(run.metrics["config"] for run in runs)) - PER_RUN_KEYS
    return {
        key: {run.seed: run.metrics["config"][key] for run in runs if key in run.metrics["config"]}
        for key in sorted(keys)
        if not all(key in run.metrics["config"] for run in runs)
    }


def summarise(runs: list[SeedRun]) -> dict[str, dict[str, MeanStd]]:
    """{model: {column: mean +- std}} over the runs (columns a model lacks are left out)."""
    summary: dict[str, dict[str, MeanStd]] = {}
    for model in MODELS:
        summary[model] = {}
        for column, dotted in COLUMNS.items():
            values = [v for v in (dig(run.metrics["models"].get(model, {}), dotted) for run in runs) if v is not None]
            if len(values) == len(runs):
                summary[model][column] = mean_std(values)
    return summary


def write_summary(runs: list[SeedRun], out: Path) -> tuple[Path, Path]:
    summary = summarise(runs)
    seeds = [run.seed for run in runs]
    first = runs[0].metrics
    stage_means = {
        stage: mean_std([float(run.metrics["stages"][stage]) for run in runs])
        for stage in first["stages"]
        if all(stage in run.metrics["stages"] for run in runs)
    }
    lines = [
        "# The demo over seeds" + (" (QUICK LOOK: small world, few steps)" if first["quick"] else ""),
        "",
        f"Command: `sugar seeds {' '.join(str(run.source or run.folder) for run in runs)}`, each a "
        f"`sugar demo --seed N` (seeds {', '.join(map(str, seeds))}; a seed changes the world and the training).",
        "",
        f"Model: {first['model'].get('lm')} behind {first['model'].get('vision_tower')}, LoRA r{first['model'].get('lora_r')}; "
        f"sugar stage: {first['config'].get('steps')} steps, loss {first['config'].get('discriminative_loss')}, "
        f"alpha {first['config'].get('alpha')}, pair target {first['config'].get('pair_target')}.",
        "",
        f"Test split, in %, mean +- std over {len(runs)} seeds (sample std).",
        "",
    ]
    if unrecorded := unrecorded_settings(runs):
        lines += [
            "Settings only some runs record (made by a version before the setting existed; the others ran "
            "without it): " + "; ".join(f"{key} ({', '.join(f'seed {s}: {v}' for s, v in found.items())})"
                                         for key, found in unrecorded.items()),
            "",
        ]
    for group in (list(COLUMNS)[:8], list(COLUMNS)[8:]):
        lines += ["| model | " + " | ".join(group) + " |", "|---|" + "---|" * len(group)]
        for model in MODELS:
            cells = [summary[model].get(column) for column in group]
            if all(cell is None for cell in cells):
                continue
            text = ["-" if c is None else f"{100 * c.mean:.1f} +- {100 * c.std:.1f}" for c in cells]
            lines.append(f"| {model} | " + " | ".join(text) + " |")
        lines.append("")
    lines += ["Per seed (T->I R@5 / VIST 5c+4i R@5 / VQA of sugar):", ""]
    for run in runs:
        sugar = run.metrics["models"].get("sugar", {})
        values = [dig(sugar, COLUMNS[c]) for c in ("T->I R@5", "VIST 5c+4i R@5", "VQA")]
        lines.append(f"- seed {run.seed} ({run.folder}): " + " / ".join("-" if v is None else f"{100 * v:.1f}" for v in values))
    lines += [
        "",
        "Stage wall times (s, mean +- std; runs of different seeds may have shared the machine): "
        + ", ".join(f"{stage} {c.mean:.0f} +- {c.std:.0f}" for stage, c in stage_means.items()),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in first.get("versions", {}).items()),
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    markdown, data = out.with_suffix(".md"), out.with_suffix(".json")
    atomic_write_text(markdown, "\n".join(lines))
    payload = {
        "seeds": seeds,
        "folders": [str(run.folder) for run in runs],
        "summary": {m: {c: vars(v) for c, v in cols.items()} for m, cols in summary.items()},
        "stages": {stage: vars(c) for stage, c in stage_means.items()},
        "config": first["config"],
        "model": first["model"],
        "versions": first.get("versions", {}),
    }
    atomic_write_text(data, json.dumps(payload, indent=2))
    return markdown, data


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "seeds",
        help="the demo's headline numbers over several seeds (mean +- std)",
        description="Summarise finished `sugar demo` folders of different seeds into OUT.md and OUT.json.",
    )
    parser.add_argument("folders", nargs="+", help="demo output folders (each with metrics.json), or metrics.json files")
    parser.add_argument("--out", default="results/demo-seeds", help="output path without suffix (default results/demo-seeds)")
    parser.set_defaults(func=_run)


def _run(args: Any) -> int:
    runs = load_runs([Path(folder) for folder in args.folders])
    markdown, _ = write_summary(runs, Path(args.out))
    print(f"summary: {markdown}")
    return 0
