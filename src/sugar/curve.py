"""`sugar curve`: learning curves of the Sugar stage, measured on the **val** split.

    sugar curve                                   # runs/demo/curve/<variant>, results/learning_curve.{md,json,png}
    sugar curve --variants demo,mse_one,mse --points 100,250,500,1000

Every variant continues the demo's base model (built first if missing) with the demo's sugar
recipe and one change, for max(points) steps, saving the model after each point
(`save_models_at`); "demo" is the demo's own sugar stage and the points it saves. Each
saved model is scored on val: T->I / I->T R@5 (a spread subset of images), VIST-style
interleaved R@5, QA (open VQA accuracy, POPE F1) and RAG (self-retrieval hit@1 and answers
with the top document). Points are snapshots of one run whose
cosine schedule spans max(points) steps, so an early point has seen a higher learning rate than
a run that stops there would end with. Finished trainings and scores are reused on a re-run.
"""

from __future__ import annotations

import csv
import json
import platform
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sugar.fileio import atomic_write_text

# variant -> TrainConfig overrides of the demo's sugar stage. "demo" is the demo's own sugar
# stage (OUT/sugar), whose points are the models it saves (DEMO_RECIPE save_models_at and steps).
CURVE_VARIANTS: dict[str, list[str]] = {
    "demo": [],
    "recipe": [],
    "mse_one": ["discriminative_loss=mse"],
    "mse": ["discriminative_loss=mse", "pair_target=kernel"],
    "infonce": ["discriminative_loss=infonce"],
    "rag_pairs": ["mix={captions: 16, vqa: 2, rag: 2, rag_pairs: 2}"],
    "clips": ["mix={captions: 16, vqa: 2, rag: 2, clips: 2}"],
}
CURVE_DESCRIPTIONS: dict[str, str] = {
    "demo": "the demo's sugar stage (its recipe, its steps and saved points)",
    "recipe": "the demo's sugar recipe trained for the longest point (the demo's own run stops earlier)",
    "mse_one": "MSE onto the GAK targets instead of the InfoNCE, an image and its caption (fed in both orders) one document (target 1)",
    "mse": "the paper's reading: MSE onto the GAK targets, an image and its caption two documents (target = the teacher's kernel)",
    "infonce": "KL between tempered softmaxes of M_r and M_l (the project's InfoNCE variant), caption pair = one document",
    "rag_pairs": "the demo's recipe plus one (knowledge-base question, gold document) pair per step in L_d (mix rag_pairs: 2)",
    "clips": "the demo's recipe plus two world clips per step in L_d, its frames and its narration the two views of one document (mix clips: 2)",
}
CURVE_POINTS = (100, 250, 500, 1000)
# val items per benchmark: 300 images (1500 captions) keep a point at about a minute; RAG answers
# 30 questions per row (retrieval hit@k reads every question); every val clip (60)
CURVE_LIMITS: dict[str, int | None] = {"retrieval": 300, "interleaved": None, "qa": 100, "rag": 30, "clips": None}
COLUMNS: dict[str, tuple[str, ...]] = {
    "T->I R@5": ("retrieval", "t2i", "r@5"),
    "I->T R@5": ("retrieval", "i2t", "r@5"),
    "VIST 5c+4i R@5": ("interleaved", "captions_and_images", "r@5"),
    "VIST 5c R@5": ("interleaved", "captions_only", "r@5"),
    "VQA acc": ("qa", "vqa", "accuracy"),
    "POPE F1": ("qa", "pope", "average", "f1"),
    "self hit@1": ("rag", "retrieval", "self", "hit@1"),
    "RAG self k=1": ("rag", "rows", "self_k1", "contains_answer"),
    "T->V R@5": ("clips", "t2v", "r@5"),
    "V->T R@5": ("clips", "v2t", "r@5"),
    "Ground acc": ("clips", "grounding", "accuracy"),
}


@dataclass
class CurveSettings:
    demo: Path = Path("runs/demo")
    results: Path = Path("results")
    variants: list[str] = field(default_factory=lambda: ["demo", "mse"])
    points: list[int] = field(default_factory=lambda: list(CURVE_POINTS))
    overrides: list[str] = field(default_factory=list)  # sugar-stage overrides of every variant
    seed: int | None = None  # None: the folder's base seed (0 when the base is built here)
    progress: bool = True
    command: str = ""


def value_at(values: Any, path: tuple[str, ...]) -> float | None:
    for key in path:
        if not isinstance(values, dict) or key not in values:
            return None
        values = values[key]
    return float(values) if isinstance(values, (int, float)) else None


def score_saved_model(
    model_dir: Path,
    demo: Path,
    split: str,
    limits: dict[str, int | None],
    path: Path,
    with_teacher: bool,
    progress: bool = True,
) -> dict[str, Any]:
    """The benchmarks in `limits` (with their item limits) of one saved model on `split`, using
    the demo folder's world, teachers and vision cache; cached in `path` (a re-run reads it)."""
    if path.is_file():
        return json.loads(path.read_text())
    from sugar.eval.suite import run_benchmarks
    from sugar.models import SugarModel

    model = SugarModel.from_pretrained(model_dir, vision_cache_dir=str(demo / "vision-cache"))
    results = run_benchmarks(
        model, demo / "world", list(limits), split=split,
        teachers_dir=demo / "teachers" if with_teacher else None,
        limits=limits, show_progress=progress,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(results, indent=2))
    return results


def _score(model_dir: Path, settings: CurveSettings, path: Path, with_teacher: bool) -> dict[str, Any]:
    """The val benchmarks of one saved model, cached in `path`."""
    return score_saved_model(model_dir, settings.demo, "val", CURVE_LIMITS, path, with_teacher, settings.progress)


SEED_HELP = "seed of the world and base built when --demo has none yet (default 0); an existing base keeps its own"


def demo_seed(demo: Path, requested: int | None = None) -> int:
    """The seed the demo folder's base was trained with (its base stage's config); before the base
    exists, `requested` (0 when None), which then builds the folder's world and base. A request
    that contradicts an existing base is refused: its world, teachers and base are another seed's."""
    from sugar.checks import UsageError

    config = demo / "base" / "config.json"
    if not config.is_file():
        return 0 if requested is None else requested
    found = int(json.loads(config.read_text()).get("seed", 0))
    if requested is not None and requested != found:
        raise UsageError(
            f"{config}: the base model in {demo} was trained with seed {found}, not the requested {requested}; "
            "drop --seed to continue it, or name another --demo folder"
        )
    return found


def _losses(log: Path, alpha: float) -> dict[str, list[float]]:
    """Step, L_g and alpha * L_d from a run's train_log.csv."""
    series: dict[str, list[float]] = {"step": [], "L_g": [], "alpha L_d": []}
    if not log.is_file():
        return series
    with open(log, newline="") as handle:
        for row in csv.DictReader(handle):
            series["step"].append(float(row["step"]))
            series["L_g"].append(float(row["generative_loss"] or "nan"))
            series["alpha L_d"].append(alpha * float(row["discriminative_loss"] or "nan"))
    return series


def run_curve(settings: CurveSettings) -> Path:
    from sugar.demo import DemoSettings, StageClock, prepare_models, train_stage

    if not settings.points or any(p < 1 for p in settings.points):
        raise ValueError(f"points must be positive step counts, got {settings.points}")
    unknown = [v for v in settings.variants if v not in CURVE_VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {sorted(CURVE_VARIANTS)}")
    points = sorted(set(settings.points))
    # the variants continue the folder's base with its seed, so they see the demo's batches
    demo = DemoSettings(out=settings.demo, seed=demo_seed(settings.demo, settings.seed), progress=settings.progress)
    clock = StageClock(settings.demo)
    prepare_models(demo, clock, with_sugar=False)
    base = settings.demo / "base" / "model"
    curve_dir = settings.demo / "curve"
    scores: dict[str, dict[int, dict[str, Any]]] = {}
    losses: dict[str, dict[str, list[float]]] = {}
    configs: dict[str, Any] = {}
    for variant in settings.variants:
        if variant == "demo":  # the demo's own run, with the demo's points
            folder, extra = "sugar", [f"init_from={base}", *settings.overrides]
            clock("sugar", lambda: train_stage(demo, "sugar", extra), run=settings.demo / folder)
        else:
            folder = f"curve/{variant}"
            extra = [
                f"init_from={base}",
                f"steps={points[-1]}",
                f"save_models_at={points[:-1]}",
                *settings.overrides,
                *CURVE_VARIANTS[variant],
            ]
            clock(f"curve {variant}", lambda: train_stage(demo, "sugar", extra, folder=folder), run=settings.demo / folder)
        run = settings.demo / folder
        configs[variant] = json.loads((run / "config.json").read_text())
        run_points = sorted({*configs[variant]["save_models_at"], configs[variant]["steps"]})
        scores[variant] = {}
        for point in run_points:
            model_dir = run / "model" if point == run_points[-1] else run / "snapshots" / f"step-{point}"
            scores[variant][point] = _score(model_dir, settings, run / "eval" / f"step-{point}.json", with_teacher=False)
        losses[variant] = _losses(run / "train_log.csv", float(configs[variant]["alpha"]))
    # last, so runs of single variants in parallel processes train first and share this
    base_scores = _score(base, settings, curve_dir / "base-val.json", with_teacher=True)
    for variant in scores:
        scores[variant][0] = base_scores
    return write_curve(settings, points, scores, base_scores, losses, configs)


def _table(variant_scores: dict[int, dict[str, Any]]) -> list[str]:
    lines = ["| steps | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for point, results in sorted(variant_scores.items()):
        cells = [value_at(results, path) for path in COLUMNS.values()]
        lines.append(f"| {point} | " + " | ".join("-" if c is None else f"{100 * c:.1f}" for c in cells) + " |")
    return lines


def write_curve(
    settings: CurveSettings,
    points: list[int],
    scores: dict[str, dict[int, dict[str, Any]]],
    base_scores: dict[str, Any],
    losses: dict[str, dict[str, list[float]]],
    configs: dict[str, Any],
) -> Path:
    from sugar.demo import _versions
    from sugar.eval.plots import plot_learning_curves

    settings.results.mkdir(parents=True, exist_ok=True)
    teacher = {
        name: value_at(base_scores, (path[0], "teacher", *path[1:])) for name, path in COLUMNS.items()
    }
    table = {
        variant: {str(point): {name: value_at(results, path) for name, path in COLUMNS.items()} for point, results in rows.items()}
        for variant, rows in scores.items()
    }
    picture = plot_learning_curves(
        {v: {int(p): row for p, row in rows.items()} for v, rows in table.items()},
        {k: v for k, v in teacher.items() if v is not None},
        losses,
        settings.results / "learning_curve.png",
    )
    payload = {
        "command": settings.command,
        "split": "val",
        "limits": CURVE_LIMITS,
        "points": points,
        "scores": table,
        "teacher": teacher,
        "losses": losses,
        "sugar_stage_configs": configs,
        "versions": _versions(),
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }
    atomic_write_text(settings.results / "learning_curve.json", json.dumps(payload, indent=2))
    lines = [
        "# Learning curves of the Sugar stage (val split)",
        "",
        f"Command: `{settings.command}`",
        "",
        f"Every variant continues the same base model (`{settings.demo}/base`, seed {demo_seed(settings.demo)}) "
        "with the demo's sugar recipe; "
        "points are models saved along one run per variant (cosine schedule over the whole run). "
        f"Val limits: {CURVE_LIMITS['retrieval']} images x 5 captions for T->I / I->T (chance R@5 "
        f"{500 / CURVE_LIMITS['retrieval']:.1f}%), every val story for VIST, {CURVE_LIMITS['qa']} VQA and "
        f"{CURVE_LIMITS['qa']} POPE questions per negative type. Step 0 is the base model. In %.",
        "",
        "Teacher (CLIP-style, frozen): "
        + ", ".join(f"{k} {100 * v:.1f}" for k, v in teacher.items() if v is not None),
        "",
    ]
    for variant, rows in scores.items():
        lines += [f"## {variant}: {CURVE_DESCRIPTIONS[variant]}", "", *_table(rows), ""]
    lines += [
        "## Losses",
        "",
        "L_g and alpha * L_d (logged every few steps) are in `learning_curve.json` and the right-hand panel "
        "of the picture. L_d is a sum over the n prefixes of a batch divided by n, so its scale grows "
        "with the batch.",
        "",
        f"![learning curves]({picture.name})",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in payload["versions"].items()),
        "",
    ]
    path = settings.results / "learning_curve.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "curve",
        help="learning curves of the sugar stage on val (retrieval, VIST, QA against steps)",
        description=(
            "Continue the demo's base model with each variant's sugar stage, save the model at each point, "
            "score every saved model on the val split, and write results/learning_curve.{md,json,png}."
        ),
    )
    parser.add_argument("--demo", default="runs/demo", help="the demo folder whose world, teachers and base model to use")
    parser.add_argument("--results", default="results", help="where learning_curve.{md,json,png} go")
    parser.add_argument("--variants", default="demo,mse", help=f"comma-separated, from {', '.join(CURVE_VARIANTS)}")
    parser.add_argument(
        "--points", default=",".join(map(str, CURVE_POINTS)),
        help="comma-separated step counts of the variants other than demo (demo: the steps its recipe saves)",
    )
    parser.add_argument("--seed", type=int, help=SEED_HELP)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="sugar-stage TrainConfig overrides")
    parser.set_defaults(func=_run)


def _run(args: Any) -> int:
    try:
        points = [int(p) for p in args.points.split(",") if p.strip()]
    except ValueError as error:
        raise ValueError(f"--points must be comma-separated integers, got {args.points!r}") from error
    path = run_curve(
        CurveSettings(
            demo=Path(args.demo),
            results=Path(args.results),
            variants=[v.strip() for v in args.variants.split(",") if v.strip()],
            points=points,
            overrides=list(args.overrides),
            seed=args.seed,
            progress=not args.no_progress,
            command="sugar " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        )
    )
    print(f"learning curves: {path}")
    return 0
