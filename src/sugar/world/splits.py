"""Seeds, held-out combinations and split assignment.

Every item (a captioned image, a story, a Winoground pair, ...) draws from its own
`random.Random` seeded by (world seed, task, split, index), so items can be generated in any
order or in parallel and still come out identical. String seeds are hashed with SHA-512 by
`random.Random`, independent of PYTHONHASHSEED.

Splits are decided by content, not by drawing order: an item's canonical signature is hashed
to a bucket (train 80% / val 10% / test 10%), and an item is kept for a split only when its
bucket is that split. So a val or test item can never equal a train item. Items that contain a
held-out colour-shape combination belong to test whatever their hash, so no held-out
combination can reach train or val.
"""

from __future__ import annotations

import hashlib
import random

from sugar.world.scene import COLOURS, SHAPES, Combo

SPLITS: tuple[str, ...] = ("train", "val", "test")
BUCKET_BOUNDS: tuple[tuple[str, float], ...] = (("train", 0.8), ("val", 0.9), ("test", 1.0))
NUM_HELDOUT = 4
MAX_TRIES = 10_000


def item_rng(seed: int, *parts: object) -> random.Random:
    """The random stream of one item, e.g. `item_rng(0, "captions", "train", 17)`."""
    return random.Random("/".join(["sugar-world", str(seed)] + [str(p) for p in parts]))


def heldout_combos(seed: int, count: int = NUM_HELDOUT) -> list[Combo]:
    """`count` colour-shape pairs kept out of train and val.

    Colours and shapes are all distinct, so every colour and every shape still appears in
    training in other combinations: the test asks for a new combination, not a new word.
    """
    if not 0 <= count <= min(len(COLOURS), len(SHAPES)):
        raise ValueError(
            f"count of held-out combos must be in 0..{min(len(COLOURS), len(SHAPES))}, got {count}"
        )
    rng = item_rng(seed, "heldout")
    colours = rng.sample(COLOURS, count)
    shapes = rng.sample(SHAPES, count)
    return sorted(zip(colours, shapes))


def bucket(seed: int, signature: str) -> str:
    """The split an item with this signature belongs to, from a hash of seed and signature."""
    digest = hashlib.blake2b(f"{seed}|{signature}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    for split, bound in BUCKET_BOUNDS:
        if u < bound:
            return split
    return BUCKET_BOUNDS[-1][0]


def split_of(seed: int, signature: str, combos: set[Combo], heldout: set[Combo]) -> str:
    """Split of an item: test when it shows a held-out combination, else its hash bucket."""
    if combos & heldout:
        return "test"
    return bucket(seed, signature)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
