"""`sugar balance`: does discrimination hurt generation? A trade-off curve, not an opinion.

    sugar balance                                        # runs/demo/balance/<setting>, results/balance.{md,json,png}
    sugar balance --alphas 0,0.03,0.1,0.3,1 --schedules linear:0.3,cosine:0.3

Every setting continues the demo's base model (built first if missing) with the demo's sugar
recipe and one change: alpha (0 is the generative-only control at the same budget and batch),
or an alpha schedule that brings L_d in over a warm-up fraction of the steps and ends at the
demo's alpha (`alpha_schedule`, `alpha_warmup`). The demo's own alpha at the demo's budget is
the demo's sugar stage (OUT/sugar, trained once for both). Each finished model is scored on val (where a
setting is chosen) and on test (what is reported): retrieval (T->I R@5, VIST 5c+4i R@5) against
generation (VQA accuracy, POPE F1, caption BLEU-4 and CIDEr-D against the five references).
Finished trainings and scores are reused on a re-run, so the study resumes setting by setting;
each finished setting's scores are also kept in RESULTS/balance-rows/seed<N>/ with the recipe that
made them (commit them as they come: a later sitting without the run folders reuses them; a study
on another seed keeps its rows beside them).
"""

from __future__ import annotations

import json
import platform
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sugar.checks import UsageError
from sugar.curve import SEED_HELP, demo_seed, value_at
from sugar.fileio import atomic_write_text
from sugar.kept import keep_scores, kept_scores
from sugar.seeds import mean_std

ALPHAS = (0.0, 0.03, 0.1, 0.3, 1.0)
SCHEDULES = ("linear:0.3", "cosine:0.3")
# benchmark -> item limit per split (None: every item); qa counts VQA and POPE questions per type
LIMITS: dict[str, int | None] = {"retrieval": 300, "interleaved": None, "qa": 100, "captions": 100}
RETRIEVAL = {"T->I R@5": ("retrieval", "t2i", "r@5"), "VIST 5c+4i R@5": ("interleaved", "captions_and_images", "r@5")}
GENERATION = {
    "VQA acc": ("qa", "vqa", "accuracy"),
    "POPE F1": ("qa", "pope", "average", "f1"),
    "BLEU-4": ("captions", "bleu4"),
    "CIDEr-D": ("captions", "cider"),
}
COLUMNS = {**RETRIEVAL, **GENERATION}
SPLITS = ("val", "test")


@dataclass(frozen=True)
class Setting:
    name: str
    folder: str
    overrides: tuple[str, ...]
    demo: bool = False  # the demo's own sugar recipe (constant alpha at the demo's value)
    alpha: float | None = None  # the constant alpha; None for a schedule


@dataclass
class BalanceSettings:
    demo: Path = Path("runs/demo")
    results: Path = Path("results")
    alphas: list[float] = field(default_factory=lambda: list(ALPHAS))
    schedules: list[str] = field(default_factory=lambda: list(SCHEDULES))
    steps: int | None = None  # sugar-stage steps of every setting (None: the demo's)
    overrides: list[str] = field(default_factory=list)  # TrainConfig overrides of every stage
    limits: dict[str, int | None] = field(default_factory=lambda: dict(LIMITS))
    scale: str = "default"  # world size, when the demo folder is built here
    base_steps: int | None = None  # None: the demo's, when the base model is trained here
    align_steps: int | None = None
    seed: int | None = None  # None: the folder's base seed (0 when the base is built here)
    progress: bool = True
    command: str = ""


def demo_alpha() -> float:
    from sugar.demo import DEMO_RECIPE

    return float(DEMO_RECIPE["sugar"]["alpha"])


def parse_schedule(text: str) -> tuple[str, float]:
    """'linear:0.3' -> ("linear", 0.3), with errors that name the expected form."""
    name, _, fraction = text.partition(":")
    if name not in ("constant", "linear", "cosine") or not fraction:
        raise UsageError(f"--schedules: expected NAME:WARMUP with NAME constant, linear or cosine (e.g. linear:0.3), got {text!r}")
    try:
        warmup = float(fraction)
    except ValueError:
        raise UsageError(f"--schedules: the warm-up of {text!r} must be a number in [0, 1)") from None
    if not 0.0 <= warmup < 1.0:
        raise UsageError(f"--schedules: the warm-up of {text!r} must be in [0, 1)")
    return name, warmup


def study_settings(alphas: list[float], schedules: list[str]) -> list[Setting]:
    found = []
    final = demo_alpha()
    for alpha in alphas:
        if alpha < 0:
            raise UsageError(f"--alphas: alpha must be >= 0, got {alpha}")
        found.append(Setting(f"alpha {alpha:g}", f"alpha-{alpha:g}", (f"alpha={alpha}",), demo=alpha == final, alpha=alpha))
    for text in schedules:
        name, warmup = parse_schedule(text)
        found.append(
            Setting(
                f"{name} warm-up {warmup:g} (alpha {final:g})",
                f"{name}-{warmup:g}",
                (f"alpha={final}", f"alpha_schedule={name}", f"alpha_warmup={warmup}"),
            )
        )
    if len({s.folder for s in found}) != len(found):
        raise UsageError(f"settings repeat: {[s.name for s in found]}")
    return found


def row(results: dict[str, Any], teacher: bool = False) -> dict[str, float | None]:
    if teacher:
        return {name: value_at(results, (path[0], "teacher", *path[1:])) for name, path in RETRIEVAL.items()}
    return {name: value_at(results, path) for name, path in COLUMNS.items()}


def run_balance(settings: BalanceSettings) -> Path:
    from sugar.curve import score_saved_model
    from sugar.demo import DemoSettings, StageClock, prepare_models, train_stage

    study = study_settings(settings.alphas, settings.schedules)
    seed = demo_seed(settings.demo, settings.seed)  # the settings continue the folder's base with its seed
    demo = DemoSettings(
        out=settings.demo, seed=seed, scale=settings.scale, align_steps=settings.align_steps, base_steps=settings.base_steps,
        sugar_steps=settings.steps, overrides=list(settings.overrides), progress=settings.progress,
    )
    clock = StageClock(settings.demo)
    prepare_models(demo, clock, with_sugar=False)
    base = settings.demo / "base" / "model"
    scores: dict[str, dict[str, dict[str, float | None]]] = {}
    configs: dict[str, Any] = {}
    rows = settings.results / "balance-rows" / f"seed{seed}"
    for setting in study:
        kept = rows / f"{setting.folder}.json"
        recipe = setting_recipe(settings, seed, list(setting.overrides))
        if (found := kept_scores(kept, recipe)) is not None:  # a row finished in an earlier sitting
            configs[setting.name], scores[setting.name] = found["config"], found["scores"]
            continue
        if setting.demo and settings.steps is None and not settings.overrides:
            # the demo's own sugar stage is this setting: trained once, for the demo and the sweep
            folder = "sugar"
            clock("sugar", lambda: train_stage(demo, "sugar", [f"init_from={base}"]), run=settings.demo / folder)
        else:
            folder = f"balance/{setting.folder}"
            extra = [f"init_from={base}", "save_models_at=[]", *setting.overrides]
            clock(f"balance {setting.folder}", lambda: train_stage(demo, "sugar", extra, folder=folder), run=settings.demo / folder)
        run = settings.demo / folder
        configs[setting.name] = json.loads((run / "config.json").read_text())
        scores[setting.name] = {
            split: row(score_saved_model(run / "model", settings.demo, split, settings.limits, run / "eval" / f"{split}.json",
                                         with_teacher=False, progress=settings.progress))
            for split in SPLITS
        }
        keep_scores(kept, {"config": configs[setting.name], "scores": scores[setting.name]}, recipe)
    kept = rows / "base.json"
    recipe = setting_recipe(settings, seed, None)
    if (found := kept_scores(kept, recipe)) is not None:
        base_scores, teacher = found["base"], found["teacher"]
    else:
        base_scores, teacher = {}, {}
        for split in SPLITS:
            results = score_saved_model(
                base, settings.demo, split, settings.limits, settings.demo / "balance" / f"base-{split}.json",
                with_teacher=True, progress=settings.progress,
            )
            base_scores[split], teacher[split] = row(results), row(results, teacher=True)
        keep_scores(kept, {"base": base_scores, "teacher": teacher}, recipe)
    return write_balance(settings, study, scores, base_scores, teacher, configs, seed)


def setting_recipe(settings: BalanceSettings, seed: int, setting: list[str] | None) -> dict[str, Any]:
    """Everything that decides a setting's scores (None: the base model's)."""
    from sugar.demo import DEMO_RECIPE

    stages = DEMO_RECIPE if setting is not None else {k: v for k, v in DEMO_RECIPE.items() if k != "sugar"}
    return {
        "seed": seed, "scale": settings.scale, "align_steps": settings.align_steps, "base_steps": settings.base_steps,
        "steps": settings.steps, "overrides": list(settings.overrides), "setting": setting, "demo_recipe": stages,
        "limits": dict(settings.limits),
    }


def default_over_seeds(settings: BalanceSettings) -> dict[str, list[dict[str, float | None]]]:
    """Base and the default setting on test over every seed the ablation has finished them on.

    The ablation's sugar row is the demo's sugar stage, so its kept rows (one per seed, under the
    same recipe and budget as this study) give the chosen point and base with several seeds
    without training them again. Its limits are its own (every test image for retrieval)."""
    from sugar.ablate import AblationSettings, kept_row_path, row_recipe

    study = AblationSettings(
        results=settings.results, steps=settings.steps, scale=settings.scale, base_steps=settings.base_steps,
        overrides=list(settings.overrides),
    )
    first = kept_row_path(study, 0, "base").parent  # seed0<tag>: the budget's tag follows the seed
    tag = re.escape(first.name.removeprefix("seed0"))
    names = [p.name for p in first.parent.iterdir()] if first.parent.is_dir() else []
    seeds = sorted(int(m[1]) for name in names if (m := re.fullmatch(rf"seed(\d+){tag}", name)))
    found: dict[str, list[dict[str, float | None]]] = {"base": [], "default": []}
    for seed in seeds:
        kept = {name: kept_scores(kept_row_path(study, seed, row), row_recipe(study, seed, row))
                for name, row in (("base", "base"), ("default", "sugar"))}
        if kept["base"] is not None and kept["default"] is not None:  # a seed counts only with both rows
            for name, scores in kept.items():
                found[name].append({"seed": float(seed), **row(scores)})
    return found


def ablation_limits() -> dict[str, int | None]:
    from sugar.ablate import BENCH_LIMITS

    return {bench: BENCH_LIMITS[bench] for bench in LIMITS}


def _seed_cell(rows: list[dict[str, float | None]], column: str) -> str:
    values = [value for r in rows if (value := r.get(column)) is not None]
    if not values:
        return "-"
    cell = mean_std(values)
    return f"{100 * cell.mean:.1f} +- {100 * cell.std:.1f}" if len(values) > 1 else f"{100 * cell.mean:.1f}"


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _change(new: dict[str, float | None], old: dict[str, float | None]) -> str:
    cells = []
    for column in COLUMNS:
        a, b = new.get(column), old.get(column)
        cells.append("-" if a is None or b is None else f"{100 * (a - b):+.1f}")
    return " | ".join(cells)


def change_lines(study: list[Setting], scores: dict[str, dict[str, dict[str, float | None]]]) -> list[str]:
    """What each step up in alpha changes on val, and each schedule against constant alpha at its final value.

    Differences between settings that share a base, a seed and the data order are paired, so a
    steady trend along alpha reads more surely than any one row against another seed."""
    header = ["| change | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    constant = sorted((s for s in study if s.alpha is not None), key=lambda s: s.alpha or 0.0)
    lines: list[str] = []
    if len(constant) > 1:
        lines += [
            "## Step by step along alpha, val",
            "",
            "What each step up in alpha changes, in points (CIDEr-D x 100): retrieval bought against generation "
            "paid, step by step, on the split a setting is chosen on.",
            "",
            *header,
            *[f"| alpha {low.alpha:g} -> {high.alpha:g} | " + _change(scores[high.name]["val"], scores[low.name]["val"]) + " |"
              for low, high in zip(constant, constant[1:])],
            "",
        ]
    final = demo_alpha()
    reference = next((s for s in constant if s.alpha == final), None)
    schedules = [s for s in study if s.alpha is None]
    if reference is not None and schedules:
        lines += [
            f"## Alpha schedules against constant alpha {final:g}",
            "",
            "Each schedule ends at the same alpha after the same steps as the constant setting; in points "
            "(CIDEr-D x 100), schedule minus constant.",
            "",
            *header,
            *[f"| {s.name}, {split} | " + _change(scores[s.name][split], scores[reference.name][split]) + " |"
              for s in schedules for split in SPLITS],
            "",
        ]
    return lines


def write_balance(
    settings: BalanceSettings,
    study: list[Setting],
    scores: dict[str, dict[str, dict[str, float | None]]],
    base: dict[str, dict[str, float | None]],
    teacher: dict[str, dict[str, float | None]],
    configs: dict[str, Any],
    seed: int = 0,
) -> Path:
    from sugar.demo import _versions
    from sugar.eval.plots import plot_tradeoff

    settings.results.mkdir(parents=True, exist_ok=True)
    over_seeds = default_over_seeds(settings)
    picture = plot_tradeoff(
        {name: split_rows["test"] for name, split_rows in scores.items()},
        base["test"],
        [("VQA acc", "T->I R@5"), ("CIDEr-D", "VIST 5c+4i R@5"), ("POPE F1", "T->I R@5")],
        settings.results / "balance.png",
    )
    payload = {
        "command": settings.command,
        "limits": settings.limits,
        "scores": scores,
        "base": base,
        "teacher": teacher,
        "default_over_seeds": over_seeds,
        "sugar_stage_configs": configs,
        "versions": _versions(),
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }
    atomic_write_text(settings.results / "balance.json", json.dumps(payload, indent=2))
    lines = [
        "# The balance between L_g and L_d",
        "",
        f"Command: `{settings.command}`",
        "",
        f"Every setting continues the same base model (the demo's, seed {seed}) with the demo's sugar recipe and "
        "one change; one seed per setting. Limits per split: "
        + ", ".join(f"{k} {'all' if v is None else v}" for k, v in settings.limits.items())
        + " (qa: VQA questions and POPE questions per negative type; captions: images). In %; CIDEr-D x 100. "
        "A setting is chosen on val; test is what is reported.",
        "",
    ]
    for split in SPLITS:
        lines += [f"## {split}", "", "| setting | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
        lines.append("| base | " + " | ".join(_cell(base[split].get(c)) for c in COLUMNS) + " |")
        for setting in study:
            values = scores[setting.name][split]
            lines.append(f"| {setting.name} | " + " | ".join(_cell(values.get(c)) for c in COLUMNS) + " |")
        lines.append("| teacher | " + " | ".join(_cell(teacher[split].get(c)) for c in COLUMNS) + " |")
        lines.append("")
    lines += change_lines(study, scores)
    if over_seeds["default"]:
        seeds = ", ".join(f"{r['seed']:.0f}" for r in over_seeds["default"])
        lines += [
            f"## The default (alpha {demo_alpha():g}) and base over seeds {seeds}, test",
            "",
            "From the ablation's kept rows (`results/ablation-rows/`): its sugar row is the demo's sugar stage, trained "
            "from each seed's own base. Its limits: "
            + ", ".join(f"{k} {'all' if v is None else v}" for k, v in ablation_limits().items())
            + ". Mean +- std over seeds.",
            "",
            "| model | " + " | ".join(COLUMNS) + " |",
            "|---|" + "---|" * len(COLUMNS),
            *[f"| {name} | " + " | ".join(_seed_cell(over_seeds[name], c) for c in COLUMNS) + " |" for name in ("base", "default")],
            "",
        ]
    lines += [
        f"![trade-off]({picture.name})",
        "",
        "The picture: the test split, one point per setting, base marked with a star; retrieval up, generation right.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in payload["versions"].items()),
        "",
    ]
    path = settings.results / "balance.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "balance",
        help="the trade-off between retrieval and generation over alpha and alpha schedules",
        description=(
            "Continue the demo's base model with the demo's sugar stage at each alpha and each alpha schedule, "
            "score every model on val and test, and write results/balance.{md,json,png}."
        ),
    )
    parser.add_argument("--demo", default="runs/demo", help="the demo folder whose world, teachers and base model to use")
    parser.add_argument("--results", default="results", help="where balance.{md,json,png} go")
    parser.add_argument("--alphas", default=",".join(f"{a:g}" for a in ALPHAS), help="comma-separated alpha values")
    parser.add_argument(
        "--schedules", default=",".join(SCHEDULES),
        help="comma-separated NAME:WARMUP (constant, linear or cosine; warm-up fraction of the steps), at the demo's alpha",
    )
    parser.add_argument("--steps", type=int, help="sugar-stage steps of every setting (default: the demo's)")
    parser.add_argument("--seed", type=int, help=SEED_HELP)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="TrainConfig overrides of every stage")
    parser.set_defaults(func=_run)


def _run(args: Any) -> int:
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    try:
        alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
    except ValueError:
        raise UsageError(f"--alphas must be comma-separated numbers, got {args.alphas!r}") from None
    path = run_balance(
        BalanceSettings(
            demo=Path(args.demo),
            results=Path(args.results),
            alphas=alphas,
            schedules=[s.strip() for s in args.schedules.split(",") if s.strip()],
            steps=args.steps,
            overrides=list(args.overrides),
            seed=args.seed,
            progress=not args.no_progress,
            command="sugar " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        )
    )
    print(f"balance: {path}")
    return 0
