"""SugarModel on a ~100k-parameter configuration: slices, labels, pooling, causality, save/load, encode, generate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sugar.data import Document, ImageRef
from sugar.models import IGNORE_INDEX, ProcessedBatch, SugarConfig, SugarModel, preset_config
from tiny_model import tiny_model_config

CORPUS = [
    "A red circle is left of a blue square. It is small.",
    "Two green triangles are above a yellow star!",
    "What colour is the circle? red",
    "The story goes on. Then a big purple square appears.",
]

SMALL = tiny_model_config()


def small_model(**overrides: object) -> SugarModel:
    torch.manual_seed(0)
    return SugarModel.from_preset("tiny", tokenizer_corpus=CORPUS, **{**SMALL, **overrides}).eval()


def image(seed: int, size: int = 40) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def model() -> SugarModel:
    return small_model()


def test_tokens_per_image_and_size(model: SugarModel) -> None:
    assert model.backbone.tokens_per_image == 16  # (32 / 8)^2
    counts = model.parameter_counts()
    assert counts["total"] < 1_000_000
    assert counts["vision_tower"] > 0


def test_slices_follow_images_and_sentences(model: SugarModel) -> None:
    doc = [image(0), "A red circle is left of a blue square. It is small.", image(1), "Two green triangles!"]
    batch = model.processor([doc])
    spans = batch.slices[0]
    assert [(s.modality, s.segment) for s in spans] == [
        ("image", 0),
        ("text", 1),
        ("text", 1),
        ("image", 2),
        ("text", 3),
    ]
    assert spans[0].start == 1 and len(spans[0]) == 16  # right after <bos>
    assert spans[3].start == spans[2].end and len(spans[3]) == 16
    image_positions = batch.image_mask[0].nonzero().flatten().tolist()
    assert image_positions == list(range(1, 17)) + list(range(spans[3].start, spans[3].end))
    tokenizer = model.tokenizer
    for span in (spans[1], spans[2], spans[4]):
        decoded = tokenizer.decode(batch.input_ids[0, span.start : span.end].tolist())
        assert decoded == span.content.lower()
    assert [s.content for s in spans if s.modality == "text"] == [
        "A red circle is left of a blue square.",
        "It is small.",
        "Two green triangles!",
    ]
    assert batch.labels is None
    assert batch.pixel_values is not None and batch.pixel_values.shape == (2, 3, 32, 32)
    assert float(batch.pixel_values.min()) >= -1.0 and float(batch.pixel_values.max()) <= 1.0


def test_slices_match_the_data_layer(model: SugarModel) -> None:
    text = "A red circle. Then a big purple square appears!\nIt is small."
    doc = Document.from_items([image(3), text])
    spans = model.processor([doc]).slices[0]
    expected = doc.slices("sentence")
    assert [(s.modality, s.segment) for s in spans] == [(s.modality, s.segment) for s in expected]
    assert [s.content for s in spans[1:]] == [s.content for s in expected[1:]]
    assert isinstance(spans[0].content, Image.Image)


def test_segment_text_unit() -> None:
    model = small_model(text_unit="segment")
    spans = model.processor([["A red circle. It is small.", image(0), "Two green triangles!"]]).slices[0]
    assert [(s.modality, s.content) for s in spans] == [
        ("text", "A red circle. It is small."),
        ("image", spans[1].content),
        ("text", "Two green triangles!"),
    ]


def test_labels_only_on_target_tokens(model: SugarModel) -> None:
    docs = [[image(0), "What colour is the circle?", "red"], ["A red circle.", image(1), "It is small."]]
    batch = model.processor(docs, targets=[[2], [0]])
    assert batch.labels is not None
    eos = model.tokenizer.eos_token_id
    row0, row1 = batch.labels[0], batch.labels[1]
    answer = batch.slices[0][2]
    labelled0 = (row0 != IGNORE_INDEX).nonzero().flatten().tolist()
    assert labelled0 == list(range(answer.start, answer.end)) + [answer.end]  # the answer, then <eos>
    assert int(batch.input_ids[0, answer.end]) == eos and int(row0[answer.end]) == eos
    assert torch.equal(row0[answer.start : answer.end], batch.input_ids[0, answer.start : answer.end])
    first = batch.slices[1][0]
    labelled1 = (row1 != IGNORE_INDEX).nonzero().flatten().tolist()
    assert labelled1 == list(range(first.start, first.end))  # not the last segment: <eos> unlabelled
    assert not bool((row0 != IGNORE_INDEX)[batch.image_mask[0]].any())
    assert batch.num_label_tokens == len(labelled0) + len(labelled1)
    assert model.processor(docs).labels is None


def test_pooling_picks_the_expected_positions() -> None:
    for pooling in ("mean", "last"):
        model = small_model(image_pooling=pooling)
        docs = [
            [image(0), "A red circle is left of a blue square. It is small.", image(1)],
            ["Two green triangles are above a yellow star!", image(2)],
        ]
        batch = model.processor(docs)
        cuts = [[0, 1, 2, 3], [1, 0]]
        with torch.no_grad():
            out = model(batch, cut_points=cuts, output_hidden_states=True)
        hidden = out.hidden_states
        assert out.cut_index == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 1), (1, 0)]
        expected = []
        for document, t in out.cut_index:
            span = batch.slices[document][t]
            if span.modality == "image":
                positions = batch.image_mask[document].nonzero().flatten()
                mine = positions[(positions >= span.start) & (positions < span.end)]
                assert mine.tolist() == list(range(span.start, span.end))  # exactly that image's tokens
                vector = hidden[document, mine].mean(0) if pooling == "mean" else hidden[document, span.end - 1]
            else:
                vector = hidden[document, span.end - 1]
            expected.append(vector)
        reference = torch.nn.functional.normalize(model.head.project(torch.stack(expected)), dim=-1)
        torch.testing.assert_close(out.embeddings, reference, atol=1e-6, rtol=1e-5)
        assert torch.allclose(out.embeddings.norm(dim=-1), torch.ones(6))


def test_hidden_states_are_final_norm_before_lm_head(model: SugarModel) -> None:
    batch = model.processor([[image(0), "A red circle."]])
    with torch.no_grad():
        hidden = model.hidden_states(batch)
        embeds = model.input_embeddings(batch)
        reference = model.backbone.lm(inputs_embeds=embeds, attention_mask=batch.attention_mask).logits
    torch.testing.assert_close(model.backbone.logits(hidden), reference)


def test_prefix_embedding_ignores_later_content(model: SugarModel) -> None:
    shared = [image(0), "A red circle is left of a blue square. It is small."]
    docs = [shared + [image(1)], shared + [image(2), "Two green triangles are above a yellow star!"], shared]
    batch = model.processor(docs)
    with torch.no_grad():
        out = model(batch, cut_points=[[0, 1, 2], [0, 1, 2], [0, 1, 2]])
    first, second, third = out.embeddings.view(3, 3, -1)
    torch.testing.assert_close(first, second, atol=1e-5, rtol=0)
    torch.testing.assert_close(first, third, atol=1e-5, rtol=0)
    with torch.no_grad():
        ends = model(batch).embeddings  # default: the last slice of each document
    assert not torch.allclose(ends[0], ends[1], atol=1e-3)


def test_loss_is_mean_cross_entropy_over_labels(model: SugarModel) -> None:
    docs = [[image(0), "What colour is the circle?", "red"], ["A red circle.", "It is small."]]
    batch = model.processor(docs, targets=[[2], [1]])
    with torch.no_grad():
        out = model(batch)
        logits = model.backbone.logits(model.hidden_states(batch))
    manual = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), batch.labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
    )
    torch.testing.assert_close(out.loss, manual)
    assert out.label_tokens == batch.num_label_tokens
    assert model(model.processor(docs)).loss is None


def test_encode_is_batch_size_invariant(model: SugarModel) -> None:
    docs = [
        [image(i), "A red circle is left of a blue square."] if i % 3 == 0
        else ["Two green triangles!", image(i), "It is small."] if i % 3 == 1
        else ["What colour is the circle? red"]
        for i in range(10)
    ]
    one = model.encode(docs, batch_size=1)
    eight = model.encode(docs, batch_size=8)
    assert one.shape == (10, 16)
    torch.testing.assert_close(one, eight, atol=1e-5, rtol=0)
    torch.testing.assert_close(one.norm(dim=-1), torch.ones(10))


def test_generate_returns_text(model: SugarModel) -> None:
    text = model.generate([image(0), "What colour is the circle?"], max_new_tokens=5)
    assert isinstance(text, str)
    assert len(text.split()) <= 5
    assert model.generate(["A red circle."], max_new_tokens=0) == ""


def test_generate_matches_full_recompute(model: SugarModel) -> None:
    """The KV-cached loop gives the same tokens as re-running the whole sequence each step."""
    doc = [image(4), "A red circle is"]
    cached = model.generate(doc, max_new_tokens=6)
    batch = model.processor([doc])
    ids = batch.input_ids
    tokens = []
    with torch.no_grad():
        for _ in range(6):
            step = ProcessedBatch(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                labels=None,
                image_mask=torch.cat([batch.image_mask, torch.zeros(1, ids.shape[1] - batch.image_mask.shape[1], dtype=torch.bool)], 1),
                pixel_values=batch.pixel_values,
                image_keys=batch.image_keys,
                slices=batch.slices,
            )
            token = int(model.backbone.logits(model.hidden_states(step)[:, -1]).argmax(-1))
            if token == model.tokenizer.eos_token_id:
                break
            tokens.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], 1)
    assert cached == model.tokenizer.decode(tokens, skip_special_tokens=True).strip()


def test_save_load_round_trip(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = small_model()
    with torch.no_grad():  # move every weight off its seeded initial value
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    docs = [[image(0), "A red circle is left of a blue square."], ["Two green triangles!", image(1)]]
    target = tmp_path / "saved"
    model.save_pretrained(target)
    model.save_pretrained(target)  # overwriting an existing save works
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]  # no staging folders left
    assert (target / "sugar_config.json").is_file() and (target / "model.safetensors").is_file()
    loaded = SugarModel.from_pretrained(target).eval()
    assert loaded.config == model.config
    torch.testing.assert_close(loaded.encode(docs), model.encode(docs), atol=0, rtol=0)
    prompt = [image(2), "What colour is the circle?"]
    assert loaded.generate(prompt, max_new_tokens=8) == model.generate(prompt, max_new_tokens=8)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_reload_with_other_image_pooling_changes_only_image_embeddings(tmp_path) -> None:
    model = small_model()
    model.save_pretrained(tmp_path / "saved")
    last = SugarModel.from_pretrained(tmp_path / "saved", image_pooling="last").eval()
    assert last.config.image_pooling == "last" and model.config.image_pooling == "mean"
    text = [["A red circle is left of a blue square."]]
    torch.testing.assert_close(last.encode(text), model.eval().encode(text), atol=0, rtol=0)
    assert not torch.allclose(last.encode([[image(0)]]), model.encode([[image(0)]]))
    with pytest.raises(ValueError, match="cannot override architecture fields"):
        SugarModel.from_pretrained(tmp_path / "saved", head_dim=7)


def test_save_load_with_lora(tmp_path) -> None:
    model = small_model(lora_r=4, lora_alpha=8.0)
    lm_trainable = [n for n, p in model.backbone.lm.named_parameters() if p.requires_grad]
    assert lm_trainable and all("lora_" in n for n in lm_trainable)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.1)
    model.save_pretrained(tmp_path / "lora")
    loaded = SugarModel.from_pretrained(tmp_path / "lora")
    docs = [[image(0), "A red circle."]]
    torch.testing.assert_close(loaded.encode(docs), model.encode(docs), atol=0, rtol=0)


@pytest.mark.parametrize("cache_size", [20000, 0])
def test_training_step_updates_trainable_parts_only(cache_size: int) -> None:
    model = small_model(vision_cache_size=cache_size).train()
    assert not model.backbone.tower.training  # the frozen tower stays in eval mode
    assert all(not p.requires_grad for p in model.backbone.tower.parameters())
    generative = {id(p) for p in model.generative_parameters()}
    retrieval = {id(p) for p in model.retrieval_parameters()}
    assert generative.isdisjoint(retrieval)
    assert retrieval == {id(p) for p in model.head.parameters()}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(
        [{"params": model.generative_parameters()}, {"params": model.retrieval_parameters()}], lr=0.1
    )
    docs = [[image(0), "A red circle.", "It is small."], [image(1), "Two green triangles!"]]
    batch = model.processor(docs, targets=[[1, 2], [1]])
    out = model(batch, cut_points=[[0, 2], [0, 1]])
    similarity = out.embeddings @ out.embeddings.T
    (out.loss + (similarity - torch.eye(4)).pow(2).mean()).backward()
    optimizer.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert any(name.startswith("head.") for name in changed)
    assert any(name.startswith("backbone.projector.") for name in changed)
    assert any(name.startswith("backbone.lm.") for name in changed)
    assert not any(name.startswith("backbone.tower.") for name in changed)


def test_feature_cache_serves_repeated_images() -> None:
    model = small_model()
    uncached = small_model(vision_cache_size=0)
    docs = [[image(0), "A red circle."], [image(1), "It is small."]]
    first = model.encode(docs)
    cache = model.backbone.feature_cache
    assert len(cache) == 2 and cache.misses == 2
    second = model.encode(docs)
    assert cache.hits == 2 and cache.misses == 2
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    torch.testing.assert_close(first, uncached.encode(docs), atol=1e-6, rtol=0)
    assert len(uncached.backbone.feature_cache) == 0


def test_feature_cache_on_disk(tmp_path) -> None:
    docs = [[image(0), "A red circle."]]
    writer = small_model(vision_cache_dir=str(tmp_path / "cache"))
    expected = writer.encode(docs)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1
    reader = small_model(vision_cache_dir=str(tmp_path / "cache"), vision_cache_size=0)
    torch.testing.assert_close(reader.encode(docs), expected, atol=0, rtol=0)
    assert reader.backbone.feature_cache.hits == 1


def test_data_layer_documents_are_accepted(model: SugarModel, tmp_path) -> None:
    path = tmp_path / "picture.png"
    image(5).save(path)
    plain = model.encode([[Image.open(path), "A red circle."]])
    from_document = model.encode([Document([ImageRef(path), "A red circle."])])
    torch.testing.assert_close(plain, from_document, atol=0, rtol=0)


def test_truncation_keeps_whole_slices(model: SugarModel) -> None:
    doc = [image(0), "A red circle is left of a blue square.", image(1), "It is small."]
    with pytest.warns(UserWarning, match="max_length"):
        batch = model.processor([doc], max_length=30)
    assert batch.truncated == [True]
    assert [s.modality for s in batch.slices[0]] == ["image", "text"]
    assert batch.input_ids.shape[1] == batch.slices[0][-1].end <= 30
    assert batch.num_images == 1
    with pytest.raises(ValueError, match="first slice needs 17 tokens"):
        model.processor([doc], max_length=10)


@pytest.mark.parametrize(
    ("documents", "error", "message"),
    [
        ([[]], ValueError, r"documents\[0\] is empty"),
        ([["A red circle."], ["ok", 3]], TypeError, r"documents\[1\]\[1\]: expected str \(text\) or PIL.Image.Image"),
        ([["A red circle.", "   "]], ValueError, r"documents\[0\]\[1\]: expected a non-empty text"),
        (["A red circle."], TypeError, r"documents\[0\]: .*got a single str"),
        ([], ValueError, "documents is empty"),
        ("A red circle.", TypeError, "expected a list of documents"),
    ],
)
def test_bad_documents_raise_clear_errors(model: SugarModel, documents, error, message) -> None:
    with pytest.raises(error, match=message):
        model.processor(documents)


def test_bad_targets_and_cut_points(model: SugarModel) -> None:
    docs = [[image(0), "A red circle."]]
    with pytest.raises(ValueError, match=r"targets\[0\]: segment 0 is an image"):
        model.processor(docs, targets=[[0]])
    with pytest.raises(IndexError, match=r"targets\[0\]: segment index 5 out of range"):
        model.processor(docs, targets=[[5]])
    with pytest.raises(ValueError, match="one entry per document"):
        model.processor(docs, targets=[[1], [1]])
    batch = model.processor(docs)
    with pytest.raises(IndexError, match=r"cut_points\[0\]: slice index 2 out of range; document 0 has 2 slices"):
        model(batch, cut_points=[[2]])
    with pytest.raises(ValueError, match="one list per document"):
        model(batch, cut_points=[[0], [0]])
    assert model(batch, cut_points=[[-1]]).cut_index == [(0, 1)]
    assert model(batch, cut_points=[[]]).embeddings.shape == (0, 16)


def test_config_round_trip_and_errors(tmp_path) -> None:
    config = preset_config("tiny", head_dim=64, lm_config={"num_hidden_layers": 2})
    assert config.lm_config["num_hidden_layers"] == 2 and config.lm_config["hidden_size"] == 256
    config.save(tmp_path)
    assert SugarConfig.load(tmp_path) == config
    with pytest.raises(ValueError, match="unknown SugarConfig field 'head_size'"):
        preset_config("tiny", head_size=3)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset_config("huge")
    with pytest.raises(ValueError, match="SugarConfig.image_pooling must be one of"):
        preset_config("tiny", image_pooling="max")
    with pytest.raises(ValueError, match="tokenizer_corpus"):
        SugarModel.from_preset("tiny", **SMALL)
    assert preset_config("smol").lora_r > 0 and preset_config("llava-1.5-7b").backend == "llava"


def test_processor_pickles_without_the_model(model: SugarModel) -> None:
    """DataLoader workers get the processor: it must not drag the network's weights along."""
    import pickle

    clone = pickle.loads(pickle.dumps(model.processor))
    assert len(pickle.dumps(model.processor)) < 100_000
    docs = [[image(0), "A red circle."]]
    assert torch.equal(clone(docs).input_ids, model.processor(docs).input_ids)


def test_enable_lora_after_construction(tmp_path) -> None:
    model = small_model()
    docs = [[image(0), "A red circle."]]
    before = model.encode(docs)
    model.enable_lora(r=4, alpha=8.0)
    assert model.config.lora_r == 4 and model.backbone.config is model.config
    torch.testing.assert_close(model.encode(docs), before, atol=1e-6, rtol=0)  # LoRA starts as a no-op
    lm_trainable = [n for n, p in model.backbone.lm.named_parameters() if p.requires_grad]
    assert lm_trainable and all("lora_" in n for n in lm_trainable)
    assert model.enable_lora(r=4, alpha=8.0) is model  # same adapters again: nothing to do
    with pytest.raises(ValueError, match="LoRA is already enabled"):
        model.enable_lora(r=8)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.1)
    model.save_pretrained(tmp_path / "m")
    loaded = SugarModel.from_pretrained(tmp_path / "m")
    torch.testing.assert_close(loaded.encode(docs), model.encode(docs), atol=0, rtol=0)


def test_gradient_checkpointing_keeps_gradients() -> None:
    model = small_model(lora_r=4).train()
    model.gradient_checkpointing_enable()
    batch = model.processor([["A red circle.", "It is small."]], targets=[[1]])
    model(batch).loss.backward()
    lora_grads = [p.grad for n, p in model.named_parameters() if "lora_A" in n]
    assert lora_grads and all(g is not None for g in lora_grads)


def test_bf16_autocast_agrees_with_float32(tmp_path) -> None:
    """The same weights under bf16 autocast and in float32: losses and embeddings agree closely,
    and the head and the loss stay float32 either way."""
    from sugar.models.precision import autocast_dtype

    torch.manual_seed(0)
    folder = small_model().save_pretrained(tmp_path / "m")
    exact = SugarModel.from_pretrained(folder, autocast="off")
    mixed = SugarModel.from_pretrained(folder, autocast="bfloat16")
    documents = [[image(1), "a red circle. it moves."], ["a blue square", image(2)], [image(3), "two stars"]]
    batch = exact.processor(documents, targets=[[1], [0], [1]])
    out_exact, out_mixed = exact(batch), mixed(batch)
    assert out_mixed.embeddings.dtype == torch.float32 and out_mixed.loss.dtype == torch.float32
    assert out_mixed.loss.item() == pytest.approx(out_exact.loss.item(), rel=2e-2)
    cosine = (out_exact.embeddings * out_mixed.embeddings).sum(-1)
    assert cosine.min().item() > 0.99
    assert not torch.equal(out_exact.embeddings, out_mixed.embeddings)  # bf16 really ran
    assert autocast_dtype("off", torch.device("cpu"), torch.float32) is None
    assert autocast_dtype("bfloat16", torch.device("cpu"), torch.float32) is torch.bfloat16
    assert autocast_dtype("bfloat16", torch.device("cpu"), torch.bfloat16) is None  # already half
    with pytest.raises(ValueError, match="autocast"):
        autocast_dtype("fp8", torch.device("cpu"), torch.float32)
