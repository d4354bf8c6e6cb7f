"""`sugar ablate`: the paper's ablation study at small scale, every row with the same budget and seeds.

    sugar ablate --seeds 3                 # runs/ablation/seed{0,1,2}, then results/ablation.{md,json,png}
    sugar ablate --seeds 3 --steps 120     # a smaller sugar-stage budget for every row

Each seed is one demo folder (its own world, teachers and base model, `sugar.demo`). Every
variant continues the same base model for the same steps and is scored by the same benchmarks
(`sugar.eval.suite`), so a row differs from "sugar" in exactly one thing. Finished trainings and
evaluations are reused on a re-run. Each finished row's scores are also kept in
RESULTS/ablation-rows/seedN/ROW.json with the recipe that made them: commit them as they come, and
a later run whose run folders are gone reuses every kept row of the same recipe.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sugar.checks import UsageError
from sugar.fileio import atomic_write_bytes, atomic_write_text
from sugar.kept import keep_scores, kept_scores
from sugar.seeds import cell_text, mean_std, seeds_label
from sugar.video_results import write_video_results

# variant -> TrainConfig overrides of the sugar stage ("base" is the base model itself)
VARIANTS: dict[str, list[str]] = {
    "sugar": [],
    "no_gak": ["target_structure=mean"],
    "no_triple": ["teacher_kernel=cross"],
    "last_token": ["model_overrides.image_pooling=last"],
    "ld_only": ["use_generative_loss=false"],
    "mse": ["discriminative_loss=mse"],
    "paper": ["discriminative_loss=mse", "pair_target=kernel"],
    # the InfoNCE with the teacher's rows at temperature 0.2, where the GAK and mean targets'
    # soft labels differ most on sugar-stage batches (benchmarks/target_structure.py), with and
    # without GAK: does the alignment matter once the loss lets the teacher's structure through?
    "soft_teacher": ["infonce_teacher_temperature=0.2"],
    "soft_teacher_no_gak": ["infonce_teacher_temperature=0.2", "target_structure=mean"],
    # at 0.2 the mean's soft labels are also much flatter than GAK's (49% of a row's mass on other
    # documents against 17%); at 0.11 the mean puts on them what GAK does at 0.2 (17.0% against
    # 17.1% on seed 0's sugar-stage batches, benchmarks/target_structure.py): structure alone differs
    "soft_teacher_no_gak_matched": ["infonce_teacher_temperature=0.11", "target_structure=mean"],
}
ROWS: tuple[str, ...] = ("base", *VARIANTS)
DESCRIPTIONS: dict[str, str] = {
    "base": "L_g only (stage 1); retrieval head untrained: a floor, not a rival",
    "sugar": "L_g + alpha * L_d (the demo recipe: InfoNCE onto GAK targets over the Triple Kernel), mean image pooling",
    "no_gak": "target = mean local kernel over all slice pairs (no alignment)",
    "no_triple": "cross-modal teacher only (no same-modality experts)",
    "last_token": "an image is its last visual token instead of the mean",
    "ld_only": "L_d only, no generative loss",
    "mse": "the paper's MSE onto the targets instead of the InfoNCE (KL between tempered softmaxes)",
    "paper": "the paper's reading: MSE, an image and its caption two documents (target = the teacher's kernel)",
    "soft_teacher": "the InfoNCE with the teacher's side at temperature 0.2 (16% of each row's target mass on other documents, not 0.1%)",
    "soft_teacher_no_gak": "soft_teacher with the mean local kernel instead of GAK",
    "soft_teacher_no_gak_matched": "soft_teacher_no_gak at teacher temperature 0.11, where the mean's soft labels put as much mass on other documents as GAK's at 0.2",
    "teacher": "the CLIP-style cross-modal teacher (LiT heads on frozen experts)",
}
# benchmark -> item limit (None: every item); qa counts VQA and POPE questions per type
BENCH_LIMITS: dict[str, int | None] = {
    "retrieval": None, "interleaved": None, "winoground": None, "mmvp": None, "qa": 100, "captions": 100, "rag": 40,
    "webqa": None, "clips": None,
}
MMVP_PATTERNS = ("colour", "count", "relation", "shape", "size")
# column -> path into one model's results; the teacher row reads the "teacher" entry where one exists
METRICS: dict[str, tuple[str, ...]] = {
    "T->I R@5": ("retrieval", "t2i", "r@5"),
    "I->T R@5": ("retrieval", "i2t", "r@5"),
    "VIST R@5": ("interleaved", "captions_and_images", "r@5"),
    "Wino text": ("winoground", "text"),
    "Wino image": ("winoground", "image"),
    "Wino group": ("winoground", "group"),
    "VQA acc": ("qa", "vqa", "accuracy"),
    "POPE F1": ("qa", "pope", "average", "f1"),
    "RAG none": ("rag", "rows", "no_retrieval", "contains_answer"),
    "RAG self k=1": ("rag", "rows", "self_k1", "contains_answer"),
    "RAG teacher k=1": ("rag", "rows", "teacher_k1", "contains_answer"),
    "RAG self hit@1": ("rag", "retrieval", "self", "hit@1"),
    "MMVP avg": ("mmvp", "embedding", "average"),
    **{f"MMVP {p}": ("mmvp", "embedding", "per_pattern", p) for p in MMVP_PATTERNS},
    "CIDEr-D": ("captions", "cider"),
    "WebQA acc": ("webqa", "accuracy"),
    "WebQA spread": ("webqa", "position_spread"),
    "WebQA flat spread": ("webqa", "flat_spread"),
    "T->V R@5": ("clips", "t2v", "r@5"),
    "V->T R@5": ("clips", "v2t", "r@5"),
    "Ground acc": ("clips", "grounding", "accuracy"),
    "Ground IoU": ("clips", "grounding", "mean_iou"),
    "Localise acc": ("clips", "localisation", "accuracy"),
}
TEACHER_METRICS = (
    "T->I R@5", "I->T R@5", "VIST R@5", "Wino text", "Wino image", "Wino group", "MMVP avg",
    *(f"MMVP {p}" for p in MMVP_PATTERNS), "T->V R@5", "V->T R@5", "Ground acc", "Ground IoU", "Localise acc",
)


@dataclass
class AblationSettings:
    out: Path = Path("runs/ablation")
    results: Path = Path("results")
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    steps: int | None = None  # sugar-stage steps of every variant (None: the demo's)
    scale: str = "default"  # world size of every seed
    base_steps: int | None = None  # None: the demo's
    overrides: list[str] = field(default_factory=list)  # TrainConfig overrides of every stage
    limits: dict[str, int | None] = field(default_factory=lambda: dict(BENCH_LIMITS))
    progress: bool = True
    command: str = ""
    kept_only: bool = False  # write the tables from the rows finished so far; train nothing
    rescore: tuple[str, ...] = ()  # benchmarks to run again on every finished row's model (a changed bench)


def _dig(results: dict[str, Any], path: tuple[str, ...]) -> float | None:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, (int, float)) else None


def with_flat_spread(results: dict[str, Any]) -> dict[str, Any]:
    """The results with webqa's `flat_spread` (the spread sampling alone gives a flat position curve,
    `sugar.eval.metrics.flat_range`) filled in from its accuracy and items per position, for rows
    scored before the WebQA benchmark reported it; results that carry it are returned as they are."""
    webqa = results.get("webqa")
    if not isinstance(webqa, dict) or "flat_spread" in webqa or not isinstance(webqa.get("count_by_position"), dict):
        return results
    from sugar.eval.metrics import flat_range

    flat = flat_range(float(webqa["accuracy"]), [int(n) for n in webqa["count_by_position"].values()])
    return {**results, "webqa": {**webqa, "flat_spread": flat}}


def teacher_results(results: dict[str, Any]) -> dict[str, Any]:
    """The teacher's entries of a model's results, re-rooted so METRICS paths read them."""
    return {bench: value["teacher"] for bench, value in results.items() if isinstance(value, dict) and "teacher" in value}


def evaluate_variant(
    model_dir: Path, demo: Any, limits: dict[str, int | None], progress: bool, with_teacher: bool
) -> dict[str, Any]:
    """Every benchmark of the table on one model; `with_teacher` also scores the CLIP-style teacher
    (the same for every row of a seed, so only the sugar row asks for it)."""
    from sugar.eval.suite import run_benchmarks
    from sugar.models import SugarModel
    from sugar.teachers import TeacherSuite

    model = SugarModel.from_pretrained(model_dir, vision_cache_dir=str(demo.out / "vision-cache"))
    teachers = TeacherSuite.load(demo.out / "teachers") if with_teacher else None
    results: dict[str, Any] = {}
    for bench, limit in limits.items():
        # `limit=0` is "every item" for run_benchmarks
        found = run_benchmarks(
            model, demo.out / "world", [bench], teachers_dir=teachers, limit=0 if limit is None else limit,
            show_progress=progress,
        )
        results[bench] = found[bench]
    return results


def row_folder(row: str, tag: str) -> str:
    return f"sugar{tag}" if row == "sugar" else f"sugar-{row}{tag}"


# the stages that build a seed's base model, which every row of the seed continues
SHARED_STAGES = ["world", "teachers", "align", "base"]


def row_stages(row: str, tag: str) -> list[str]:
    """The stages (names in stages.json) whose time a row's training counts: the base row carries
    the seed's shared stages, every other row its own sugar-stage training."""
    if row == "base":
        return SHARED_STAGES
    return ["sugar" if row == "sugar" and not tag else f"train {row_folder(row, tag)}"]


@dataclass(frozen=True)
class StudyTime:
    """The study's machine time as the kept rows record it, and what no record holds."""

    seconds: float
    untimed: list[str]


def study_time(per_seed: dict[int, dict[str, dict[str, Any]]]) -> StudyTime:
    """Machine time the study took: every row's training and evaluation, and every rebuild of a
    seed's base (a run folder that did not outlive its sitting is built again, and that time was
    spent too), each as recorded by the run that did it and kept with the row. Only the kept records
    count: a run folder on disk may hold another build's times. What no record holds is named in
    `untimed`, never guessed."""
    total = 0.0
    untimed: list[str] = []
    for seed, rows in sorted(per_seed.items()):
        first_build = rows.get("base", {}).get("base_digest")
        rebuilds: dict[str, float | None] = {}
        for row, scores in rows.items():
            training = scores.get("training_seconds")
            if training is None:
                untimed.append(f"the training of {row}/{seed}")
            else:
                total += float(training)
            total += float(scores.get("evaluation_seconds", 0.0))
            digest = scores.get("base_digest")
            if row != "base" and digest is not None and digest != first_build and rebuilds.get(digest) is None:
                rebuilds[digest] = scores.get("base_build_seconds")
        for digest, seconds in sorted(rebuilds.items()):
            if seconds is None:
                untimed.append(f"the base rebuild {digest} of seed {seed}")
            else:
                total += float(seconds)
    return StudyTime(total, untimed)


def run_seed(settings: AblationSettings, seed: int) -> dict[str, dict[str, Any]]:
    """Train and evaluate every row for one seed; {row: results}."""
    from sugar.demo import DemoSettings, StageClock, prepare_models, train_stage

    demo = DemoSettings(
        out=settings.out / f"seed{seed}", seed=seed, scale=settings.scale, base_steps=settings.base_steps,
        sugar_steps=settings.steps, overrides=list(settings.overrides), progress=settings.progress,
    )
    clock = StageClock(demo.out)
    # With the demo's budget the sugar row is the demo's own sugar stage; another budget gets
    # its own folders, so rows of different budgets never mix.
    tag = "" if settings.steps is None else f"-{settings.steps}steps"
    found: dict[str, dict[str, Any]] = {}
    pending: list[str] = []
    for row in ["base", *settings.variants]:
        path = demo.out / f"ablation{tag}" / f"{row}.json"
        kept = kept_row_path(settings, seed, row)
        recipe = row_recipe(settings, seed, row)
        if path.is_file():
            # the run folder's scores win; the kept copy adds what only it holds (a backfilled field)
            held = kept_scores(kept, recipe)
            found[row] = {**(held or {}), **json.loads(path.read_text())}
            if not kept.is_file() or (held is not None and held != found[row]):
                keep_scores(kept, found[row], recipe)
        elif (reused := kept_scores(kept, recipe)) is not None:
            found[row] = reused
        else:
            pending.append(row)
    if settings.rescore:
        found = {row: rescore_row(settings, demo, seed, row, scores, tag) for row, scores in found.items()}
    if not pending or settings.kept_only:  # every row kept: a later sitting without run folders trains nothing
        return {row: found[row] for row in ["base", *settings.variants] if row in found}
    prepare_models(demo, clock, with_sugar=not tag and "sugar" in pending)
    base = demo.out / "base" / "model"
    # the build every pending row continues, and what building it cost (a rebuild's time included)
    build, build_seconds = base_digest(base), round(sum(clock.stages.get(name, 0.0) for name in SHARED_STAGES), 1)
    for row in pending:
        if row == "base":
            model_dir = base
        else:
            folder = row_folder(row, tag)
            extra = [f"init_from={base}", *VARIANTS[row]]
            model_dir = clock(
                f"train {folder}", lambda: train_stage(demo, "sugar", extra, folder=folder), run=demo.out / folder
            )
        started = time.perf_counter()
        found[row] = evaluate_variant(model_dir, demo, settings.limits, settings.progress, with_teacher=row == "sugar")
        found[row]["evaluation_seconds"] = round(time.perf_counter() - started, 1)
        # kept with the scores, so the study's summed time survives the run folders
        found[row]["training_seconds"] = round(sum(clock.stages.get(name, 0.0) for name in row_stages(row, tag)), 1)
        found[row]["cpu_precision"] = row_precision(model_dir)
        found[row]["base_digest"] = build
        found[row]["base_build_seconds"] = build_seconds
        atomic_write_text(demo.out / f"ablation{tag}" / f"{row}.json", json.dumps(found[row], indent=2))
        keep_scores(kept_row_path(settings, seed, row), found[row], row_recipe(settings, seed, row))
    return {row: found[row] for row in ["base", *settings.variants]}


def row_precision(model_dir: Path) -> str:
    """The float precision this machine trains a row in: rows from a CPU with native bf16 (bf16
    autocast) and from one without (float32) can sit in one study, so each row says which it was."""
    from sugar.demo import machine_record
    from sugar.models.config import CONFIG_NAME

    path = model_dir / CONFIG_NAME
    model_config = json.loads(path.read_text()) if path.is_file() else {}  # no config: the default, "auto"
    return str(machine_record(str(model_config.get("autocast", "auto")))["cpu_precision"])


def base_digest(base_dir: Path) -> str:
    """The first 12 hex digits of the sha256 of a base model's weights. A seed's base rebuilt in a
    later sitting is not bit-identical to the first build, so each row records the build it continues
    and the table shows which rows of a seed can be compared directly."""
    from sugar.models.modeling import WEIGHTS_NAME

    weights = base_dir / WEIGHTS_NAME
    if not weights.is_file():  # a label, never an error: the row's scores are already paid for
        return "no base weights found"
    digest = hashlib.sha256()
    with weights.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def rows_by(per_seed: dict[int, dict[str, dict[str, Any]]], key: str) -> str:
    """Rows grouped by a value each recorded (its training precision, its base build), as `row/seed`."""
    groups: dict[str, list[str]] = {}
    for seed, rows in sorted(per_seed.items()):
        for row, scores in rows.items():
            groups.setdefault(str(scores.get(key, "not recorded")), []).append(f"{row}/{seed}")
    return "; ".join(f"{value}: {', '.join(names)}" for value, names in sorted(groups.items()))


def precision_note(per_seed: dict[int, dict[str, dict[str, Any]]]) -> str:
    """Rows grouped by the precision they were trained in."""
    return rows_by(per_seed, "cpu_precision")


def base_note(per_seed: dict[int, dict[str, dict[str, Any]]]) -> str:
    """Rows grouped by the build of their seed's base model they continue."""
    return rows_by(per_seed, "base_digest")


def rescore_row(
    settings: AblationSettings, demo: Any, seed: int, row: str, scores: dict[str, Any], tag: str
) -> dict[str, Any]:
    """Run `settings.rescore` again on a finished row's own model and merge the fresh results in
    (a benchmark that gained a measure; the training is not repeated)."""
    from sugar.checks import check_model_dir

    model_dir = demo.out / ("base" if row == "base" else row_folder(row, tag)) / "model"
    if not model_dir.is_dir():
        raise UsageError(
            f"--rescore: seed {seed} row {row} has no model at {model_dir}, so it cannot be scored again without "
            f"training it again (delete {kept_row_path(settings, seed, row)} to retrain it, or leave the seed out)"
        )
    check_model_dir(model_dir, f"--rescore (seed {seed} row {row})")
    started = time.perf_counter()
    limits = {bench: settings.limits[bench] for bench in settings.rescore}
    fresh = evaluate_variant(model_dir, demo, limits, settings.progress, with_teacher=row == "sugar")
    seconds = float(scores.get("evaluation_seconds", 0.0)) + time.perf_counter() - started
    merged = {**scores, **fresh, "evaluation_seconds": round(seconds, 1)}
    atomic_write_text(demo.out / f"ablation{tag}" / f"{row}.json", json.dumps(merged, indent=2))
    keep_scores(kept_row_path(settings, seed, row), merged, row_recipe(settings, seed, row))
    return merged


def kept_row_path(settings: AblationSettings, seed: int, row: str) -> Path:
    """Where a finished row's scores are kept beside the results: a run folder may not outlive a
    sitting, so a study spread over several resumes from these (commit them as they come)."""
    tag = "" if settings.steps is None else f"-{settings.steps}steps"
    return settings.results / "ablation-rows" / f"seed{seed}{tag}" / f"{row}.json"


def row_recipe(settings: AblationSettings, seed: int, row: str) -> dict[str, Any]:
    """Everything that decides a row's scores; kept scores are reused only under the same recipe."""
    from sugar.demo import DEMO_RECIPE

    return {
        "seed": seed,
        "scale": settings.scale,
        "base_steps": settings.base_steps,
        "steps": settings.steps,
        "overrides": list(settings.overrides),
        "variant": list(VARIANTS.get(row, [])),
        "demo_recipe": DEMO_RECIPE if row != "base" else {k: v for k, v in DEMO_RECIPE.items() if k != "sugar"},
        "limits": dict(settings.limits),
    }


def summarise(per_seed: dict[int, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{row: {metric: {mean, std, values}}} over seeds; the teacher row from the sugar runs."""
    rows: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for seed, results in per_seed.items():
        for row, value in results.items():
            rows.setdefault(row, []).append((seed, with_flat_spread(value)))
        if "sugar" in results:
            rows.setdefault("teacher", []).append((seed, teacher_results(results["sugar"])))
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for row, seed_results in rows.items():
        summary[row] = {}
        for metric, path in METRICS.items():
            if row == "teacher" and metric not in TEACHER_METRICS:
                continue
            measured = [(seed, v) for seed, v in ((seed, _dig(r, path)) for seed, r in seed_results) if v is not None]
            if not measured:
                continue
            # the seeds beside the values, so a claim compares two rows on the seeds both have
            summary[row][metric] = {**vars(mean_std([v for _, v in measured])), "seeds": [seed for seed, _ in measured]}
    return summary


def _mean(summary: dict[str, Any], row: str, metric: str) -> float | None:
    cell = summary.get(row, {}).get(metric)
    return None if cell is None else cell["mean"]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


HOLDS, NOISE, FAILS = "holds", "within seed noise", "does not hold"
UNTESTABLE = "not testable here"  # the benchmark shows nothing for the claim to act on


def _std(summary: dict[str, Any], row: str, metric: str) -> float:
    cell = summary.get(row, {}).get(metric)
    return 0.0 if cell is None else cell["std"]


def _paired(summary: dict[str, Any], a: str, b: str, metric: str) -> tuple[float, float, float, list[int] | None] | None:
    """Means of rows a and b over the seeds both measured, and the noise (the sum of their std):
    (mean a, mean b, noise, the shared seeds where either row has more), None without a shared seed.

    A row that still lacks a seed is compared on the seeds it has, never against means over others."""
    cells = [summary.get(row, {}).get(metric) for row in (a, b)]
    if cells[0] is None or cells[1] is None:
        return None
    shared = sorted(set(cells[0]["seeds"]) & set(cells[1]["seeds"]))
    if not shared:
        return None
    stats = [mean_std([v for seed, v in zip(cell["seeds"], cell["values"]) if seed in shared]) for cell in cells]
    restricted = None if all(len(cell["seeds"]) == len(shared) for cell in cells) else shared
    return stats[0].mean, stats[1].mean, stats[0].std + stats[1].std, restricted


def _on_seeds(shared: list[int] | None) -> str:
    if shared is None:
        return ""
    return f" (on seed{'s' if len(shared) > 1 else ''} {', '.join(map(str, shared))}, which both rows have)"


def _gain_verdict(gain: float, noise: float) -> str:
    """A gain counts only beyond the seeds' spread (the sum of the two rows' std)."""
    if gain > noise:
        return HOLDS
    return FAILS if gain <= 0 or -gain > noise else NOISE


def claims(summary: dict[str, dict[str, dict[str, Any]]]) -> list[tuple[str, str, str]]:
    """The paper's claims checked on the means over seeds: (claim, verdict, evidence).

    A claimed gain "holds" when it exceeds the sum of the two rows' standard deviations, is
    "within seed noise" when positive but smaller, and "does not hold" when absent or reversed.
    """
    out: list[tuple[str, str, str]] = []

    def compare(a: str, b: str, metric: str) -> tuple[str, str]:
        pair = _paired(summary, a, b, metric)
        if pair is None:
            return "n/a", f"{metric}: {a} {_pct(_mean(summary, a, metric))} vs {b} {_pct(_mean(summary, b, metric))}"
        x, y, noise, shared = pair
        return _gain_verdict(x - y, noise), f"{metric}: {a} {_pct(x)} vs {b} {_pct(y)}{_on_seeds(shared)}"

    verdict1, text1 = compare("sugar", "base", "Wino group")
    verdict2, text2 = compare("sugar", "base", "VIST R@5")
    order = ("n/a", FAILS, NOISE, HOLDS)
    both = min(verdict1, verdict2, key=order.index)
    out.append(("(1) Sugar beats base on Winoground group and VIST R@5", both, f"{text1}; {text2}"))

    labels = {"no_gak": "GAK", "no_triple": "the Triple Kernel", "last_token": "average pooling"}
    for number, metric, named in ((2, "VIST R@5", "no_gak"), (3, "Wino image", "no_triple"), (4, "T->I R@5", "last_token")):
        # each drop on the seeds its row shares with sugar
        pairs = {row: pair for row in labels if (pair := _paired(summary, "sugar", row, metric)) is not None}
        drops = {row: x - y for row, (x, y, _, _) in pairs.items()}
        claim = f"({number}) removing {labels[named]} hurts {metric} most"
        if named not in drops:
            out.append((claim, "n/a", "n/a"))
            continue
        text = f"drop of {metric} from sugar ({_pct(_mean(summary, 'sugar', metric))}): " + ", ".join(
            f"{row} {100 * drop:+.1f}{_on_seeds(pairs[row][3])}" for row, drop in drops.items()
        )
        noise = pairs[named][2]
        verdict = _gain_verdict(drops[named], noise)
        runner_up = max((drop for row, drop in drops.items() if row != named), default=float("-inf"))
        if verdict != FAILS and runner_up >= drops[named]:
            verdict = FAILS if runner_up - drops[named] > noise else NOISE
        out.append((claim, verdict, text))

    none, self1, teacher1 = (_mean(summary, "sugar", m) for m in ("RAG none", "RAG self k=1", "RAG teacher k=1"))
    rag_text = f"answer contained: none {_pct(none)}, self k=1 {_pct(self1)}, teacher k=1 {_pct(teacher1)}"
    if None in (none, self1, teacher1):
        out.append(("(5) self-retrieval RAG beats no retrieval and matches or beats the teacher retriever", "n/a", rag_text))
    else:
        beats_none = _gain_verdict(self1 - none, _std(summary, "sugar", "RAG self k=1") + _std(summary, "sugar", "RAG none"))  # type: ignore[operator]
        matches = self1 >= teacher1  # type: ignore[operator]
        verdict5 = beats_none if matches or beats_none == FAILS else FAILS
        out.append(("(5) self-retrieval RAG beats no retrieval and matches or beats the teacher retriever", verdict5, rag_text))
    deltas = []
    for metric in ("VQA acc", "POPE F1"):
        s, b = _mean(summary, "sugar", metric), _mean(summary, "base", metric)
        if s is not None and b is not None:
            deltas.append(f"{metric} {_pct(b)} -> {_pct(s)} ({100 * (s - b):+.1f})")
    out.append(("(6) what joint training costs or gains in QA / POPE against base", "measured", "; ".join(deltas) or "n/a"))
    verdict7, text7 = compare("sugar", "teacher", "Wino group")
    out.append(("(7) Sugar beats its own CLIP-style teacher on Winoground group", verdict7, text7))
    # (8): a flatter position curve is a smaller spread, so base's spread minus Sugar's is the gain;
    # but only a curve base really has can be flattened: a spread no wider than sampling alone gives
    # a flat curve (the flat spread) is no position bias at all
    verdict8, text8 = compare("base", "sugar", "WebQA spread")
    text8 = text8.replace("WebQA spread: ", "spread: ")
    base_spread, base_flat = _mean(summary, "base", "WebQA spread"), _mean(summary, "base", "WebQA flat spread")
    if base_spread is not None and base_flat is not None:
        flats = ", ".join(f"{row} {_pct(value)}" for row in ("base", "sugar") if (value := _mean(summary, row, "WebQA flat spread")) is not None)
        text8 += f"; a flat curve at the same accuracy and items per position spreads by {flats} from sampling alone"
        if base_spread <= base_flat:
            verdict8 = UNTESTABLE
    out.append(("(8) Sugar flattens the WebQA position curve (best minus worst position)", verdict8, text8))
    verdicts, texts = [], []
    for pattern in MMVP_PATTERNS:
        verdict, text = compare("sugar", "base", f"MMVP {pattern}")
        if verdict != "n/a":
            verdicts.append(verdict)
            texts.append(f"{pattern} {verdict} ({text.split(': ', 1)[1]})")
    improved = sum(v == HOLDS for v in verdicts)
    verdict9 = "n/a" if not verdicts else HOLDS if improved > len(verdicts) / 2 else NOISE if improved else FAILS
    out.append((f"(9) Sugar improves MMVP patterns over base ({improved} of {len(verdicts)} beyond seed noise)", verdict9, "; ".join(texts) or "n/a"))
    # (10), ours: a clip is the sequence case the alignment is for
    verdict10, text10 = compare("sugar", "no_gak", "Ground acc")
    out.append(("(10) GAK targets beat the mean structure on temporal grounding of clips", verdict10, text10))
    return out


def plot(summary: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    """Grouped bars (mean +- std over seeds) of the retrieval and Winoground columns."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ["T->I R@5", "VIST R@5", "Wino text", "Wino image", "Wino group", "VQA acc"]
    rows = [row for row in (*ROWS, "teacher") if row in summary]
    figure, axis = plt.subplots(figsize=(11, 4.2))
    width = 0.8 / max(len(rows), 1)
    for index, row in enumerate(rows):
        means = [100 * summary[row].get(m, {}).get("mean", float("nan")) for m in metrics]
        stds = [100 * summary[row].get(m, {}).get("std", 0.0) for m in metrics]
        positions = [k + (index - (len(rows) - 1) / 2) * width for k in range(len(metrics))]
        axis.bar(positions, means, width, yerr=stds, capsize=2, label=row)
    axis.set_xticks(range(len(metrics)), metrics)
    axis.set_ylabel("% (mean +- std over seeds)")
    axis.set_title("Ablation on the embedded world (test split)")
    axis.legend(ncol=4, fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def _versions() -> dict[str, str]:
    from sugar.demo import _versions as demo_versions

    return demo_versions()


def write_results(
    summary: dict[str, dict[str, dict[str, Any]]],
    settings: AblationSettings,
    seconds: float,
    train_config: dict[str, Any],
    video_results: Path | None = None,
    precisions: str = "",
    bases: str = "",
    untimed: list[str] | None = None,
) -> Path:
    out = settings.results
    out.mkdir(parents=True, exist_ok=True)
    checked = claims(summary)
    record = {
        "command": settings.command,
        "seeds": settings.seeds,
        "variants": {row: DESCRIPTIONS[row] for row in summary},
        "overrides": {row: VARIANTS.get(row, []) for row in summary},
        "benchmark_limits": settings.limits,
        "sugar_stage_config": train_config,
        "versions": _versions(),
        "platform": platform.platform(),
        "wall_time_seconds": round(seconds, 1),
        "untimed": list(untimed or []),
        "training_precision": precisions,
        "base_builds": bases,
        "summary": summary,
        "claims": [{"claim": c, "verdict": v, "evidence": e} for c, v, e in checked],
    }
    atomic_write_text(out / "ablation.json", json.dumps(record, indent=2))
    plot(summary, out / "ablation.png")
    columns = list(METRICS)
    lines = [
        "# Ablation on the embedded world",
        "",
        f"Made by `{settings.command}` with seeds {settings.seeds}: every row continues the same base model of its",
        "seed for the same number of steps and is scored on the test split by the same benchmarks. Cells are",
        f"mean +- std over seeds, in %. Machine time {seconds / 3600:.1f} h in all: the training and evaluation of",
        "every row, each timed by the run that did it (seeds run in parallel processes count separately; the",
        "base row carries its seed's world, teachers, projector alignment and base training; a training resumed from",
        "a checkpoint counts its earlier sittings up to that checkpoint, not the steps trained again after it, and",
        "a row resumed before the checkpoints kept that time counts only its last sitting; a seed's base rebuilt in a",
        "later sitting counts its build once" + (
            f"; left out, as no kept record holds their time: {', '.join(untimed)})." if untimed else ")."
        ),
        "WebQA spread: the best position's accuracy minus the worst's (0 is a flat position curve); WebQA flat",
        "spread: the spread a truly flat curve shows from sampling alone at the row's accuracy and items per",
        "position (a spread below it is no evidence of a position bias). CIDEr-D x 100. Clips: text->video",
        "and video->text R@5 over the test clips; grounding: the frame each narration sentence aligns to most lies",
        "in its span (accuracy), and the mean IoU of the aligned spans; localisation: each sentence alone finds the",
        "nearest frame alone, no alignment (an order-free probe; details in the video results).",
    ]
    # three tables: embeddings, generation and RAG, MMVP and WebQA
    embedding = [c for c in columns if c.split()[0] in ("T->I", "I->T", "VIST", "Wino")]
    probes = [c for c in columns if c.startswith(("MMVP", "WebQA"))]
    video = [c for c in columns if c.startswith(("T->V", "V->T", "Ground", "Localise"))]
    generation = [c for c in columns if c not in (*embedding, *probes, *video)]
    for group in (embedding, generation, probes, video):
        lines += ["", "| row | " + " | ".join(group) + " |", "|---|" + "---|" * len(group)]
        for row in (*ROWS, "teacher"):
            if row not in summary:
                continue
            seeds = max(len(cell["values"]) for cell in summary[row].values())
            cells = [cell_text(summary[row].get(metric), seeds) for metric in group]
            if any(cells):
                lines.append(f"| {seeds_label(row, seeds, len(settings.seeds))} | " + " | ".join(cells) + " |")
    lines += ["", "![ablation](ablation.png)", ""]
    if video_results is not None:
        name = video_results.name
        lines += [f"The clip columns at full detail (R@1/5/10, per seed): [{name}]({name}).", ""]
    lines += ["## Rows", ""]
    lines += [f"- **{row}**: {DESCRIPTIONS[row]}" + (f" (`{' '.join(VARIANTS[row])}`)" if VARIANTS.get(row) else "") for row in summary]
    lines += [
        "",
        "## The paper's claims at this scale",
        "",
        "| claim | verdict | evidence |",
        "|---|---|---|",
        *[f"| {c} | {v} | {e} |" for c, v, e in checked],
        "",
        "## Setup",
        "",
        f"- benchmark limits (items; None = all): {settings.limits}",
        *([f"- training precision (row/seed; bf16 autocast where the CPU has native bf16): {precisions}"] if precisions else []),
        *(
            [
                "- base build each row continues (row/seed by the first 12 hex digits of the base weights' sha256; a base "
                f"rebuilt in a later sitting is not bit-identical, so rows of one seed compare directly only on one build): {bases}"
            ]
            if bases
            else []
        ),
        f"- versions: {json.dumps(record['versions'])}",
        "- RAG columns: the answer word appears in the reply (`contains_answer`); hit@1: the gold document is the",
        "  first one retrieved. T->I / I->T: 1000 test images, 5 captions each. VIST: 5 captions + 4 images -> 5th image.",
        "",
    ]
    path = out / "ablation.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def run_ablation(settings: AblationSettings) -> Path:
    unknown = sorted(set(settings.variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    if not settings.seeds:
        raise ValueError("give at least one seed")
    started = time.perf_counter()
    per_seed = {seed: run_seed(settings, seed) for seed in settings.seeds}
    tag = "" if settings.steps is None else f"-{settings.steps}steps"
    first = settings.out / f"seed{settings.seeds[0]}" / f"sugar{tag}" / "config.json"
    train_config = json.loads(first.read_text()) if first.is_file() else {}
    timed = study_time(per_seed)
    seconds = max(timed.seconds, time.perf_counter() - started)
    video = write_video_results(per_seed, ROWS, settings.command, settings.results / "video.md")
    return write_results(
        summarise(per_seed), settings, seconds, train_config, video, precision_note(per_seed), base_note(per_seed),
        untimed=timed.untimed,
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ablate",
        help="the ablation study: base, Sugar and its variants (--variants, all by default) over seeds -> results/ablation.md",
        description=(
            "For each seed, build (or reuse) a demo folder OUT/seedN (world, teachers, base model), continue the base "
            "model once per variant with the same steps, evaluate every row on the test split (retrieval, VIST "
            "interleaved retrieval, Winoground, QA / POPE, RAG) and write RESULTS/ablation.md, ablation.json and "
            f"ablation.png with mean +- std over seeds. Variants: {', '.join(VARIANTS)}."
        ),
    )
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds, 0..N-1 (default 3)")
    parser.add_argument(
        "--seed-ids", type=int, nargs="+", metavar="N",
        help="exactly these seeds instead (e.g. to run seeds in separate processes; a later run over all reuses them)",
    )
    parser.add_argument("--out", default="runs/ablation", help="folder of the per-seed runs (default runs/ablation)")
    parser.add_argument("--results", default="results", help="where ablation.md/json/png go (default results)")
    parser.add_argument("--steps", type=int, help="sugar-stage steps of every variant (default: the demo's)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="NAME")
    parser.add_argument("--scale", default="default", choices=["small", "default"], help="world size of every seed")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--kept-only", action="store_true",
        help="write the tables from the rows finished so far and train nothing (a study between sittings; "
        "a row some seeds lack is averaged over those that have it and labelled so)",
    )
    parser.add_argument(
        "--rescore", nargs="+", default=[], choices=list(BENCH_LIMITS), metavar="BENCH",
        help="run these benchmarks again on every finished row's model (kept in OUT) and update its scores; "
        f"one of {', '.join(BENCH_LIMITS)}",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="TrainConfig overrides for every stage")
    parser.set_defaults(func=_run)


def _run(args: Any) -> int:
    import re

    from sugar.checks import check_output_dir, check_training_options, creatable

    if args.seeds < 1:
        raise UsageError(f"--seeds: expected an integer >= 1, found {args.seeds}")
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps: expected an integer >= 1, found {args.steps}")
    if args.seed_ids and min(args.seed_ids) < 0:
        raise UsageError(f"--seed-ids: expected integers >= 0, found {min(args.seed_ids)}")
    check_output_dir(
        args.out, "--out", what="an earlier ablation (seedN folders)",
        own=lambda folder: all(re.fullmatch(r"seed\d+", p.name) or p.name.startswith(".") for p in folder.iterdir()),
    )
    results = Path(args.results)
    if results.is_file():
        raise UsageError(f"--results {results}: expected a folder, found a file")
    creatable(results / "ablation.md", "--results")
    check_training_options(None, list(args.overrides))
    settings = AblationSettings(
        out=Path(args.out),
        results=Path(args.results),
        seeds=list(args.seed_ids) if args.seed_ids else list(range(args.seeds)),
        variants=list(args.variants),
        steps=args.steps,
        scale=args.scale,
        overrides=list(args.overrides),
        progress=not args.no_progress,
        kept_only=args.kept_only,
        rescore=tuple(args.rescore),
        command="sugar " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["ablate"] else "sugar ablate",
    )
    print(f"results: {run_ablation(settings)}")
    return 0
