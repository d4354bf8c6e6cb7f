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

from sugar.fileio import atomic_write_text

DEMO_STEPS = {"base": 200, "sugar": 200}
DEMO_STAGES = ("world", "teachers", "base", "sugar", "evaluation", "pictures")


@dataclass
class DemoSettings:
    out: Path = Path("runs/demo")
    seed: int = 0
    scale: str = "default"
    config: Path | None = None  # a TrainConfig YAML; default: TrainConfig's defaults (= configs/tiny.yaml)
    base_steps: int | None = None  # None: DEMO_STEPS (or the config file's steps)
    sugar_steps: int | None = None
    overrides: list[str] = field(default_factory=list)
    qa_questions: int = 300
    # The teacher fit reads one caption per training image: 3x less text to encode for a small
    # loss on val (selection score 0.433 against 0.468 with all five), measured on the default world.
    teacher_captions_per_image: int | None = 1
    # Images are the demo's largest cost (EfficientNet-Lite0 on 2 cores, ~15 ms each): the teachers
    # are fitted on the first 4000 training images and both stages draw their caption pairs from
    # the same 4000, whose teacher features are then already cached.
    caption_images: int = 4000
    teacher_eval_images: int = 500
    # The base stage is generative: captions, stories, VQA, and knowledge-base questions answered
    # from their gold document (so the model learns to read retrieved context). The sugar stage
    # draws more caption pairs per batch (each in both orders): where L_d matches images and texts.
    # Sized so the whole demo stays within 15 minutes on 2 CPU cores.
    base_mix: str = "{captions: 8, stories: 2, vqa: 4, rag: 2}"
    sugar_mix: str = "{captions: 24, stories: 2, vqa: 2, rag: 2}"
    progress: bool = True


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
    # the demo's sizes apply unless a config file or KEY=VALUE overrides say otherwise
    defaults = [] if settings.config is not None else [
        f"mix={settings.base_mix if stage == 'base' else settings.sugar_mix}",
        f"steps={DEMO_STEPS[stage]}",
    ]
    steps = settings.base_steps if stage == "base" else settings.sugar_steps
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


def evaluate_all(settings: DemoSettings) -> dict[str, Any]:
    """The first evaluation on held-out data: both MLLMs and the CLIP-style teacher baseline."""
    from sugar.data import load_coco_karpathy, load_llava_conversations, load_winoground
    from sugar.eval.benchmarks import (
        ModelEncoder,
        TeacherEncoder,
        evaluate_qa,
        evaluate_retrieval,
        evaluate_winoground,
        spread,
    )
    from sugar.models import SugarModel
    from sugar.teachers import TeacherSuite

    world = settings.out / "world"
    captions = load_coco_karpathy(world / "captions" / "dataset_coco.json", world, split="test")
    winoground = load_winoground(world / "winoground" / "test.jsonl", world / "images")
    conversations = load_llava_conversations(world / "instruct" / "test.json", world)
    # evenly spread through the file: its mix of VQA and POPE questions (the first N by id were
    # all POPE-adversarial, where always answering "yes" scores 50%)
    conversations = spread(conversations, settings.qa_questions)

    results: dict[str, Any] = {}
    cache = settings.out / "eval"
    cache.mkdir(parents=True, exist_ok=True)
    for name in ("base", "sugar"):
        path = cache / f"{name}.json"
        if path.is_file():
            results[name] = json.loads(path.read_text())
            continue
        # both models share one frozen tower: its features are computed once for the two of them
        model = SugarModel.from_pretrained(settings.out / name / "model", vision_cache_dir=str(settings.out / "vision-cache"))
        model.eval()
        encoder = ModelEncoder(model, show_progress=settings.progress)
        results[name] = {
            "retrieval": evaluate_retrieval(encoder, captions),
            "winoground": evaluate_winoground(encoder, winoground),
            "qa": evaluate_qa(model, conversations, show_progress=settings.progress),
        }
        atomic_write_text(path, json.dumps(results[name], indent=2))
    path = cache / "teacher.json"
    if path.is_file():
        results["teacher"] = json.loads(path.read_text())
    else:
        encoder = TeacherEncoder(TeacherSuite.load(settings.out / "teachers"))
        results["teacher"] = {
            "retrieval": evaluate_retrieval(encoder, captions),
            "winoground": evaluate_winoground(encoder, winoground),
        }
        atomic_write_text(path, json.dumps(results["teacher"], indent=2))
    return results


class StageClock:
    """Wall time per stage in OUT/stages.json: the run that finished a stage records it, and a
    re-run that reuses the stage keeps that time."""

    def __init__(self, out: Path) -> None:
        self.path = out / "stages.json"
        self.stages: dict[str, float] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def __call__(self, name: str, work: Callable[[], Any]) -> Any:
        if name in self.stages:
            return work()
        result = _timed(self.stages, name, work)
        atomic_write_text(self.path, json.dumps(self.stages, indent=2))
        return result


def prepare_models(
    settings: DemoSettings, record: Callable[[str, Callable[[], Any]], Any], with_sugar: bool = True
) -> None:
    """world -> teachers -> base (-> sugar), each reused when its result exists."""
    from sugar.teachers import fit_teachers
    from sugar.world import build_world

    out = settings.out
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
    record("base", lambda: train_stage(settings, "base", []))
    if with_sugar:
        record("sugar", lambda: train_stage(settings, "sugar", [f"init_from={out / 'base' / 'model'}"]))


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
    metrics = {
        "models": results,
        "teacher_fit": json.loads(teacher_fit.read_text()) if teacher_fit.is_file() else None,
        "config": config,
        "versions": _versions(),
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
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the world and of training")
    parser.add_argument("--scale", default="default", choices=["small", "default"], help="world size")
    parser.add_argument("--config", help="TrainConfig YAML for both stages (default: built-in = configs/tiny.yaml)")
    parser.add_argument("--base-steps", type=int, help="override the base stage's steps")
    parser.add_argument("--sugar-steps", type=int, help="override the sugar stage's steps")
    parser.add_argument("--qa-questions", type=int, default=300, help="test questions answered per model")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="TrainConfig overrides for both stages")
    parser.set_defaults(func=_run)


def _run(args: Any) -> int:
    from sugar.checks import check_demo_arguments

    check_demo_arguments(args)  # before any stage runs
    report = run_demo(
        DemoSettings(
            out=Path(args.out),
            seed=args.seed,
            scale=args.scale,
            config=Path(args.config) if args.config else None,
            base_steps=args.base_steps,
            sugar_steps=args.sugar_steps,
            overrides=list(args.overrides),
            qa_questions=args.qa_questions,
            progress=not args.no_progress,
        )
    )
    print(f"report: {report}")
    return 0
