"""Benchmarks over loaded records: each takes an encoder or a model and returns standard metrics.

An *encoder* is anything with `encode_documents(documents) -> (N, d)` L2-normalised vectors,
where a document is a list of texts and PIL images: a SugarModel (through `ModelEncoder`) or the
cross-modal teacher (the CLIP-style baseline, through `TeacherEncoder`).

A *model* (for the generative benchmarks) has `encode(documents, batch_size, show_progress)`,
`generate(document, max_new_tokens)` and `target_logprobs(documents, targets, batch_size)`, as
`SugarModel` does. Reading the benchmark files is `sugar.eval.suite`'s job; everything here works
on records already in memory, so each metric can be checked on hand-made inputs.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from sugar.data import CaptionedImage, Conversation, Document, ImageRef, MMVPItem, WinogroundItem
from sugar.eval.metrics import (
    binary_scores, exact_match, flat_range, normalize_answer, recall_at_k, winoground_scores, yes_no,
)

DocumentItem = str | Image.Image


class Encoder(Protocol):
    def encode_documents(self, documents: list[list[DocumentItem]]) -> Tensor: ...


class ModelEncoder:
    """A SugarModel as an encoder: each document is embedded as one sequence (method.md sec. 8)."""

    def __init__(self, model: Any, batch_size: int = 32, show_progress: bool = False) -> None:
        self.model = model
        self.batch_size = batch_size
        self.show_progress = show_progress

    def encode_documents(self, documents: list[list[DocumentItem]]) -> Tensor:
        return self.model.encode(documents, batch_size=self.batch_size, show_progress=self.show_progress)


class TeacherEncoder:
    """The cross-modal teacher as a CLIP-style encoder. A document with several segments is the
    normalised mean of its segments' embeddings: the usual way to feed interleaved input to CLIP."""

    def __init__(self, suite: Any) -> None:
        self.suite = suite

    def encode_documents(self, documents: list[list[DocumentItem]]) -> Tensor:
        flat: list[DocumentItem] = [item for document in documents for item in document]
        image_positions = [i for i, item in enumerate(flat) if isinstance(item, Image.Image)]
        text_positions = [i for i, item in enumerate(flat) if isinstance(item, str)]
        vectors: list[Tensor | None] = [None] * len(flat)
        if image_positions:
            for i, v in zip(image_positions, self.suite.encode_images([flat[i] for i in image_positions])):
                vectors[i] = v
        if text_positions:
            for i, v in zip(text_positions, self.suite.encode_texts([flat[i] for i in text_positions])):
                vectors[i] = v
        out, start = [], 0
        for document in documents:
            stacked = torch.stack([vectors[i] for i in range(start, start + len(document))])  # type: ignore[misc]
            out.append(torch.nn.functional.normalize(stacked.mean(0), dim=0))
            start += len(document)
        return torch.stack(out)


def _load(image: ImageRef) -> Image.Image:
    return image.load()


def evaluate_retrieval(encoder: Encoder, records: Sequence[CaptionedImage], ks: Sequence[int] = (1, 5, 10)) -> dict[str, dict[str, float]]:
    """Text->image and image->text recall@k over a caption set (COCO protocol: every caption is
    a query for its image; every image is a query with all its captions as positives). Images
    are decoded a chunk at a time, so the real 5000-image test set fits in memory."""
    captions = [caption for record in records for caption in record.captions]
    owner = [index for index, record in enumerate(records) for _ in record.captions]
    text_vectors = encode_in_chunks(encoder, [[c] for c in captions], chunk_size=4096)
    image_vectors = encode_in_chunks(encoder, [[r.image] for r in records], chunk_size=1024)
    similarity = text_vectors @ image_vectors.T
    captions_of: dict[int, list[int]] = defaultdict(list)
    for caption_index, image_index in enumerate(owner):
        captions_of[image_index].append(caption_index)
    return {
        "t2i": recall_at_k(similarity, [[o] for o in owner], ks),
        "i2t": recall_at_k(similarity.T, [captions_of[i] for i in range(len(records))], ks),
    }


def evaluate_winoground(encoder: Encoder, items: Sequence[WinogroundItem]) -> dict[str, Any]:
    """Winoground text / image / group scores from embedding similarity, overall and per tag."""
    captions = encode_in_chunks(encoder, [[c] for item in items for c in (item.caption_0, item.caption_1)])
    images = encode_in_chunks(encoder, [[i] for item in items for i in (item.image_0, item.image_1)])
    captions = captions.view(len(items), 2, -1)
    images = images.view(len(items), 2, -1)
    similarity = torch.einsum("ncd,nid->nci", captions, images)
    result: dict[str, Any] = winoground_scores(similarity)
    by_tag: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        by_tag[item.tag].append(index)
    result["by_tag"] = {tag: winoground_scores(similarity[idx]) for tag, idx in sorted(by_tag.items())}
    return result


def question_and_answer(conversation: Conversation) -> tuple[list[DocumentItem], str]:
    """The first question (with the image in place of `<image>`) and its reference answer."""
    if len(conversation.turns) < 2:
        raise ValueError(f"conversation {conversation.id} has no answer turn")
    question = conversation.turns[0][1]
    before, token, after = question.partition("<image>")
    prompt: list[DocumentItem] = []
    if before.strip():
        prompt.append(before.strip())
    if token and conversation.image is not None:
        prompt.append(_load(conversation.image))
    if after.strip():
        prompt.append(after.strip())
    return prompt, conversation.turns[1][1]


def pope_category(conversation: Conversation) -> str | None:
    """The POPE negative type of a yes/no question (random / popular / adversarial), else None.

    The world marks POPE records with `task: pope` and `category: <type>`; the POPE release
    files name the type in the file (`coco_pope_random.json`), which loaders may record as a
    `pope-<type>` category.
    """
    category = str(conversation.meta.get("category", "") or "")
    if category.startswith("pope"):
        return category.split("-", 1)[1] if "-" in category else "all"
    if conversation.meta.get("task") == "pope":
        return category or "all"
    return None


def _pope_label(conversation: Conversation, answer: str) -> str:
    label = conversation.meta.get("label")
    if isinstance(label, str) and label.strip().lower() in ("yes", "no"):
        return label.strip().lower()
    return yes_no(answer) or answer


def evaluate_qa(
    model: Any,
    conversations: Sequence[Conversation],
    max_new_tokens: int = 16,
    show_progress: bool = False,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Normalised exact-match accuracy of generated answers (greedy, batched); POPE-style yes/no
    questions (see `pope_category`) are also scored per negative type."""
    correct = 0
    pope: dict[str, tuple[list[str | None], list[str]]] = defaultdict(lambda: ([], []))
    pairs = [question_and_answer(conversation) for conversation in conversations]
    predictions = generate_batch(model, [p for p, _ in pairs], max_new_tokens, batch_size, show_progress, "qa")
    for conversation, (_, answer), prediction in zip(conversations, pairs, predictions):
        correct += exact_match(prediction, answer)
        kind = pope_category(conversation)
        if kind is not None:
            pope[kind][0].append(yes_no(prediction))
            pope[kind][1].append(_pope_label(conversation, answer))
    result: dict[str, Any] = {"accuracy": correct / max(len(conversations), 1), "count": len(conversations)}
    if pope:
        result["pope"] = {kind: binary_scores(p, l) for kind, (p, l) in sorted(pope.items())}
    return result


# ----------------------------------------------------------------------------- shared helpers


def _as_item(item: DocumentItem | ImageRef) -> DocumentItem:
    return item.load() if isinstance(item, ImageRef) else item


def encode_in_chunks(
    encoder: Encoder,
    documents: Sequence[Sequence[DocumentItem | ImageRef]],
    chunk_size: int = 256,
    desc: str = "encode",
    show_progress: bool = False,
) -> Tensor:
    """Encode documents whose images may still be `ImageRef`s, decoding one chunk at a time, so
    a 5000-image test set never sits in memory as bitmaps all at once."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    parts: list[Tensor] = []
    with tqdm(total=len(documents), desc=desc, unit="doc", disable=not show_progress) as bar:
        for start in range(0, len(documents), chunk_size):
            chunk = [[_as_item(item) for item in document] for document in documents[start : start + chunk_size]]
            parts.append(encoder.encode_documents(chunk).float().cpu())
            bar.update(len(chunk))
    if not parts:
        raise ValueError("nothing to encode: the document list is empty")
    return torch.cat(parts)


def spread(items: Sequence[Any], count: int | None) -> list[Any]:
    """`count` items evenly spaced through `items` (all of them when count is None or too big):
    a deterministic subset that keeps the file's mix of types instead of its first block."""
    if count is None or count >= len(items):
        return list(items)
    if count <= 0:
        return []
    step = len(items) / count
    return [items[int(k * step)] for k in range(count)]


def _group_accuracy(correct: Sequence[bool], groups: Sequence[str]) -> dict[str, Any]:
    """Accuracy per group, the unweighted mean over groups (MMVP's "average") and overall."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for ok, group in zip(correct, groups, strict=True):
        hits[group].append(bool(ok))
    per_group = {group: sum(values) / len(values) for group, values in hits.items()}
    return {
        "per_pattern": per_group,
        "average": sum(per_group.values()) / len(per_group) if per_group else 0.0,
        "overall": sum(bool(c) for c in correct) / len(correct) if correct else 0.0,
        "counts": {group: len(values) for group, values in hits.items()},
    }


def _size_hint(document: Sequence[Any]) -> tuple[int, int]:
    images = sum(not isinstance(item, str) for item in document)
    return images, sum(len(item) for item in document if isinstance(item, str))


@torch.no_grad()
def generate_batch(
    model: Any,
    documents: Sequence[Sequence[DocumentItem]],
    max_new_tokens: int,
    batch_size: int = 16,
    show_progress: bool = False,
    desc: str = "generate",
) -> list[str]:
    """Greedy continuations of many prompts, `batch_size` at a time: the answers of
    `model.generate(document, max_new_tokens)` (up to float rounding) at a fraction of the cost.

    Prompts of a batch are left-aligned by padding on the left with masked positions; the LM's
    rotary positions make attention depend on relative positions only, so a prompt reads the
    same with or without padding. Models without the SugarModel internals (`processor`,
    `input_embeddings`, `backbone`) are asked one prompt at a time through `generate`.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    bar = tqdm(total=len(documents), desc=desc, unit="answer", disable=not show_progress)
    if not all(hasattr(model, name) for name in ("processor", "input_embeddings", "backbone", "tokenizer")):
        answers = []
        for document in documents:
            answers.append(model.generate(list(document), max_new_tokens=max_new_tokens))
            bar.update()
        bar.close()
        return answers
    results = [""] * len(documents)
    if max_new_tokens == 0 or not documents:
        bar.close()
        return results
    eos = model.tokenizer.eos_token_id
    order = sorted(range(len(documents)), key=lambda i: _size_hint(documents[i]))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            batch = model.processor([list(documents[i]) for i in chosen], add_eos=False).to(model.device)
            embeds = model.input_embeddings(batch)
            lengths = batch.attention_mask.sum(1).tolist()
            width = embeds.shape[1]
            left = torch.zeros_like(embeds)
            mask = torch.zeros_like(batch.attention_mask)
            for row, length in enumerate(lengths):
                left[row, width - length :] = embeds[row, :length]
                mask[row, width - length :] = 1
            hidden, cache = model.backbone.decode(left, mask, use_cache=True)
            tokens: list[list[int]] = [[] for _ in chosen]
            done = [False] * len(chosen)
            for step in range(max_new_tokens):
                next_ids = model.backbone.logits(hidden[:, -1]).argmax(-1)
                for row, token in enumerate(next_ids.tolist()):
                    if not done[row]:
                        if eos is not None and token == eos:
                            done[row] = True
                        else:
                            tokens[row].append(token)
                if all(done) or step == max_new_tokens - 1:
                    break
                mask = torch.cat([mask, mask.new_ones((len(chosen), 1))], dim=1)
                hidden, cache = model.backbone.decode(
                    model.backbone.embed_tokens(next_ids.unsqueeze(1)), mask, cache=cache, use_cache=True
                )
            for row, index in enumerate(chosen):
                results[index] = model.tokenizer.decode(tokens[row], skip_special_tokens=True).strip()
            bar.update(len(chosen))
    finally:
        model.train(was_training)
        bar.close()
    return results


# ----------------------------------------------------------------------------- answer matching


def contains_answer(prediction: str, answers: str | Sequence[str]) -> bool:
    """True when a normalised answer appears as whole words inside the normalised prediction
    (the keyword accuracy WebQA uses for colour / shape questions; lenient for sentence replies)."""
    options = [answers] if isinstance(answers, str) else list(answers)
    words = normalize_answer(prediction).split()
    for option in options:
        wanted = normalize_answer(option).split()
        if not wanted:
            continue
        for start in range(len(words) - len(wanted) + 1):
            if words[start : start + len(wanted)] == wanted:
                return True
    return False


# ----------------------------------------------------------------------------- interleaved retrieval


@dataclass(frozen=True)
class InterleavedQuery:
    """One VIST-protocol query: the story's interleaved segments (images 1-4, sentences 1-5, in
    story order) and the index of its fifth image in the candidate pool."""

    id: str
    segments: tuple[str | ImageRef, ...]
    target: int


VIST_PROTOCOLS: tuple[str, ...] = ("captions_and_images", "captions_only", "last_caption")


def vist_query(query: InterleavedQuery, protocol: str) -> list[str | ImageRef]:
    """The query document of one protocol: all segments as one interleaved sequence (5 captions
    + 4 images), the five captions alone, or only the last caption (the 1-caption baseline)."""
    texts = [segment for segment in query.segments if isinstance(segment, str)]
    if protocol == "captions_and_images":
        return list(query.segments)
    if protocol == "captions_only":
        return texts
    if protocol == "last_caption":
        return texts[-1:]
    raise ValueError(f"unknown VIST protocol {protocol!r}; expected one of {list(VIST_PROTOCOLS)}")


def evaluate_interleaved_retrieval(
    encoder: Encoder,
    candidates: Sequence[ImageRef | Image.Image],
    queries: Sequence[InterleavedQuery],
    ks: Sequence[int] = (1, 5, 10),
    protocols: Sequence[str] = VIST_PROTOCOLS,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Recall@k of the target image over the candidate pool for each query protocol (VIST
    retrieval as in FROMAGe / GILL; each query is encoded as ONE sequence, method.md sec. 8)."""
    if not queries:
        raise ValueError("no interleaved retrieval queries")
    for query in queries:
        if not 0 <= query.target < len(candidates):
            raise ValueError(f"query {query.id}: target {query.target} is not an index into {len(candidates)} candidates")
    image_vectors = encode_in_chunks(encoder, [[c] for c in candidates], desc="candidates", show_progress=show_progress)
    result: dict[str, Any] = {"queries": len(queries), "candidates": len(candidates)}
    for protocol in protocols:
        documents = [vist_query(query, protocol) for query in queries]
        vectors = encode_in_chunks(encoder, documents, desc=protocol, show_progress=show_progress)
        result[protocol] = recall_at_k(vectors @ image_vectors.T, [[q.target] for q in queries], ks)
    return result


# ----------------------------------------------------------------------------- MMVP


def evaluate_mmvp_vlm(
    encoder: Encoder,
    items: Sequence[MMVPItem],
    patterns: Mapping[str, str] | None = None,
    statement_prefix: str = "",
    show_progress: bool = False,
) -> dict[str, Any]:
    """MMVP-VLM from embeddings, per visual pattern and averaged over patterns.

    Main score (MMVP's VLM protocol): a pair counts when each statement is nearer its own image
    than the other image. `image_to_statement` is the converse (each image nearer its own
    statement) and `both` needs the two at once. `patterns` maps a question id to its pattern
    (the world's patterns.csv); otherwise a pair's `type` is its pattern, as in the release.
    """
    if not items:
        raise ValueError("no MMVP-VLM pairs")
    statements = [[statement_prefix + s] for item in items for s in (item.statement_0, item.statement_1)]
    images = [[image] for item in items for image in (item.image_0, item.image_1)]
    text_vectors = encode_in_chunks(encoder, statements, desc="statements", show_progress=show_progress)
    image_vectors = encode_in_chunks(encoder, images, desc="images", show_progress=show_progress)
    text_vectors = text_vectors.view(len(items), 2, -1)
    image_vectors = image_vectors.view(len(items), 2, -1)
    s = torch.einsum("ncd,nid->nci", text_vectors, image_vectors)  # s[n, statement, image]
    statement_to_image = ((s[:, 0, 0] > s[:, 0, 1]) & (s[:, 1, 1] > s[:, 1, 0])).tolist()
    image_to_statement = ((s[:, 0, 0] > s[:, 1, 0]) & (s[:, 1, 1] > s[:, 0, 1])).tolist()
    both = [a and b for a, b in zip(statement_to_image, image_to_statement)]
    groups = [(patterns or {}).get(item.question_ids[0], item.type) for item in items]
    result: dict[str, Any] = {"pairs": len(items), **_group_accuracy(statement_to_image, groups)}
    result["image_to_statement"] = _group_accuracy(image_to_statement, groups)
    result["both"] = _group_accuracy(both, groups)
    return result


@dataclass(frozen=True)
class MMVPQuestion:
    """One row of MMVP's Questions.csv: a two-choice question about one image. Consecutive rows
    (1-2, 3-4, ...) ask the same question of the two images of a pair."""

    id: str
    image: ImageRef
    question: str
    options_text: str  # as written in the file, e.g. "(a) Open (b) Closed"
    options: tuple[str, ...]  # the option texts in letter order
    answer: int  # index into options
    pattern: str = "all"


_OPTION = re.compile(r"\(([a-z])\)\s*(.*?)\s*(?=\([a-z]\)|$)", re.IGNORECASE | re.DOTALL)


def parse_options(options_text: str) -> tuple[str, ...]:
    """'(a) Open (b) Closed' -> ('Open', 'Closed'); letters must run a, b, c, ... in order."""
    found = _OPTION.findall(options_text.strip())
    letters = [letter.lower() for letter, _ in found]
    if len(found) < 2 or letters != [chr(ord("a") + k) for k in range(len(found))] or not all(t for _, t in found):
        raise ValueError(f"options must read '(a) ... (b) ...', got {options_text!r}")
    return tuple(text for _, text in found)


def parse_choice(answer_text: str, count: int) -> int:
    """'(b)' or 'b' -> 1."""
    match = re.fullmatch(r"\s*\(?([a-z])\)?\s*", answer_text, re.IGNORECASE)
    if match is None or not 0 <= ord(match.group(1).lower()) - ord("a") < count:
        raise ValueError(f"correct answer must be a letter among the {count} options, got {answer_text!r}")
    return ord(match.group(1).lower()) - ord("a")


def evaluate_mmvp_choices(
    model: Any, questions: Sequence[MMVPQuestion], batch_size: int = 32, show_progress: bool = False
) -> dict[str, Any]:
    """MMVP answered by the generative path, scored by likelihood rather than free generation.

    Each option's text is scored as the answer to [image, question + options] (the summed
    log-probability of its tokens and <eos>, `target_logprobs`); the best-scoring option is the
    model's choice. A pair counts only when both of its questions are right (MMVP's rule), per
    pattern and averaged over patterns; `question_accuracy` scores questions one by one.
    """
    if not questions or len(questions) % 2:
        raise ValueError(f"MMVP questions come in consecutive pairs; got {len(questions)}")
    chosen: list[int] = []
    chunk = max(1, batch_size)
    with tqdm(total=len(questions), desc="mmvp choices", unit="q", disable=not show_progress) as bar:
        for start in range(0, len(questions), chunk):
            part = questions[start : start + chunk]
            documents: list[list[DocumentItem]] = []
            targets: list[list[int]] = []
            for question in part:
                image = question.image.load()
                prompt = f"{question.question} {question.options_text}".strip()
                for option in question.options:
                    documents.append([image, prompt, option])
                    targets.append([2])
            scores = model.target_logprobs(documents, targets, batch_size=batch_size).tolist()
            offset = 0
            for question in part:
                values = scores[offset : offset + len(question.options)]
                offset += len(question.options)
                chosen.append(max(range(len(values)), key=lambda k: values[k]))
            bar.update(len(part))
    right = [c == q.answer for c, q in zip(chosen, questions)]
    pairs = [right[k] and right[k + 1] for k in range(0, len(right), 2)]
    groups = [questions[k].pattern for k in range(0, len(questions), 2)]
    result: dict[str, Any] = {"pairs": len(pairs), "questions": len(questions), **_group_accuracy(pairs, groups)}
    result["question_accuracy"] = sum(right) / len(right)
    result["method"] = (
        "likelihood: each option text scored as the answer after [image, question + options] "
        "(summed log-probability incl. <eos>); a pair counts when both questions are right"
    )
    return result


# ----------------------------------------------------------------------------- POPE


def evaluate_pope(
    model: Any,
    conversations: Sequence[Conversation],
    max_new_tokens: int = 8,
    show_progress: bool = False,
    batch_size: int = 16,
) -> dict[str, Any]:
    """POPE accuracy, precision, recall, F1 and yes-ratio ("yes" positive) per negative type
    and averaged over types; the answer is read as its first yes / no word (unreadable = wrong)."""
    kinds = []
    for conversation in conversations:
        kind = pope_category(conversation)
        if kind is None:
            raise ValueError(f"conversation {conversation.id} is not a POPE question (no pope task / category)")
        kinds.append(kind)
    pairs = [question_and_answer(conversation) for conversation in conversations]
    predictions = generate_batch(model, [p for p, _ in pairs], max_new_tokens, batch_size, show_progress, "pope")
    by_kind: dict[str, tuple[list[str | None], list[str]]] = defaultdict(lambda: ([], []))
    for conversation, kind, (_, answer), prediction in zip(conversations, kinds, pairs, predictions):
        by_kind[kind][0].append(yes_no(prediction))
        by_kind[kind][1].append(_pope_label(conversation, answer))
    result: dict[str, Any] = {}
    for kind, (predictions, labels) in sorted(by_kind.items()):
        result[kind] = {
            **binary_scores(predictions, labels),
            "count": len(labels),
            "unreadable": sum(p is None for p in predictions),
        }
    if result:
        names = ("accuracy", "precision", "recall", "f1", "yes_ratio")
        kinds = list(result)
        result["average"] = {n: sum(result[k][n] for k in kinds) / len(kinds) for n in names}
        result["average"]["count"] = sum(result[k]["count"] for k in kinds)
    return result


# ----------------------------------------------------------------------------- RAG


def _rag_answers(question: Conversation) -> tuple[str, str]:
    """(short answer, reference reply) of a knowledge-base question."""
    answer = question.meta.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError(f"RAG question {question.id} has no 'answer' field")
    if len(question.turns) < 2:
        raise ValueError(f"RAG question {question.id} has no reply turn")
    return answer, question.turns[1][1]


def _gold_ids(question: Conversation) -> list[str]:
    gold = question.meta.get("gold_doc_ids")
    if not isinstance(gold, list) or not gold or not all(isinstance(g, str) for g in gold):
        raise ValueError(f"RAG question {question.id}: 'gold_doc_ids' must be a non-empty list of document ids")
    return gold


def evaluate_rag(
    model: Any,
    questions: Sequence[Conversation],
    knowledge_base: Sequence[Document],
    external: Mapping[str, Encoder] | None = None,
    ks: Sequence[int] = (1, 2, 3),
    generate_count: int | None = None,
    max_new_tokens: int = 16,
    batch_size: int = 32,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Knowledge-base QA without retrieval, with the model's own retrieval (top-k of its own
    embeddings over the knowledge base: one model, no second retriever), with each `external`
    retriever (e.g. the CLIP-style teacher; the same model reads what it retrieves), and with an
    oracle (the first gold document).

    The query is the question as asked (image, then text); retrieved documents go before it,
    most relevant nearest (`sugar.retrieval.rag.augmented_prompt`). Retrieval hit@k (a gold
    document among the top k) is measured on every question; answers are generated for
    `generate_count` questions spread through the file (all when None). Answers are scored by
    normalised exact match against the short answer or the reference reply, and by whether
    they contain the short answer.
    """
    from sugar.retrieval.index import VectorIndex
    from sugar.retrieval.rag import augmented_prompt

    if not questions:
        raise ValueError("no RAG questions")
    if not knowledge_base:
        raise ValueError("the knowledge base is empty")
    ks = sorted(set(ks))
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive, got {ks}")
    ids = [document.id for document in knowledge_base]
    if any(not i for i in ids) or len(set(ids)) != len(ids):
        raise ValueError("knowledge-base documents need unique, non-empty ids")
    store: dict[str, list[DocumentItem]] = {d.id: [_as_item(s) for s in d.segments] for d in knowledge_base}
    known = set(ids)
    for question in questions:
        _rag_answers(question)
        missing = [g for g in _gold_ids(question) if g not in known]
        if missing:
            raise ValueError(f"RAG question {question.id}: gold documents {missing} are not in the knowledge base")
    queries = [question_and_answer(q)[0] for q in questions]

    retrievers: dict[str, Encoder] = {"self": ModelEncoder(model, batch_size=batch_size)}
    for name, encoder in (external or {}).items():
        if name in ("self", "no_retrieval", "oracle"):
            raise ValueError(f"external retriever name {name!r} is reserved")
        retrievers[name] = encoder
    retrieved: dict[str, list[list[str]]] = {}
    retrieval: dict[str, dict[str, float]] = {}
    for name, encoder in retrievers.items():
        index = VectorIndex.build(encode_in_chunks(encoder, [d.segments for d in knowledge_base]), ids)
        found = index.search(encode_in_chunks(encoder, queries), max(ks)).ids
        retrieved[name] = found
        retrieval[name] = {
            f"hit@{k}": sum(bool(set(row[:k]) & set(_gold_ids(q))) for row, q in zip(found, questions)) / len(questions)
            for k in ks
        }

    chosen = spread(list(range(len(questions))), generate_count)
    rows: dict[str, Any] = {"no_retrieval": lambda i: []}
    for name in retrievers:
        for k in ks:
            rows[f"{name}_k{k}"] = lambda i, name=name, k=k: retrieved[name][i][:k]
    rows["oracle"] = lambda i: _gold_ids(questions[i])[:1]
    prompts = [
        augmented_prompt(queries[i], [store[d] for d in documents_of(i)]) for documents_of in rows.values() for i in chosen
    ]
    predictions = iter(generate_batch(model, prompts, max_new_tokens, batch_size, show_progress, "rag"))
    answers: dict[str, dict[str, Any]] = {}
    for row in rows:
        exact, contained, examples = 0, 0, []
        for i in chosen:
            prediction = next(predictions)
            answer, reply = _rag_answers(questions[i])
            exact += exact_match(prediction, [answer, reply])
            contained += contains_answer(prediction, answer)
            if len(examples) < 3:
                examples.append({"id": questions[i].id, "prediction": prediction, "answer": answer})
        count = max(len(chosen), 1)
        answers[row] = {"exact_match": exact / count, "contains_answer": contained / count, "examples": examples}
    return {
        "questions": len(questions),
        "answered": len(chosen),
        "knowledge_base": len(knowledge_base),
        "ks": list(ks),
        "retrieval": retrieval,
        "rows": answers,
        "query": "the question as asked: image, then question text",
    }


# ----------------------------------------------------------------------------- WebQA


def webqa_fields(item: Document) -> tuple[str, str, int]:
    """(question, answer, relevant position) from a WebQA-style item's meta."""
    meta = item.meta
    question, answer, position = meta.get("question"), meta.get("answer"), meta.get("relevant_position")
    position_ok = isinstance(position, int) and not isinstance(position, bool)
    if not isinstance(question, str) or not isinstance(answer, str) or not position_ok:
        raise ValueError(
            f"WebQA item {item.id}: meta needs 'question' (str), 'answer' (str) and 'relevant_position' (int)"
        )
    return question, answer, position


def evaluate_webqa(
    model: Any, items: Sequence[Document], max_new_tokens: int = 8, show_progress: bool = False, batch_size: int = 16
) -> dict[str, Any]:
    """Multi-source QA: the sources (image, text pairs) then the question, one generated answer.

    Accuracy is WebQA-style keyword accuracy (the answer word appears in the reply); exact match
    is reported beside it. Both are broken down by the position of the relevant source, the
    position curve: flat when the model reads every source equally well."""
    if not items:
        raise ValueError("no WebQA items")
    hits: dict[int, list[bool]] = defaultdict(list)
    exact: dict[int, list[bool]] = defaultdict(list)
    fields = [webqa_fields(item) for item in items]
    prompts = [[_as_item(s) for s in item.segments] + [question] for item, (question, _, _) in zip(items, fields)]
    predictions = generate_batch(model, prompts, max_new_tokens, batch_size, show_progress, "webqa")
    for (_, answer, position), prediction in zip(fields, predictions):
        hits[position].append(contains_answer(prediction, answer))
        exact[position].append(exact_match(prediction, answer))
    positions = sorted(hits)
    every = [h for p in positions for h in hits[p]]
    every_exact = [h for p in positions for h in exact[p]]
    return {
        "items": len(items),
        "accuracy": sum(every) / len(every),
        "exact_match": sum(every_exact) / len(every_exact),
        "by_position": {str(p): sum(hits[p]) / len(hits[p]) for p in positions},
        # how far the curve is from flat: best position's accuracy minus the worst's
        "position_spread": max(sum(hits[p]) / len(hits[p]) for p in positions)
        - min(sum(hits[p]) / len(hits[p]) for p in positions),
        "exact_by_position": {str(p): sum(exact[p]) / len(exact[p]) for p in positions},
        "count_by_position": {str(p): len(hits[p]) for p in positions},
        # the spread a truly flat curve shows from sampling alone: a smaller measured one is no bias
        "flat_spread": flat_range(sum(every) / len(every), [len(hits[p]) for p in positions]),
    }
