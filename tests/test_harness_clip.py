"""The CLIP-style adapter against clip_benchmark's own retrieval evaluation.

clip_benchmark (1.6.2) imports torchvision in its dataset builder and CLI, which cannot be
imported beside this torch; its metrics module (`clip_benchmark.metrics.zeroshot_retrieval`)
imports only torch and tqdm, and that is what drives the adapter here. Tests that need it skip
when it is absent (`pip install --no-deps clip_benchmark==1.6.2`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sugar.data import CaptionedImage, load_coco_karpathy
from sugar.eval.benchmarks import ModelEncoder, evaluate_retrieval
from sugar.eval.harness import (
    TEXT_PAD,
    CaptionRetrievalDataset,
    SugarCLIPEncoder,
    clip_benchmark_retrieval,
    image_captions_collate,
    recall_from_clip_benchmark,
)
from sugar.eval.metrics import recall_at_k
from sugar.models import SugarModel
from tiny_model import tiny_model_config

TINY = tiny_model_config()
KS = (1, 5, 10)
Captions = tuple[list[CaptionedImage], list[CaptionedImage]]  # every caption record, and the test split
# Scores closer than this may swap places between two float32 passes over differently composed batches.
SCORE_TOLERANCE = 1e-5


def zeroshot_retrieval() -> Any:
    return pytest.importorskip(
        "clip_benchmark.metrics.zeroshot_retrieval",
        reason="clip_benchmark is not installed (pip install --no-deps clip_benchmark==1.6.2)",
    )


def real_collate() -> Callable[..., Any] | None:
    """clip_benchmark's own collate, where its dataset builder imports (it needs torchvision)."""
    try:
        from clip_benchmark.datasets.builder import image_captions_collate_fn
    except (ImportError, RuntimeError):  # RuntimeError: torchvision installed but broken beside this torch
        return None
    return image_captions_collate_fn


@pytest.fixture(scope="module")
def captions(tmp_path_factory: pytest.TempPathFactory) -> Captions:
    """All caption records of a small world, and its test split (40 images, 200 captions)."""
    from sugar.world import build_world

    root = tmp_path_factory.mktemp("world")
    build_world(root, seed=0, scale="small", progress=False)
    records = load_coco_karpathy(root / "captions" / "dataset_coco.json", root)
    return records, [r for r in records if r.split == "test"]


def fit_head(model: SugarModel, records: Sequence[CaptionedImage], steps: int = 300) -> None:
    """Fit the retrieval head on frozen pooled states, so retrieval is well above chance and a
    misaligned caption/image pairing would change the recalls."""
    images = model.processor([[r.image.load()] for r in records])
    texts = model.processor([[c] for r in records for c in r.captions])
    owner = torch.tensor([i for i, r in enumerate(records) for _ in r.captions])
    positive = owner.unsqueeze(0) == torch.arange(len(records)).unsqueeze(1)  # (images, captions)
    with torch.no_grad():
        image_states, _ = model.pool(model.hidden_states(images), images.slices)
        text_states, _ = model.pool(model.hidden_states(texts), texts.slices)
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors this small only pay a thread pool's overhead
    try:
        for _ in range(steps):
            logits = model.head(text_states) @ model.head(image_states).T / 0.05
            per_image = logits.T
            i2t = torch.logsumexp(per_image, 1) - torch.logsumexp(per_image.masked_fill(~positive, -1e9), 1)
            loss = F.cross_entropy(logits, owner) + i2t.mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()


@pytest.fixture(scope="module")
def model(captions: Captions) -> SugarModel:
    everything, test = captions
    torch.manual_seed(0)
    model = SugarModel.from_preset("tiny", tokenizer_corpus=[c for r in everything for c in r.captions], **TINY)
    fit_head(model, test)
    return model.eval()


def undecided(similarity: torch.Tensor, positives: Sequence[Sequence[int]], k: int, tolerance: float) -> int:
    """Queries whose hit@k could flip if scores moved by `tolerance`, or that an exact tie decides."""
    count = 0
    for q, correct in enumerate(positives):
        scores = similarity[q]
        best = scores[list(correct)].max()
        negative = torch.ones_like(scores, dtype=torch.bool)
        negative[list(correct)] = False
        surely_above = int((scores[negative] > best + tolerance).sum())
        maybe_above = int((scores[negative] >= best - tolerance).sum())
        count += surely_above < k <= maybe_above
    return count


def test_encoder_embeds_like_model_encode(model: SugarModel, captions: Captions) -> None:
    records = captions[1][:6]
    encoder = SugarCLIPEncoder(model)
    texts = [c for r in records for c in r.captions]
    images = [r.image.load() for r in records]
    expected_text = model.encode([[t] for t in texts], show_progress=False)
    expected_image = model.encode([[i] for i in images], show_progress=False)
    torch.testing.assert_close(encoder.encode_text(encoder.tokenizer(texts)), expected_text, atol=1e-5, rtol=0)
    pixels = torch.stack([encoder.transform(i) for i in images])
    assert pixels.dtype == torch.float32 and pixels.shape == (6, 3, 32, 32)
    torch.testing.assert_close(encoder.encode_image(pixels), expected_image, atol=1e-5, rtol=0)
    torch.testing.assert_close(encoder.encode_image(images), expected_image, atol=1e-5, rtol=0)
    assert encoder.embedding_dim == 16


def test_token_rows_end_at_the_pooled_token(model: SugarModel) -> None:
    encoder = SugarCLIPEncoder(model)
    rows = encoder.tokenizer(["A red circle.", "A red circle is left of a blue square. It is small.   "])
    batch = model.processor([["A red circle."], ["A red circle is left of a blue square. It is small.   "]])
    for row, spans in enumerate(batch.slices):
        end = spans[-1].end
        assert rows[row, :end].tolist() == batch.input_ids[row, :end].tolist()
        assert (rows[row, end:] == TEXT_PAD).all()
    assert rows[0, 0].item() == model.tokenizer.bos_token_id
    gap = rows.clone()
    gap[1, 2] = TEXT_PAD
    with pytest.raises(ValueError, match="right-padded"):
        encoder.encode_text(gap)
    with pytest.raises(ValueError, match="integer"):
        encoder.encode_text(rows.float())


def test_dataset_items_and_collate_follow_clip_benchmark(model: SugarModel, captions: Captions) -> None:
    records = captions[1][:3]
    encoder = SugarCLIPEncoder(model)
    dataset = CaptionRetrievalDataset(records, encoder.transform)
    assert len(dataset) == 3
    pixels, texts = dataset[1]
    assert pixels.shape == (3, 32, 32) and texts == records[1].captions
    images, caption_lists = image_captions_collate([dataset[i] for i in range(3)])
    assert images.shape == (3, 3, 32, 32)
    assert [list(c) for c in caption_lists] == [r.captions for r in records]
    theirs = real_collate()
    if theirs is not None:
        their_images, their_captions = theirs([dataset[i] for i in range(3)])
        assert torch.equal(their_images, images) and tuple(their_captions) == caption_lists


def test_clip_benchmark_agrees_with_sugar_eval(model: SugarModel, captions: Captions) -> None:
    zeroshot_retrieval()
    records = captions[1]
    ours = evaluate_retrieval(ModelEncoder(model), records, ks=KS)
    theirs = clip_benchmark_retrieval(model, records, ks=KS, batch_size=8)
    # Well above chance (k / 40 images for t2i), so a misaligned pairing would show.
    assert ours["t2i"]["r@5"] > 0.4 and ours["i2t"]["r@5"] > 0.4
    text_vectors = model.encode([[c] for r in records for c in r.captions], show_progress=False)
    image_vectors = model.encode([[r.image.load()] for r in records], show_progress=False)
    similarity = text_vectors @ image_vectors.T
    owner = [i for i, r in enumerate(records) for _ in r.captions]
    captions_of = [[j for j, o in enumerate(owner) if o == i] for i in range(len(records))]
    for direction, scores, positives in (
        ("t2i", similarity, [[o] for o in owner]),
        ("i2t", similarity.T, captions_of),
    ):
        for k in KS:
            allowed = undecided(scores, positives, k, SCORE_TOLERANCE)
            assert allowed <= 2, f"{direction} r@{k}: {allowed} near-tied queries make the comparison loose"
            difference = abs(ours[direction][f"r@{k}"] - theirs[direction][f"r@{k}"]) * len(positives)
            assert difference <= allowed + 1e-6, (direction, k, ours, theirs)


def test_clip_benchmark_in_bfloat16_autocast_stays_close(model: SugarModel, captions: Captions) -> None:
    zeroshot_retrieval()
    records = captions[1]
    exact = clip_benchmark_retrieval(model, records, ks=KS, batch_size=8)
    autocast = clip_benchmark_retrieval(model, records, ks=KS, batch_size=8, amp=True)
    for direction in ("t2i", "i2t"):
        for k in KS:
            assert abs(exact[direction][f"r@{k}"] - autocast[direction][f"r@{k}"]) <= 0.15


def test_recall_definitions_agree_without_ties_and_sugar_is_lower_on_ties() -> None:
    module = zeroshot_retrieval()
    generator = torch.Generator().manual_seed(0)
    for trial in range(40):
        texts, images = 12, 5
        tied = trial % 2 == 0
        scores = (
            torch.randint(0, 3, (texts, images), generator=generator).float()
            if tied
            else torch.rand((texts, images), generator=generator)
        )
        owner = torch.randint(0, images, (texts,), generator=generator)
        owner[:images] = torch.arange(images)  # every image has a caption
        pairs = torch.zeros_like(scores, dtype=torch.bool)
        pairs[torch.arange(texts), owner] = True
        for k in (1, 2, 3):
            for matrix, positive in ((scores, pairs), (scores.T, pairs.T)):
                theirs = (module.recall_at_k(matrix, positive, k) > 0).tolist()
                lists = [row.nonzero().flatten().tolist() for row in positive]
                ours = [recall_at_k(matrix[q : q + 1], [lists[q]], (k,))[f"r@{k}"] == 1.0 for q in range(len(lists))]
                if tied:
                    assert all(not mine or their for mine, their in zip(ours, theirs))
                else:
                    assert ours == theirs


def test_metric_names_map_to_sugar_directions() -> None:
    metrics = {"image_retrieval_recall@1": 0.25, "text_retrieval_recall@1": 0.5}
    assert recall_from_clip_benchmark(metrics, (1,)) == {"t2i": {"r@1": 0.25}, "i2t": {"r@1": 0.5}}


def test_too_few_images_for_k_is_refused(model: SugarModel, captions: Captions) -> None:
    zeroshot_retrieval()
    with pytest.raises(ValueError, match="at least 10 images"):
        clip_benchmark_retrieval(model, captions[1][:4], ks=(1, 10))


def test_image_pixels_must_be_a_batch(model: SugarModel) -> None:
    encoder = SugarCLIPEncoder(model)
    picture = Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        encoder.encode_image(encoder.transform(picture))
