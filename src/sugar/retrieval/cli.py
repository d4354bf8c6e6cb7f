"""`sugar encode`, `sugar index build|search`, `sugar generate`: inference from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

FORMAT_HELP = "input format (see sugar.data.FORMATS): interleaved, coco_karpathy, vist_sis, winoground, mmvp_vlm, llava, mmc4"


def _add_documents_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="documents file")
    parser.add_argument("--format", default="interleaved", help=FORMAT_HELP)
    parser.add_argument("--image-root", help="folder image paths are relative to (default: the input's folder)")
    parser.add_argument("--batch-size", type=int, default=32)


def _load_documents(args: argparse.Namespace) -> tuple[list[str], list[list[Any]]]:
    from sugar.data import ImageRef, load_documents

    path = Path(args.input)
    root = Path(args.image_root) if args.image_root else path.parent
    documents = load_documents(path, format=args.format, image_root=root)
    ids = [d.id or f"{path.name}:{i}" for i, d in enumerate(documents)]
    items = [[s.load() if isinstance(s, ImageRef) else s for s in d.segments] for d in documents]
    return ids, items


def _query(args: argparse.Namespace) -> list[Any]:
    from sugar.data import ImageRef

    items: list[Any] = [ImageRef(p).load() for p in args.image or []]
    items += list(args.text or [])
    if not items:
        raise ValueError("give the query as --text and/or --image (images come first)")
    return items


def _model(path: str) -> Any:
    from sugar.models import SugarModel

    model = SugarModel.from_pretrained(path)
    model.eval()
    return model


def register(subparsers: argparse._SubParsersAction) -> None:
    encode = subparsers.add_parser(
        "encode", help="embed documents with a trained model", description="Embed every document of a file into one L2-normalised vector."
    )
    encode.add_argument("--model", required=True, help="a saved SugarModel folder")
    _add_documents_arguments(encode)
    encode.add_argument("--out", required=True, help="output .safetensors (tensor 'embeddings', ids in metadata)")
    encode.set_defaults(func=run_encode)

    index = subparsers.add_parser("index", help="build or search a FAISS index of a model's embeddings")
    actions = index.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="encode documents and save an index", description="Encode documents and save a FAISS index (atomic).")
    build.add_argument("--model", required=True, help="a saved SugarModel folder")
    _add_documents_arguments(build)
    build.add_argument("--out", required=True, help="index folder to write")
    build.set_defaults(func=run_index_build)
    search = actions.add_parser("search", help="search an index with a text and/or image query", description="Print the k nearest documents as JSON lines.")
    search.add_argument("--model", required=True, help="the model that built the index")
    search.add_argument("--index", required=True, help="index folder")
    search.add_argument("--text", action="append", help="query text (repeatable)")
    search.add_argument("--image", action="append", help="query image file (repeatable)")
    search.add_argument("-k", type=int, default=5)
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
    generate.add_argument("--max-new-tokens", type=int, default=32)
    generate.add_argument("--index", help="index folder built with `sugar index build` (enables RAG)")
    generate.add_argument("--documents", help="the documents file the index was built from")
    generate.add_argument("--format", default="interleaved", help=FORMAT_HELP)
    generate.add_argument("--image-root", help="folder the documents' image paths are relative to")
    generate.add_argument("-k", type=int, default=1, help="documents to retrieve")
    generate.set_defaults(func=run_generate)


def run_encode(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    ids, documents = _load_documents(args)
    vectors = _model(args.model).encode(documents, batch_size=args.batch_size)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp")
    save_file({"embeddings": vectors.contiguous()}, str(temporary), metadata={"ids": json.dumps(ids), "model": str(args.model)})
    temporary.replace(out)
    print(f"wrote {len(ids)} embeddings of dimension {vectors.shape[1]} to {out}")
    return 0


def run_index_build(args: argparse.Namespace) -> int:
    from sugar.retrieval import VectorIndex

    ids, documents = _load_documents(args)
    vectors = _model(args.model).encode(documents, batch_size=args.batch_size)
    meta = {"model": str(args.model), "documents": str(args.input), "format": args.format}
    path = VectorIndex.build(vectors, ids, meta).save(args.out)
    print(f"indexed {len(ids)} documents in {path}")
    return 0


def run_index_search(args: argparse.Namespace) -> int:
    from sugar.retrieval import VectorIndex
    from sugar.retrieval.rag import retrieve

    index = VectorIndex.load(args.index)
    ids, scores = retrieve(_model(args.model), _query(args), index, args.k)
    for rank, (identifier, score) in enumerate(zip(ids, scores), start=1):
        print(json.dumps({"rank": rank, "id": identifier, "score": round(score, 6)}))
    return 0


def run_generate(args: argparse.Namespace) -> int:
    model = _model(args.model)
    query = _query(args)
    if args.index is None:
        print(model.generate(query, max_new_tokens=args.max_new_tokens))
        return 0
    if args.documents is None:
        raise ValueError("--index needs --documents (the file the index was built from)")
    from sugar.retrieval import VectorIndex
    from sugar.retrieval.rag import generate_with_retrieval

    documents_args = argparse.Namespace(input=args.documents, format=args.format, image_root=args.image_root)
    ids, documents = _load_documents(documents_args)
    answer, used = generate_with_retrieval(
        model, query, VectorIndex.load(args.index), dict(zip(ids, documents)), k=args.k, max_new_tokens=args.max_new_tokens
    )
    print(answer)
    print(json.dumps({"retrieved": used}), file=sys.stderr)
    return 0
