"""A SugarModel as an lmms-eval model ("simple" interface of lmms-eval 0.7), registered as "sugar".

lmms-eval finds models through its registry of manifests (`lmms_eval.models.MODEL_REGISTRY_V2`),
filled from its built-in list and from the Python entry-point group "lmms_eval.models". Either
declare the entry point in the installing project,

    [project.entry-points."lmms_eval.models"]
    sugar = "sugar.eval.harness.lmms_adapter:lmms_eval_manifest"

or call `register_with_lmms_eval()` before `lmms_eval.evaluator.simple_evaluate(model="sugar",
model_args="pretrained=<folder>")`.

Requests follow lmms-eval's task layout (`Instance.args`):

- generate_until: (context, generation_kwargs, doc_to_visual, doc_id, task, split)
- loglikelihood: (context, continuation or doc_to_target, doc_to_visual, doc_id, task, split),
  or (context, continuation) for the unconditional scores of `acc_mutual_info`
- generate_until_multi_round: (context, generation_kwargs, doc_to_visual, doc_to_text, doc_id,
  task, split); later rounds come from `doc_to_text(doc, previous_output=..., round_idx=...,
  previous_round_info=...)` -> (visuals, context, terminal, outputs, round_info)

and `self.task_dict[task][split][doc_id]` is the document the evaluator set. The prompt is a
Sugar document: each `<image>` in the context is replaced by the next visual, and visuals the
context does not place come first (LLaVA's convention). A loglikelihood continuation is its own
text segment after the prompt, as an answer is in Sugar's training rows, so its leading
delimiter is dropped for the model's segment separator.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from lmms_eval.models.registry_v2 import ModelManifest
from PIL import Image
from tqdm.auto import tqdm

from sugar.models import IGNORE_INDEX, SugarModel

MODEL_ID = "sugar"
IMAGE_PLACEHOLDER = "<image>"
DocumentItem = str | Image.Image


def lmms_eval_manifest() -> ModelManifest:
    """lmms-eval's registration record for `SugarLMMS` (the entry-point payload)."""
    return ModelManifest(model_id=MODEL_ID, simple_class_path=f"{__name__}.{SugarLMMS.__name__}")


def register_with_lmms_eval() -> None:
    """Make `lmms_eval.models.get_model("sugar")` resolve to `SugarLMMS` in this process."""
    from lmms_eval.models import MODEL_REGISTRY_V2

    MODEL_REGISTRY_V2.register_manifest(lmms_eval_manifest(), overwrite=True)


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """`text` up to the earliest stop string (lmms-eval's `until`)."""
    end = len(text)
    for stop in stops:
        if stop:
            found = text.find(stop)
            if found != -1:
                end = min(end, found)
    return text[:end]


def _positive_int(value: int | str, name: str) -> int:
    """lmms-eval passes command-line values as strings; "auto" batch sizes have no meaning here."""
    if isinstance(value, bool) or (isinstance(value, str) and not value.strip().isdigit()) or int(value) <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


class SugarLMMS(lmms):
    """lmms-eval model over a SugarModel: greedy generation and continuation log-likelihoods."""

    is_simple = True

    def __init__(
        self,
        pretrained: str | os.PathLike[str] | SugarModel,
        device: str | None = None,
        batch_size: int | str = 1,
        max_batch_size: int | None = None,
        max_new_tokens: int = 32,
        image_token: str = IMAGE_PLACEHOLDER,
        show_progress: bool = False,
    ) -> None:
        """`pretrained`: a folder written by `SugarModel.save_pretrained`, or a model. `batch_size`
        batches loglikelihood rows (generation runs one document at a time); `max_batch_size` is
        accepted because lmms-eval's evaluator passes it, and unused."""
        super().__init__()
        model = pretrained if isinstance(pretrained, SugarModel) else SugarModel.from_pretrained(pretrained)
        chosen = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self._model = model.to(chosen).eval()
        self._device = chosen
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.max_new_tokens = _positive_int(max_new_tokens, "max_new_tokens")
        self.image_token = image_token
        self.show_progress = show_progress
        self._warned_sampling = False

    @property
    def model(self) -> SugarModel:
        return self._model

    @property
    def device(self) -> torch.device:
        return self._device

    # ------------------------------------------------------------------ prompts
    def _doc(self, task: str, split: str, doc_id: int) -> Any:
        try:
            return self.task_dict[task][split][doc_id]
        except (KeyError, IndexError) as error:
            raise KeyError(f"no document {doc_id} of task {task!r} split {split!r} in task_dict") from error

    @staticmethod
    def _images(visuals: Any) -> list[Image.Image]:
        """A task's visuals as PIL images; videos and audio are refused."""
        if visuals is None:
            return []
        items = list(visuals) if isinstance(visuals, (list, tuple)) else [visuals]
        for item in items:
            if not isinstance(item, Image.Image):
                raise TypeError(f"SugarLMMS reads images only; got a visual of type {type(item).__name__}")
        return items

    def _visuals(self, doc_to_visual: Callable[[Any], Any] | None, doc: Any) -> list[Image.Image]:
        return self._images(doc_to_visual(doc) if doc_to_visual is not None else None)

    def document(self, context: str, images: Sequence[Image.Image]) -> list[DocumentItem]:
        """The Sugar document for a context and its images (see the module docstring)."""
        if self.image_token and self.image_token in context:
            pieces = context.split(self.image_token)
            if len(pieces) - 1 != len(images):
                raise ValueError(
                    f"the context places {len(pieces) - 1} {self.image_token!r} tokens but the task gives "
                    f"{len(images)} images"
                )
            document: list[DocumentItem] = []
            for index, piece in enumerate(pieces):
                if piece.strip():
                    document.append(piece.strip())
                if index < len(images):
                    document.append(images[index])
            return document
        return [*images, *([context.strip()] if context.strip() else [])]

    # ------------------------------------------------------------------ generation
    def _generate(self, document: list[DocumentItem], generation_kwargs: Mapping[str, Any] | None) -> str:
        kwargs = dict(generation_kwargs or {})
        until = kwargs.get("until") or []
        stops = [until] if isinstance(until, str) else list(until)
        limit = _positive_int(kwargs.get("max_new_tokens", self.max_new_tokens), "max_new_tokens")
        sampling = bool(kwargs.get("do_sample")) or float(kwargs.get("temperature") or 0) > 0
        if (sampling or int(kwargs.get("num_beams") or 1) > 1) and not self._warned_sampling:
            warnings.warn("SugarLMMS decodes greedily; sampling and beam-search settings are ignored", stacklevel=3)
            self._warned_sampling = True
        if not document:
            raise ValueError("empty prompt: the request has neither context text nor images")
        # Greedy decoding: cutting the finished text at a stop string equals stopping there.
        return cut_at_stops(self._model.generate(document, max_new_tokens=limit), stops)

    def generate_until(self, requests: list[Instance]) -> list[str]:
        results: list[str] = []
        for request in tqdm(requests, desc="sugar generate", disable=not self.show_progress):
            context, generation_kwargs, doc_to_visual, doc_id, task, split = request.args
            images = self._visuals(doc_to_visual, self._doc(task, split, doc_id))
            text = self._generate(self.document(context, images), generation_kwargs)
            self.cache_hook.add_partial("generate_until", (context, generation_kwargs), text)
            results.append(text)
        return results

    def generate_until_multi_round(self, requests: list[Instance]) -> list[list[str]]:
        """One list of answers per request, one answer per round, until `doc_to_text` signals the end."""
        results: list[list[str]] = []
        for request in tqdm(requests, desc="sugar multi-round", disable=not self.show_progress):
            context, generation_kwargs, doc_to_visual, doc_to_text, doc_id, task, split = request.args
            doc = self._doc(task, split, doc_id)
            images = self._visuals(doc_to_visual, doc)
            outputs: list[str] = []
            round_info: Any = None
            while True:
                if outputs:
                    visuals, context, terminal, _, round_info = doc_to_text(
                        doc, previous_output=list(outputs), round_idx=len(outputs), previous_round_info=round_info
                    )
                    if terminal:
                        break
                    images = self._images(visuals)
                outputs.append(self._generate(self.document(context, images), generation_kwargs))
            results.append(outputs)
        return results

    # ------------------------------------------------------------------ scoring
    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """(summed log-probability of the continuation's tokens, whether greedy decoding gives them)."""
        rows: list[list[DocumentItem]] = []
        for request in requests:
            args = request.args
            if len(args) == 2:
                context, continuation = args
                images: list[Image.Image] = []
            else:
                context, target, doc_to_visual, doc_id, task, split = args
                doc = self._doc(task, split, doc_id)
                continuation = target if isinstance(target, str) else target(doc)
                images = self._visuals(doc_to_visual, doc)
            if not isinstance(continuation, str) or not continuation.strip():
                raise ValueError(f"loglikelihood needs a non-empty text continuation, got {continuation!r}")
            rows.append([*self.document(context, images), continuation.strip()])
        results: list[tuple[float, bool]] = []
        starts = range(0, len(rows), self.batch_size)
        for start in tqdm(starts, desc="sugar loglikelihood", disable=not self.show_progress):
            results.extend(self._score(rows[start : start + self.batch_size]))
        return results

    @torch.no_grad()
    def _score(self, documents: list[list[DocumentItem]]) -> list[tuple[float, bool]]:
        model = self._model
        batch = model.processor(documents, targets=[[len(d) - 1] for d in documents], add_eos=False)
        if any(batch.truncated):
            raise ValueError(
                f"a prompt with its continuation is longer than max_length={model.config.max_length} tokens"
            )
        batch = batch.to(self._device)
        assert batch.labels is not None
        hidden = model.hidden_states(batch)
        labels = batch.labels[:, 1:]
        chosen = labels != IGNORE_INDEX
        logits = model.backbone.logits(hidden[:, :-1][chosen]).float()  # continuation positions only
        tokens = labels[chosen]
        logprobs = torch.log_softmax(logits, -1).gather(1, tokens.unsqueeze(1)).squeeze(1)
        misses = (logits.argmax(-1) != tokens).float()
        owner = chosen.nonzero()[:, 0]
        totals = torch.zeros(len(documents), device=logits.device).index_add(0, owner, logprobs)
        missed = torch.zeros(len(documents), device=logits.device).index_add(0, owner, misses)
        return [(float(total), bool(miss == 0)) for total, miss in zip(totals.tolist(), missed.tolist())]
