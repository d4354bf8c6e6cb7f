"""`sugar encode`, `sugar index build|search`, `sugar generate`: inference from the command line.

Every command checks its paths, values and the model/index/documents pairing before it loads
the model (`sugar.checks`), so a wrong argument costs milliseconds and leaves nothing behind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from sugar.checks import (
    UsageError,
    check_index_dir,
    check_model_dir,
    check_output_dir,
    check_output_file,
    check_text,
    existing_dir,
    existing_file,
    file_sha256,
    is_index_dir,
    model_embedding_dim,
    model_fingerprint,
    non_negative_int,
    positive_int,
)

FORMATS = ("interleaved", "coco_karpathy", "vist_sis", "winoground", "mmvp_vlm", "llava", "mmc4")
FORMAT_HELP = "input format (see sugar.data.FORMATS): interleaved, coco_karpathy, vist_sis, winoground, mmvp_vlm, llava, mmc4"


def _add_documents_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="documents file")
    parser.add_argument("--format", default="interleaved", choices=FORMATS, help=FORMAT_HELP)
    parser.add_argument("--image-root", help="folder image paths are relative to (default: the input's folder)")
    parser.add_argument("--batch-size", type=positive_int, default=32)


def _check_documents_arguments(args: argparse.Namespace, flag: str = "--input") -> None:
    existing_file(args.input, flag)
    if args.image_root is not None:
        existing_dir(args.image_root, "--image-root")


def _load_documents(args: argparse.Namespace, flag: str = "--input") -> tuple[list[str], list[list[Any]]]:
    """Documents with their images decoded (a broken image is named now, before the model loads)."""
    from sugar.data import ImageRef, load_documents

    path = Path(args.input)
    root = Path(args.image_root) if args.image_root else path.parent
    documents = load_documents(path, format=args.format, image_root=root)
    if not documents:
        raise UsageError(f"{flag} {path}: expected at least one {args.format} document, found none")
    ids = [d.id or f"{path.name}:{i}" for i, d in enumerate(documents)]
    items = [[s.load() if isinstance(s, ImageRef) else s for s in d.segments] for d in documents]
    return ids, items


def _query(args: argparse.Namespace) -> list[Any]:
    """The decoded query: images first, then texts."""
    from sugar.data import ImageRef

    check_text(args.text, "--text")
    if not args.image and not args.text:
        raise UsageError("--text/--image: expected a query (at least one --text or --image), found none")
    for path in args.image or []:
        existing_file(path, "--image")
    items: list[Any] = [ImageRef(p).load() for p in args.image or []]
    items += list(args.text or [])
    return items


def _check_pairing(model_dir: str, meta: dict[str, Any], index_dir: str) -> None:
    """The index must come from this model: other weights embed into another space."""
    dim = model_embedding_dim(Path(model_dir))
    if dim != meta["dim"]:
        raise UsageError(
            f"--model {model_dir}: expected the model that built --index {index_dir} ({meta.get('model', 'unknown')}, "
            f"embeddings of dimension {meta['dim']}), found a model with dimension {dim}"
        )
    recorded = meta.get("model_sha256")
    if recorded is not None and recorded != model_fingerprint(model_dir):
        raise UsageError(
            f"--model {model_dir}: expected the model that built --index {index_dir} ({meta.get('model', 'unknown')}), "
            "found a model with other weights; use that model, or rebuild the index with this one"
        )


def _model(path: str) -> Any:
    from sugar.models import SugarModel

    model = SugarModel.from_pretrained(path)
    model.eval()
    return model


def _embed(args: argparse.Namespace, documents: list[list[Any]]) -> Any:
    import torch

    vectors = _model(args.model).encode(documents, batch_size=args.batch_size)
    if not bool(torch.isfinite(vectors).all()):
        raise ValueError(f"--model {args.model}: the model produced NaN or inf embeddings; its weights are unusable")
    return vectors


def _is_embeddings_file(path: Path) -> bool:
    """True for a file `sugar encode` wrote (a safetensors file with ids in its metadata)."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            return "ids" in metadata and list(handle.keys()) == ["embeddings"]
    except Exception:
        return False


def register(subparsers: argparse._SubParsersAction) -> None:
    encode = subparsers.add_parser(
        "encode", help="embed documents with a trained model", description="Embed every document of a file into one L2-normalised vector."
    )
    encode.add_argument("--model", required=True, help="a saved SugarModel folder")
    _add_documents_arguments(encode)
    encode.add_argument(
        "--out", required=True,
        help="output .safetensors (tensor 'embeddings', ids in metadata); an existing file is replaced only if `sugar encode` wrote it",
    )
    encode.set_defaults(func=run_encode)

    index = subparsers.add_parser("index", help="build or search a FAISS index of a model's embeddings")
    actions = index.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="encode documents and save an index", description="Encode documents and save a FAISS index (atomic).")
    build.add_argument("--model", required=True, help="a saved SugarModel folder")
    _add_documents_arguments(build)
    build.add_argument(
        "--out", required=True,
        help="index folder to write: new, empty, or an earlier index (replaced); any other folder is refused",
    )
    build.set_defaults(func=run_index_build)
    search = actions.add_parser("search", help="search an index with a text and/or image query", description="Print the k nearest documents as JSON lines.")
    search.add_argument("--model", required=True, help="the model that built the index")
    search.add_argument("--index", required=True, help="index folder")
    search.add_argument("--text", action="append", help="query text (repeatable)")
    search.add_argument("--image", action="append", help="query image file (repeatable)")
    search.add_argument("-k", type=positive_int, default=5)
    search.set_defaults(func=run_index_search)

    generate = subparsers.add_parser(
        "generate",
        help="generate text from a prompt (optionally with retrieval)",
        description="Greedy generation from an image/text prompt. With --index and --documents, the model first "
        "retrieves k documents with its own embeddings and reads them as context (RAG).",
    )
    generate.add_argument("--model", required=True, help="a saved SugarModel folder")
    generate.add_argument("--text", action="append", help="prompt text (repeatable)")
    generate.add_argument("--image", action="append", help="prompt image file (repeatable; images come first)")
    generate.add_argument("--max-new-tokens", type=non_negative_int, default=32)
    generate.add_argument("--index", help="index folder built with `sugar index build` (enables RAG)")
    generate.add_argument("--documents", help="the documents file the index was built from")
    generate.add_argument("--format", default="interleaved", choices=FORMATS, help=FORMAT_HELP)
    generate.add_argument("--image-root", help="folder the documents' image paths are relative to")
    generate.add_argument("-k", type=positive_int, default=1, help="documents to retrieve")
    generate.set_defaults(func=run_generate)


def run_encode(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    check_model_dir(args.model)
    _check_documents_arguments(args)
    out = check_output_file(args.out, "--out", own=_is_embeddings_file)
    ids, documents = _load_documents(args)
    vectors = _embed(args, documents)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        save_file({"embeddings": vectors.contiguous()}, str(temporary), metadata={"ids": json.dumps(ids), "model": str(args.model)})
        temporary.replace(out)
    finally:
        temporary.unlink(missing_ok=True)
    print(f"wrote {len(ids)} embeddings of dimension {vectors.shape[1]} to {out}")
    return 0


def run_index_build(args: argparse.Namespace) -> int:
    from sugar.retrieval import VectorIndex

    check_model_dir(args.model)
    _check_documents_arguments(args)
    out = check_output_dir(args.out, "--out", own=is_index_dir, what="an index written by `sugar index build`")
    ids, documents = _load_documents(args)
    vectors = _embed(args, documents)
    meta = {
        "model": str(args.model),
        "model_sha256": model_fingerprint(args.model),
        "documents": str(args.input),
        "documents_sha256": file_sha256(Path(args.input)),
        "format": args.format,
    }
    path = VectorIndex.build(vectors, ids, meta).save(out)
    print(f"indexed {len(ids)} documents in {path}")
    return 0


def run_index_search(args: argparse.Namespace) -> int:
    from sugar.retrieval import VectorIndex
    from sugar.retrieval.rag import retrieve

    check_model_dir(args.model)
    meta = check_index_dir(args.index)
    _check_pairing(args.model, meta, args.index)
    query = _query(args)
    index = VectorIndex.load(args.index)
    ids, scores = retrieve(_model(args.model), query, index, args.k)
    for rank, (identifier, score) in enumerate(zip(ids, scores), start=1):
        print(json.dumps({"rank": rank, "id": identifier, "score": round(score, 6)}))
    return 0


def run_generate(args: argparse.Namespace) -> int:
    check_model_dir(args.model)
    if args.index is None:
        if args.documents is not None:
            raise UsageError("--documents: only used with --index (RAG); give --index too, or drop --documents")
        query = _query(args)
        print(_model(args.model).generate(query, max_new_tokens=args.max_new_tokens))
        return 0
    if args.documents is None:
        raise UsageError("--index: needs --documents (the file the index was built from), found none")
    meta = check_index_dir(args.index)
    _check_pairing(args.model, meta, args.index)
    documents_args = argparse.Namespace(input=args.documents, format=args.format, image_root=args.image_root)
    _check_documents_arguments(documents_args, "--documents")
    recorded = meta.get("documents_sha256")
    if recorded is not None and recorded != file_sha256(Path(args.documents)):
        raise UsageError(
            f"--documents {args.documents}: expected the file --index {args.index} was built from "
            f"({meta.get('documents', 'unknown')}), found a file with other contents; rebuild the index from it"
        )
    query = _query(args)
    from sugar.retrieval import VectorIndex
    from sugar.retrieval.rag import generate_with_retrieval

    index = VectorIndex.load(args.index)
    ids, documents = _load_documents(documents_args, "--documents")
    store = dict(zip(ids, documents))
    absent = [i for i in index.ids if i not in store]
    if absent:
        raise UsageError(
            f"--documents {args.documents}: expected every id of --index {args.index}, found {len(absent)} missing "
            f"(first: {absent[0]!r}); pass the file the index was built from"
        )
    answer, used = generate_with_retrieval(
        _model(args.model), query, index, store, k=args.k, max_new_tokens=args.max_new_tokens
    )
    print(answer)
    print(json.dumps({"retrieved": used}), file=sys.stderr)
    return 0
