"""Training configuration: one typed dataclass, loaded from YAML, overridable from the command line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sugar.checks import coerce_fields, coerce_override, model_overrides, read_yaml

# what a training batch can mix (sugar.train.examples builds each kind from the world's files)
# rag_pairs: a knowledge-base question (image and question, no answer) and its gold document, a
# matched pair for L_d only (always one document, target 1), drawn two documents at a time.
# clips: a world clip's sampled frames and its narration, likewise a matched pair for L_d only.
MIX_KINDS = ("captions", "stories", "vqa", "rag", "rag_pairs", "webqa", "clips")
PAIRED_KINDS = ("rag_pairs", "clips")  # drawn as two views of one item whatever paired_captions says


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved beside every checkpoint."""

    # what to train
    # align: the projector alone on captions (LM frozen), as LLaVA's first stage; base: generative
    # tuning (L_g only); sugar: L_g + alpha * L_d
    stage: Literal["align", "base", "sugar"] = "sugar"
    model: str = "smol"  # preset name ("smol": the pretrained default, "tiny": tests and smoke runs) or "llava"
    model_path: str | None = None  # llava: local folder or hub id
    model_overrides: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None  # a saved SugarModel folder to continue from (sugar stage: the base model)
    vision_cache_dir: str | None = None  # on-disk cache of frozen vision-tower features, shared across stages
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32

    # data
    world: str = "runs/demo/world"
    teachers: str | None = "runs/demo/teachers"
    mix: dict[str, int] = field(default_factory=lambda: {"captions": 8, "stories": 4, "vqa": 4})
    max_length: int = 256
    # Each caption item enters a batch in both orders (image -> caption, caption -> image), so
    # L_d sees matched image/text prefixes; the mix's caption count must then be even.
    paired_captions: bool = True
    max_caption_images: int | None = None  # the first N caption images only (those the teacher fit read)

    # optimisation
    steps: int = 300
    gradient_accumulation: int = 1
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    max_grad_norm: float = 1.0

    # the discriminative side (method.md sections 3-6)
    alpha: float = 1.0
    # alpha over the stage: over the first alpha_warmup of the steps it rises from 0 to alpha,
    # as a step at the end of the warm-up (constant), a line (linear) or a half cosine (cosine);
    # alpha after it. alpha_warmup = 0 is alpha throughout.
    alpha_schedule: Literal["constant", "linear", "cosine"] = "constant"
    alpha_warmup: float = 0.0
    delta: float = 1.0
    prefixes_per_document: int = 2
    similarity_map: Literal["identity", "unit"] = "identity"
    target_structure: Literal["gak", "mean"] = "gak"
    teacher_kernel: Literal["triple", "cross"] = "triple"
    discriminative_loss: Literal["mse", "infonce"] = "mse"
    infonce_temperature: float = 0.05
    # The temperature of the teacher's side of the InfoNCE (null: infonce_temperature). At 0.05
    # the teacher's rows put ~0.1% of their mass on other documents (the targets' structure is
    # all but erased); a higher one keeps it (benchmarks/target_structure.py).
    infonce_teacher_temperature: float | None = None
    # An image and its caption, fed in both orders: two documents whose target is the teacher's
    # kernel (the paper's reading, "kernel"), or one document with target 1 ("one").
    pair_target: Literal["kernel", "one"] = "kernel"
    use_generative_loss: bool = True

    # bookkeeping
    output_dir: str = "runs/demo/sugar"
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    # steps after which the model is also saved to OUTPUT_DIR/snapshots/step-N (learning curves)
    save_models_at: list[int] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        """Documents per micro-batch on one process (the sum of the mix)."""
        return sum(self.mix.values())

    def validate(self) -> None:
        if self.stage not in ("align", "base", "sugar"):
            raise ValueError(f"stage must be 'align', 'base' or 'sugar', got {self.stage!r}")
        if self.pair_target not in ("kernel", "one"):
            raise ValueError(f"pair_target must be 'kernel' or 'one', got {self.pair_target!r}")
        unknown = set(self.mix) - set(MIX_KINDS)
        if unknown or not self.mix or any(v < 0 for v in self.mix.values()) or self.batch_size == 0:
            raise ValueError(
                f"mix must map some of {' / '.join(MIX_KINDS)} to non-negative counts with a positive sum, got {self.mix}"
            )
        if self.paired_captions and self.mix.get("captions", 0) % 2:
            raise ValueError(f"paired_captions draws captions in pairs of orders: mix.captions must be even, got {self.mix['captions']}")
        for kind in PAIRED_KINDS:
            if self.mix.get(kind, 0) % 2:
                raise ValueError(f"{kind} are drawn as pairs of views: mix.{kind} must be even, got {self.mix[kind]}")
        if self.max_caption_images is not None and self.max_caption_images < 1:
            raise ValueError(f"max_caption_images must be >= 1 or null, got {self.max_caption_images}")
        for name in ("steps", "gradient_accumulation", "prefixes_per_document", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.stage == "sugar" and self.teachers is None:
            raise ValueError("the sugar stage needs teachers: a folder written by `sugar teachers fit`")
        if not self.use_generative_loss and self.stage != "sugar":
            raise ValueError(f"the {self.stage} stage trains the generative loss only; use_generative_loss must be true")
        if any(not isinstance(s, int) or not 1 <= s <= self.steps for s in self.save_models_at):
            raise ValueError(f"save_models_at must list steps in 1..{self.steps}, got {self.save_models_at}")
        if self.alpha_schedule not in ("constant", "linear", "cosine"):
            raise ValueError(f"alpha_schedule must be 'constant', 'linear' or 'cosine', got {self.alpha_schedule!r}")
        if not 0.0 <= self.alpha_warmup < 1.0:
            raise ValueError(f"alpha_warmup is a fraction of the steps in [0, 1), got {self.alpha_warmup}")
        if self.infonce_temperature <= 0 or (self.infonce_teacher_temperature is not None and self.infonce_teacher_temperature <= 0):
            raise ValueError(
                f"infonce_temperature and infonce_teacher_temperature must be > 0, got {self.infonce_temperature} "
                f"and {self.infonce_teacher_temperature}"
            )
        if self.delta <= 0 or self.alpha < 0:
            raise ValueError(f"delta must be > 0 and alpha >= 0, got delta={self.delta}, alpha={self.alpha}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _field_types() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def config_from_dict(values: dict[str, Any], source: str = "config") -> TrainConfig:
    known = _field_types()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    values = coerce_fields(TrainConfig, values, source)  # `learning_rate: 3e-4` is a string to YAML 1.1
    if isinstance(values.get("model_overrides"), dict):
        values["model_overrides"] = model_overrides(values["model_overrides"], f"{source}: model_overrides")
    config = TrainConfig(**values)
    config.validate()
    return config


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with a YAML value (`alpha=0.5`, `mix={captions: 8, stories: 8}`); dotted keys
    set one entry of a mapping (`mix.vqa=0`, `model_overrides.hidden_size=128`)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or " ".join(str(error).split())
        raise ValueError(f"override {text!r}: the value is not valid YAML ({problem})") from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    values: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        loaded = read_yaml(path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of config keys, got {type(loaded).__name__}")
        values.update(loaded)
        source = str(path)
    for text in overrides or []:
        key, value = parse_override(text)
        value = coerce_override(TrainConfig, key, value, text)
        if "." in key:
            outer, inner = key.split(".", 1)
            default = _field_types().get(outer)
            current = values.get(outer)
            if current is None and default is not None and default.default_factory is not dataclasses.MISSING:
                current = default.default_factory()
            if not isinstance(current, dict):
                raise ValueError(f"override {text!r}: {outer} is not a mapping")
            values[outer] = {**current, inner: value}
        else:
            values[key] = value
    return config_from_dict(values, source)
