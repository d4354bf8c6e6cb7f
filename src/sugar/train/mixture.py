"""Training examples and the deterministic batch stream.

Every batch is a pure function of (seed, step, rank): which examples, in which order, and the
caption order inside a pair. So a resumed run sees exactly the batches an uninterrupted run
would, and under several processes the ranks split one global batch without talking.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

Segment = str | Path | Image.Image


@dataclass(frozen=True)
class TrainingExample:
    """One document to train on: its segments (text, or images by path) and which text
    segments carry the generative loss."""

    segments: tuple[Segment, ...]
    targets: tuple[int, ...]
    kind: str
    id: str
    alternates: tuple[tuple[tuple[Segment, ...], tuple[int, ...]], ...] = field(default=(), compare=False)

    def view(self, seed: int, epoch: int) -> tuple[tuple[Segment, ...], tuple[int, ...]]:
        """The form this example takes in a given epoch (pairs alternate image-first / text-first
        and rotate through their captions), chosen by hashing, not by a shared RNG."""
        if not self.alternates:
            return self.segments, self.targets
        digest = hashlib.sha256(f"{seed}:{epoch}:{self.id}".encode()).digest()
        return self.alternates[int.from_bytes(digest[:8], "little") % len(self.alternates)]

    def both_orders(self, seed: int, epoch: int) -> list[tuple[tuple[Segment, ...], tuple[int, ...]]]:
        """Both views of one pair (chosen by hashing among the example's pairs): for captions an
        image -> caption and caption -> image, for rag_pairs a query and its gold document."""
        if len(self.alternates) < 2 or len(self.alternates) % 2:
            raise ValueError(f"example {self.id!r} ({self.kind}) has no paired views")
        digest = hashlib.sha256(f"{seed}:{epoch}:{self.id}:pair".encode()).digest()
        pair = int.from_bytes(digest[:8], "little") % (len(self.alternates) // 2)
        return [self.alternates[2 * pair], self.alternates[2 * pair + 1]]


def caption_examples(records: Sequence[tuple[Path, Sequence[str], str]]) -> list[TrainingExample]:
    """(image path, captions, id) -> one example per image; each epoch picks one caption and
    an order: image then caption (captioning) or caption then image (so text-first prefixes,
    the shape of text queries, are trained too)."""
    examples = []
    for image, captions, identifier in records:
        if not captions:
            raise ValueError(f"caption record {identifier} has no captions")
        forms = []
        for caption in captions:
            forms.append(((image, caption), (1,)))
            forms.append(((caption, image), (0,)))
        examples.append(TrainingExample(forms[0][0], forms[0][1], "captions", identifier, tuple(forms)))
    return examples


class BatchStream:
    """Fixed counts of each kind per process per micro-batch, drawn without replacement from a
    per-epoch permutation of each pool.

    A kind in `paired` (captions, rag_pairs) fills its count with half as many items, each as both
    of its views, so an image and its caption (or a question and its document) meet in the batch
    as separate documents: the discriminative loss then sees matched prefixes, not only unrelated ones.
    """

    def __init__(
        self,
        pools: dict[str, Sequence[TrainingExample]],
        counts: dict[str, int],
        seed: int,
        paired: Sequence[str] = (),
    ) -> None:
        for kind, count in counts.items():
            if count and not pools.get(kind):
                raise ValueError(f"the mix asks for {count} {kind!r} examples per batch, but there are none")
            if kind in paired and count % 2:
                raise ValueError(f"{kind!r} is drawn in pairs of orders: its count in the mix must be even, got {count}")
        self.pools = pools
        self.counts = {kind: count for kind, count in counts.items() if count > 0}
        self.seed = seed
        self.paired = frozenset(paired)
        self._permutations: dict[tuple[str, int], np.ndarray] = {}

    def _permutation(self, kind: str, epoch: int) -> np.ndarray:
        key = (kind, epoch)
        if key not in self._permutations:
            kind_seed = int.from_bytes(hashlib.sha256(f"{self.seed}:{kind}".encode()).digest()[:4], "little")
            generator = np.random.default_rng([kind_seed, epoch])
            self._permutations = {k: v for k, v in self._permutations.items() if k[0] != kind or k[1] >= epoch - 1}
            self._permutations[key] = generator.permutation(len(self.pools[kind]))
        return self._permutations[key]

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> list[tuple[TrainingExample, tuple[Segment, ...], tuple[int, ...]]]:
        """This process's share of global micro-batch `step`: (example, segments, targets)."""
        out = []
        for kind, documents in self.counts.items():
            pool = self.pools[kind]
            paired = kind in self.paired
            count = documents // 2 if paired else documents
            global_count = count * world_size
            for offset in range(rank * count, (rank + 1) * count):
                position = step * global_count + offset
                epoch, index = divmod(position, len(pool))
                example = pool[int(self._permutation(kind, epoch)[index])]
                views = example.both_orders(self.seed, epoch) if paired else [example.view(self.seed, epoch)]
                out.extend((example, segments, targets) for segments, targets in views)
        return out
