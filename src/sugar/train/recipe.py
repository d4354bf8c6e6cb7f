"""The training recipe: setup, one step (L_g + alpha * L_d), checkpoints, logs. One readable file.

    sugar train --config configs/smol.yaml init_from=runs/demo/base/model output_dir=runs/x/sugar
    accelerate launch --num_processes 2 -m sugar.cli train --config configs/smol.yaml init_from=...   # DDP

Runs as a single CPU process by default and unchanged under `accelerate launch` (DDP, FSDP,
DeepSpeed). Under several processes the similarity matrices cover the global batch.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from sugar.kernels import IMAGE, TEXT, LocalKernel, SquaredEuclidean
from sugar.fileio import atomic_write_text
from sugar.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from sugar.train.config import PAIRED_KINDS, TrainConfig
from sugar.train.guards import check_finite_losses, check_paths, resume_point
from sugar.train.distributed import all_reduce_sum, gather_rows, global_max, pad_to_length, world_size
from sugar.train.losses import PrefixSlices, alignment_targets, discriminative_loss, soft_infonce_loss
from sugar.train.mixture import BatchStream, Segment, TrainingExample


@dataclass
class StepLosses:
    total: Tensor  # what this process backpropagates (its share, scaled for DDP's averaging)
    generative: Tensor | None  # global-batch L_g (token-weighted mean), detached
    discriminative: Tensor | None  # global-batch L_d
    documents: int


def document_seed(seed: int, step: int, document_id: str) -> int:
    """Per document and step, so the cut points do not depend on which process holds it."""
    digest = hashlib.sha256(f"{seed}:{step}:{document_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def sample_cut_points(slice_counts: list[int], per_document: int, seeds: list[int]) -> list[list[int]]:
    """K prefix ends per document at slice ends: the last slice always, the rest at random."""
    cuts = []
    for count, seed in zip(slice_counts, seeds, strict=True):
        generator = torch.Generator().manual_seed(seed)
        others = torch.randperm(max(count - 1, 0), generator=generator)[: per_document - 1].tolist()
        cuts.append(sorted(others) + [count - 1])
    return cuts


def load_image(segment: Segment) -> Any:
    from sugar.data import ImageRef

    if isinstance(segment, Path):
        return ImageRef(segment).load()
    return segment


class SliceTeacher:
    """The teacher side of L_d: slice features for the chosen kernel (Triple or cross-modal only)."""

    def __init__(self, suite: Any, kernel_name: str) -> None:
        self.suite = suite
        self.kernel_name = kernel_name
        self.kernel: LocalKernel = suite.kernel if kernel_name == "triple" else SquaredEuclidean()

    def features(self, contents: list[Any]) -> Tensor:
        if self.kernel_name == "triple":
            return self.suite.slice_features(contents)
        return self.suite.cross_modal_features(contents)


def document_key(identifier: str) -> int:
    """The same int for the same example id on every process (a 63-bit hash)."""
    return int.from_bytes(hashlib.sha256(identifier.encode()).digest()[:8], "little") & (2**63 - 1)


def pair_document_ids(
    examples: list[tuple[TrainingExample, tuple[Segment, ...], tuple[int, ...]]], pair_target: str, rank: int
) -> list[str] | None:
    """Which rows L_d counts as one document: rows sharing an id. A rag pair's two views always
    do; a caption pair's only under pair_target "one" (else each row is its own document)."""
    if pair_target == "one":
        return [example.id for example, _, _ in examples]
    if not any(example.kind in PAIRED_KINDS for example, _, _ in examples):
        return None
    return [example.id if example.kind in PAIRED_KINDS else f"{example.id}#{rank}:{row}" for row, (example, _, _) in enumerate(examples)]


def prefix_slices(
    slices: list[Any],
    cuts: list[list[int]],
    teacher: SliceTeacher,
    document_offset: int,
    document_ids: list[str] | None = None,
) -> PrefixSlices:
    """Teacher features of every sampled prefix of the local documents, padded.

    Prefixes of one document are positives (target 1). With `document_ids`, rows that share an id
    (an image and its caption fed in both orders) count as one document too.
    """
    contents = [span.content for spans in slices for span in spans]
    features = teacher.features(contents)
    modality_of = {"image": IMAGE, "text": TEXT}
    rows, lengths, modality, documents = [], [], [], []
    start = 0
    for index, (spans, document_cuts) in enumerate(zip(slices, cuts)):
        document_features = features[start : start + len(spans)]
        document_modality = torch.tensor([modality_of[span.modality] for span in spans])
        start += len(spans)
        for cut in document_cuts:
            rows.append(document_features[: cut + 1])
            modality.append(document_modality[: cut + 1])
            lengths.append(cut + 1)
            documents.append(document_offset + index if document_ids is None else document_key(document_ids[index]))
    longest = max(lengths)
    return PrefixSlices(
        features=torch.stack([pad_to_length(r, longest, dim=0) for r in rows]),
        lengths=torch.tensor(lengths),
        modality=torch.stack([pad_to_length(m, longest, dim=0) for m in modality]),
        document=torch.tensor(documents),
    )


def gather_prefixes(local: PrefixSlices, device: torch.device) -> PrefixSlices:
    longest = global_max(local.features.shape[1], device)
    return PrefixSlices(
        features=gather_rows(pad_to_length(local.features.to(device), longest)),
        lengths=gather_rows(local.lengths.to(device)),
        modality=gather_rows(pad_to_length(local.modality.to(device), longest)),
        document=gather_rows(local.document.to(device)),
    )


def length_groups(lengths: list[int], slack: float = 1.25) -> list[list[int]]:
    """Row indices grouped by similar length, each group padded to its longest row at most
    `slack` times its real tokens: one long story no longer pads twenty short caption rows."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    current: list[int] = []
    real = 0
    for index in order:
        length = max(lengths[index], 1)
        if current and (len(current) + 1) * length > slack * (real + length):
            groups.append(current)
            current, real = [], 0
        current.append(index)
        real += length
    if current:
        groups.append(current)
    return groups


def token_length(processor: Any, segments: list[Any]) -> int:
    """Tokens a document takes (text through the tokenizer, images as their visual tokens)."""
    tokenizer = processor.tokenizer
    return sum(
        len(tokenizer(s, add_special_tokens=False)["input_ids"]) + 1 if isinstance(s, str) else processor.tokens_per_image
        for s in segments
    )


@dataclass
class GroupedOutput:
    """The model's outputs over one micro-batch run in length groups, rows back in batch order."""

    loss: Tensor | None  # token-weighted mean generative loss over all groups
    label_tokens: int
    embeddings: Tensor | None  # one row per cut point, documents in batch order
    slices: list[Any]  # per document, in batch order
    cuts: list[list[int]]  # sampled cut points per document (empty outside the sugar stage)


def forward_in_length_groups(
    model: torch.nn.Module,
    processor: Any,
    documents: list[list[Any]],
    targets: list[list[int]] | None,
    cut_seeds: list[int] | None,
    prefixes_per_document: int,
    max_length: int,
) -> GroupedOutput:
    """One forward per group of similar-length documents; one backward covers all groups.

    With `cut_seeds` (the sugar stage), each document's cut points are sampled from its own seed
    once its slices are known, so they do not depend on how the batch was grouped.
    """
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        # DDP prepares its gradient reduction once per forward: keep one forward per backward
        groups = [list(range(len(documents)))]
    else:
        groups = length_groups([token_length(processor, d) for d in documents])
    return_embeddings = cut_seeds is not None
    loss_sum: Tensor | None = None
    tokens = 0
    slices: list[Any] = [None] * len(documents)
    cuts: list[list[int]] = [[] for _ in documents]
    pieces: dict[int, Tensor] = {}
    for group in groups:
        batch = processor(
            [documents[i] for i in group],
            targets=None if targets is None else [targets[i] for i in group],
            max_length=max_length,
        ).to(next(model.parameters()).device)
        group_cuts = None
        if cut_seeds is not None:
            group_cuts = sample_cut_points(
                [len(spans) for spans in batch.slices], prefixes_per_document, [cut_seeds[i] for i in group]
            )
        output = model(batch, cut_points=group_cuts, return_embeddings=return_embeddings)
        for position, index in enumerate(group):
            slices[index] = batch.slices[position]
            if group_cuts is not None:
                cuts[index] = group_cuts[position]
        if output.loss is not None:
            count = int(output.label_tokens or 0)
            weighted = output.loss * count
            loss_sum = weighted if loss_sum is None else loss_sum + weighted
            tokens += count
        if return_embeddings:
            assert output.embeddings is not None and output.cut_index is not None
            rows: dict[int, list[int]] = {}
            for row, (document, _) in enumerate(output.cut_index):
                rows.setdefault(group[document], []).append(row)
            for index, row_ids in rows.items():
                pieces[index] = output.embeddings[row_ids]
    loss = None if loss_sum is None else loss_sum / max(tokens, 1)
    embeddings = torch.cat([pieces[i] for i in range(len(documents))]) if return_embeddings else None
    return GroupedOutput(loss, tokens, embeddings, slices, cuts)


def alpha_at(config: TrainConfig, step: int) -> float:
    """The weight of L_d at optimizer step `step` (0-based) under config.alpha_schedule."""
    warmup_steps = config.alpha_warmup * config.steps
    if step >= warmup_steps:
        return config.alpha
    progress = step / warmup_steps  # in [0, 1): discrimination comes in after generation
    if config.alpha_schedule == "constant":
        return 0.0
    if config.alpha_schedule == "linear":
        return config.alpha * progress
    return config.alpha * 0.5 * (1.0 - math.cos(math.pi * progress))


def compute_losses(
    model: torch.nn.Module,
    processor: Any,
    examples: list[tuple[TrainingExample, tuple[Segment, ...], tuple[int, ...]]],
    config: TrainConfig,
    teacher: SliceTeacher | None,
    step: int,
    rank: int,
    device: torch.device,
) -> StepLosses:
    """One micro-batch on this process: the generative loss on its documents and, in the sugar
    stage, L_d over the global batch of sampled prefixes."""
    documents = [[load_image(s) if not isinstance(s, str) else s for s in segments] for _, segments, _ in examples]
    targets = [list(t) for _, _, t in examples] if config.use_generative_loss else None
    sugar_stage = config.stage == "sugar"
    seeds = [document_seed(config.seed, step, example.id) for example, _, _ in examples] if sugar_stage else None
    output = forward_in_length_groups(
        model, processor, documents, targets, seeds, config.prefixes_per_document, config.max_length
    )
    scale = float(world_size())  # DDP averages gradients over processes; the losses below are global
    total = torch.zeros((), device=device)
    generative = None
    if config.use_generative_loss:
        # Token-weighted over the global batch: this process's share of the global mean.
        local_tokens = torch.tensor(float(output.label_tokens), device=device)
        global_tokens = all_reduce_sum(local_tokens).clamp_min(1.0)
        share = output.loss * (local_tokens / global_tokens) if output.loss is not None else total
        total = total + share * scale
        generative = all_reduce_sum(share)
    discriminative = None
    if sugar_stage:
        assert teacher is not None and output.embeddings is not None
        local = prefix_slices(output.slices, output.cuts, teacher, document_offset=rank * len(examples),
                              document_ids=pair_document_ids(examples, config.pair_target, rank))
        prefixes = gather_prefixes(local, device)
        targets_matrix = alignment_targets(
            prefixes, teacher.kernel, delta=config.delta, structure=config.target_structure
        )
        embeddings = gather_rows(output.embeddings, keep_gradient=True)
        if config.discriminative_loss == "mse":
            discriminative = discriminative_loss(embeddings, targets_matrix, config.similarity_map)
        else:
            discriminative = soft_infonce_loss(
                embeddings, targets_matrix, config.infonce_temperature, config.infonce_teacher_temperature
            )
        # Every process computes the same global L_d but backpropagates through its own rows only.
        total = total + alpha_at(config, step // config.gradient_accumulation) * discriminative * scale
    return StepLosses(total, generative, discriminative, len(examples))


class RunLog:
    """One CSV row per logged step plus TensorBoard scalars; appends across resumes.

    A run killed after its last checkpoint logged steps that the resumed run trains again: those
    rows are dropped on resume (`resumed_at`), so every step appears once and belongs to the
    weights that were kept.
    """

    FIELDS = ["step", "loss", "generative_loss", "discriminative_loss", "lr", "samples_per_second", "elapsed_seconds"]

    def __init__(self, directory: Path, enabled: bool, resumed_at: int = 0) -> None:
        self.enabled = enabled
        self.path = directory / "train_log.csv"
        self.writer = None
        if enabled:
            directory.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                with open(self.path, "w", newline="") as handle:
                    csv.writer(handle).writerow(self.FIELDS)
            else:
                self._drop_rows_after(resumed_at)
            try:
                from torch.utils.tensorboard import SummaryWriter

                # purge_step hides the killed run's events past the checkpoint, as above for the CSV
                self.writer = SummaryWriter(str(directory / "tensorboard"), purge_step=resumed_at + 1 if resumed_at else None)
            except ImportError:  # tensorboard is optional at run time
                self.writer = None

    def _drop_rows_after(self, step: int) -> None:
        with open(self.path, newline="") as handle:
            rows = list(csv.reader(handle))
        kept = [row for row in rows[1:] if row and row[0].isdigit() and int(row[0]) <= step]
        if len(kept) == len(rows) - 1:
            return
        buffer = io.StringIO()
        csv.writer(buffer).writerows([rows[0] if rows else self.FIELDS, *kept])
        atomic_write_text(self.path, buffer.getvalue())

    def write(self, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle).writerow([row.get(name, "") for name in self.FIELDS])
        if self.writer is not None:
            for name, value in row.items():
                if name != "step" and value == value and value is not None:
                    self.writer.add_scalar(f"train/{name}", value, int(row["step"]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def trained_seconds(output_dir: Path) -> float:
    """Training-loop seconds the run's latest checkpoint already holds (0 with none).

    A resumed run's clock goes on from there, so a run's time (its log's `elapsed_seconds`, a
    study's summed machine time) counts the sittings before the resume; the steps a killed run
    trained past its last checkpoint are trained again and counted once. A checkpoint that predates
    this record falls back on its step's row of train_log.csv (that run's first sitting).
    """
    latest = latest_checkpoint(output_dir / "checkpoints")
    if latest is None:
        return 0.0
    state = json.loads((latest / "state.json").read_text())
    if "elapsed_seconds" in state:
        return float(state["elapsed_seconds"])
    log = output_dir / "train_log.csv"
    if log.is_file():
        with open(log, newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("step") == str(state.get("step")) and row.get("elapsed_seconds"):
                    return float(row["elapsed_seconds"])
    return 0.0


def build_model(config: TrainConfig, corpus: Callable[[], list[str]]) -> Any:
    """`corpus` is called only for a fresh preset: a saved model or LLaVA brings its own tokenizer."""
    from sugar.models import SugarModel

    cache = {} if config.vision_cache_dir is None else {"vision_cache_dir": config.vision_cache_dir}
    if config.init_from is not None:
        from sugar.models.modeling import RELOAD_OVERRIDES

        # a saved model keeps its architecture: of model_overrides, only the fields that change no
        # weight (e.g. image_pooling) apply to it
        reload = {k: v for k, v in config.model_overrides.items() if k in RELOAD_OVERRIDES}
        model = SugarModel.from_pretrained(config.init_from, **{**reload, **cache})
    elif config.model == "llava":
        if config.model_path is None:
            raise ValueError("model: llava needs model_path (a local folder or hub id)")
        model = SugarModel.from_llava(config.model_path, **{**config.model_overrides, **cache})
    else:
        model = SugarModel.from_preset(config.model, tokenizer_corpus=corpus(), **{**config.model_overrides, **cache})
    if config.lora:
        model.enable_lora(r=config.lora_r, alpha=config.lora_alpha)
    if config.stage != "sugar":
        # the base model is generative only: its retrieval head stays at initialisation
        for parameter in model.retrieval_parameters():
            parameter.requires_grad_(False)
    if config.stage == "align":
        # LLaVA's first stage: only the projector learns to map image features into the frozen LM
        projector = {id(p) for p in model.backbone.projector_module().parameters()}
        for parameter in model.parameters():
            parameter.requires_grad_(id(parameter) in projector)
    return model


def train(config: TrainConfig, resume: bool = False, show_progress: bool | None = None) -> Path:
    """Run (or resume) one training stage; returns the folder of the saved model."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

    from sugar.train.examples import load_world_examples, tokenizer_corpus

    config.validate()
    accelerator = Accelerator(gradient_accumulation_steps=config.gradient_accumulation)
    set_seed(config.seed)
    output_dir = Path(config.output_dir)
    checkpoints = output_dir / "checkpoints"
    final_dir = output_dir / "model"
    check_paths(config)  # before any work: inputs exist, --resume has a matching checkpoint
    resume_from = resume_point(checkpoints, config, resume)

    pools = load_world_examples(
        Path(config.world), split="train", kinds=[k for k, v in config.mix.items() if v],
        max_caption_images=config.max_caption_images,
    )
    model = build_model(config, lambda: tokenizer_corpus(Path(config.world)))
    processor = model.processor
    teacher = None
    if config.stage == "sugar":
        from sugar.teachers import TeacherSuite

        assert config.teachers is not None
        teacher = SliceTeacher(TeacherSuite.load(config.teachers), config.teacher_kernel)

    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("nothing to train: every parameter is frozen")
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, math.ceil(config.warmup_ratio * config.steps), config.steps
    )
    # The scheduler is stepped by hand once per optimizer step: accelerate's wrapper would step
    # it once per process, changing the schedule with the number of processes.
    model, optimizer = accelerator.prepare(model, optimizer)
    paired = (*(("captions",) if config.paired_captions else ()), *PAIRED_KINDS)
    stream = BatchStream(pools, config.mix, config.seed, paired=paired)

    start_step = 0
    if resume_from is not None:
        state = load_checkpoint(resume_from, accelerator.unwrap_model(model), optimizer, scheduler)
        start_step = int(state["step"])
        accelerator.print(f"resumed from {resume_from} at step {start_step}")
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output_dir / "config.json", json.dumps(config.to_dict(), indent=2))

    earlier = trained_seconds(output_dir) if resume_from is not None else 0.0  # before the log drops rows
    log = RunLog(output_dir, accelerator.is_main_process, resumed_at=start_step)
    show = accelerator.is_main_process if show_progress is None else show_progress and accelerator.is_main_process
    bar = tqdm(total=config.steps, initial=start_step, disable=not show, desc=f"{config.stage}", dynamic_ncols=True)
    model.train()
    started = time.perf_counter() - earlier
    window_documents, window_start = 0, time.perf_counter()
    micro_steps = config.gradient_accumulation
    for step in range(start_step, config.steps):
        sums = {"loss": 0.0, "generative_loss": 0.0, "discriminative_loss": 0.0}
        for micro in range(micro_steps):
            examples = stream.batch(step * micro_steps + micro, accelerator.process_index, accelerator.num_processes)
            with accelerator.accumulate(model):
                losses = compute_losses(
                    model, processor, examples, config, teacher, step * micro_steps + micro,
                    accelerator.process_index, accelerator.device,
                )
                check_finite_losses(losses, step + 1, checkpoints)  # stops before the weights change
                accelerator.backward(losses.total)
                if accelerator.sync_gradients and config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad()
            combined = (losses.generative.item() if losses.generative is not None else 0.0) + alpha_at(config, step) * (
                losses.discriminative.item() if losses.discriminative is not None else 0.0
            )
            sums["loss"] += combined / micro_steps
            if losses.generative is not None:
                sums["generative_loss"] += losses.generative.item() / micro_steps
            if losses.discriminative is not None:
                sums["discriminative_loss"] += losses.discriminative.item() / micro_steps
            window_documents += losses.documents * accelerator.num_processes
        done = step + 1
        bar.update(1)
        postfix = {"L_g": f"{sums['generative_loss']:.3f}", "lr": f"{scheduler.get_last_lr()[0]:.2e}"}
        if config.stage == "sugar":
            postfix["L_d"] = f"{sums['discriminative_loss']:.4f}"
        bar.set_postfix(postfix)
        if done % config.log_every == 0 or done == config.steps:
            now = time.perf_counter()
            log.write(
                {
                    "step": done,
                    **sums,
                    "discriminative_loss": sums["discriminative_loss"] if config.stage == "sugar" else float("nan"),
                    "lr": scheduler.get_last_lr()[0],
                    "samples_per_second": window_documents / max(now - window_start, 1e-9),
                    "elapsed_seconds": now - started,
                }
            )
            window_documents, window_start = 0, now
        if done in config.save_models_at and done != config.steps and accelerator.is_main_process:
            snapshot = output_dir / "snapshots" / f"step-{done}"
            if not snapshot.is_dir():
                accelerator.unwrap_model(model).save_pretrained(snapshot)
        if done % config.checkpoint_every == 0 or done == config.steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(
                    checkpoints, done, accelerator.unwrap_model(model), optimizer, scheduler,
                    {"config": config.to_dict(), "elapsed_seconds": round(time.perf_counter() - started, 3)},
                    keep=config.keep_checkpoints,
                )
    bar.close()
    log.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(final_dir)
    accelerator.wait_for_everyone()
    return final_dir
