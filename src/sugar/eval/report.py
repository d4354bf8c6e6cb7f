"""The demo's report: one markdown page from metrics.json, numbers first, caveats beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sugar.fileio import atomic_write_text

MODEL_NAMES = {
    "base": "base (generative only)",
    "sugar": "Sugar (L_g + alpha L_d)",
    "teacher": "cross-modal teacher (CLIP-style)",
}


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}" if isinstance(value, (int, float)) else "-"


def _get(metrics: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return metrics


def retrieval_table(models: dict[str, Any]) -> list[str]:
    lines = [
        "| model | T->I R@1 | T->I R@5 | T->I R@10 | I->T R@1 | I->T R@5 | I->T R@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in models.items():
        cells = [_pct(_get(result, "retrieval", d, f"r@{k}")) for d in ("t2i", "i2t") for k in (1, 5, 10)]
        lines.append(f"| {MODEL_NAMES.get(name, name)} | " + " | ".join(cells) + " |")
    return lines


def winoground_table(models: dict[str, Any]) -> list[str]:
    lines = ["| model | text | image | group |", "|---|---|---|---|"]
    for name, result in models.items():
        cells = [_pct(_get(result, "winoground", k)) for k in ("text", "image", "group")]
        lines.append(f"| {MODEL_NAMES.get(name, name)} | " + " | ".join(cells) + " |")
    return lines


def interleaved_table(models: dict[str, Any]) -> list[str]:
    lines = [
        "| model | 5c R@1 | 5c R@5 | 5c R@10 | 5c+4i R@1 | 5c+4i R@5 | 5c+4i R@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in models.items():
        cells = [_pct(_get(result, "interleaved", p, f"r@{k}")) for p in ("5c", "5c4i") for k in (1, 5, 10)]
        lines.append(f"| {MODEL_NAMES.get(name, name)} | " + " | ".join(cells) + " |")
    return lines


def qa_table(models: dict[str, Any]) -> list[str]:
    types = sorted({t for r in models.values() for t in (_get(r, "pope", "by_type") or {})})
    lines = [
        "| model | VQA accuracy | questions | POPE F1 (mean) | " + " | ".join(f"POPE F1 {t}" for t in types) + " |",
        "|---|---|---|---|" + "---|" * len(types),
    ]
    for name, result in models.items():
        if _get(result, "qa") is None:
            continue
        per_type = [_pct(_get(result, "pope", "by_type", t, "f1")) for t in types]
        lines.append(
            f"| {MODEL_NAMES.get(name, name)} | {_pct(_get(result, 'qa', 'accuracy'))} | {_get(result, 'qa', 'count')} | "
            f"{_pct(_get(result, 'pope', 'f1'))} | " + " | ".join(per_type) + " |"
        )
    return lines


RAG_ROWS = {
    "none": "no retrieval",
    "self_k1": "own retrieval, k=1",
    "self_k3": "own retrieval, k=3",
    "teacher_k1": "teacher as retriever, k=1",
    "oracle": "oracle (gold document)",
}


def rag_table(models: dict[str, Any]) -> list[str]:
    lines = ["| model | " + " | ".join(RAG_ROWS.values()) + " | own hit@1 | teacher hit@1 |", "|---|" + "---|" * (len(RAG_ROWS) + 2)]
    for name, result in models.items():
        if _get(result, "rag") is None:
            continue
        cells = [_pct(_get(result, "rag", row, "accuracy")) for row in RAG_ROWS]
        hits = [_pct(_get(result, "rag", row, "hit@1")) for row in ("self_k1", "teacher_k1")]
        lines.append(f"| {MODEL_NAMES.get(name, name)} | " + " | ".join(cells + hits) + " |")
    return lines


def _machine_lines(machine: dict[str, Any] | None) -> list[str]:
    if not machine:  # a report from before the demo recorded its machine
        return []
    native = "native bf16" if machine.get("cpu_native_bf16") else "no native bf16"
    return [
        f"Machine: {machine.get('processor')}, {machine.get('torch_threads')} torch threads, "
        f"{machine.get('cpu_precision')} on the CPU ({native}).",
        "",
    ]


def write_demo_report(out: Path, metrics: dict[str, Any]) -> Path:
    models = metrics["models"]
    config = metrics.get("config", {})
    times = metrics.get("wall_time_seconds", {})
    fit = metrics.get("teacher_fit") or {}
    quick = metrics.get("quick", False)
    lines = [
        "# Sugar demo report" + (" (QUICK LOOK: a few training steps, not the demo's numbers)" if quick else ""),
        "",
        f"Model: `{_get(metrics, 'model', 'lm')}` behind a frozen `{_get(metrics, 'model', 'vision_tower')}` tower. "
        f"World scale `{metrics.get('world_scale')}`, seed {metrics['seeds']['world']}; "
        f"all numbers in percent on the world's held-out **test** split.",
        "",
        "## Image-text retrieval (every caption a query for its image; every image for its 5 captions)",
        "",
        *retrieval_table(models),
        "",
        "## Winoground-style fine-grained matching (same words, different order)",
        "",
        *winoground_table(models),
        "",
        "Scores as in Winoground: *text* = each image prefers its own caption, *image* = each caption "
        "prefers its own image, *group* = both.",
        "",
        "## Interleaved retrieval (VIST-style: a story's 5 captions, or 5 captions and 4 images, -> its last image)",
        "",
        *interleaved_table(models),
        "",
        "## Question answering (generation): open VQA and POPE yes/no per negative type",
        "",
        *qa_table(models),
        "",
        "## Knowledge-base questions (RAG): the model answers with what it retrieves itself",
        "",
        *rag_table(models),
        "",
        "Accuracy: the short answer (a creature's name, colour or shape) appears in the reply; hit@1: "
        "a gold document is the top retrieved one. The teacher rows use the teacher as retriever and the "
        "same MLLM as reader.",
        "",
        "## How to read this",
        "",
        "- **base** is trained with the generative loss only. Its embeddings use the same pooling "
        "with an untrained retrieval head: a floor that shows what generative training alone puts "
        "into the hidden states, not a rival retriever.",
        "- **Sugar** continues from base with L_g + alpha * L_d "
        f"(alpha = {config.get('alpha')}, delta = {config.get('delta')}, "
        f"{config.get('prefixes_per_document')} prefixes per document, "
        f"targets: `{config.get('target_structure')}` over the `{config.get('teacher_kernel')}` kernel, "
        f"L_d: `{config.get('discriminative_loss')}`, {config.get('steps')} steps).",
        "- **cross-modal teacher** is the LiT-style model fitted on the frozen experts "
        f"(its own held-out fit: {_fit_summary(fit)}); it is the CLIP-style baseline Sugar learns "
        "from, and cannot read interleaved documents.",
        "",
        "## Pictures",
        "",
        *[line for name, path in (metrics.get("pictures") or {}).items() for line in (f"**{name}**", "", f"![{name}]({path})", "")],
        "## Run",
        "",
        "| stage | wall time (s) |",
        "|---|---|",
        *[f"| {stage} | {seconds} |" for stage, seconds in times.items()],
        "",
        f"Peak memory (resident set): {metrics.get('peak_rss_gb')} GB.",
        "",
        *_machine_lines(metrics.get("machine")),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in metrics.get("versions", {}).items()),
        "",
        "Full numbers (per-tag Winoground, POPE precision / recall, RAG exact match): `metrics.json` and `eval/`.",
        "",
    ]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def _fit_summary(fit: dict[str, Any]) -> str:
    test = _get(fit, "test") or _get(fit, "metrics", "test")
    if not isinstance(test, dict):
        return "see teachers/metrics.json"
    parts = []
    for direction in ("i2t", "t2i"):
        if isinstance(test.get(direction), dict):
            parts.append(f"{direction} R@1 {_pct(test[direction].get('r@1'))}")
    return ", ".join(parts) or "see teachers/metrics.json"
