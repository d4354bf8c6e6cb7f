"""Fitting the offline cross-modal teacher: LiT-style heads on the frozen experts.

No CLIP weights ship offline, so the cross-modal part of the Triple Kernel is learnt here:
expert features of every image and caption are computed once (through the feature cache, so
training later reuses them), then two small heads map them into one space with a symmetric
InfoNCE and a learnable temperature. The heads are chosen on the val split and the held-out
test split is scored once, image->text and text->image R@1/R@5/R@10.

    sugar teachers fit --world runs/demo/world --out runs/demo/teachers
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sugar.teachers.cache import CachedEncoder, Encoder, atomic_write_bytes, content_key
from sugar.teachers.cross import ClipTowers, HeadConfig, LiTHeads
from sugar.teachers.suite import DEFAULT_CACHE, TeacherSuite

METRICS_FILE = "metrics.json"
RECALL_KS = (1, 5, 10)
# Names a world folder's Karpathy-format caption file may have, tried in this order.
CAPTION_FILES = ("dataset_coco.json", "captions/dataset_coco.json")
WORLD_MANIFEST = "world.json"
KARPATHY_FORMAT = "coco-karpathy-json"


@dataclass
class FitConfig:
    """Hyper-parameters of the LiT fit.

    The defaults scored best on the val split of the default world (12k training images, 5
    captions each; EfficientNet-Lite0 + MiniLM) among the variants tried: linear vs MLP heads,
    width 256 vs 512, lr 1e-3..4e-3, batch 256..1024, 40..80 epochs. MLP heads and width 512
    overfit within ~10 epochs there.
    """

    dim: int = 256
    head: str = "linear"
    hidden: int = 512
    epochs: int = 40
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 1e-4
    init_temperature: float = 0.07
    patience: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.patience < 1:
            raise ValueError("FitConfig needs epochs >= 1, batch_size >= 2 and patience >= 1")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("FitConfig needs lr > 0 and weight_decay >= 0")


@dataclass
class PairSet:
    """Expert features of one split: images, captions, and which image each caption describes.

    `image_group` / `text_group` give equal ids to identical images / identical caption texts,
    so a duplicate inside a batch counts as a positive, not a negative.
    """

    images: Tensor  # (Ni, Di)
    texts: Tensor  # (Nt, Dt)
    text_image: Tensor  # (Nt,) long, index into images
    image_group: Tensor | None = None  # (Ni,) long
    text_group: Tensor | None = None  # (Nt,) long

    def __post_init__(self) -> None:
        ni, nt = self.images.shape[0], self.texts.shape[0]
        if self.text_image.shape != (nt,):
            raise ValueError(
                f"PairSet.text_image must have shape ({nt},), got {tuple(self.text_image.shape)}"
            )
        if nt and (int(self.text_image.min()) < 0 or int(self.text_image.max()) >= ni):
            raise ValueError(f"PairSet.text_image must index the {ni} images")
        if self.image_group is None:
            self.image_group = torch.arange(ni)
        if self.text_group is None:
            self.text_group = torch.arange(nt)


def retrieval_recall(
    image_emb: Tensor, text_emb: Tensor, text_image: Tensor, ks: Sequence[int] = RECALL_KS, chunk: int = 1024
) -> dict[str, dict[str, float]]:
    """COCO-style recall: an image is hit at K if any of its captions ranks in the top K; a
    caption is hit if its image does. Ties count in the query's favour. Memory: chunk x N."""
    ni, nt = image_emb.shape[0], text_emb.shape[0]
    if ni == 0 or nt == 0:
        raise ValueError("retrieval_recall needs at least one image and one caption")
    has_caption = torch.bincount(text_image, minlength=ni) > 0
    i2t_rank = torch.full((ni,), nt, dtype=torch.long)
    for start in range(0, ni, chunk):
        sims = image_emb[start : start + chunk] @ text_emb.T  # (c, Nt)
        rows = torch.arange(start, min(start + chunk, ni))
        gold = sims.masked_fill(text_image.unsqueeze(0) != rows.unsqueeze(1), -math.inf).amax(dim=1)
        i2t_rank[rows] = (sims > gold.unsqueeze(1)).sum(dim=1)
    t2i_rank = torch.empty(nt, dtype=torch.long)
    for start in range(0, nt, chunk):
        sims = text_emb[start : start + chunk] @ image_emb.T  # (c, Ni)
        gold = sims.gather(1, text_image[start : start + chunk].unsqueeze(1))
        t2i_rank[start : start + chunk] = (sims > gold).sum(dim=1)
    i2t_rank = i2t_rank[has_caption]
    return {
        "i2t": {f"r@{k}": float((i2t_rank < k).float().mean()) for k in ks},
        "t2i": {f"r@{k}": float((t2i_rank < k).float().mean()) for k in ks},
    }


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def selection_score(metrics: dict[str, dict[str, float]]) -> float:
    """What model selection maximises: the mean of R@1 and R@5 in both directions."""
    return sum(metrics[d][f"r@{k}"] for d in ("i2t", "t2i") for k in (1, 5)) / 4.0


def _symmetric_infonce(logits: Tensor, positives: Tensor) -> Tensor:
    """Cross-entropy both ways against soft targets spread over each row's positives."""
    targets = positives.float() / positives.sum(dim=1, keepdim=True)
    image_to_text = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    text_to_image = -(targets.T * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return (image_to_text + text_to_image) / 2.0


def _project(heads: LiTHeads, pairs: PairSet) -> tuple[Tensor, Tensor]:
    heads.eval()
    with torch.no_grad():
        return heads.project_images(pairs.images), heads.project_texts(pairs.texts)


def evaluate_heads(heads: LiTHeads, pairs: PairSet) -> dict[str, dict[str, float]]:
    images, texts = _project(heads, pairs)
    return retrieval_recall(images, texts, pairs.text_image)


@dataclass
class FitHistory:
    epochs: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_val: dict[str, dict[str, float]] | None = None


def fit_lit_heads(
    train: PairSet,
    val: PairSet | None,
    config: FitConfig,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> tuple[LiTHeads, FitHistory]:
    """Train the heads on `train`; keep the epoch with the best val score (early stopping).

    Each epoch visits every captioned training image once with one of its captions drawn at
    random. Deterministic for a given seed (its own generators; global RNG untouched).
    """
    from tqdm.auto import tqdm

    head_config = HeadConfig(
        image_dim=train.images.shape[1],
        text_dim=train.texts.shape[1],
        dim=config.dim,
        head=config.head,
        hidden=config.hidden,
        init_temperature=config.init_temperature,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        heads = LiTHeads(head_config)
    generator = torch.Generator().manual_seed(config.seed)

    counts = torch.bincount(train.text_image, minlength=train.images.shape[0])
    by_image = torch.argsort(train.text_image, stable=True)
    offsets = torch.cumsum(counts, 0) - counts
    trainable = torch.nonzero(counts > 0).squeeze(1)
    if trainable.numel() < 2:
        raise ValueError(f"the LiT fit needs at least 2 captioned training images, got {trainable.numel()}")
    batch_size = min(config.batch_size, trainable.numel())
    steps_per_epoch = max(1, trainable.numel() // batch_size)
    total_steps = steps_per_epoch * config.epochs

    decay = [p for n, p in heads.named_parameters() if n != "logit_scale"]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": [heads.logit_scale], "weight_decay": 0.0},
        ],
        lr=config.lr,
    )
    warmup = max(1, min(steps_per_epoch, total_steps // 10))

    def lr_at(step: int) -> float:
        if step < warmup:
            return config.lr * (step + 1) / warmup
        return 0.5 * config.lr * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    history = FitHistory()
    best_state = copy.deepcopy(heads.state_dict())
    best_score = -math.inf
    stale = 0
    step = 0
    assert train.image_group is not None and train.text_group is not None
    bar = tqdm(range(config.epochs), desc="fit LiT heads", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        heads.train()
        order = trainable[torch.randperm(trainable.numel(), generator=generator)]
        losses = []
        for batch_index in range(steps_per_epoch):
            images = order[batch_index * batch_size : (batch_index + 1) * batch_size]
            pick = (torch.rand(images.numel(), generator=generator) * counts[images]).long()
            texts = by_image[offsets[images] + pick]
            image_group, text_group = train.image_group[images], train.text_group[texts]
            positives = (image_group.unsqueeze(1) == image_group.unsqueeze(0)) | (
                text_group.unsqueeze(1) == text_group.unsqueeze(0)
            )
            logits = (
                heads.scale()
                * heads.project_images(train.images[images])
                @ heads.project_texts(train.texts[texts]).T
            )
            loss = _symmetric_infonce(logits, positives)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": sum(losses) / len(losses),
            "temperature": float(1.0 / heads.scale().detach()),
        }
        if val is not None:
            metrics = evaluate_heads(heads, val)
            record["val"] = metrics
            record["val_score"] = selection_score(metrics)
            if record["val_score"] > best_score:
                best_score, stale = record["val_score"], 0
                best_state = copy.deepcopy(heads.state_dict())
                history.best_epoch, history.best_val = epoch + 1, metrics
            else:
                stale += 1
        history.epochs.append(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", val=f"{record.get('val_score', float('nan')):.3f}")
        if log is not None:
            shown = f" val score {record['val_score']:.3f}" if "val_score" in record else ""
            log(
                f"epoch {epoch + 1}: loss {record['loss']:.4f} temperature {record['temperature']:.4f}{shown}"
            )
        if val is not None and stale >= config.patience:
            break
    if val is None:
        history.best_epoch = len(history.epochs)
    else:
        heads.load_state_dict(best_state)
    heads.eval()
    return heads, history


# --- the world's caption pairs --------------------------------------------------------------


def find_caption_file(world: Path) -> tuple[Path, Path]:
    """(caption JSON, image root) of a world folder.

    A world built by `sugar world` lists its Karpathy-format caption file in `world.json`
    (image paths relative to the world folder); a plain folder may hold one of CAPTION_FILES.
    """
    if not world.is_dir():
        raise FileNotFoundError(f"world folder {world} not found (expected the output of `sugar world`)")
    manifest = world / WORLD_MANIFEST
    if manifest.is_file():
        try:
            files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
            listed = [entry["path"] for entry in files if entry.get("format") == KARPATHY_FORMAT]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{manifest}: expected a 'files' list of {{path, format}} objects ({error})"
            ) from error
        if not listed:
            raise ValueError(f"{manifest}: no file with format {KARPATHY_FORMAT!r} (the caption pairs)")
        return world / listed[0], world
    for name in CAPTION_FILES:
        if (world / name).is_file():
            return world / name, world
    raise FileNotFoundError(
        f"{world} has no {WORLD_MANIFEST} and none of {', '.join(CAPTION_FILES)}; "
        "pass the Karpathy-format caption file with --captions"
    )


@dataclass
class SplitFeatures:
    pairs: PairSet
    captions: list[str]
    images: int


def _encode_split(
    records: Sequence[Any],
    image_expert: Encoder,
    text_expert: Encoder,
    captions_per_image: int | None,
    progress: bool,
    name: str,
    chunk: int = 1024,
) -> SplitFeatures:
    """Expert features of one split's images (decoded chunk by chunk) and unique captions."""
    from tqdm.auto import tqdm

    image_rows: list[Tensor] = []
    image_keys: list[bytes] = []
    bar = tqdm(total=len(records), desc=f"{name} images", unit="img", disable=not progress, leave=False)
    with bar:
        for start in range(0, len(records), chunk):
            images = [record.image.load() for record in records[start : start + chunk]]
            keys = [content_key(image) for image in images]
            image_rows.append(image_expert.encode(images, keys=keys, progress=False))
            image_keys.extend(keys)
            bar.update(len(images))
    captions: list[str] = []
    text_index: dict[str, int] = {}
    text_group: list[int] = []
    text_image: list[int] = []
    for image_index, record in enumerate(records):
        for caption in record.captions[:captions_per_image]:
            text_group.append(text_index.setdefault(caption, len(text_index)))
            text_image.append(image_index)
    captions = list(text_index)
    unique = text_expert.encode(captions, progress=progress)
    groups = torch.tensor(text_group, dtype=torch.long)
    image_group_of: dict[bytes, int] = {}
    image_group = torch.tensor([image_group_of.setdefault(key, len(image_group_of)) for key in image_keys])
    pairs = PairSet(
        images=torch.cat(image_rows) if image_rows else torch.empty(0, image_expert.dim),
        texts=unique[groups] if len(groups) else torch.empty(0, text_expert.dim),
        text_image=torch.tensor(text_image, dtype=torch.long),
        image_group=image_group,
        text_group=groups,
    )
    return SplitFeatures(pairs=pairs, captions=captions, images=len(records))


def load_splits(
    captions_file: Path, image_root: Path, max_images: dict[str, int | None]
) -> dict[str, list[Any]]:
    """train (with restval) / val / test records through `sugar.data.load_coco_karpathy`."""
    from sugar.data import load_coco_karpathy

    records = load_coco_karpathy(captions_file, image_root)
    splits: dict[str, list[Any]] = {"train": [], "val": [], "test": []}
    for record in records:
        split = "train" if record.split == "restval" else record.split
        if split in splits:
            splits[split].append(record)
    for split, items in splits.items():
        if not items:
            raise ValueError(
                f"{captions_file}: no images in the {split!r} split (field 'split' of each image)"
            )
        limit = max_images.get(split)
        if limit is not None:
            splits[split] = items[:limit]
    return splits


@dataclass
class FitResult:
    suite: TeacherSuite
    metrics: dict[str, Any]
    out: Path


def fit_teachers(
    out: str | os.PathLike[str],
    *,
    world: str | os.PathLike[str] | None = None,
    captions_file: str | os.PathLike[str] | None = None,
    image_root: str | os.PathLike[str] | None = None,
    config: FitConfig | None = None,
    image_expert: Encoder | None = None,
    text_expert: Encoder | None = None,
    clip: ClipTowers | None = None,
    cache_dir: str | os.PathLike[str] | None = DEFAULT_CACHE,
    max_train_images: int | None = None,
    max_eval_images: int | None = None,
    captions_per_image: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> FitResult:
    """Fit (LiT) or assemble (CLIP) the teachers on a Karpathy-format caption set; save to `out`.

    Experts default to EfficientNet-Lite0 and all-MiniLM-L6-v2. With `clip`, nothing is
    trained: the suite uses CLIP as its cross-modal teacher and only the test split is scored.
    `cache_dir` relative paths are inside `out`, where `TeacherSuite.load` looks by default.
    """
    started = time.perf_counter()
    config = config or FitConfig()
    out = Path(out)
    if captions_file is None:
        if world is None:
            raise ValueError("fit_teachers needs a world folder or a captions file")
        captions_file, found_root = find_caption_file(Path(world))
        image_root = image_root if image_root is not None else found_root
    captions_file = Path(captions_file)
    if not captions_file.is_file():
        raise FileNotFoundError(f"caption file {captions_file} not found")
    image_root = Path(image_root) if image_root is not None else captions_file.parent
    say = log or (lambda message: None)

    splits = load_splits(
        captions_file,
        image_root,
        {"train": max_train_images, "val": max_eval_images, "test": max_eval_images},
    )
    if clip is not None:
        splits = {"test": splits["test"]}
    if image_expert is None:
        from sugar.teachers.encoders import EfficientNetLiteExpert

        image_expert = EfficientNetLiteExpert()
    if text_expert is None:
        from sugar.teachers.encoders import HFTextExpert

        text_expert = HFTextExpert()
    resolved_cache = out / cache_dir if cache_dir is not None else None
    cached_image = CachedEncoder(image_expert, resolved_cache)
    cached_text = CachedEncoder(text_expert, resolved_cache)

    features_started = time.perf_counter()
    encoded = {
        split: _encode_split(
            records,
            cached_image,
            cached_text,
            captions_per_image if split == "train" else None,
            progress,
            split,
        )
        for split, records in splits.items()
    }
    features_s = time.perf_counter() - features_started
    counts = {
        split: {
            "images": item.images,
            "captions": int(item.pairs.texts.shape[0]),
            "unique_captions": len(item.captions),
        }
        for split, item in encoded.items()
    }
    say(
        "expert features: "
        + ", ".join(f"{s} {c['images']} images / {c['captions']} captions" for s, c in counts.items())
        + f" in {features_s:.1f} s ({cached_image.computed} images and {cached_text.computed} texts "
        "encoded, the rest cached)"
    )

    fit_started = time.perf_counter()
    history: FitHistory | None = None
    if clip is None:
        heads, history = fit_lit_heads(
            encoded["train"].pairs, encoded["val"].pairs, config, progress=progress, log=say
        )
        suite = TeacherSuite(cached_image, cached_text, heads, cache_dir=resolved_cache)
        test = evaluate_heads(heads, encoded["test"].pairs)
    else:
        suite = TeacherSuite(cached_image, cached_text, clip, cache_dir=resolved_cache)
        test_records = splits["test"]
        images = suite.encode_images([record.image.load() for record in test_records], progress=progress)
        texts = suite.encode_texts(encoded["test"].captions, progress=progress)
        pairs = encoded["test"].pairs
        assert pairs.text_group is not None
        test = retrieval_recall(images, texts[pairs.text_group], pairs.text_image)
    fit_s = time.perf_counter() - fit_started

    test_images = counts["test"]["images"]
    metrics: dict[str, Any] = {
        "cross": "lit" if clip is None else "clip",
        "test": test,
        "chance_r@1": 1.0 / test_images,  # either direction, when every image has as many captions
        "counts": counts,
        "config": asdict(config) if clip is None else None,
        "limits": {
            "max_train_images": max_train_images,
            "max_eval_images": max_eval_images,
            "captions_per_image": captions_per_image,
        },
        "captions_file": captions_file.name,
        "captions_sha256": hashlib.sha256(captions_file.read_bytes()).hexdigest(),
        "versions": {"torch": torch.__version__, "transformers": _version("transformers")},
        "image_expert": {
            "kind": image_expert.identity().get("kind"),
            "dim": image_expert.dim,
            "fingerprint": image_expert.fingerprint(),
        },
        "text_expert": {
            "kind": text_expert.identity().get("kind"),
            "dim": text_expert.dim,
            "fingerprint": text_expert.fingerprint(),
        },
        "timing": {"features_s": features_s, "fit_s": fit_s, "total_s": time.perf_counter() - started},
    }
    if history is not None:
        metrics.update(
            best_epoch=history.best_epoch,
            epochs_run=len(history.epochs),
            val=history.best_val,
            history=history.epochs,
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / METRICS_FILE, json.dumps(metrics, indent=2).encode("utf-8"))
    suite.save(out)  # suite.json last: its presence means the fit finished
    say(
        f"held-out test ({test_images} images): "
        f"image->text R@1 {test['i2t']['r@1']:.3f} R@5 {test['i2t']['r@5']:.3f}, "
        f"text->image R@1 {test['t2i']['r@1']:.3f} R@5 {test['t2i']['r@5']:.3f}"
    )
    say(f"saved the teachers to {out} (metrics in {out / METRICS_FILE})")
    return FitResult(suite=suite, metrics=metrics, out=out)
