"""The main job: world -> teachers -> base -> sugar -> evaluation -> report.

    sugar demo                       # everything, in runs/demo (a re-run reuses finished stages)
    sugar demo --out runs/seed1 --seed 1

Each stage writes its result under the output folder and is skipped when that result exists,
so an interrupted demo resumes where it stopped (training stages resume from checkpoints).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from sugar.fileio import atomic_write_text

# The demo's training recipe, stage by stage (TrainConfig overrides). SmolLM2-135M-Instruct behind
# the frozen EfficientNet-Lite0 tower, as the paper fine-tunes a pretrained MLLM:
# align: the projector alone on caption pairs (LM frozen); base: generative tuning with LoRA on
# captions, one story, VQA and knowledge-base questions answered from their gold document;
# sugar: from base, L_g + alpha * L_d with caption pairs (each in both orders) in every batch.
DEMO_RECIPE: dict[str, dict[str, str]] = {
    "align": {"mix": "{captions: 16}", "steps": "100", "learning_rate": "1.0e-3"},
    "base": {"mix": "{captions: 8, stories: 1, vqa: 6, rag: 2}", "steps": "250", "learning_rate": "5.0e-4"},
    # alpha: at the start of this stage |grad L_d| of the InfoNCE is ~6x |grad L_g| on the shared
    # weights (results/loss_balance.md: equal norms at alpha 0.16), so 0.1 leaves L_g the larger
    # pull (0.6x) while L_d is a real share of it.
    # The balance study (results/balance.md) confirms it on val: past 0.1 each step up in alpha
    # costs more caption quality for less retrieval, and warm-up schedules do not beat it.
    # discriminative_loss=infonce: on val (results/learning_curve.md) the KL between tempered
    # softmaxes of M_r and M_l is ahead of the paper's MSE at every point (T->I R@5 49.7 against
    # 30.8 at 500 steps); the MSE stays a variant (`sugar curve`, `sugar ablate`).
    # pair_target=one: an image and its caption (fed in both orders) are one document, target 1,
    # instead of two documents whose target is the teacher's kernel (~0.44 against ~0.26 for an
    # unrelated pair: a weak contrast). steps=500: the curve's knee within the demo's time budget
    # (1000 steps add ~19 points of T->I R@5 on val for 30 more minutes: `--sugar-steps 1000`).
    # save_models_at: the points of the demo's learning curve.
    "sugar": {
        "mix": "{captions: 16, vqa: 2, rag: 2}", "steps": "500", "learning_rate": "5.0e-4", "alpha": "0.1",
        "discriminative_loss": "infonce", "pair_target": "one", "save_models_at": "[100, 250]",
    },
}
DEMO_STEPS = {stage: int(recipe["steps"]) for stage, recipe in DEMO_RECIPE.items()}
QUICK_STEPS = {"align": 20, "base": 40, "sugar": 40}
TRAIN_STAGES = tuple(DEMO_RECIPE)
DEMO_STAGES = ("world", "teachers", *TRAIN_STAGES, "evaluation", "pictures")


@dataclass
class DemoSettings:
    out: Path = Path("runs/demo")
    seed: int = 0
    scale: str = "default"
    config: Path | None = None  # a TrainConfig YAML for every stage; default: the built-in DEMO_RECIPE
    align_steps: int | None = None  # None: DEMO_RECIPE (or the config file's steps)
    base_steps: int | None = None
    sugar_steps: int | None = None
    overrides: list[str] = field(default_factory=list)
    qa_questions: int = 100  # VQA questions, and POPE questions per negative type
    # The teacher fit reads one caption per training image: 3x less text to encode for a small
    # loss on val (selection score 0.433 against 0.468 with all five), measured on the default world.
    teacher_captions_per_image: int | None = 1
    # Images are the demo's largest cost (EfficientNet-Lite0 on 2 cores, ~15 ms each): the teachers
    # are fitted on the first 4000 training images and both stages draw their caption pairs from
    # the same 4000, whose teacher features are then already cached.
    caption_images: int = 4000
    teacher_eval_images: int = 500
    progress: bool = True
    quick: bool = False  # a first look: the small world and a few steps per stage (numbers labelled so)


def _timed(stages: dict[str, float], name: str, work: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = work()
    stages[name] = round(time.perf_counter() - started, 1)
    return result


def _versions() -> dict[str, str]:
    import importlib.metadata as metadata

    names = ["sugar", "torch", "transformers", "accelerate", "peft", "faiss-cpu", "numpy", "pillow"]
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine_record(autocast_setting: str) -> dict[str, Any]:
    """What decides the demo's speed and its float precision on this machine: stage times and
    numbers from a CPU with native bf16 (autocast on) and one without (float32) are not alike."""
    import torch

    from sugar.models.precision import autocast_dtype, cpu_has_native_bf16

    dtype = autocast_dtype(autocast_setting, torch.device("cpu"), torch.float32)
    return {
        "processor": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "cpu_precision": "float32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast",
        "cuda": torch.cuda.is_available(),
    }


def train_stage(settings: DemoSettings, stage: str, extra: list[str], folder: str | None = None) -> Path:
    """Train (or resume, or reuse) one stage in OUT/<folder> (default: the stage's name)."""
    from sugar.train.config import load_config
    from sugar.train.recipe import train

    out = settings.out
    folder = folder or stage
    model_dir = out / folder / "model"
    from sugar.models.config import CONFIG_NAME

    if (model_dir / CONFIG_NAME).is_file():  # save_pretrained renames the finished folder into place
        return model_dir
    # the demo's recipe applies unless a config file or KEY=VALUE overrides say otherwise
    steps = {"align": settings.align_steps, "base": settings.base_steps, "sugar": settings.sugar_steps}[stage]
    recipe = dict(DEMO_RECIPE[stage])
    if steps is not None and "save_models_at" in recipe:  # a shorter run keeps the points it reaches
        points = [p for p in yaml.safe_load(recipe["save_models_at"]) if p < steps]
        recipe["save_models_at"] = str(points)
    defaults = [] if settings.config is not None else [f"{k}={v}" for k, v in recipe.items()]
    overrides = [
        f"stage={stage}",
        f"world={out / 'world'}",
        f"teachers={out / 'teachers'}",
        f"output_dir={out / folder}",
        f"seed={settings.seed}",
        f"vision_cache_dir={out / 'vision-cache'}",
        f"max_caption_images={settings.caption_images}",
        *defaults,
        *([f"steps={steps}"] if steps is not None else []),
        *settings.overrides,
        *extra,  # last: what the caller asks of this stage (an ablation's one change) wins
    ]
    config = load_config(settings.config, overrides)
    resume = (out / folder / "checkpoints" / "latest").is_file()
    return train(config, resume=resume, show_progress=settings.progress)


DEMO_BENCHES = ("retrieval", "interleaved", "winoground", "qa", "rag")


def summarise(results: dict[str, dict[str, Any]], encoder: str) -> dict[str, Any]:
    """One model's scores in the report's layout, from `run_benchmarks` results.

    `encoder="model"` reads the MLLM's own rows; `"teacher"` the CLIP-style teacher's rows
    (embedding benchmarks only: the teacher does not generate).
    """

    def pick(bench: str) -> dict[str, Any] | None:
        found = results.get(bench)
        if found is None:
            return None
        return found if encoder == "model" else found.get("teacher")

    summary: dict[str, Any] = {}
    if (retrieval := pick("retrieval")) is not None:
        summary["retrieval"] = {"t2i": retrieval["t2i"], "i2t": retrieval["i2t"]}
    if (interleaved := pick("interleaved")) is not None:
        summary["interleaved"] = {
            "5c": interleaved["captions_only"],
            "5c4i": interleaved["captions_and_images"],
            "1c": interleaved["last_caption"],
        }
    if (winoground := pick("winoground")) is not None:
        summary["winoground"] = {k: winoground[k] for k in ("text", "image", "group")}
    if encoder == "model" and "qa" in results:
        qa = results["qa"]
        summary["qa"] = {**qa.get("vqa", {}), "metric": "normalised exact match of the reference answer (open VQA)"}
        pope = qa.get("pope", {})
        summary["pope"] = {
            "f1": pope.get("average", {}).get("f1"),
            "accuracy": pope.get("average", {}).get("accuracy"),
            "by_type": {k: v for k, v in pope.items() if k != "average"},
        }
    if encoder == "model" and "rag" in results:
        rag = results["rag"]
        rows = {"none": "no_retrieval", "self_k1": "self_k1", "self_k3": "self_k3", "teacher_k1": "teacher_k1", "oracle": "oracle"}
        summary["rag"] = {"answered": rag["answered"], "metric": "the short answer appears in the reply"}
        for key, row in rows.items():
            if row not in rag["rows"]:
                continue
            scores = rag["rows"][row]
            entry: dict[str, Any] = {"accuracy": scores["contains_answer"], "exact_match": scores["exact_match"]}
            retriever = row.split("_k")[0]
            if retriever in rag["retrieval"]:
                entry["hit@1"] = rag["retrieval"][retriever]["hit@1"]
            summary["rag"][key] = entry
    return summary


def evaluate_all(settings: DemoSettings) -> dict[str, Any]:
    """Held-out test split: both MLLMs on every demo benchmark, the CLIP-style teacher beside them."""
    from sugar.eval.suite import run_benchmarks
    from sugar.models import SugarModel
    from sugar.teachers import TeacherSuite

    world = settings.out / "world"
    cache = settings.out / "eval"
    cache.mkdir(parents=True, exist_ok=True)
    teacher = TeacherSuite.load(settings.out / "teachers")
    raw: dict[str, Any] = {}
    for name in ("base", "sugar"):
        path = cache / f"{name}.json"
        if path.is_file():
            raw[name] = json.loads(path.read_text())
            continue
        # both models share one frozen tower: its features are computed once for the two of them
        model = SugarModel.from_pretrained(settings.out / name / "model", vision_cache_dir=str(settings.out / "vision-cache"))
        raw[name] = run_benchmarks(
            model, world, DEMO_BENCHES, split="test", teachers_dir=teacher,
            limits={"qa": settings.qa_questions}, show_progress=settings.progress,
        )
        atomic_write_text(path, json.dumps(raw[name], indent=2))
    results = {"base": summarise(raw["base"], "model"), "sugar": summarise(raw["sugar"], "model")}
    results["teacher"] = summarise(raw["sugar"], "teacher")
    return results


class StageClock:
    """Wall time per stage in OUT/stages.json: the run that finished a stage records it, and a
    re-run that reuses the stage keeps that time. A training stage names its run folder, so a run
    resumed from a checkpoint adds the training its earlier sittings did."""

    def __init__(self, out: Path) -> None:
        self.path = out / "stages.json"
        self.stages: dict[str, float] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def __call__(self, name: str, work: Callable[[], Any], run: Path | None = None) -> Any:
        if name in self.stages:
            return work()
        from sugar.train.recipe import trained_seconds

        earlier = trained_seconds(run) if run is not None else 0.0
        result = _timed(self.stages, name, work)
        self.stages[name] = round(self.stages[name] + earlier, 1)
        # merge with what other processes sharing this folder recorded meanwhile; a stage one of
        # them finished while this one waited to reuse it keeps that process's time
        on_disk = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.stages = {name: self.stages[name], **on_disk}
        atomic_write_text(self.path, json.dumps(self.stages, indent=2))
        return result


def check_folder_seed(out: Path, seed: int) -> None:
    """Refuse a seed the folder's finished world or stages were not built with.

    Without this, another seed would rebuild the world in place while reusing teachers and models
    trained on the old one: a report whose parts belong to two seeds."""
    from sugar.checks import UsageError
    from sugar.world.build import MANIFEST_NAME

    for path in (out / "world" / MANIFEST_NAME, *(out / stage / "config.json" for stage in TRAIN_STAGES)):
        if not path.is_file():
            continue
        found = json.loads(path.read_text()).get("seed")
        if found is not None and int(found) != seed:
            raise UsageError(
                f"{path}: {out} was built with seed {found}, not the requested {seed}; "
                f"pass --seed {found} to continue it, or name another --out folder"
            )


def prepare_models(
    settings: DemoSettings, record: Callable[[str, Callable[[], Any]], Any], with_sugar: bool = True
) -> None:
    """world -> teachers -> base (-> sugar), each reused when its result exists."""
    from sugar.teachers import fit_teachers
    from sugar.world import build_world

    out = settings.out
    check_folder_seed(out, settings.seed)
    out.mkdir(parents=True, exist_ok=True)
    record("world", lambda: build_world(out / "world", seed=settings.seed, scale=settings.scale, progress=settings.progress))
    if not (out / "teachers" / "suite.json").is_file():
        record(
            "teachers",
            lambda: fit_teachers(
                out / "teachers",
                world=out / "world",
                captions_per_image=settings.teacher_captions_per_image,
                max_train_images=settings.caption_images,
                max_eval_images=settings.teacher_eval_images,
                progress=settings.progress,
            ),
        )
    record("align", lambda: train_stage(settings, "align", []), run=out / "align")
    record("base", lambda: train_stage(settings, "base", [f"init_from={out / 'align' / 'model'}"]), run=out / "base")
    if with_sugar:
        record("sugar", lambda: train_stage(settings, "sugar", [f"init_from={out / 'base' / 'model'}"]), run=out / "sugar")


def run_demo(settings: DemoSettings) -> Path:
    out = settings.out
    record = StageClock(out)
    prepare_models(settings, record)
    results = record("evaluation", lambda: evaluate_all(settings))
    from sugar.eval.pictures import demo_pictures

    pictures = record("pictures", lambda: demo_pictures(out))
    # the demo's own stages (an ablation run in the same folder adds its trainings to stages.json)
    stages = {name: seconds for name, seconds in record.stages.items() if name in DEMO_STAGES}

    from sugar.eval.report import write_demo_report

    config = json.loads((out / "sugar" / "config.json").read_text())
    teacher_fit = out / "teachers" / "metrics.json"
    import resource

    model_config = json.loads((out / "sugar" / "model" / "sugar_config.json").read_text())
    metrics = {
        "quick": settings.quick,
        "model": {
            "preset": model_config.get("preset"),
            "lm": "SmolLM2-135M-Instruct" if model_config.get("lm") == "smollm2" else model_config.get("lm"),
            "vision_tower": model_config.get("vision_tower"),
            "lora_r": model_config.get("lora_r"),
        },
        "stages": stages,
        # this process only: a re-run that reuses finished stages reports what it did itself
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "models": results,
        "teacher_fit": json.loads(teacher_fit.read_text()) if teacher_fit.is_file() else None,
        "config": config,
        "versions": _versions(),
        "machine": machine_record(str(model_config.get("autocast", "auto"))),
        "seeds": {"world": settings.seed, "training": settings.seed},
        "world_scale": settings.scale,
        "pictures": pictures,
        "wall_time_seconds": {**stages, "total": round(sum(stages.values()), 1)},
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    return write_demo_report(out, metrics)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the main job: world -> teachers -> base -> sugar -> evaluation -> report",
        description=(
            "Build the embedded world, fit the teachers, train the base model (generative only), continue it "
            "with Sugar (L_g + alpha * L_d), evaluate both and the CLIP-style teacher on held-out data, and "
            "write OUT/report.md and OUT/metrics.json. Finished stages are reused on a re-run."
        ),
    )
    parser.add_argument("--out", help="output folder (default runs/demo; runs/demo-quick with --quick)")
    parser.add_argument(
        "--quick", action="store_true",
        help=f"a first look in about 10 minutes: the small world, {QUICK_STEPS} steps per stage; its numbers are labelled as such",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the world and of training")
    parser.add_argument("--scale", choices=["small", "default"], help="world size (default: default; small with --quick)")
    parser.add_argument("--config", help="TrainConfig YAML for every stage instead of the built-in recipe (e.g. configs/tiny.yaml for a smoke run)")
    parser.add_argument("--align-steps", type=int, help="override the align stage's steps")
    parser.add_argument("--base-steps", type=int, help="override the base stage's steps")
    parser.add_argument("--sugar-steps", type=int, help="override the sugar stage's steps")
    parser.add_argument(
        "--qa-questions", type=int, help="VQA questions, and POPE questions per negative type, per model (default 100)"
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="TrainConfig overrides for both stages")
    parser.set_defaults(func=_run)


def _run(args: Any) -> int:
    from sugar.checks import check_demo_arguments

    quick = bool(args.quick)
    args.out = args.out or ("runs/demo-quick" if quick else "runs/demo")
    check_demo_arguments(args)  # before any stage runs

    def steps(stage: str) -> int | None:
        given = getattr(args, f"{stage}_steps")
        return given if given is not None or not quick else QUICK_STEPS[stage]

    report = run_demo(
        DemoSettings(
            out=Path(args.out),
            seed=args.seed,
            scale="small" if quick and args.scale is None else args.scale or "default",
            config=Path(args.config) if args.config else None,
            align_steps=steps("align"),
            base_steps=steps("base"),
            sugar_steps=steps("sugar"),
            overrides=list(args.overrides),
            qa_questions=args.qa_questions if args.qa_questions is not None else (50 if quick else 100),
            progress=not args.no_progress,
            quick=quick,
        )
    )
    print(f"report: {report}")
    return 0
